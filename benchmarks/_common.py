"""Shared helpers for cellrt benchmarks: interleaved timing, machine facts,
markdown tables and JSON records (see shared/BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def time_interleaved(contenders: dict, repeats: int) -> dict:
    """Warm each contender once, then time them round-robin ``repeats`` times,
    so slow drifts of a shared machine hit all of them alike. Each turn
    starts with one untimed call: OpenMP pools (torch's) keep spinning on
    their cores for a while after a call, which would otherwise be charged
    to whichever contender runs next."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: {"min_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t), "repeats": len(t)}
            for name, t in times.items()}


def copy_bandwidth(threads: int, nbytes: int = 256 << 20, repeats: int = 7) -> float:
    """Bytes moved per second (read + write) by a large memcpy split over
    ``threads`` threads (numpy releases the GIL while copying), in GB/s:
    the same resources the contenders get."""
    from concurrent.futures import ThreadPoolExecutor

    src = np.ones(nbytes, np.uint8)
    dst = np.zeros_like(src)
    bounds = np.linspace(0, nbytes, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(threads) as pool:
        def copy():
            list(pool.map(lambda p: np.copyto(*p), parts))
        copy()
        best = min(_timed(copy) for _ in range(repeats))
    return 2 * nbytes / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import cellrt

        info["cellrt"] = cellrt.__version__
        info["cellrt_build"] = cellrt.build_info()
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "architecture")}
                               for p in threadpool_info()]
    except ImportError:
        pass
    return info


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_record(name: str, record: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(record, indent=2, default=float))
    os.replace(tmp, path)
    return path


def set_threads(n: int) -> None:
    """Same thread count for every contender (call before importing torch)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
