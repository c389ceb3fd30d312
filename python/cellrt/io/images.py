"""Per-field image outputs of a plate run: label images and predicted channels.

Two formats:

- ``tiff``: ``labels/<well>_fNN.tif`` (int32 labels) and
  ``predictions/<well>_fNN.ome.tif`` (float32, axes CYX, channel names in
  the OME-XML), each written to a temporary name and renamed;
- ``ome-zarr``: ``images.ome.zarr``, an NGFF 0.4 HCS plate (Zarr v2, read
  by napari-ome-zarr, OMERO, ome-zarr-py, and by cellrt itself). Each
  field's image holds the predicted channels (NGFF labels need a parent
  image) and its label image lies under ``labels/cells``. The plate
  metadata lists every well of the run from the start; a well's field
  groups are (re)written whole when the well completes, so a resumed run
  rewrites what an interrupted one left half done.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plate import row_name, well_position

IMAGE_FORMATS = ("tiff", "ome-zarr")
NGFF_VERSION = "0.4"
LABEL_NAME = "cells"


class FieldImageWriter:
    """Writes one well's label images and/or predicted channels at a time."""

    def __init__(self, out, *, image_format: str, save_labels: bool, save_predictions: bool,
                 prediction_channels: list[str], wells: list[str], plate_name: str,
                 pixel_size_um: float | None = None):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format should be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.out = Path(out)
        self.image_format = image_format
        self.save_labels, self.save_predictions = save_labels, save_predictions
        self.prediction_channels = list(prediction_channels)
        self.pixel_size_um = pixel_size_um
        self.enabled = save_labels or save_predictions
        self._zarr = None
        if self.enabled and image_format == "ome-zarr":
            self._zarr = self._open_zarr_plate(wells, plate_name)

    @property
    def zarr_path(self) -> Path:
        return self.out / "images.ome.zarr"

    def write_well(self, well: str, fields: list[tuple[int, object]]) -> None:
        """``fields``: (field number, FieldResult) of every successful field of the well."""
        if not self.enabled:
            return
        if self._zarr is not None:
            self._write_zarr_well(well, fields)
            return
        import tifffile  # noqa: PLC0415

        from .._atomic import atomic_path  # noqa: PLC0415
        for number, result in fields:
            if self.save_labels:
                with atomic_path(self.out / "labels" / f"{well}_f{number:02d}.tif") as tmp:
                    tifffile.imwrite(tmp, result.labels, compression="zlib")
            if self.save_predictions:
                with atomic_path(self.out / "predictions" / f"{well}_f{number:02d}.ome.tif") as tmp:
                    metadata = {"axes": "CYX", "Channel": {"Name": self.prediction_channels}}
                    if self.pixel_size_um:
                        metadata.update(PhysicalSizeX=self.pixel_size_um, PhysicalSizeY=self.pixel_size_um)
                    # The temporary name does not end in .ome.tif: ask for OME-XML explicitly.
                    tifffile.imwrite(tmp, np.asarray(result.prediction, np.float32), ome=True, metadata=metadata,
                                     compression="zlib")

    # -- OME-Zarr ---------------------------------------------------------------------------------------------
    def _open_zarr_plate(self, wells: list[str], plate_name: str):
        import zarr  # noqa: PLC0415

        self._plate_name = plate_name
        self._wells = list(wells)
        plate = zarr.open_group(str(self.zarr_path), mode="a", zarr_format=2)
        self._write_plate_metadata(plate)
        return plate

    def _write_plate_metadata(self, plate) -> None:
        positions = {w: well_position(w) for w in self._wells}
        odd = [w for w, p in positions.items() if p is None]
        if odd:
            raise ValueError(f"OME-Zarr output needs wells named by row and column (like B03); got {odd[:3]}")
        rows = sorted({p[0] for p in positions.values()})
        columns = sorted({p[1] for p in positions.values()})
        plate.attrs.put({"plate": {
            "version": NGFF_VERSION, "name": self._plate_name,
            "rows": [{"name": row_name(r)} for r in rows], "columns": [{"name": str(c + 1)} for c in columns],
            "wells": [{"path": self._well_path(w), "rowIndex": rows.index(positions[w][0]),
                       "columnIndex": columns.index(positions[w][1])} for w in self._wells]}})

    @staticmethod
    def _well_path(well: str) -> str:
        row, column = well_position(well)
        return f"{row_name(row)}/{column + 1}"

    def _scale(self, ndim: int) -> list[float]:
        size = float(self.pixel_size_um or 1.0)
        return [1.0] * (ndim - 2) + [size, size]

    def _axes(self, channel_axis: bool) -> list[dict]:
        space = {"type": "space", **({"unit": "micrometer"} if self.pixel_size_um else {})}
        return ([{"name": "c", "type": "channel"}] if channel_axis else []) + \
            [{"name": "y", **space}, {"name": "x", **space}]

    def _write_array(self, group, data: np.ndarray) -> None:
        chunks = data.shape[:-2] + tuple(min(s, 1024) for s in data.shape[-2:])
        if data.ndim == 3:
            chunks = (1,) + chunks[1:]
        array = group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=chunks, overwrite=True)
        array[...] = data
        group.attrs.put({"multiscales": [{
            "version": NGFF_VERSION, "axes": self._axes(data.ndim == 3),
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                                      "scale": self._scale(data.ndim)}]}]}]})

    def _write_zarr_well(self, well: str, fields: list[tuple[int, object]]) -> None:
        if well not in self._wells:   # live acquisition: wells become known as they are imaged
            self._wells.append(well)
            self._write_plate_metadata(self._zarr)
        well_group = self._zarr.require_group(self._well_path(well))
        for number, result in fields:
            image = well_group.create_group(str(number), overwrite=True)   # a half-written field is redone whole
            prediction = np.asarray(result.prediction, np.float32)
            self._write_array(image, prediction)
            attrs = dict(image.attrs)
            attrs["omero"] = {"version": NGFF_VERSION, "channels": [
                {"label": name, "color": "FFFFFF", "active": True,
                 "window": {"min": float(plane.min()), "max": float(plane.max()),
                            "start": float(plane.min()), "end": float(plane.max())}}
                for name, plane in zip(self.prediction_channels, prediction)]}
            image.attrs.put(attrs)
            if self.save_labels:
                labels = image.require_group("labels")
                labels.attrs.put({"labels": [LABEL_NAME]})
                label_group = labels.require_group(LABEL_NAME)
                self._write_array(label_group, np.asarray(result.labels, np.int32))
                attrs = dict(label_group.attrs)
                attrs["image-label"] = {"version": NGFF_VERSION, "source": {"image": "../../"}}
                label_group.attrs.put(attrs)
        # The well lists its fields last, once they are all there.
        well_group.attrs.put({"well": {"version": NGFF_VERSION,
                                       "images": [{"path": str(number)} for number, _ in fields]}})
