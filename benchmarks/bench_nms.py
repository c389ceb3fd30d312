"""Mask NMS across tiles on a real 2048x2048 nuclei field: the objects of the
field (bench_segment's field: Otsu + label of 64 real dsb2018 images) as a
perfect instance model would report them tile by tile - 512-pixel tiles
with 64 pixels of overlap, every object each tile sees, whole or cut at the
tile's edge, scored by its area - then one NMS over all of them (IoU 0.5,
intersection over the smaller 0.8). cellrt's C++ backend and its numba
reference side by side with the plain Python/numpy greedy loop one would
write (box overlaps vectorised, mask IoU by slicing); all three keep the
same instances (checked), one per object.

    python benchmarks/bench_nms.py [--side 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, note, set_threads, time_interleaved, write_record  # noqa: E402

from bench_segment import DATA, nuclei_field  # noqa: E402

from cellrt.kernels import instances_from_labels, label, mask_nms, pack_masks, threshold, tile_origins  # noqa: E402

THREADS, TILE, OVERLAP = 2, 512, 64


def tiled_instances(labels: np.ndarray):
    boxes, masks = [], []
    for y, x in tile_origins(labels.shape, TILE, OVERLAP):
        b, m = instances_from_labels(labels[y:y + TILE, x:x + TILE], offset=(y, x))
        boxes.append(b)
        masks += m
    boxes = np.concatenate(boxes)
    scores = np.array([m.sum() for m in masks], np.float32)
    return boxes, scores, masks


def numpy_greedy(boxes, scores, masks, iou=0.5, ios=0.8):
    order = np.argsort(-scores, kind="stable")
    areas = np.array([m.sum() for m in masks])
    alive = np.ones(len(boxes), bool)
    kept = []
    for i in order:
        if not alive[i]:
            continue
        kept.append(i)
        b = boxes[i]
        near = np.flatnonzero(alive & (boxes[:, 0] < b[2]) & (b[0] < boxes[:, 2]) & (boxes[:, 1] < b[3])
                              & (b[1] < boxes[:, 3]))
        for j in near:
            if j == i:
                continue
            y0, x0 = max(b[0], boxes[j, 0]), max(b[1], boxes[j, 1])
            y1, x1 = min(b[2], boxes[j, 2]), min(b[3], boxes[j, 3])
            a = masks[i][y0 - b[0]:y1 - b[0], x0 - b[1]:x1 - b[1]]
            c = masks[j][y0 - boxes[j, 0]:y1 - boxes[j, 0], x0 - boxes[j, 1]:x1 - boxes[j, 1]]
            both = int(np.count_nonzero(a & c))
            if both and (both > np.float32(iou) * (areas[i] + areas[j] - both)
                         or both > np.float32(ios) * min(areas[i], areas[j])):
                alive[j] = False
        alive[i] = False
    return np.asarray(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    set_threads(THREADS)
    if not DATA.is_dir():
        note(f"real data not found at {DATA}")
        return 1
    field = nuclei_field(args.side)
    labels, objects = label(field > threshold(field, "otsu"), 8)
    boxes, scores, masks = tiled_instances(labels)
    packed = pack_masks(boxes, masks)
    note(f"{args.side}^2 field: {objects} objects, {len(boxes)} instances from "
         f"{len(tile_origins(labels.shape, TILE, OVERLAP))} tiles")
    contenders = {
        "cellrt cpu": lambda: mask_nms(boxes, scores, packed, iou_threshold=0.5, ios_threshold=0.8, backend="cpu",
                                       num_threads=THREADS),
        "cellrt numba": lambda: mask_nms(boxes, scores, packed, iou_threshold=0.5, ios_threshold=0.8,
                                         backend="numba"),
        "numpy greedy": lambda: numpy_greedy(boxes, scores, masks),
    }
    results = {name: np.sort(fn()) for name, fn in contenders.items()}
    reference = results["cellrt cpu"]
    for name, kept in results.items():
        if not np.array_equal(kept, reference):
            raise SystemExit(f"{name} keeps other instances than cellrt cpu")
    if len(reference) != objects:
        raise SystemExit(f"kept {len(reference)} instances for {objects} objects")
    timings = time_interleaved(contenders, args.repeats)
    base = timings["numpy greedy"]["median_ms"]
    rows, records = [], []
    for name, t in timings.items():
        records.append({"name": name, **t, "instances": len(boxes), "kept": len(reference),
                        "speedup_vs_numpy": base / t["median_ms"]})
        rows.append([name, len(boxes), len(reference), t["median_ms"], t["min_ms"], base / t["median_ms"]])
    table = markdown_table(["contender", "instances", "kept", "median ms", "min ms", "speed-up vs numpy"], rows)
    print(table)
    path = write_record("bench_nms", {"benchmark": "bench_nms", "side": args.side, "tile": TILE,
                                      "overlap": OVERLAP, "threads": THREADS, "machine": machine(),
                                      "results": records, "table": table})
    note(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
