#!/usr/bin/env python3
"""INT8 ONNX for the bundled models, calibrated on their training data, evaluated on held-out data.

    python tools/quantize_models.py nuclei
    python tools/quantize_models.py isl-dapi

Calibration tiles come from the training split only (nuclei: the first 32
training dsb2018 images, two tiles each; isl-dapi: tiles of the training
region x < 768 of the field). The gate of ``cellrt.export.int8`` checks
INT8 against FP32 on those tiles; then the held-out metrics are measured
through ``cellrt.load_model(..., precision="int8")`` - the same evaluation
as the FP32 model's - and recorded with the command in the manifest's
``int8`` section. ONNX Runtime's calibration is deterministic (MinMax).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def calibration_tiles(name: str, folder: Path, data: Path) -> tuple[np.ndarray, str]:
    import tifffile  # noqa: PLC0415

    import cellrt  # noqa: PLC0415
    from cellrt.training import data as training_data  # noqa: PLC0415

    model = cellrt.load_model(folder, backend="ort", tile_size="model")
    if name == "nuclei":
        root = data / "dsb2018_fluo"
        ids = training_data.dsb_ids(root, held_out=False)[:32]
        tiles = [model.prepare(tifffile.imread(root / "images" / f"{i}.tif")).tiles[:2] for i in ids]
        return np.concatenate(tiles), "2 tiles of each of the first 32 training dsb2018 images"
    phase, _ = training_data.load_isl(data / "isl_phase_fluo")
    tiles = model.prepare(np.ascontiguousarray(phase[:, :, :768])).tiles
    return tiles, "all tiles of the training region x < 768 of the isl field"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["nuclei", "isl-dapi"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None,
                        help="model folder (default: python/cellrt/data/models/MODEL in this checkout)")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args(argv)

    from cellrt.export.int8 import quantize_int8  # noqa: PLC0415
    from cellrt.runtime.manifest import load_manifest, write_manifest  # noqa: PLC0415
    from cellrt.training import bundle  # noqa: PLC0415

    folder = args.out or ROOT / "python" / "cellrt" / "data" / "models" / args.model
    # The manifest is rewritten through runtime.manifest.Manifest below, which does not carry every
    # section the export writes (the nuclei model's "scale"); keep those.
    with bundle.keeping_sections(folder):
        tiles, source = calibration_tiles(args.model, folder, args.data)
        command = "python tools/quantize_models.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        section = quantize_int8(folder, tiles, tolerance=args.tolerance,
                                record={"calibration": source, "command": command})
        if args.model == "nuclei":
            metrics = bundle.evaluate_nuclei(folder, args.data, precision="int8")
        else:
            metrics = bundle.evaluate_isl(folder, args.data, precision="int8")
        manifest = load_manifest(folder)
        int8 = dict(manifest.int8, metrics=metrics)
        write_manifest(folder, dataclasses.replace(manifest, int8=int8))
        print(json.dumps({"int8": int8}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
