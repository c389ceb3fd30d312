"""The CUDA paths on a GPU, side by side with the GPU peer where one exists
and with cellrt's own CPU backend, against the device memory bound.

Part 1, tile + identity model + stitch (as bench_stitch: 256x256 tiles, 25%
overlap, gaussian blending) on a field already on the device (cupy):
cellrt CUDA with float32 and float16 tiles vs MONAI's
sliding_window_inference on CUDA torch tensors (identity predictor, same
roi, overlap and mode; sw_batch_size = all tiles, its fastest setting).
The bound: bytes moved (tiler reads the image and writes the tiles, the
stitcher reads the tiles and writes the field) over the device-to-device
copy bandwidth measured with cupy in this run.

Part 2, label + measure (intensities included) and the segmentation chain
(Otsu threshold, fill holes, 3x3 opening, label, measure, contours) on the
2048x2048 16-bit nuclei field of bench_segment, on the device vs cellrt's
CPU backend with every host core vs OpenCV on the host (no GPU peer is
installed: cuCIM's label has no measurements).

Every GPU call ends with a device synchronisation, so wall-clock times are
the kernels' times plus launch overhead. Without a usable GPU (no CUDA build,
no cupy, no device) this prints why and exits 0 with an empty record, so
run_all works everywhere.

    python benchmarks/bench_cuda.py [--sizes 2048 4096] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, note, time_interleaved, write_record  # noqa: E402

from bench_segment import DATA, nuclei_field  # noqa: E402
from bench_stitch import OVERLAP, TILE, real_field  # noqa: E402

from cellrt.kernels import (available_backends, binary_opening, contours, fill_holes, label,  # noqa: E402
                            label_measure, measure, stitch, threshold, tile, tile_origins)


def gpu_unusable_reason() -> str | None:
    if "cuda" not in available_backends():
        return f"cellrt was built without CUDA or sees no GPU (backends: {available_backends()})"
    try:
        import cupy as cp
        cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - any failure means: no GPU rows
        return f"cupy unusable: {exc}"
    return None


def synced(fn):
    import cupy as cp

    def run():
        out = fn()
        cp.cuda.Device().synchronize()
        return out
    return run


def device_copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Bytes read + written per second by a device-to-device copy, GB/s."""
    import cupy as cp

    src = cp.ones(nbytes, cp.uint8)
    dst = cp.empty_like(src)
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    dst[...] = src
    best = float("inf")
    for _ in range(repeats):
        start.record()
        dst[...] = src
        stop.record()
        stop.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, stop) / 1e3)
    del src, dst
    return 2 * nbytes / best / 1e9


def stitch_part(sizes, channels_list, repeats, bandwidth, records, rows):
    import cupy as cp
    try:
        import torch
        from monai.inferers import sliding_window_inference
    except ImportError:
        torch = None
        note("MONAI or torch not installed: MONAI GPU column left out")

    for channels in channels_list:
        for side in sizes:
            host = real_field(side, channels)
            image = cp.asarray(host)
            n_tiles = len(tile_origins(host.shape, TILE, OVERLAP))
            contenders = {}
            for dtype, name in ((np.float32, "f32"), (np.float16, "f16")):
                tiles_buf = cp.empty((n_tiles, channels, TILE, TILE), dtype)
                field_buf = cp.empty(host.shape, cp.float32)

                def run(dtype=dtype, tiles_buf=tiles_buf, field_buf=field_buf):
                    batch = tile(image, TILE, OVERLAP, dtype=dtype, out=tiles_buf)
                    return stitch(batch.tiles, batch.origins, host.shape, blend="gaussian", out=field_buf)
                contenders[f"cellrt cuda {name} reuse"] = synced(run)
                if side == sizes[-1]:  # where the time goes, at the largest field
                    ready = tile(image, TILE, OVERLAP, dtype=dtype)
                    contenders[f"cellrt cuda {name} tile only"] = synced(
                        lambda dtype=dtype, tiles_buf=tiles_buf: tile(image, TILE, OVERLAP, dtype=dtype,
                                                                      out=tiles_buf))
                    contenders[f"cellrt cuda {name} stitch only"] = synced(
                        lambda ready=ready, field_buf=field_buf: stitch(ready.tiles, ready.origins, host.shape,
                                                                        blend="gaussian", out=field_buf))
                contenders[f"cellrt cuda {name}"] = synced(
                    lambda dtype=dtype: stitch((b := tile(image, TILE, OVERLAP, dtype=dtype)).tiles, b.origins,
                                               host.shape, blend="gaussian"))
            if torch is not None:
                inputs = torch.as_tensor(host, device="cuda")[None]

                def monai_run():
                    with torch.no_grad():
                        out = sliding_window_inference(inputs, roi_size=(TILE, TILE), sw_batch_size=n_tiles,
                                                       predictor=lambda x: x, overlap=OVERLAP, mode="gaussian",
                                                       sigma_scale=0.125)
                    torch.cuda.synchronize()
                    return out
                contenders["MONAI cuda"] = monai_run
            for name, fn in contenders.items():  # equal work: each returns the image
                if name.endswith(" only"):
                    continue
                out = fn()
                got = out[0].cpu().numpy() if name.startswith("MONAI") else cp.asnumpy(out)
                err = float(np.max(np.abs(got - host)))
                tol = 2.0**-10 if "f16" in name else 1e-5
                if err > tol:
                    raise SystemExit(f"{name} does not reproduce the image at {channels}x{side}^2: max error {err}")
            timings = time_interleaved(contenders, repeats)
            for name, t in timings.items():
                tile_bytes = (2 if "f16" in name else 4) * n_tiles * channels * TILE * TILE
                moved = 2 * host.nbytes + 2 * tile_bytes
                bound_ms = 1e3 * moved / (bandwidth * 1e9)
                rec = {"part": "stitch", "name": name, "channels": channels, "side": side, "tiles": n_tiles, **t,
                       "bytes_moved": moved, "bound_ms": bound_ms, "x_bound": t["median_ms"] / bound_ms}
                if "MONAI cuda" in timings:
                    rec["speedup_vs_peer"] = timings["MONAI cuda"]["median_ms"] / t["median_ms"]
                records.append(rec)
                rows.append(["stitch", f"{channels}x{side}^2", name, t["median_ms"], t["min_ms"], bound_ms,
                             rec["x_bound"], rec.get("speedup_vs_peer", float("nan"))])


def segment_part(side, repeats, records, rows):
    import cupy as cp
    import cv2

    threads = os.cpu_count() or 1
    cv2.setNumThreads(threads)
    field = nuclei_field(side)
    mask = (field > threshold(field, "otsu")).astype(np.uint8)
    d_field, d_mask = cp.asarray(field), cp.asarray(mask)

    host = measure(label(mask, 8, backend="cpu")[0], field, backend="cpu")
    dev = measure(label(d_mask, 8)[0], d_field)
    for key in host:
        np.testing.assert_allclose(cp.asnumpy(dev[key]), host[key], rtol=1e-9, err_msg=key)
    fused = label_measure(d_mask, d_field)[2]
    for key in host:
        np.testing.assert_allclose(cp.asnumpy(fused[key]), host[key], rtol=1e-9, err_msg=f"label_measure {key}")
    note(f"{side}x{side} field, {len(host['AreaShape_Area'])} objects; CPU rows use {threads} threads")

    def chain(image, backend="auto", num_threads=0):
        m = fill_holes(image > threshold(image, "otsu"), backend=backend)
        m = binary_opening(m, 1, "square", backend=backend)
        labels, _ = label(m, 8, backend=backend, num_threads=num_threads)
        return (measure(labels, image, backend=backend, num_threads=num_threads),
                contours(labels, backend=backend, num_threads=num_threads))

    def opencv_chain():
        m = (field > threshold(field, "otsu")).astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
        return cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)

    groups = {
        "label+measure": {
            "cellrt cuda": synced(lambda: measure(label(d_mask, 8)[0], d_field)),
            # the count stays on the device: one stream sync instead of two (label's count, measure's check)
            "cellrt cuda label_measure": synced(lambda: label_measure(d_mask, d_field)),
            "cellrt cpu": lambda: measure(label(mask, 8, backend="cpu", num_threads=threads)[0], field,
                                          backend="cpu", num_threads=threads),
            "OpenCV connectedComponentsWithStats": lambda: cv2.connectedComponentsWithStats(
                mask, connectivity=8, ltype=cv2.CV_32S),
        },
        "chain": {
            "cellrt cuda": synced(lambda: chain(d_field)),
            "cellrt cpu": lambda: chain(field, "cpu", threads),
            "OpenCV chain": opencv_chain,
        },
    }
    # Where the device chain spends its time: each step alone, on its real input.
    d_mask_f = fill_holes(d_field > threshold(d_field, "otsu"))
    d_open = binary_opening(d_mask_f, 1, "square")
    d_labels, d_count = label(d_open, 8)
    groups["chain steps on cuda"] = {
        "threshold (otsu)": synced(lambda: d_field > threshold(d_field, "otsu")),
        "fill_holes": synced(lambda: fill_holes(d_mask)),
        "binary_opening 3x3": synced(lambda: binary_opening(d_mask_f, 1, "square")),
        "label": synced(lambda: label(d_open, 8)),
        "measure": synced(lambda: measure(d_labels, d_field, num_objects=d_count)),
        "contours": synced(lambda: contours(d_labels, num_objects=d_count)),
        "cellrt cuda": synced(lambda: chain(d_field)),
    }
    for part, contenders in groups.items():
        timings = time_interleaved(contenders, repeats)
        for name, t in timings.items():
            rec = {"part": part, "name": name, "side": side, **t,
                   "speedup_of_cuda": t["median_ms"] / timings["cellrt cuda"]["median_ms"]}
            records.append(rec)
            rows.append([part, f"{side}^2", name, t["median_ms"], t["min_ms"], float("nan"), float("nan"),
                         rec["speedup_of_cuda"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--side", type=int, default=2048, help="field side for the segmentation part")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    reason = gpu_unusable_reason()
    if reason:
        note(f"no GPU rows: {reason}")
        write_record("bench_cuda", {"benchmark": "bench_cuda", "skipped": reason, "machine": machine(),
                                    "results": [], "table": f"skipped: {reason}"})
        return 0
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    bandwidth = device_copy_bandwidth()
    note(f"{gpu}: device-to-device copy {bandwidth:.0f} GB/s (read + write)")
    records, rows = [], []
    stitch_part(args.sizes, args.channels, args.repeats, bandwidth, records, rows)
    if DATA.is_dir():
        segment_part(args.side, args.repeats, records, rows)
    else:
        note(f"real data not found at {DATA}: segmentation part left out")
    table = markdown_table(["part", "size", "contender", "median ms", "min ms", "bound ms", "x bound",
                            "ratio (stitch: MONAI cuda / this; segment: this / cellrt cuda)"], rows)
    print(table)
    path = write_record("bench_cuda", {"benchmark": "bench_cuda", "gpu": gpu, "copy_bandwidth_gbs": bandwidth,
                                       "tile": TILE, "overlap": OVERLAP, "machine": machine(),
                                       "results": records, "table": table})
    note(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
