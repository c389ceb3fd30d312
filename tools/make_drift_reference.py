#!/usr/bin/env python3
"""The bundled nuclei model's drift references, one per precision it runs at.

    python tools/make_drift_reference.py

Reference fields: the dsb2018_fluo held-out images (never seen in training)
that are not on the bundled demo plate (plate/SOURCES.tsv), every size, one
field embedding each (the mean of the model's tile embeddings, computed at
the reference's precision: INT8 moves embeddings by ~7 % of their spread).
Window 4 fields, ERT 500 fields, seed 0. Written to the model folder as
``drift-reference.<precision>.npz``, which ``cellrt run`` uses by default
(``--drift-reference auto``) when the run has that precision; the command,
images and seed are recorded in the file's metadata. Prints the demo plate's
drift result against each reference.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_fluo"
WINDOW, ERT, SEED = 4, 500.0, 0


def main() -> int:
    import cellrt
    from cellrt.drift import DriftReference, monitor_stream
    from cellrt.pipeline.plate import model_drift_reference
    from cellrt.training.data import dsb_ids

    folder = ROOT / "python" / "cellrt" / "data" / "models" / "nuclei"   # the source tree, not an installed copy
    demo = ROOT / "python" / "cellrt" / "data" / "demo" / "plate"
    on_plate = {line.split("\t")[1] for line in (demo / "SOURCES.tsv").read_text().splitlines()[1:]}
    ids = [i for i in dsb_ids(DATA, held_out=True) if i not in on_plate]
    demo_files = sorted(demo.glob("*.tif"), key=lambda p: (p.name.split("_")[1], p.name))
    for precision in ("fp32", "int8"):
        model = cellrt.load_model(folder, backend="ort", precision=precision)
        # Each image as imaged (not rescaled): the demo plate's fields, in the model's range, run so too.
        vectors = np.stack([model.run(tifffile.imread(DATA / "images" / f"{i}.tif")[None].astype(np.float32),
                                      object_diameter=None).embedding for i in ids])
        reference = DriftReference.build(
            vectors, window=WINDOW, ert=ERT, seed=SEED,
            metadata={"model": model.name, "precision": precision, "weights_sha256": model.weights_sha256,
                      "command": "python tools/make_drift_reference.py",
                      "source": f"dsb2018_fluo held-out images not on the demo plate ({len(ids)})",
                      "images": ids})
        path = reference.save(model_drift_reference(folder, precision))
        demo_vectors = np.stack([model.run(tifffile.imread(p)[None].astype(np.float32), object_diameter=None)
                                 .embedding for p in demo_files])
        steps = monitor_stream(reference, demo_vectors)
        alarms = [demo_files[s.index].name for s in steps if s.alarm]
        print(f"{path.name}: {len(ids)} fields, sigma {reference.sigma:.3f}, threshold {reference.threshold:.4f} "
              f"(null mean {reference.null_mean:.4f}, sd {reference.null_std:.4f}); demo plate: "
              f"max ratio {max(s.ratio for s in steps if s.window_full):.2f}, alarms in {alarms or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
