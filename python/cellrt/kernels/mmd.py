"""RBF kernel values and sums between embedding vectors: the arithmetic of
the streaming MMD drift monitor (:mod:`cellrt.drift`), DESIGN's fourth
kernel family.

``k(q, p) = exp(-|q - p|^2 / (2 sigma^2))``, the squared distance summed
from the differences in float64 (the ``|q|^2 + |p|^2 - 2 q.p`` expansion
loses near points to cancellation), sums accumulated in float64.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend


def _prepare(queries, points, sigma, op: str):
    device = _backend.is_device_array(queries)
    if device != _backend.is_device_array(points):
        raise ValueError(f"{op}: queries and points should both be on the host (numpy) or both on the GPU (cupy)")
    if not device:
        queries, points = np.asarray(queries), np.asarray(points)
    for name, a in (("queries", queries), ("points", points)):
        if a.ndim != 2:
            raise ValueError(f"{op}: {name} should have shape (count, dims), got {tuple(a.shape)}")
        if np.dtype(a.dtype).kind not in "fiu":
            raise ValueError(f"{op}: {name} should be numeric, got {np.dtype(a.dtype)}")
    if queries.shape[1] != points.shape[1]:
        raise ValueError(f"{op}: queries and points should have the same dimension, got {queries.shape[1]} "
                         f"and {points.shape[1]}")
    if queries.shape[1] == 0:
        raise ValueError(f"{op}: the vectors should have at least one dimension")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)) \
            or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{op}: sigma should be a positive number, got {sigma!r}")
    xp = _backend.array_module(queries)
    given = {"queries": queries, "points": points}
    with np.errstate(over="ignore"):   # the kernels work in float32: a value past its range becomes inf
        queries = xp.ascontiguousarray(queries, dtype=xp.float32)
        points = xp.ascontiguousarray(points, dtype=xp.float32)
    for name, a in (("queries", queries), ("points", points)):
        bad = ~xp.isfinite(a)
        if bool(bad.any()):
            row = int(xp.argwhere(bad)[0, 0])
            if bool(xp.isfinite(xp.asarray(given[name])[row]).all()):
                raise ValueError(f"{op}: {name} holds values beyond float32's range (+-3.4e38; row {row}), the "
                                 f"kernels' arithmetic")
            raise ValueError(f"{op}: {name} holds NaN or inf (row {row})")
    return queries, points, device


def host_rbf_into(queries, points, sigma: float, out: np.ndarray, backend: str, num_threads: int = 0) -> np.ndarray:
    """The host backends ('cpu' or 'numba', already resolved) into ``out``: (M,) float64 for sums, (M, N)
    for values. No checks: for callers that validated their arrays once and call per field (the drift
    monitor)."""
    if backend == "cpu":
        from .._build import _core  # noqa: PLC0415

        _core.rbf_kernel(queries, points, float(sigma), out, int(num_threads))
    else:
        from . import _mmd_numba  # noqa: PLC0415

        out[...] = _mmd_numba.rbf_kernel(queries, points, sigma, out.ndim == 1)
    return out


def _rbf(queries, points, sigma, sums: bool, backend: str, num_threads: int, op: str):
    num_threads = _backend.check_num_threads(op, num_threads)
    queries, points, device = _prepare(queries, points, sigma, op)
    chosen = _backend.resolve(op, backend, device)
    if chosen == "cuda":
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.rbf_kernel(queries, points, sigma, sums)
    out = np.empty((len(queries),) if sums else (len(queries), len(points)), np.float64)
    return host_rbf_into(queries, points, sigma, out, chosen, num_threads)


def rbf_kernel_sums(queries, points, sigma: float, *, backend: str = "auto", num_threads: int = 0):
    """``out[i] = sum_j k(queries[i], points[j])``, float64 (M,).

    Parameters
    ----------
    queries : (M, D) array, points : (N, D) array
        Embedding vectors (converted to float32), numpy or cupy alike.
    sigma : float
        Kernel width.

    Examples
    --------
    >>> rbf_kernel_sums(np.zeros((1, 2)), np.array([[0.0, 0.0], [3.0, 4.0]]), 5.0).round(6).tolist()
    [1.606531]
    """
    return _rbf(queries, points, sigma, True, backend, num_threads, "rbf_kernel_sums")


def rbf_kernel_matrix(queries, points, sigma: float, *, backend: str = "auto", num_threads: int = 0):
    """``out[i, j] = k(queries[i], points[j])``, float64 (M, N); as :func:`rbf_kernel_sums`."""
    return _rbf(queries, points, sigma, False, backend, num_threads, "rbf_kernel_matrix")
