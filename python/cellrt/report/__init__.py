"""Plate reports: a static HTML page with embedded PNGs (and the PNGs themselves)."""
from .plate_report import write_plate_report

__all__ = ["write_plate_report"]
