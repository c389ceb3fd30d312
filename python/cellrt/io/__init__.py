"""Plate sources and result sinks."""
from .plate import PRESETS, FieldSource, Plate, PlateError, open_plate, read_field

__all__ = ["PRESETS", "FieldSource", "Plate", "PlateError", "open_plate", "read_field"]
