"""The streaming MMD drift monitor: cost per field of cellrt's incremental
update vs recomputing the windowed statistic from scratch with numpy (what a
monitor without incremental sums does each field), on real-sized inputs:
N reference fields, a window of W fields, D = 128 embedding values (the
bundled models' size). Both give the same statistic (checked).

The work per field of the incremental update is (N + W) kernel
evaluations of D dimensions (about 3 D flops each: subtract, multiply,
add) - the bound column divides those flops by a float64 FMA peak measured
in this run (a large numpy matrix product), so "x bound" says how far the
update is from pure arithmetic throughput.

    python benchmarks/bench_drift.py [--refs 200 1000 4000] [--window 16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _timed, machine, markdown_table, note, set_threads, time_interleaved, write_record  # noqa: E402

from cellrt.drift import DriftMonitor, DriftReference  # noqa: E402

THREADS, DIMS, STREAM = 2, 128, 64


def numpy_from_scratch(reference: np.ndarray, sigma: float, window: int):
    """Each field: the full MMD^2 of the window against the reference, from pairwise distances."""
    x = reference.astype(np.float64)
    xx_sq = (x * x).sum(1)
    kxx = np.exp(-np.maximum(xx_sq[:, None] + xx_sq[None, :] - 2 * x @ x.T, 0) / (2 * sigma**2))
    n = len(x)

    def statistic(y):
        y = y.astype(np.float64)
        yy_sq = (y * y).sum(1)
        kyy = np.exp(-np.maximum(yy_sq[:, None] + yy_sq[None, :] - 2 * y @ y.T, 0) / (2 * sigma**2))
        kxy = np.exp(-np.maximum(xx_sq[:, None] + yy_sq[None, :] - 2 * x @ y.T, 0) / (2 * sigma**2))
        m = len(y)
        return (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean()

    def run(stream):
        return [statistic(stream[max(0, i + 1 - window):i + 1]) for i in range(window - 1, len(stream))]
    return run


def fma_peak_gflops() -> float:
    a = np.random.default_rng(0).random((1024, 1024))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 1024**3 / best / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, nargs="+", default=[200, 1000, 4000])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    set_threads(THREADS)
    peak = fma_peak_gflops()
    note(f"float64 matrix-product peak ({THREADS} threads): {peak:.1f} GFLOP/s")
    rng = np.random.default_rng(1)
    records, rows = [], []
    for n in args.refs:
        reference = DriftReference.build(rng.normal(size=(2 * n, DIMS)), window=args.window, ert=1000,
                                         bootstraps=2000)
        stream = rng.normal(size=(STREAM + args.window - 1, DIMS)).astype(np.float32)
        naive = numpy_from_scratch(reference.embeddings, reference.sigma, args.window)

        def streaming():
            monitor = DriftMonitor(reference)
            for v in stream[:args.window - 1]:
                monitor.update(v)
            return [monitor.update(v).statistic for v in stream[args.window - 1:]]

        np.testing.assert_allclose(streaming(), naive(stream), rtol=1e-6, atol=1e-9)
        monitor = DriftMonitor(reference)
        for v in stream[:args.window]:
            monitor.update(v)

        def one_update():
            for v in stream[:STREAM]:
                monitor.update(v)
        timings = time_interleaved({"cellrt incremental": one_update, "numpy from scratch": lambda: naive(
            stream[:STREAM + args.window - 1])}, args.repeats)
        flops = 3.0 * (n + args.window) * DIMS
        bound_us = 1e6 * flops / (peak * 1e9)
        per_field = {name: 1e3 * t["median_ms"] / STREAM for name, t in timings.items()}
        for name, us in per_field.items():
            rec = {"refs": n, "window": args.window, "dims": DIMS, "name": name, "us_per_field": us,
                   "bound_us": bound_us, "x_bound": us / bound_us,
                   "speedup_vs_numpy": per_field["numpy from scratch"] / us}
            records.append(rec)
            rows.append([n, args.window, name, us, bound_us, rec["x_bound"], rec["speedup_vs_numpy"]])
    table = markdown_table(["N ref", "W", "contender", "µs per field", "bound µs", "x bound", "speed-up vs numpy"],
                           rows)
    print(table)
    path = write_record("bench_drift", {"benchmark": "bench_drift", "threads": THREADS, "dims": DIMS,
                                        "peak_gflops": peak, "machine": machine(), "results": records,
                                        "table": table})
    note(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
