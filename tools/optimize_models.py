#!/usr/bin/env python3
"""Apply the export's exact graph passes to a bundled model exported before them.

    python tools/optimize_models.py nuclei
    python tools/optimize_models.py isl-dapi

``cellrt.export.to_onnx`` runs ``cellrt.export.graph_passes`` on every new
export (today: channel concatenations feeding a convolution become a sum of
convolutions, which ONNX Runtime's CPU provider runs without copying or
transposing the skip connections). This tool brings a model folder to the
state a fresh export of the same weights would have: ``model.onnx`` gets
the passes (checked against the previous graph on the export's real verify
tiles), ``model.fp16.onnx`` is converted again from it and checked the way
the export checks it, the held-out metrics are measured through
``cellrt.load_model`` on the graph before and after the rewrite (so a
change of the recorded metrics that comes from later pipeline changes is
not taken for the rewrite's), and the manifest records the new hashes, the
FP16 error, both measurements and this command. The INT8 model and the drift
references depend on the FP32 graph: run ``tools/quantize_models.py`` and
``tools/make_drift_reference.py`` afterwards.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: largest change of any output, relative to its range, that an exact rewrite may make (summation order)
REWRITE_TOLERANCE = 1e-5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["nuclei", "isl-dapi"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None,
                        help="model folder (default: python/cellrt/data/models/MODEL in this checkout)")
    args = parser.parse_args(argv)

    from cellrt._atomic import atomic_path  # noqa: PLC0415
    from cellrt.export import convert_to_fp16, fp16_error  # noqa: PLC0415
    from cellrt.export.graph_passes import optimize_file  # noqa: PLC0415
    from cellrt.runtime.manifest import load_manifest, sha256_file, write_manifest  # noqa: PLC0415
    from cellrt.training import bundle  # noqa: PLC0415

    folder = args.out or ROOT / "python" / "cellrt" / "data" / "models" / args.model   # the source tree
    # The manifest is rewritten through runtime.manifest.Manifest below, which does not carry every
    # section the export writes (the nuclei model's "scale"); keep those.
    with bundle.keeping_sections(folder):
        manifest = load_manifest(folder)
        tiles = bundle.verify_tiles(args.model, args.data)
        evaluate = bundle.evaluate_nuclei if args.model == "nuclei" else bundle.evaluate_isl
        command = "python tools/optimize_models.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        with tempfile.TemporaryDirectory(prefix="cellrt-optimize-") as tmp:
            optimized = Path(tmp) / manifest.onnx_path.name
            shutil.copyfile(manifest.onnx_path, optimized)
            passes = optimize_file(optimized)
            if not any(passes.values()):
                print(f"{manifest.onnx_path}: nothing to rewrite ({passes})")
                return 0
            # Today's pipeline on the graph as it was: recorded metrics may predate later pipeline
            # changes, and only this tells what the rewrite itself moved.
            before = evaluate(folder, args.data)
            # fp16_error compares any two graphs: max |new - old| over the tiles / the old output's range
            change = fp16_error(manifest.onnx_path, optimized, tiles, manifest.input_name)
            if not max(change.values()) <= REWRITE_TOLERANCE:
                raise SystemExit(f"{manifest.onnx_path}: the rewritten graph's outputs moved by {change} (relative to "
                                 f"their range), more than {REWRITE_TOLERANCE}; nothing written")
            fp16 = manifest.fp16
            if fp16 is not None:
                half = Path(tmp) / fp16["file"]
                convert_to_fp16(optimized, half)
                half_errors = fp16_error(optimized, half, tiles, manifest.input_name)
                if not max(half_errors.values()) <= fp16["tolerance"]:
                    raise SystemExit(f"{half}: FP16 differs from FP32 by {half_errors}, above {fp16['tolerance']}; "
                                     f"nothing written")
                fp16 = dict(fp16, sha256=sha256_file(half),
                            max_relative_error={k: round(v, 6) for k, v in half_errors.items()})
            for source in [optimized] + ([half] if fp16 is not None else []):
                with atomic_path(folder / source.name) as target:
                    shutil.copyfile(source, target)
        training = dict(manifest.training or {})
        training["graph_passes"] = {"command": command, "rewrites": passes,
                                    "max_relative_change": {k: float(f"{v:.3g}") for k, v in change.items()},
                                    "metrics_before_rewrite": before}
        manifest = dataclasses.replace(manifest, onnx_sha256=sha256_file(folder / manifest.onnx_path.name),
                                       fp16=fp16, training=training)
        write_manifest(folder, manifest)
        metrics = evaluate(folder, args.data)
        previous = dict(training.get("metrics", {}))
        metrics = {**previous, **metrics}
        training["metrics"] = metrics
        write_manifest(folder, dataclasses.replace(load_manifest(folder), training=training))
        print(json.dumps({"graph_passes": training["graph_passes"], "fp16": fp16, "metrics": metrics,
                          "metrics_recorded_before": previous}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
