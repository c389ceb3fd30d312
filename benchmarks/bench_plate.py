#!/usr/bin/env python3
"""A plate through cellrt vs a naive stack doing the same work, side by side.

    python benchmarks/bench_plate.py [--fields 24] [--side 1024] [--threads 2]

The plate has the geometry of a 384-well plate (wells A01..P24, ImageXpress
names), scaled to --fields fields of --side² 16-bit pixels tiled from real
dsb2018 nuclei so it finishes in minutes here. Both sides run the bundled
``nuclei`` model on every field and produce per-object tables:

- cellrt: ``PlateRun`` (reader threads, batched ONNX Runtime across fields,
  worker pool, per-well Parquet);
- naive: sequential per field - tifffile read, numpy percentile
  normalisation, torch eager + MONAI ``sliding_window_inference`` (gaussian
  blend, same tile, overlap and batch), softmax, scipy fill holes,
  scikit-image label + watershed split along the boundary class,
  ``regionprops_table`` with intensities, CSV per field. The torch module is
  rebuilt from the bundled ONNX weights (same model on both sides).

cellrt runs three times: with its default ``tile_size='auto'`` (tiles
sized to the field: a 1024² field is 4 tiles of 536², 1.15 Mpx through the
network), with the manifest's 256² tiles (25 tiles, 1.64 Mpx, as MONAI
tiles it), and with auto tiles and the bundled INT8 model (opt-in:
``precision="int8"``; not the same arithmetic, so reported apart).
The naive stack runs twice: with MONAI's default ``sw_batch_size=1`` (the
stack as usually written; on this CPU also the faster one) and with the
same batch as cellrt.

Reported: fields/s and p50/p99 latency per field for each, the ratios, the
object counts of both (the naive split is a watershed, not cellrt's seeded
growth, so counts differ slightly), cellrt's per-stage breakdown and the
share of its wall time spent in inference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, note, set_threads, write_record  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_fluo"


def make_plate(root: Path, fields: int, side: int, seed: int = 0) -> Path:
    """``fields`` fields of a 384-well layout, each a ``side``² mosaic of real nuclei scaled to 16 bits."""
    import tifffile  # noqa: PLC0415

    from cellrt.io.plate import format_well  # noqa: PLC0415

    images = [tifffile.imread(p) for p in sorted((DATA / "images").glob("*.tif"))[:200]]
    images = [i for i in images if min(i.shape) >= 256]
    rng = np.random.default_rng(seed)
    for index in range(fields):
        mosaic = np.zeros((side, side), np.uint16)
        for y in range(0, side, 256):
            for x in range(0, side, 256):
                piece = images[int(rng.integers(len(images)))]
                oy, ox = rng.integers(0, piece.shape[0] - 255), rng.integers(0, piece.shape[1] - 255)
                block = piece[oy:oy + 256, ox:ox + 256].astype(np.uint16) * 257
                h, w = min(256, side - y), min(256, side - x)
                mosaic[y:y + h, x:x + w] = block[:h, :w]
        well = format_well(index // 24 % 16, index % 24)
        tifffile.imwrite(root / f"bench_{well}_s1_w1.tif", mosaic)
    return root


def naive_module(manifest, threads: int):
    """The torch module of the naive stack, rebuilt from the bundled ONNX weights (built once, untimed,
    as cellrt's model load is)."""
    import torch  # noqa: PLC0415

    from cellrt.training.from_onnx import unet_from_onnx  # noqa: PLC0415

    torch.set_num_threads(threads)
    return unet_from_onnx(manifest.onnx_path)


def naive_stack(plate_root: Path, out: Path, manifest, module, sw_batch: int, limit: int | None = None
                ) -> tuple[list[float], int]:
    import tifffile  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from monai.inferers import sliding_window_inference  # noqa: PLC0415
    from scipy import ndimage  # noqa: PLC0415
    from skimage.measure import label, regionprops_table  # noqa: PLC0415
    from skimage.segmentation import watershed  # noqa: PLC0415

    tile, overlap = manifest.tile_size, manifest.overlap
    latencies, objects = [], 0
    for path in sorted(plate_root.glob("*.tif"))[:limit]:
        started = time.perf_counter()
        image = tifffile.imread(path).astype(np.float32)
        lo, hi = np.percentile(image, manifest.normalization["percentiles"])
        normalised = ((image - lo) / max(hi - lo, 1e-12)).astype(np.float32)
        with torch.no_grad():
            logits = sliding_window_inference(torch.from_numpy(normalised)[None, None], (tile, tile), sw_batch,
                                              lambda x: module(x)[0], overlap=overlap / tile, mode="gaussian")
            prob = torch.softmax(logits, dim=1)[0].numpy()
        background, interior, boundary = prob
        foreground = ndimage.binary_fill_holes((1 - background) > 0.5)
        seeds = label((interior > 0.5) & (interior > boundary) & foreground)
        labels = watershed(-interior, seeds, mask=foreground)
        table = regionprops_table(labels, intensity_image=image,
                                  properties=("label", "area", "bbox", "centroid", "eccentricity",
                                              "intensity_mean", "intensity_max", "intensity_min"))
        objects += len(table["label"])
        with open(out / f"{path.stem}.csv", "w") as handle:
            handle.write(",".join(table) + "\n")
            for row in zip(*table.values()):
                handle.write(",".join(str(v) for v in row) + "\n")
        latencies.append(time.perf_counter() - started)
    return latencies, objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=24)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)

    import cellrt  # noqa: PLC0415
    from cellrt.io import open_plate  # noqa: PLC0415
    from cellrt.io.tables import read_table  # noqa: PLC0415
    from cellrt.runtime.ort import int8_dot_product  # noqa: PLC0415
    from cellrt.pipeline.plate import PlateOptions, PlateRun  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "plate").mkdir()
        plate_root = make_plate(tmp / "plate", args.fields, args.side)
        models = {"cellrt PlateRun, tile auto": cellrt.load_model("nuclei", backend="ort", threads=args.threads,
                                                                  batch_size=args.batch),
                  "cellrt PlateRun, manifest tile": cellrt.load_model("nuclei", backend="ort", threads=args.threads,
                                                                      batch_size=args.batch, tile_size="model")}
        int8_here, cpu = int8_dot_product()
        if int8_here is not True:
            note(f"INT8 left out: refused on this CPU ({cpu})")
        else:
            models["cellrt PlateRun, tile auto, INT8"] = cellrt.load_model(
                "nuclei", backend="ort", threads=args.threads, batch_size=args.batch, precision="int8")
        model = models["cellrt PlateRun, tile auto"]
        plate = open_plate(plate_root)
        note(f"plate: {len(plate.fields)} fields of {args.side}x{args.side} uint16 (384-well layout); cellrt tiles: "
             + ", ".join(f"{name}: {m.tile_shape((args.side, args.side))}" for name, m in models.items()))
        # Warm both sides on one field (ONNX Runtime planning, torch first-call costs, numba JIT).
        warm = open_plate(plate_root)
        warm.fields = warm.fields[:1]
        for index, warm_model in enumerate(models.values()):
            PlateRun(warm_model, warm, tmp / f"warm{index}").run()
        rounds = []
        naive_variants = {"naive, MONAI sw_batch_size=1 (its default)": 1,
                          f"naive, MONAI sw_batch_size={args.batch}": args.batch}
        module = naive_module(model.manifest, args.threads)
        for sw_batch in naive_variants.values():
            (tmp / f"naive-warm{sw_batch}").mkdir()
            naive_stack(plate_root, tmp / f"naive-warm{sw_batch}", model.manifest, module, sw_batch, limit=1)
        for turn in range(args.rounds):  # interleaved: cellrt variants, naive variants, cellrt, ...
            entry = {}
            for index, (name, variant) in enumerate(models.items()):
                out = tmp / f"cellrt{turn}-{index}"
                started = time.perf_counter()
                summary = PlateRun(variant, plate, out, PlateOptions(batch_size=args.batch, readers=1, workers=1)).run()
                entry[name] = (time.perf_counter() - started, summary, int(read_table(out / "wells.csv")["Count"].sum()))
            for name, sw_batch in naive_variants.items():
                naive_dir = tmp / f"naive{turn}-{sw_batch}"
                naive_dir.mkdir()
                started = time.perf_counter()
                latencies, objects = naive_stack(plate_root, naive_dir, model.manifest, module, sw_batch)
                entry[name] = (time.perf_counter() - started, latencies, objects)
            rounds.append(entry)
            note(f"round {turn + 1}: " + ", ".join(f"{k} {v[0]:.1f} s" for k, v in entry.items()))

    fields = args.fields
    cellrt_wall, summary, cellrt_objects = min((r["cellrt PlateRun, tile auto"] for r in rounds), key=lambda v: v[0])
    rows, record_cellrt = [], {}
    for name in models:
        wall, variant_summary, objects = min((r[name] for r in rounds), key=lambda v: v[0])
        rows.append([name + " (ort, batched across fields, overlapped)", fields / wall,
                     variant_summary["latency_p50_s"], variant_summary["latency_p99_s"], objects,
                     "-" if wall == cellrt_wall else f"{cellrt_wall / wall:.2f}x"])
        record_cellrt[name] = {"wall_s": wall, "objects": objects, "summary": variant_summary,
                               "tile": models[name].tile_shape((args.side, args.side))}
    record_naive = {}
    for name in naive_variants:
        wall, latencies, objects = min((r[name] for r in rounds), key=lambda v: v[0])
        rows.append([name + ", torch eager + MONAI + scikit-image, sequential", fields / wall,
                     statistics.median(latencies), float(np.percentile(latencies, 99)), objects,
                     f"{cellrt_wall / wall:.2f}x"])
        int8 = record_cellrt.get("cellrt PlateRun, tile auto, INT8")
        record_naive[name] = {"wall_s": wall, "latencies_s": latencies, "objects": objects,
                              "cellrt_speedup": wall / cellrt_wall,
                              "cellrt_int8_speedup": wall / int8["wall_s"] if int8 else None}
    table = markdown_table(["stack", "fields/s", "p50 latency s", "p99 latency s", "objects",
                            "speed vs cellrt auto FP32"], rows)
    stages = markdown_table(["stage", "share of summed stage time"],
                            [[k, f"{100 * v:.1f}%"] for k, v in summary["stage_share"].items()])
    infer_share = summary["infer_share_of_wall"]
    print(table)
    print()
    print(stages)
    print(f"\ninference share of cellrt's wall time (tile auto): {100 * infer_share:.0f}% (target >= 80%); speed-up "
          f"vs the naive stacks: " + ", ".join(f"{v['cellrt_speedup']:.2f}x" for v in record_naive.values()) +
          "; with INT8: " + ", ".join(f"{v['cellrt_int8_speedup']:.2f}x" if v["cellrt_int8_speedup"] else "-"
                                      for v in record_naive.values()) +
          " (target >= 5x)")
    write_record("bench_plate", {"machine": machine(), "fields": fields, "side": args.side, "threads": args.threads,
                                 "batch": args.batch, "cellrt_wall_s": cellrt_wall, "cellrt_summary": summary,
                                 "cellrt_objects": cellrt_objects, "cellrt_variants": record_cellrt,
                                 "naive": record_naive,
                                 "infer_share_of_wall": infer_share, "table": table + "\n\n" + stages})
    return 0


if __name__ == "__main__":
    sys.exit(main())
