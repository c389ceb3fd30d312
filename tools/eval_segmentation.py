"""F1 at IoU 0.5 of cellrt's classical segmentation against the hand-made
nucleus labels of dsb2018_fluo, so a change that degrades segmentation shows.

    python tools/eval_segmentation.py [--data ../shared/data/dsb2018_fluo] [--every 1] [--json out.json]

Three pipelines per image, each scored by mean F1, precision and recall:
- segment: cellrt.kernels.segment with its defaults (Otsu, local gaussian
  threshold, fill holes, opening, smoothing, min area);
- otsu+fill: Otsu threshold (exact histogram) -> fill holes -> label ->
  drop objects under --min-area pixels;
- otsu+label: plain Otsu + label, the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile

from cellrt.kernels import instances_from_mask, label, match_instances, segment, threshold

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_fluo"


def evaluate(data: Path, every: int = 1, min_area: int = 10) -> dict:
    paths = sorted((data / "labels").glob("*.tif"))[::every]
    if not paths:
        raise SystemExit(f"eval_segmentation: no labels under {data / 'labels'}")
    rows = {"segment": [], "otsu+fill": [], "otsu+label": []}
    for path in paths:
        truth = tifffile.imread(path)
        image = tifffile.imread(data / "images" / path.name)
        if image.ndim != 2:
            raise SystemExit(f"eval_segmentation: {path.name}: expected a 2-D image, got {image.shape}")
        mask = image > threshold(image, "otsu")
        predicted, _ = instances_from_mask(mask, min_area=min_area)
        rows["otsu+fill"].append(match_instances(predicted, truth))
        rows["segment"].append(match_instances(segment(image)[0], truth))
        rows["otsu+label"].append(match_instances(label(mask)[0], truth))
    summary = {"images": len(paths), "min_area": min_area}
    for name, results in rows.items():
        summary[name] = {k: float(np.mean([r[k] for r in results])) for k in ("f1", "precision", "recall")}
    return summary


def rows_order() -> tuple[str, ...]:
    return ("segment", "otsu+fill", "otsu+label")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every", type=int, default=1, help="use every k-th image (1: all 541)")
    parser.add_argument("--min-area", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    summary = evaluate(args.data, args.every, args.min_area)
    for name in rows_order():
        s = summary[name]
        print(f"{name:<10} F1@0.5 {s['f1']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
              f"  ({summary['images']} images)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
