"""OME-TIFF plates: the OME-XML ``Plate`` / ``Well`` / ``WellSample`` layout.

A plate is one OME-TIFF file, or a set of them that the OME-XML ties
together (``TiffData`` elements with a ``UUID FileName``), or a
``.companion.ome`` metadata file next to binary-only OME-TIFFs. Each
``WellSample`` is one field; its ``ImageRef`` names an ``Image`` whose
``TiffData`` elements map TIFF pages (IFDs) to (channel, z, time) planes in
the ``Pixels`` dimension order. The XML is read once when the plate is
opened; a field's planes (first z plane and time point of each channel) are
read from their pages only when the pipeline asks for them.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .plate import FieldSource, Plate, PlateError, format_well, pixel_size_um, well_sort_key

OME_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.tf2", ".ome.tf8", ".ome.btf")


def is_ome_tiff_name(path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(OME_TIFF_SUFFIXES) or name.endswith(".companion.ome")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element, name: str) -> list:
    return [child for child in element if _local(child.tag) == name]


def _child(element, name: str):
    found = _children(element, name)
    return found[0] if found else None


def _read_xml(path: Path) -> str:
    if path.name.lower().endswith(".companion.ome"):
        try:
            return path.read_text(encoding="utf-8")
        except OSError as error:
            raise PlateError(f"{path}: unreadable OME companion file: {error}") from error
    import tifffile  # noqa: PLC0415

    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description if len(tif.pages) else ""
    except Exception as error:  # noqa: BLE001 - truncated/corrupt files raise many types
        raise PlateError(f"{path}: unreadable TIFF: {type(error).__name__}: {error}") from error
    if "<OME" not in description:
        raise PlateError(f"{path}: no OME-XML in the first page's ImageDescription (not an OME-TIFF)")
    return description


def _parse(path: Path, text: str):
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise PlateError(f"{path}: OME-XML does not parse: {error}") from error


def load_ome_xml(path: Path):
    """The OME root element for ``path``, following ``BinaryOnly`` to its companion file."""
    root = _parse(path, _read_xml(path))
    binary_only = _child(root, "BinaryOnly")
    if binary_only is not None:
        companion = path.parent / binary_only.get("MetadataFile", "")
        if not companion.is_file():
            raise PlateError(f"{path}: OME-XML is BinaryOnly and points to {companion.name!r}, which is missing")
        return load_ome_xml(companion)
    return root, path


@dataclass(frozen=True)
class PlaneRef:
    file: Path
    ifd: int


class _OmeTiffField:
    """Reads the channel planes of one field from their TIFF pages."""

    def __init__(self, planes: dict[str, PlaneRef]):
        self.planes = planes

    def __call__(self, channels: list[str]) -> list[np.ndarray]:
        import tifffile  # noqa: PLC0415

        out = []
        for channel in channels:
            ref = self.planes[channel]
            # A fresh handle per read: reader threads never share a file position.
            with tifffile.TiffFile(ref.file, is_ome=False) as tif:
                if ref.ifd >= len(tif.pages):
                    raise PlateError(f"{ref.file}: has {len(tif.pages)} pages; the OME-XML maps channel {channel} "
                                     f"to page {ref.ifd}")
                out.append(tif.pages[ref.ifd].asarray())
        return out


def _plane_index(order: str, sizes: dict, z: int, c: int, t: int) -> int:
    """Index of plane (z, c, t) among a Pixels element's planes in ``DimensionOrder`` (XY first, then 3 axes)."""
    position = {"Z": z, "C": c, "T": t}
    index, stride = 0, 1
    for axis in order[2:]:
        index += position[axis] * stride
        stride *= sizes[axis]
    return index


def _image_planes(image, base: Path, default_file: Path | None, where: str,
                  page_counts: dict) -> tuple[list[str], dict[str, PlaneRef]]:
    """Channel names and, per channel, the page holding its (z=0, t=0) plane. TiffData without a UUID
    refers to ``default_file`` (the file the XML came from; None for a companion file)."""
    pixels = _child(image, "Pixels")
    if pixels is None:
        raise PlateError(f"{where}: Image has no Pixels element")
    order = pixels.get("DimensionOrder", "XYCZT").upper()
    if sorted(order) != sorted("XYCZT") or not order.startswith("XY"):
        raise PlateError(f"{where}: DimensionOrder {order!r} is not XY followed by C, Z and T")
    try:
        sizes = {axis: int(pixels.get(f"Size{axis}", "1")) for axis in "CZT"}
    except ValueError as error:
        raise PlateError(f"{where}: SizeC/SizeZ/SizeT are not integers: {error}") from error
    names = [c.get("Name") for c in _children(pixels, "Channel")]
    if len(names) != sizes["C"] or not all(names) or len(set(names)) != len(names):
        names = [str(i + 1) for i in range(sizes["C"])]
    wanted = {_plane_index(order, sizes, 0, c, 0): names[c] for c in range(sizes["C"])}
    found: dict[str, PlaneRef] = {}
    for tiff_data in _children(pixels, "TiffData"):
        uuid = _child(tiff_data, "UUID")
        file = base / uuid.get("FileName") if uuid is not None and uuid.get("FileName") else default_file
        if file is None:
            raise PlateError(f"{where}: a TiffData element has no UUID FileName, which a companion file needs")
        ifd = int(tiff_data.get("IFD", "0"))
        if tiff_data.get("PlaneCount") is not None:
            count = int(tiff_data.get("PlaneCount"))
        elif tiff_data.get("IFD") is not None:
            count = 1
        else:
            count = _page_count(file, page_counts)
        first = _plane_index(order, sizes, int(tiff_data.get("FirstZ", "0")), int(tiff_data.get("FirstC", "0")),
                             int(tiff_data.get("FirstT", "0")))
        for k in range(count):
            if first + k in wanted:
                found[wanted[first + k]] = PlaneRef(file, ifd + k)
    missing = [name for name in names if name not in found]
    if missing:
        raise PlateError(f"{where}: no TiffData maps channel(s) {missing} (z=0, t=0) to a TIFF page")
    return names, found


def _page_count(file: Path, cache: dict) -> int:
    if file not in cache:
        import tifffile  # noqa: PLC0415
        if not file.is_file():
            raise PlateError(f"{file}: referenced by the OME-XML but missing")
        with tifffile.TiffFile(file, is_ome=False) as tif:
            cache[file] = len(tif.pages)
    return cache[file]


def open_ome_tiff_plate(path, *, name: str | None = None) -> Plate:
    """Open an OME-TIFF plate: a file (``.ome.tif`` or ``.companion.ome``) or a folder holding one.

    In a folder, the file whose OME-XML has a ``Plate`` element is the
    plate (multi-file sets usually repeat the whole XML in every file; the
    first in name order is taken).
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and is_ome_tiff_name(p))
        companions = [p for p in candidates if p.name.lower().endswith(".companion.ome")]
        candidates = companions or candidates
        if not candidates:
            raise PlateError(f"{path}: no OME-TIFF (.ome.tif, .ome.tiff) or .companion.ome file")
        for candidate in candidates:
            root, xml_file = load_ome_xml(candidate)
            if _children(root, "Plate"):
                return _plate_from_xml(root, xml_file, candidate, path, name)
        raise PlateError(f"{path}: none of its {len(candidates)} OME-TIFF file(s) has Plate metadata "
                         f"(e.g. {candidates[0].name}); pass a layout pattern to read them as a folder of fields")
    if not path.is_file():
        raise PlateError(f"{path}: OME-TIFF plate does not exist")
    root, xml_file = load_ome_xml(path)
    return _plate_from_xml(root, xml_file, path, path.parent, name)


def _plate_from_xml(root, xml_file: Path, data_file: Path, folder: Path, name: str | None) -> Plate:
    plates = _children(root, "Plate")
    if not plates:
        raise PlateError(f"{xml_file}: OME-XML has no Plate element (not a plate; a single image?)")
    if len(plates) > 1:
        raise PlateError(f"{xml_file}: OME-XML holds {len(plates)} plates "
                         f"({', '.join(p.get('Name') or p.get('ID', '?') for p in plates)}); cellrt reads one "
                         f"plate per run")
    plate = plates[0]
    images = {image.get("ID"): image for image in _children(root, "Image")}
    # TiffData without a UUID refers to the file the XML came from (the data file for a companion: none).
    default_file = data_file if not xml_file.name.lower().endswith(".companion.ome") else None
    page_counts: dict = {}   # file -> number of pages, read once
    sources, channels = [], None
    for well in _children(plate, "Well"):
        try:
            row, column = int(well.get("Row")), int(well.get("Column"))
        except (TypeError, ValueError) as error:
            raise PlateError(f"{xml_file}: Well {well.get('ID')!r} has no integer Row/Column") from error
        well_name = format_well(row, column)
        samples = sorted(_children(well, "WellSample"), key=lambda s: int(s.get("Index", "0")))
        for number, sample in enumerate(samples, start=1):
            ref = _child(sample, "ImageRef")
            where = f"{xml_file} (well {well_name}, field {number})"
            if ref is None or ref.get("ID") not in images:
                raise PlateError(f"{where}: WellSample has no ImageRef to an Image of this file")
            names, planes = _image_planes(images[ref.get("ID")], folder, default_file, where, page_counts)
            if channels is None:
                channels = names
            elif names != channels:
                raise PlateError(f"{where}: channels {names} differ from the plate's other fields {channels}")
            files = {n: Path(f"{planes[n].file}[page {planes[n].ifd}]") for n in names}
            sources.append(FieldSource(well_name, number, files, reader=_OmeTiffField(planes)))
    if not sources:
        raise PlateError(f"{xml_file}: the plate has no wells with fields (WellSample elements)")
    sources.sort(key=lambda s: (well_sort_key(s.well), s.field))
    plate_name = name or plate.get("Name") or data_file.name.split(".")[0]
    pixel_um, pixel_where = None, ""
    first = next((p for p in (_child(i, "Pixels") for i in images.values()) if p is not None), None)
    if first is not None and first.get("PhysicalSizeX") is not None:
        pixel_where = f"{xml_file}: Pixels PhysicalSizeX/Y"
        pixel_um = pixel_size_um(first.get("PhysicalSizeX"), first.get("PhysicalSizeY", first.get("PhysicalSizeX")),
                                 first.get("PhysicalSizeXUnit"), pixel_where)
    return Plate(plate_name, data_file, "ome-tiff", channels or [], sources, pixel_size_um=pixel_um,
                 pixel_size_source=pixel_where)
