#!/usr/bin/env python3
"""Build the bundled demo plate from real images of ../shared/data.

    python tools/make_demo_plate.py

48 fields: the first 48 256x256 images (by id) of dsb2018_fluo's held-out
split - images the bundled nuclei model never saw in training - laid out as
wells A01-B12 of a 96-well plate, two sites each, named as ImageXpress
exports them (``demo_<well>_s<site>_w1.tif``), zlib-compressed. The source
image id of every field is recorded in ``plate/SOURCES.tsv``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from cellrt.io.plate import format_well  # noqa: E402
from cellrt.training.data import dsb_ids  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "dsb2018_fluo"
OUT = ROOT / "python" / "cellrt" / "data" / "demo" / "plate"
WELLS, SITES = 24, 2


def main() -> int:
    chosen = []
    for image_id in dsb_ids(DATA, held_out=True):
        image = tifffile.imread(DATA / "images" / f"{image_id}.tif")
        if image.shape == (256, 256):
            chosen.append((image_id, image))
        if len(chosen) == WELLS * SITES:
            break
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.tif"):
        old.unlink()
    lines = ["file\tdsb2018_id"]
    for index, (image_id, image) in enumerate(chosen):
        well = format_well(index // SITES // 12, index // SITES % 12)
        name = f"demo_{well}_s{index % SITES + 1}_w1.tif"
        tifffile.imwrite(OUT / name, image, compression="zlib")
        lines.append(f"{name}\t{image_id}")
    (OUT / "SOURCES.tsv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(chosen)} fields to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
