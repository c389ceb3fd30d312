"""tile + identity model + stitch on a real 16-bit field, side by side with
MONAI's sliding_window_inference and a plain numpy implementation.

The work: cut a [C, S, S] float32 image into 256x256 tiles with 25% overlap,
run an identity "model", and blend the tiles back with gaussian windows.
Every contender returns the image it was given (checked). The bound is the
bytes this must move (tiler: read the image, write the tiles; stitcher: read
the tiles, write the field) over a memcpy bandwidth measured in this run.

    python benchmarks/bench_stitch.py [--sizes 1024 2048 4096] [--repeats 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (copy_bandwidth, machine, markdown_table, note, set_threads,  # noqa: E402
                     time_interleaved, write_record)

from cellrt.kernels import available_backends, stitch, tile, tile_origins  # noqa: E402

TILE, OVERLAP, THREADS = 256, 0.25, 2


def real_field(side: int, channels: int) -> np.ndarray:
    """A [C, side, side] float32 field tiled from the real DAPI image."""
    from importlib import resources

    with resources.as_file(resources.files("cellrt").joinpath("data/demo/isl_dapi.tif")) as p:
        dapi = tifffile.imread(p).astype(np.float32)
    dapi = (dapi - dapi.min()) / (dapi.max() - dapi.min())
    reps = -(-side // dapi.shape[0])
    base = np.tile(dapi, (reps, reps))[:side, :side]
    return np.ascontiguousarray(np.stack([np.roll(base, 97 * c, axis=1) for c in range(channels)]))


def cellrt_runner(image, backend, dtype, reuse=False):
    """reuse=True: tile and stitch into buffers kept across calls, as the plate
    pipeline does; otherwise allocate per call, as the peers do."""
    n = len(tile_origins(image.shape, TILE, OVERLAP))
    tiles_buf = np.empty((n, image.shape[0], TILE, TILE), dtype) if reuse else None
    field_buf = np.empty(image.shape, np.float32) if reuse else None

    def run():
        batch = tile(image, TILE, OVERLAP, dtype=dtype, backend=backend, num_threads=THREADS, out=tiles_buf)
        return stitch(batch.tiles, batch.origins, image.shape, blend="gaussian", backend=backend,
                      num_threads=THREADS, out=field_buf)
    return run


def numpy_runner(image):
    """The obvious numpy version: slice tiles out, weighted sums back in."""
    c, h, w = image.shape
    origins = tile_origins(image.shape, TILE, OVERLAP)
    g = np.exp(-((np.arange(TILE) - (TILE - 1) / 2) ** 2) / (2 * (0.125 * TILE) ** 2)).astype(np.float32)
    window = np.outer(g, g)

    def run():
        tiles = np.stack([image[:, y:y + TILE, x:x + TILE] for y, x in origins])
        num = np.zeros((c, h, w), np.float32)
        den = np.zeros((h, w), np.float32)
        for (y, x), t in zip(origins, tiles):
            num[:, y:y + TILE, x:x + TILE] += window * t
            den[y:y + TILE, x:x + TILE] += window
        return num / den
    return run


def monai_runner(image):
    import torch
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(THREADS)
    inputs = torch.from_numpy(image)[None]

    def run():
        with torch.no_grad():
            return sliding_window_inference(inputs, roi_size=(TILE, TILE), sw_batch_size=4,
                                             predictor=lambda x: x, overlap=OVERLAP, mode="gaussian",
                                             sigma_scale=0.125)[0].numpy()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    set_threads(THREADS)
    try:
        monai = monai_runner
        import monai as _monai  # noqa: F401
    except ImportError:
        monai = None
        note("MONAI not installed (pip install torch==2.13.0 monai): peer column left out")

    bandwidth = copy_bandwidth(THREADS)
    note(f"memcpy bandwidth ({THREADS} threads) {bandwidth:.1f} GB/s")
    host_backends = [b for b in available_backends() if b != "cuda"]
    records, rows = [], []
    for channels in args.channels:
        for side in args.sizes:
            image = real_field(side, channels)
            contenders = {}
            for backend in host_backends:
                contenders[f"cellrt {backend} f32"] = cellrt_runner(image, backend, np.float32)
                if backend == "cpu":
                    contenders[f"cellrt {backend} f16"] = cellrt_runner(image, backend, np.float16)
                    contenders[f"cellrt {backend} f32 reuse"] = cellrt_runner(image, backend, np.float32, True)
                    contenders[f"cellrt {backend} f16 reuse"] = cellrt_runner(image, backend, np.float16, True)
            contenders["numpy"] = numpy_runner(image)
            if monai:
                contenders["MONAI"] = monai_runner(image)
            for name, fn in contenders.items():  # equal work: each returns the image
                err = float(np.max(np.abs(fn() - image)))
                tol = 2.0**-10 if "f16" in name else 1e-5
                if err > tol:
                    raise SystemExit(f"{name} does not reproduce the image at {channels}x{side}^2: max error {err}")
            timings = time_interleaved(contenders, args.repeats)
            n_tiles = len(tile_origins(image.shape, TILE, OVERLAP))
            for name, t in timings.items():
                tile_bytes = (2 if "f16" in name else 4) * n_tiles * channels * TILE * TILE
                moved = 2 * image.nbytes + 2 * tile_bytes
                bound_ms = 1e3 * moved / (bandwidth * 1e9)
                rec = {"name": name, "channels": channels, "side": side, "tiles": n_tiles, **t,
                       "bytes_moved": moved, "bound_ms": bound_ms, "x_bound": t["median_ms"] / bound_ms}
                if monai:
                    rec["speedup_vs_monai"] = timings["MONAI"]["median_ms"] / t["median_ms"]
                records.append(rec)
                rows.append([channels, side, name, t["median_ms"], t["min_ms"], bound_ms, rec["x_bound"],
                             rec.get("speedup_vs_monai", float("nan"))])
    table = markdown_table(["C", "side", "contender", "median ms", "min ms", "bound ms", "x bound",
                            "speed-up vs MONAI"], rows)
    print(table)
    path = write_record("bench_stitch", {"benchmark": "bench_stitch", "tile": TILE, "overlap": OVERLAP,
                                         "threads": THREADS, "blend": "gaussian", "copy_bandwidth_gbs": bandwidth,
                                         "machine": machine(), "results": records, "table": table})
    note(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
