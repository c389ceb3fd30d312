#!/usr/bin/env python3
"""What object-scale handling costs where it is not needed, and what it saves where it is.

    python benchmarks/bench_scale.py [--fields 12] [--side 1024] [--threads 2] [--rounds 2]

Two plates of the same real nuclei (bench_plate's mosaics of dsb2018
fields scaled to 16 bits, 384-well layout):

- x1: --side² fields whose nuclei lie in the bundled ``nuclei`` model's
  range. ``object_diameter="auto"`` estimates the plate's diameter from 8
  fields and leaves the fields as they are: the estimate is the whole
  overhead, a fixed cost per plate (target: under 5 % of plate wall time),
  reported in seconds, as a share of this plate and of a 384-well plate of
  9 such fields a well;
- x3: the same fields resampled to three times the side (a 3x stronger
  objective, nuclei outside the model's range): as they are, the network
  sees 9x the pixels and splits the nuclei; rescaled, every field goes back
  to the model's scale before tiling, so the network sees about the x1
  plate's pixels.

Each configuration runs ``PlateRun`` with 1 reader and 1 worker (as
bench_plate), interleaved, best of --rounds. Reported: fields/s, the ratio
of each pair, and the objects found, against the x1 plate's count (the
same nuclei: a rescaled x2 plate should find about as many).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, note, set_threads, write_record  # noqa: E402
from bench_plate import make_plate  # noqa: E402


def upscaled_plate(source: Path, target: Path, factor: float) -> Path:
    """Every field of ``source`` resampled by ``factor`` (bilinear), as another objective would image it."""
    import tifffile  # noqa: PLC0415

    from cellrt.kernels import rescaled_shape, resize  # noqa: PLC0415

    target.mkdir()
    for path in sorted(source.glob("*.tif")):
        image = tifffile.imread(path)
        big = resize(image, rescaled_shape(image.shape, factor))
        tifffile.imwrite(target / path.name, np.clip(np.round(big), 0, 65535).astype(np.uint16))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=12)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)

    import cellrt  # noqa: PLC0415
    from cellrt.io import open_plate  # noqa: PLC0415
    from cellrt.io.tables import read_table  # noqa: PLC0415
    from cellrt.pipeline.plate import PlateOptions, PlateRun  # noqa: PLC0415

    model = cellrt.load_model("nuclei", backend="ort", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "x1").mkdir()
        plates = {"x1": make_plate(tmp / "x1", args.fields, args.side)}
        plates["x3"] = upscaled_plate(plates["x1"], tmp / "x3", 3.0)
        configs = {("x1", "as they are"): None, ("x1", "auto"): "auto",
                   ("x3", "as they are"): None, ("x3", "auto"): "auto"}
        warm = open_plate(plates["x1"])
        warm.fields = warm.fields[:1]
        PlateRun(model, warm, tmp / "warm").run()
        estimate_s = []
        for _ in range(3):
            run = PlateRun(model, open_plate(plates["x1"]), tmp / "unused")
            started = time.perf_counter()
            run.plate_scale()
            estimate_s.append(time.perf_counter() - started)
        best: dict = {}
        for turn in range(args.rounds):
            for (plate_name, label), diameter in configs.items():
                out = tmp / f"{plate_name}-{label.replace(' ', '-')}-{turn}"
                plate = open_plate(plates[plate_name])
                started = time.perf_counter()
                summary = PlateRun(model, plate, out, PlateOptions(readers=1, workers=1,
                                                                   object_diameter=diameter)).run()
                wall = time.perf_counter() - started
                objects = int(read_table(out / "wells.csv")["Count"].sum())
                key = (plate_name, label)
                if key not in best or wall < best[key][0]:
                    best[key] = (wall, summary, objects)
            note(f"round {turn + 1}: " + ", ".join(f"{k[0]} {k[1]} {v[0]:.1f} s" for k, v in best.items()))

    reference_objects = best[("x1", "as they are")][2]
    rows, record = [], {}
    for plate_name in ("x1", "x3"):
        base_wall = best[(plate_name, "as they are")][0]
        for label in ("as they are", "auto"):
            wall, summary, objects = best[(plate_name, label)]
            scale = summary["scale"]
            ratio = "-" if label == "as they are" else f"{base_wall / wall:.2f}x"
            rows.append([f"{plate_name} plate, object_diameter {label}", args.fields / wall, scale["factor"],
                         objects, f"{objects / reference_objects:.2f}", ratio])
            record[f"{plate_name} {label}"] = {"wall_s": wall, "fields_per_second": args.fields / wall,
                                               "objects": objects, "scale": {k: v for k, v in scale.items()
                                                                             if k != "fields"}}
    table = markdown_table(["configuration", "fields/s", "factor", "objects", "objects / x1's",
                            "speed vs as they are"], rows)
    print(table)
    overhead = best[("x1", "auto")][0] / best[("x1", "as they are")][0] - 1
    estimate = min(estimate_s)
    per_field = best[("x1", "as they are")][0] / args.fields
    full_plate = estimate / (estimate + 384 * 9 * per_field)
    print(f"\nx1: the scale estimate (8 fields read and measured) takes {estimate:.2f} s once per plate: "
          f"{100 * estimate / (estimate + args.fields * per_field):.1f}% of this {args.fields}-field plate, "
          f"{100 * full_plate:.2f}% of a 384-well plate of 9 such fields a well (target under 5%); "
          f"measured wall-time difference on this plate {100 * overhead:+.1f}% (noise included)")
    path = write_record("bench_scale", {"machine": machine(), "args": vars(args), "results": record,
                                        "x1_overhead": overhead, "estimate_s": estimate,
                                        "estimate_share_384x9": full_plate, "table": table})
    note(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
