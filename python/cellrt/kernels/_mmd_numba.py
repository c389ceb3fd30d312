"""numba RBF kernel values and sums: the fallback and the reference the C++
and CUDA backends are held to. Written from the contract in mmd.py:
k(q, p) = exp(-|q - p|^2 / (2 sigma^2)), distances from the differences,
everything in float64 (summed in plain ascending order here: the C++ and CUDA
backends split the distance into four partial sums, which agrees to
rounding)."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def _sums(queries, points, inv_two_sigma2):
    out = np.empty(queries.shape[0], np.float64)
    for i in numba.prange(queries.shape[0]):
        total = 0.0
        for j in range(points.shape[0]):
            d2 = 0.0
            for k in range(queries.shape[1]):
                t = np.float64(queries[i, k]) - np.float64(points[j, k])
                d2 += t * t
            total += math.exp(-d2 * inv_two_sigma2)
        out[i] = total
    return out


@numba.njit(cache=True, parallel=True)
def _values(queries, points, inv_two_sigma2):
    out = np.empty((queries.shape[0], points.shape[0]), np.float64)
    for i in numba.prange(queries.shape[0]):
        for j in range(points.shape[0]):
            d2 = 0.0
            for k in range(queries.shape[1]):
                t = np.float64(queries[i, k]) - np.float64(points[j, k])
                d2 += t * t
            out[i, j] = math.exp(-d2 * inv_two_sigma2)
    return out


def rbf_kernel(queries: np.ndarray, points: np.ndarray, sigma: float, sums: bool) -> np.ndarray:
    inv = 1.0 / (2.0 * float(sigma) ** 2)
    return _sums(queries, points, inv) if sums else _values(queries, points, inv)
