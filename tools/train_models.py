#!/usr/bin/env python3
"""Train, export and evaluate the models bundled with cellrt.

    python tools/train_models.py nuclei   --steps 5000 --seed 0 --threads 1
    python tools/train_models.py isl-dapi --steps 2500 --seed 0 --threads 1

Stages: train on the CPU (deterministic for a seed and thread count) and save
a checkpoint under --work (reused if present, so export and evaluation can be
re-run without retraining), export ONNX + manifest into --out (default: the
package's bundled model folder), then evaluate on held-out data through
``cellrt.load_model`` - the engine's own inference path - and record the
command, seed and metrics in the manifest.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["nuclei", "isl-dapi"])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on it)")
    parser.add_argument("--upsampling", choices=["bilinear", "transpose"], default="bilinear",
                        help="decoder upsampling (bilinear keeps ONNX Runtime's INT8 graph in 8 bits; "
                             "transpose: the bundled models before 2026-11-28)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "training")
    parser.add_argument("--out", type=Path, default=None,
                        help="model folder (default: python/cellrt/data/models/MODEL in this checkout)")
    parser.add_argument("--max-images", type=int, default=None, help="nuclei: limit training images (smoke runs)")
    parser.add_argument("--max-eval", type=int, default=None, help="nuclei: limit held-out images (smoke runs)")
    parser.add_argument("--train-only", action="store_true", help="stop after saving the checkpoint")
    args = parser.parse_args(argv)

    import torch  # noqa: PLC0415

    from cellrt.training import train  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    checkpoint = args.work / f"{args.model}-{args.upsampling}-seed{args.seed}-steps{args.steps}.pt"
    if checkpoint.exists():
        print(f"reusing checkpoint {checkpoint}")
    else:
        started = time.perf_counter()
        if args.model == "nuclei":
            model, info = train.train_nuclei(args.data / "dsb2018_fluo", steps=args.steps, seed=args.seed,
                                             upsampling=args.upsampling, max_images=args.max_images)
        else:
            model, info = train.train_isl(args.data / "isl_phase_fluo", steps=args.steps, seed=args.seed,
                                          upsampling=args.upsampling)
        info["train_seconds"] = round(time.perf_counter() - started, 1)
        train.save_checkpoint(checkpoint, model, info)
        print(f"saved checkpoint {checkpoint}: {info}")
    if args.train_only:
        return 0

    from cellrt.training import bundle  # noqa: PLC0415

    command = "python tools/train_models.py " + shlex.join(a for a in (argv if argv is not None else sys.argv[1:]))
    folder = args.out if args.out is not None else ROOT / "python" / "cellrt" / "data" / "models" / args.model
    out = bundle.export_and_evaluate(args.model, checkpoint, args.data, folder, command=command, seed=args.seed,
                                     steps=args.steps, threads=args.threads, max_eval=args.max_eval)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
