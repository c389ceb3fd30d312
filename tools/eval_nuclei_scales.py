#!/usr/bin/env python3
"""Held-out F1 of nuclei models on fields imaged at other magnifications, without rescaling.

    python tools/eval_nuclei_scales.py nuclei [OTHER_MODEL ...] [--scales 1 0.5 2 3] [--json out.json]

Each held-out dsb2018_fluo image (``cellrt.training.data.dsb_ids(...,
held_out=True)``, ``--split stratified`` or ``hash``) is resampled by each
factor - the image with an antialiased bilinear filter, its labels by
nearest neighbour - and run at that size through
``cellrt.load_model(MODEL, backend="ort").run(image, object_diameter=None).labels``:
the model is not told the scale and the engine does not rescale, as on a
plate from another microscope run with ``--object-diameter none`` (the
engine's rescaling is measured by ``tools/eval_segmentation.py``). Objects are
matched with ``cellrt.kernels.match_instances`` at IoU 0.5 and F1 is pooled
(true and false positives and negatives summed, as
``cellrt.training.bundle.evaluate_nuclei`` does) over all images and per
image group (``dsb_group`` of the original shape). Factor 1 runs the
original uint8 image, so it reproduces ``evaluate_nuclei``.

MODEL is a bundled model's name or a model folder; ``--label`` names the
columns (default: the folder's name).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_fluo"


def rescale(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) image and labels -> both at ``round(H * factor), round(W * factor)``: the image antialiased
    bilinear (float32), the labels nearest neighbour (pixel centres aligned with the image's)."""
    if factor == 1:
        return image, labels
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    h, w = image.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    out = F.interpolate(torch.from_numpy(image.astype(np.float32))[None, None], size=size, mode="bilinear",
                        antialias=True, align_corners=False)[0, 0].numpy()
    rows = np.minimum(np.floor((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(np.floor((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return out, labels[np.ix_(rows, cols)]


def evaluate(models: dict, data: Path, scales, split: str = "stratified", precision: str = "auto",
             threads: int = 1, max_images: int | None = None, log=None) -> dict:
    """{label: {scale: {"pooled": f1, "groups": {group: f1}, "counts": {group: images}}}}."""
    import cellrt  # noqa: PLC0415
    from cellrt.kernels import match_instances  # noqa: PLC0415
    from cellrt.training.data import dsb_group, dsb_ids  # noqa: PLC0415

    ids = dsb_ids(data, held_out=True, split=split)[:max_images]
    loaded = {name: cellrt.load_model(path, backend="ort", precision=precision, threads=threads)
              for name, path in models.items()}
    totals = {name: {s: {} for s in scales} for name in models}
    counts: dict[str, int] = {}
    for n, image_id in enumerate(ids):
        image = tifffile.imread(data / "images" / f"{image_id}.tif")
        truth = tifffile.imread(data / "labels" / f"{image_id}.tif")
        group = dsb_group(image.shape)
        counts[group] = counts.get(group, 0) + 1
        for s in scales:
            scaled, scaled_truth = rescale(image, truth, s)
            for name, model in loaded.items():
                m = match_instances(model.run(scaled, object_diameter=None).labels, scaled_truth)
                row = totals[name][s].setdefault(group, np.zeros(3, np.int64))
                row += (m["tp"], m["fp"], m["fn"])
        if log:
            log(f"{n + 1}/{len(ids)} {image_id} {group}")

    def f1(tp, fp, fn):
        return round(float(2 * tp / (2 * tp + fp + fn)), 4) if tp + fp + fn else 1.0

    out = {}
    for name in models:
        out[name] = {}
        for s in scales:
            groups = totals[name][s]
            pooled = sum(groups.values())
            out[name][str(s)] = {"pooled": f1(*pooled), "groups": {g: f1(*groups[g]) for g in sorted(groups)},
                                 "tp_fp_fn": [int(v) for v in pooled]}
    return {"held_out_images": len(ids), "split": split, "images_per_group": dict(sorted(counts.items())),
            "f1_iou50": out}


def table(result: dict) -> str:
    names = list(result["f1_iou50"])
    scales = list(next(iter(result["f1_iou50"].values())))
    lines = ["| rows | " + " | ".join(f"{name} x{s}" for s in scales for name in names) + " |",
             "|---|" + "---|" * (len(names) * len(scales))]
    lines.append(f"| pooled ({result['held_out_images']} images) | " + " | ".join(
        f"{result['f1_iou50'][name][s]['pooled']:.4f}" for s in scales for name in names) + " |")
    for group, count in result["images_per_group"].items():
        lines.append(f"| {group} ({count}) | " + " | ".join(
            f"{result['f1_iou50'][name][s]['groups'][group]:.4f}" for s in scales for name in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="bundled model names or model folders")
    parser.add_argument("--label", action="append", default=None, help="a column name per model, in order")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 2.0, 3.0])
    parser.add_argument("--split", choices=["stratified", "hash"], default="stratified")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    labels = args.label or [Path(m).name for m in args.models]
    if len(labels) != len(args.models) or len(set(labels)) != len(labels):
        parser.error("--label: one distinct name per model")
    result = evaluate(dict(zip(labels, args.models)), args.data, args.scales, args.split, args.precision,
                      args.threads, args.max_images, log=lambda line: print(line, file=sys.stderr))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
