"""OME-Zarr HCS plates (the NGFF plate / well / field layout), read lazily.

Supports NGFF 0.4 (Zarr v2, metadata at the top level of the attributes)
and 0.5 (Zarr v3, metadata under ``"ome"``). Each field is the
full-resolution level of its multiscale image; a field is read only when the
pipeline asks for it, one channel plane at a time (the first time point and
z plane). Channel names come from the ``omero`` metadata, else 1, 2, ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plate import FieldSource, Plate, PlateError, format_well, pixel_size_um, well_sort_key


def _ome(attributes) -> dict:
    attributes = dict(attributes)
    return dict(attributes.get("ome", attributes))


def is_ome_zarr_plate(path) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in (".zattrs", "zarr.json")) and \
        _has_plate(path)


def _has_plate(path: Path) -> bool:
    try:
        import zarr  # noqa: PLC0415
        return "plate" in _ome(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - not a readable zarr group: not an OME-Zarr plate
        return False


class _ZarrField:
    """Reads (channel planes of) one field image on demand."""

    def __init__(self, array, axes: list[str], channel_index: dict[str, int], where: str):
        self.array, self.axes, self.channel_index, self.where = array, axes, channel_index, where

    def __call__(self, channels: list[str]) -> list[np.ndarray]:
        planes = []
        for channel in channels:
            index = []
            for axis in self.axes:
                if axis == "c":
                    index.append(self.channel_index[channel])
                elif axis in ("y", "x"):
                    index.append(slice(None))
                else:
                    index.append(0)
            planes.append(np.asarray(self.array[tuple(index)]))
        return planes


def open_ome_zarr_plate(root, *, name: str | None = None) -> Plate:
    import zarr  # noqa: PLC0415

    root = Path(root)
    try:
        group = zarr.open_group(str(root), mode="r")
    except Exception as error:  # noqa: BLE001
        raise PlateError(f"{root}: not a readable Zarr group: {error}") from error
    meta = _ome(group.attrs)
    plate_meta = meta.get("plate")
    if not isinstance(plate_meta, dict) or not plate_meta.get("wells"):
        raise PlateError(f"{root}: no NGFF 'plate' metadata with wells (is this an OME-Zarr HCS plate?)")
    rows = [r["name"] for r in plate_meta.get("rows", [])]
    columns = [c["name"] for c in plate_meta.get("columns", [])]
    sources, channels = [], None
    pixel_um, pixel_where = None, ""
    for well_meta in plate_meta["wells"]:
        path = well_meta["path"]
        row_name, _, column_name = path.partition("/")
        row = well_meta.get("rowIndex", rows.index(row_name) if row_name in rows else None)
        column = well_meta.get("columnIndex", columns.index(column_name) if column_name in columns else None)
        if row is None or column is None:
            raise PlateError(f"{root}: well path {path!r} is not among the plate's rows {rows} / columns {columns}")
        well = format_well(int(row), int(column))
        try:
            well_group = group[path]
        except KeyError as error:
            raise PlateError(f"{root / path}: well listed in the plate metadata is missing") from error
        images = _ome(well_group.attrs).get("well", {}).get("images", [])
        if not images:
            raise PlateError(f"{root / path}: well has no 'well.images' metadata")
        for number, image_meta in enumerate(images, start=1):
            where = root / path / image_meta["path"]
            try:
                image_group = well_group[image_meta["path"]]
            except KeyError as error:
                raise PlateError(f"{where}: field listed in the well metadata is missing") from error
            image_attrs = _ome(image_group.attrs)
            multiscales = image_attrs.get("multiscales")
            if not multiscales:
                raise PlateError(f"{where}: no 'multiscales' metadata")
            axes = [a["name"] if isinstance(a, dict) else a for a in multiscales[0].get("axes", [])]
            array = image_group[multiscales[0]["datasets"][0]["path"]]
            if not axes:
                axes = ["t", "c", "z", "y", "x"][-array.ndim:]
            if len(axes) != array.ndim or "y" not in axes or "x" not in axes:
                raise PlateError(f"{where}: axes {axes} do not describe the array of shape {array.shape}")
            count = array.shape[axes.index("c")] if "c" in axes else 1
            labels = [c.get("label") for c in image_attrs.get("omero", {}).get("channels", [])]
            names = labels if len(labels) == count and all(labels) and len(set(labels)) == count else \
                [str(i + 1) for i in range(count)]
            if channels is None:
                channels = names
            elif names != channels:
                raise PlateError(f"{where}: channels {names} differ from the plate's other fields {channels}")
            if not sources:   # the first field's scale stands for the plate's
                pixel_um, pixel_where = _pixel_size(multiscales[0], axes, where)
            reader = _ZarrField(array, axes, {n: i for i, n in enumerate(names)}, str(where))
            files = {n: Path(f"{where}[c={i}]") for i, n in enumerate(names)}
            sources.append(FieldSource(well, number, files, reader=reader))
    sources.sort(key=lambda s: (well_sort_key(s.well), s.field))
    plate_name = name or plate_meta.get("name") or root.stem
    return Plate(plate_name, root, "ome-zarr", channels or [], sources, pixel_size_um=pixel_um,
                 pixel_size_source=pixel_where)


def _pixel_size(multiscale: dict, axes: list, where) -> tuple[float | None, str]:
    """The full-resolution level's y/x pixel size in um from NGFF ``coordinateTransformations`` (the
    dataset's scale times the multiscale's, units from the axes); (None, "") where none is given."""
    scale = [1.0] * len(axes)
    found = False
    for transforms in (multiscale.get("coordinateTransformations") or [],
                       multiscale["datasets"][0].get("coordinateTransformations") or []):
        for transform in transforms:
            if isinstance(transform, dict) and transform.get("type") == "scale":
                values = transform.get("scale")
                if not isinstance(values, list) or len(values) != len(axes):
                    raise PlateError(f"{where}: coordinateTransformations scale {values!r} does not match the "
                                     f"axes {axes}")
                scale = [a * b if isinstance(b, (int, float)) else b for a, b in zip(scale, values)]
                found = True
    if not found:
        return None, ""
    meta = {a["name"]: a for a in multiscale.get("axes", []) if isinstance(a, dict)}
    y, x = axes.index("y"), axes.index("x")
    units = {meta.get(n, {}).get("unit") for n in ("y", "x")}
    if units == {None}:   # NGFF scales without a unit are in no stated unit: not a pixel size
        return None, ""
    if len(units) > 1:
        raise PlateError(f"{where}: the y and x axes have different units {sorted(map(str, units))}")
    source = f"{where}: multiscales coordinateTransformations"
    return pixel_size_um(scale[x], scale[y], units.pop(), source), source
