"""``cellrt demo``: tile and stitch a real 16-bit field on every backend.

Until the plate pipeline lands this is cellrt's embedded default job: it cuts
the bundled DAPI field into float16 tiles with percentile normalisation,
passes them through an identity "model", stitches them back with every blend
window, checks the result against the normalised field, and reports timings.
Then it runs the bundled ``nuclei`` model on the same field (tile -> ONNX
Runtime -> stitch -> instances -> measure), writes the label image and the
objects table, and compares the nuclei with the classical
:func:`cellrt.kernels.segment` on the same field.
"""

from __future__ import annotations

import json
import statistics
import time
from importlib import resources
from pathlib import Path

import numpy as np
import tifffile

from .. import __version__
from .._atomic import atomic_path, write_text
from ..kernels import BLEND_MODES, available_backends, stitch, tile
from ..kernels.stitch import percentile_normalization, resolve_overlap

BUNDLED_FIELD = "data/demo/isl_dapi.tif"


def load_field(image_path: str | None) -> tuple[np.ndarray, str]:
    if image_path is None:
        ref = resources.files("cellrt").joinpath(BUNDLED_FIELD)
        with resources.as_file(ref) as path:
            return tifffile.imread(path), f"bundled {BUNDLED_FIELD} (ISL DAPI, 16-bit)"
    path = Path(image_path)
    if not path.is_file():
        raise SystemExit(f"cellrt demo: --image {path}: no such file")
    try:
        image = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - report any decoder failure with the file name
        raise SystemExit(f"cellrt demo: --image {path}: not a readable TIFF ({exc})") from exc
    if image.ndim != 2:
        raise SystemExit(f"cellrt demo: --image {path}: expected a 2-D image, got shape {image.shape}")
    return image, str(path)


def _time(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up: JIT, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def run_demo(out: str, image_path: str | None, tile_size: int, overlap: float, repeats: int) -> int:
    image, source = load_field(image_path)
    out_dir = Path(out)
    scale, offset = percentile_normalization(image[None])
    reference = (image.astype(np.float32) - offset[0]) * scale[0]
    overlap_px = resolve_overlap(overlap, (tile_size, tile_size))
    print(f"cellrt {__version__} demo: {source}, {image.shape[0]}x{image.shape[1]} {image.dtype}")
    print(f"tiles {tile_size}x{tile_size}, overlap {overlap_px[0]} px, float16, percentile normalisation; "
          "identity model\n")

    rows = []
    host_backends = [b for b in available_backends() if b != "cuda"]
    for backend in host_backends:
        def tile_once(backend=backend):
            return tile(image, tile_size, overlap, dtype=np.float16, normalize="percentile", backend=backend)

        t_tile, batch = _time(tile_once, repeats)
        for blend in BLEND_MODES:
            def stitch_once(blend=blend, backend=backend):
                return stitch(batch.tiles, batch.origins, image.shape, overlap=overlap, blend=blend,
                              backend=backend)

            t_stitch, field = _time(stitch_once, repeats)
            err = float(np.max(np.abs(field[0] - reference)))
            rows.append({"backend": backend, "blend": blend, "tiles": int(len(batch.origins)),
                         "tile_ms": 1e3 * t_tile, "stitch_ms": 1e3 * t_stitch, "max_abs_error": err})
            if backend == host_backends[0] and blend == "gaussian":
                with atomic_path(out_dir / "stitched_gaussian.tif") as tmp:
                    tifffile.imwrite(tmp, field[0], photometric="minisblack")

    header = f"{'backend':<8} {'blend':<9} {'tiles':>5} {'tile ms':>8} {'stitch ms':>9} {'max |error|':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['backend']:<8} {r['blend']:<9} {r['tiles']:>5} {r['tile_ms']:>8.2f} {r['stitch_ms']:>9.2f} "
              f"{r['max_abs_error']:>12.2e}")
    # float16 keeps 11 significant bits; an identity round trip may not lose more.
    bound = float(np.max(np.abs(reference))) * 2.0**-11
    worst = max(r["max_abs_error"] for r in rows)
    ok = worst <= bound
    print(f"\nround trip {'OK' if ok else 'FAILED'}: worst error {worst:.2e} vs float16 bound {bound:.2e}")
    summary = {"cellrt": __version__, "source": source, "shape": list(image.shape), "tile": tile_size,
               "overlap_px": list(overlap_px), "results": rows, "float16_bound": bound, "ok": ok,
               "model": _run_bundled_model(image, out_dir)}
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    print(f"wrote {out_dir / 'stitched_gaussian.tif'}, {out_dir / 'labels.tif'}, {out_dir / 'objects.csv'} and "
          f"{out_dir / 'summary.json'}")
    return 0 if ok else 1


def _run_bundled_model(image: np.ndarray, out_dir: Path) -> dict:
    from ..kernels import match_instances, segment  # noqa: PLC0415
    from ..pipeline import load_model  # noqa: PLC0415
    from .models import write_table  # noqa: PLC0415

    model = load_model("nuclei")
    model.run(image)  # warm-up: ONNX Runtime's first run plans its kernels
    started = time.perf_counter()
    result = model.run(image)
    elapsed = time.perf_counter() - started
    classical, classical_count = segment(image)
    agreement = match_instances(result.labels, classical)
    with atomic_path(out_dir / "labels.tif") as tmp:
        tifffile.imwrite(tmp, result.labels, compression="zlib")
    write_table(out_dir / "objects.csv", result.objects)
    stages = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in result.timings.items())
    area = result.objects["AreaShape_Area"]
    print(f"\nmodel 'nuclei' ({model.backend.name}): {result.count} nuclei in {elapsed:.2f} s ({stages})")
    if result.count:
        print(f"  median area {np.median(area):.0f} px, median mean DNA intensity "
              f"{np.median(result.objects['Intensity_MeanIntensity_DNA']):.0f}")
    print(f"  classical segment(): {classical_count} nuclei; agreement with the model F1@IoU0.5 = "
          f"{agreement['f1']:.2f}")
    return {"name": "nuclei", "backend": model.backend.name, "nuclei": result.count, "seconds": elapsed,
            "timings": result.timings, "classical_nuclei": classical_count, "agreement_f1": agreement["f1"]}
