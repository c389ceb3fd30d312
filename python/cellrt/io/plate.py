"""Plates on disk: a folder of TIFFs whose names encode well, field and channel.

The layout is a pattern with named fields - ``{well}``, ``{row}``,
``{column}``, ``{field}``, ``{channel}``, ``{z}``, ``{timepoint}``,
``{plate}`` and ``{any}`` - or one of the presets for the common instrument
exports:

- ``imagexpress``: ``<plate>_<well>_s<site>_w<channel>.tif`` (MetaXpress; an
  optional ``{GUID}`` suffix after the channel is allowed);
- ``operetta``: ``r01c01f01p01-ch1sk1fk1fl1.tiff`` (Opera/Operetta/Harmony);
- ``glob``: every TIFF is one single-channel field of its own "well" (the
  file's stem), for folders with no naming convention;
- ``ome-zarr``: an OME-Zarr HCS plate (NGFF plate/well/field), read lazily
  (:mod:`cellrt.io.ome_zarr`); detected automatically;
- ``ome-tiff``: an OME-TIFF plate (OME-XML Plate/Well/WellSample; one file,
  a multi-file set or a companion file) given as the file or its folder
  (:mod:`cellrt.io.ome_tiff`); detected automatically.

Everything about a plate is checked before any image is processed:
duplicate files for one (well, field, channel), fields missing a channel
that others have, and names that match no pattern are reported with the
file names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PRESETS = {
    # MetaXpress leaves out _s<site> for one site a well and _w<n> for one wavelength.
    "imagexpress": r"(?P<plate>.+)_(?P<well>[A-Pa-p]\d{2})(?:_s(?P<field>\d+))?(?:_w(?P<channel>\d+))?"
                   r"(?:\{[0-9A-Fa-f-]+\})?\.tiff?",
    "operetta": r"r(?P<row>\d{2})c(?P<column>\d{2})f(?P<field>\d{2})p(?P<z>\d{2})-ch(?P<channel>\d+)"
                r"sk(?P<timepoint>\d+)fk\d+fl\d+\.tiff?",
}
# Files an instrument writes beside the images, skipped when its preset reads the folder.
PRESET_SIDECARS = {"imagexpress": r".+_thumb(?:\{[0-9A-Fa-f-]+\})?\.tiff?"}   # MetaXpress thumbnails
_PLACEHOLDERS = {"well": r"[A-Za-z]{1,2}\d{1,2}", "row": r"[A-Za-z]{1,2}|\d{1,2}", "column": r"\d{1,2}",
                 "field": r"\d+", "channel": r"[^/.]+?", "z": r"\d+", "timepoint": r"\d+", "plate": r".+?",
                 "any": r".*?"}
ROW_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class PlateError(ValueError):
    """A plate that cannot be read as laid out: the message names the files."""


@dataclass(frozen=True, order=True)
class FieldKey:
    well: str
    field: int


@dataclass
class FieldSource:
    """One field: its well, field number and one file per channel."""
    well: str
    field: int
    files: dict[str, Path]
    reader: object = None   # channels -> list of 2-D planes, for sources that are not one file per channel

    @property
    def key(self) -> FieldKey:
        return FieldKey(self.well, self.field)


@dataclass
class Plate:
    name: str
    root: Path
    layout: str
    channels: list[str]
    fields: list[FieldSource]
    rejected: list[dict] = field(default_factory=list)   # files and fields skipped with --skip-bad (rejected_row)
    other_planes: int = 0   # files of z planes / time points other than the one read
    plane: tuple[int, int] = (1, 1)   # (z, timepoint) read where the layout names them
    # Physical pixel size (um) from the plate's metadata, and the field it came from; None where unknown.
    pixel_size_um: float | None = None
    pixel_size_source: str = ""

    @property
    def wells(self) -> list[str]:
        return sorted({f.well for f in self.fields}, key=well_sort_key)

    @property
    def rejected_fields(self) -> list[FieldKey]:
        """Fields left out when the plate was scanned (--skip-bad), in plate order. Files that match no layout
        name no well or field, so they are not among them."""
        keys = {FieldKey(row["Metadata_Well"], int(row["Metadata_Field"])) for row in self.rejected
                if row["Metadata_Well"]}
        return sorted(keys, key=lambda k: (well_sort_key(k.well), k.field))

    @property
    def imaged_wells(self) -> list[str]:
        """Every well the plate's files name: those with fields to read and those whose every field was
        rejected when scanned, which are still wells of the plate (shown as failed, counted in its totals)."""
        return sorted({f.well for f in self.fields} | {k.well for k in self.rejected_fields}, key=well_sort_key)

    def fields_of(self, well: str) -> list[FieldSource]:
        return [f for f in self.fields if f.well == well]

    def typical_field_shape(self, sample: int = 16) -> tuple[int, int] | None:
        """(H, W) of most of up to ``sample`` fields spread evenly over the plate, from the TIFF headers
        (no pixels read); ties go to the field first in plate order. The run checks every field against
        it, so one odd file is the one reported whichever field is read first. None when no header can
        be read this way (plates read through a reader: their first field then sets the shape)."""
        import tifffile  # noqa: PLC0415

        chosen = self.fields if len(self.fields) <= sample else [
            self.fields[round(i * (len(self.fields) - 1) / (sample - 1))] for i in range(sample)]
        shapes: list[tuple[int, int]] = []
        for source in chosen:
            if source.reader is not None or not source.files:
                continue
            try:
                with tifffile.TiffFile(next(iter(source.files.values()))) as tif:
                    shape = tuple(d for d in tif.series[0].shape if d != 1)
            except Exception:  # noqa: BLE001 - an unreadable file is reported when its field is read
                continue
            if len(shape) == 2:
                shapes.append(shape)
        if not shapes:
            return None
        return max(shapes, key=lambda shape: (shapes.count(shape), -shapes.index(shape)))

    def geometry(self) -> tuple[int, int] | None:
        """(rows, columns) of the standard plate (96 or 384 wells, or 6-1536)
        holding every well, rejected ones included (an H12 rejected on a plate otherwise A01-B03 still needs
        its place on the maps), or None when wells are not named like A01."""
        positions = [well_position(w) for w in self.imaged_wells]
        if not positions or any(p is None for p in positions):
            return None
        rows = max(p[0] for p in positions) + 1
        columns = max(p[1] for p in positions) + 1
        for shape in ((2, 3), (3, 4), (4, 6), (6, 8), (8, 12), (16, 24), (32, 48)):
            if rows <= shape[0] and columns <= shape[1]:
                return shape
        return rows, columns


def well_position(well: str) -> tuple[int, int] | None:
    """'B03' -> (1, 2); None if the name is not row letters + column number."""
    match = re.fullmatch(r"([A-Za-z]{1,2})(\d{1,3})", well)
    if not match:
        return None
    letters, number = match.group(1).upper(), int(match.group(2))
    row = 0
    for letter in letters:
        row = row * 26 + ROW_LETTERS.index(letter) + 1
    return row - 1, number - 1


def well_sort_key(well: str):
    position = well_position(well)
    return (0, position, well) if position is not None else (1, (0, 0), well)


def row_name(row: int) -> str:
    """1 -> 'B'; rows past Z continue AA, AB... (1536-well plates)."""
    letters = ""
    row += 1
    while row:
        row, rest = divmod(row - 1, 26)
        letters = ROW_LETTERS[rest] + letters
    return letters


def format_well(row: int, column: int) -> str:
    """(1, 2) -> 'B03'."""
    return f"{row_name(row)}{column + 1:02d}"


def parse_wells(spec: str) -> list[str]:
    """'A01,B03' or rectangles 'A01-H02' (rows A..H x columns 1..2, row by row), comma-separated:
    the well selections screens use for controls ('A01-P02,A23-P24' = the outer columns of a 384)."""
    wells: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        first, dash, last = token.partition("-")
        corners = [well_position(first.strip())] + ([well_position(last.strip())] if dash else [])
        if any(c is None for c in corners):
            raise ValueError(f"wells: {token!r} should be a well like 'B03' or a range like 'A01-H02'")
        (r0, c0), (r1, c1) = corners[0], corners[-1]
        for row in range(min(r0, r1), max(r0, r1) + 1):
            for column in range(min(c0, c1), max(c0, c1) + 1):
                name = format_well(row, column)
                if name not in wells:
                    wells.append(name)
    return wells


def pattern_regex(pattern: str) -> re.Pattern:
    """A preset name, a regular expression with named groups (starts with
    '^' or contains '(?P<'), or a pattern with {placeholders}."""
    if pattern in PRESETS:
        return re.compile(PRESETS[pattern])
    if pattern.startswith("^") or "(?P<" in pattern:
        try:
            return re.compile(pattern.lstrip("^").rstrip("$"))
        except re.error as error:   # its position would count in the anchor-stripped text, not what was typed
            raise PlateError(f"layout {pattern!r}: not a valid regular expression ({error.msg})") from error
    parts, position = [], 0
    for match in re.finditer(r"\{(\w+)\}", pattern):
        name = match.group(1)
        if name not in _PLACEHOLDERS:
            raise PlateError(f"pattern {pattern!r}: unknown placeholder {{{name}}} (known: "
                             f"{', '.join('{' + k + '}' for k in _PLACEHOLDERS)})")
        parts.append(re.escape(pattern[position:match.start()]))
        group = f"(?P<{name}>{_PLACEHOLDERS[name]})" if name != "any" else _PLACEHOLDERS[name]
        if name != "any" and f"(?P<{name}>" in "".join(parts):
            raise PlateError(f"pattern {pattern!r}: {{{name}}} appears twice")
        parts.append(group)
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


def open_plate(root, layout: str = "auto", *, name: str | None = None, skip_bad: bool = False, z: int = 1,
               timepoint: int = 1) -> Plate:
    """Scan a plate folder (not the images: they are read lazily, field by field).

    ``layout``: a preset ('imagexpress', 'operetta', 'glob'), a pattern with
    placeholders, a regular expression with named groups, or 'auto' (the
    first preset that matches every TIFF in the folder, else an error
    listing what was tried). A preset skips the files its instrument writes
    beside the images (MetaXpress ``_thumb`` files).

    ``z``, ``timepoint``: the plane and time point read where the layout
    names ``{z}`` / ``{timepoint}`` (Operetta's ``p02``, ``sk2``); files of
    other planes are left aside and counted in ``Plate.other_planes``.
    """
    for option, value in (("z", z), ("timepoint", timepoint)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlateError(f"{option} should be a plane number >= 1, got {value!r}")
    root = Path(root)
    from .ome_tiff import is_ome_tiff_name, open_ome_tiff_plate  # noqa: PLC0415

    def ome(plate: Plate) -> Plate:
        if (z, timepoint) != (1, 1):
            raise PlateError(f"{root}: {plate.layout} plates are read at their first z plane and time point; "
                             f"z={z}, timepoint={timepoint} cannot be chosen for them")
        return plate

    if layout == "ome-tiff" or (layout == "auto" and root.is_file() and is_ome_tiff_name(root)):
        return ome(open_ome_tiff_plate(root, name=name))
    if not root.is_dir():
        raise PlateError(f"{root}: plate folder does not exist" if not root.exists() else
                         f"{root}: not a folder (a file is a plate only as an OME-TIFF: .ome.tif, .companion.ome)")
    if layout in ("auto", "ome-zarr"):
        from .ome_zarr import is_ome_zarr_plate, open_ome_zarr_plate  # noqa: PLC0415
        if layout == "ome-zarr" or is_ome_zarr_plate(root):
            return ome(open_ome_zarr_plate(root, name=name))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise PlateError(f"{root}: no .tif/.tiff files")
    if layout == "auto" and all(is_ome_tiff_name(p) for p in files):
        return ome(open_ome_tiff_plate(root, name=name))
    def without_sidecars(preset: str) -> list[Path]:
        sidecar = re.compile(PRESET_SIDECARS[preset]) if preset in PRESET_SIDECARS else None
        return [p for p in files if sidecar is None or not sidecar.fullmatch(p.name)]

    if layout == "auto":
        for preset in PRESETS:
            regex = pattern_regex(preset)
            if all(regex.fullmatch(p.name) for p in without_sidecars(preset)):
                layout = preset
                break
        else:
            regexes = [pattern_regex(p) for p in PRESETS]
            odd = next((p for p in files if not any(r.fullmatch(p.name) for r in regexes)), files[0])
            raise PlateError(f"{root}: file names match no preset ({', '.join(PRESETS)}), e.g. {odd.name!r}; "
                             f"pass the layout as a pattern such as '{{well}}_s{{field}}_w{{channel}}.tif', or "
                             f"'glob' to take every file as a field")
    if layout in PRESETS:
        files = without_sidecars(layout)
    rejected: list[dict] = []
    if layout == "glob" and (z, timepoint) != (1, 1):
        raise PlateError(f"{root}: layout 'glob' takes every file as one plane; z and timepoint cannot be chosen")
    if layout == "glob":
        sources = [FieldSource(p.stem, 1, {"1": p}) for p in files]
        return Plate(name or root.name, root, layout, ["1"], sources, rejected)
    regex = pattern_regex(layout)
    for option, value in (("z", z), ("timepoint", timepoint)):
        if value != 1 and option not in regex.groupindex:
            raise PlateError(f"{root}: {option}={value} was asked for, but layout {layout!r} names no "
                             f"{{{option}}}: its files are single planes")
    found: dict[FieldKey, dict[str, Path]] = {}
    duplicates: dict[FieldKey, tuple[list, list]] = {}   # messages, files
    unmatched = []
    other_planes = 0
    plate_names = set()
    for path in files:
        match = regex.fullmatch(path.name)
        if match is None:
            unmatched.append(path)
            continue
        groups = match.groupdict()
        if groups.get("well"):
            raw = groups["well"].upper()
            position = well_position(raw)
            well = format_well(*position) if position else raw
        elif groups.get("row") and groups.get("column"):
            row = groups["row"]
            well = format_well(int(row) - 1 if row.isdigit() else well_position(row + "1")[0],
                               int(groups["column"]) - 1)
        else:
            raise PlateError(f"layout {layout!r} names no {{well}} nor {{row}} and {{column}}")
        if groups.get("plate"):
            plate_names.add(groups["plate"])
        number = int(groups.get("field") or 1)
        channel = str(int(groups["channel"])) if (groups.get("channel") or "").isdigit() else (
            groups.get("channel") or "1")
        if any(groups.get(k) and int(groups[k]) != wanted for k, wanted in (("z", z), ("timepoint", timepoint))):
            other_planes += 1   # a field is one plane at one time point
            continue
        key = FieldKey(well, number)
        channels = found.setdefault(key, {})
        if channel in channels:
            first, second = (p.relative_to(root) for p in (channels[channel], path))   # subfolders told apart
            message = f"{root}: two files for well {well}, field {number}, channel {channel}: {first} and {second}"
            if not skip_bad:
                raise PlateError(message)
            # Which file is the field's image is unknowable: the field is skipped, every file named.
            messages, paths = duplicates.setdefault(key, ([], []))
            messages.append(message)
            paths += [p for p in (channels[channel], path) if p not in paths]
            continue
        channels[channel] = path
    if unmatched:
        message = f"{root}: {len(unmatched)} file(s) do not match layout {layout!r}, e.g. {unmatched[0].name!r}"
        if not skip_bad:
            raise PlateError(message)
        rejected += [rejected_row("", "", [p], f"does not match layout {layout!r}") for p in unmatched]
    if not found:
        planes = f" at z {z}, time point {timepoint} ({other_planes} file(s) of other planes)" if other_planes else ""
        raise PlateError(f"{root}: no file matches layout {layout!r}{planes}")
    all_channels = sorted({c for channels in found.values() for c in channels}, key=_channel_sort_key)
    sources = []
    for key in sorted(found, key=lambda k: (well_sort_key(k.well), k.field)):
        channels = found[key]
        if key in duplicates:   # one row per field, however many channels or copies are doubled
            messages, paths = duplicates[key]
            rejected.append(rejected_row(key.well, key.field, paths, "; ".join(messages)))
            continue
        missing = [c for c in all_channels if c not in channels]
        if missing:
            message = (f"{root}: well {key.well}, field {key.field} has no file for channel(s) {missing} "
                       f"(has {sorted(channels)}: {', '.join(p.name for p in channels.values())})")
            if not skip_bad:
                raise PlateError(message)
            rejected.append(rejected_row(key.well, key.field, list(channels.values()), message))
            continue
        sources.append(FieldSource(key.well, key.field, {c: channels[c] for c in all_channels}))
    plate_name = name or (plate_names.pop() if len(plate_names) == 1 else root.name)
    return Plate(plate_name, root, layout, all_channels, sources, rejected, other_planes, (z, timepoint))


def rejected_row(well: str, field, files: list, error: str) -> dict:
    """A row of the run's error table (errors.csv) for a file or field left out when the plate was
    scanned: the same columns as the fields that fail while the run reads or processes them."""
    return {"Metadata_Well": well, "Metadata_Field": field, "Files": ";".join(str(p) for p in files),
            "Error": error}


def _channel_sort_key(channel: str):
    return (0, int(channel), channel) if channel.isdigit() else (1, 0, channel)


# Length units OME writes (UnitsLength symbols and NGFF's names) in micrometres.
_UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "micrometer": 1.0, "micron": 1.0, "nm": 1e-3, "nanometer": 1e-3,
                "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
                "pm": 1e-6, "picometer": 1e-6, "å": 1e-4, "angstrom": 1e-4}


def pixel_size_um(size_x, size_y, unit, where: str) -> float:
    """One pixel size in micrometres from metadata's X and Y sizes and their length unit (missing unit:
    micrometres, OME's default); refuses sizes that are not finite and > 0, unknown units and pixels that
    are not square (to 1 %), naming ``where``."""
    import math  # noqa: PLC0415

    factor = _UM_PER_UNIT.get(str(unit or "um").strip().lower())
    if factor is None:
        raise PlateError(f"{where}: pixel size unit {unit!r} is not a length unit cellrt knows "
                         f"({sorted(_UM_PER_UNIT)})")
    values = []
    for axis, value in (("X", size_x), ("Y", size_y)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PlateError(f"{where}: pixel size {axis} should be a number, got {value!r}") from None
        if not math.isfinite(number) or number <= 0:
            raise PlateError(f"{where}: pixel size {axis} should be a finite number > 0, got {value!r}")
        values.append(number * factor)
    if abs(values[0] - values[1]) > 0.01 * max(values):
        raise PlateError(f"{where}: pixels are not square ({values[0]:g} x {values[1]:g} um); cellrt measures "
                         f"on square pixels")
    return values[0]


def read_field(source: FieldSource, channels: list[str], *, expect_shape=None) -> np.ndarray:
    """The field's ``channels`` as one (C, H, W) array; errors name the file."""
    import tifffile  # noqa: PLC0415

    planes = []
    if source.reader is not None:
        try:
            loaded = source.reader(channels)
        except PlateError as error:   # already names its file
            raise PlateError(f"{error} (well {source.well}, field {source.field})") from error
        except Exception as error:  # noqa: BLE001 - any storage failure, named with the field
            raise PlateError(f"{source.files[channels[0]]}: unreadable (well {source.well}, field {source.field}): "
                             f"{type(error).__name__}: {error}") from error
    for index, channel in enumerate(channels):
        path = source.files[channel]
        if source.reader is not None:
            image = loaded[index]
        else:
            try:
                image = tifffile.imread(path)
            except Exception as error:  # noqa: BLE001 - truncated/corrupt files raise many types
                raise PlateError(f"{path}: unreadable TIFF (well {source.well}, field {source.field}, channel "
                                 f"{channel}): {type(error).__name__}: {error}") from error
        image = np.squeeze(image)
        if image.ndim != 2:
            raise PlateError(f"{path}: expected one 2-D plane (well {source.well}, field {source.field}, channel "
                             f"{channel}), got shape {image.shape}")
        if image.dtype.kind not in "uif" or image.dtype.itemsize > 4 and image.dtype.kind != "f":
            raise PlateError(f"{path}: pixel type {image.dtype} is not an 8/16/32-bit integer or float image")
        if planes and image.shape != planes[0].shape:
            raise PlateError(f"{path}: shape {image.shape} differs from the field's other channel(s) "
                             f"{planes[0].shape} (well {source.well}, field {source.field})")
        if expect_shape is not None and image.shape != tuple(expect_shape):
            raise PlateError(f"{path}: shape {image.shape}, but the plate's fields are {tuple(expect_shape)}")
        planes.append(image)
    if len({p.dtype for p in planes}) > 1:
        planes = [p.astype(np.float32) for p in planes]
    return np.stack(planes)
