"""numba resize: the fallback and independent reference, written from the contract in resize.py.

Each output sample's taps are found from its centre ``c = (i + 0.5) * scale``
and the filter's half-width ``support`` (1, or ``scale`` when downsampling
with antialias); weights are the triangle ``1 - |x|`` at
``(j + 0.5 - c) / stretch``, normalised in float64 and summed in float32.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _axis(n_in, n_out, antialias):
    scale = n_in / n_out
    stretch = scale if (antialias and scale > 1.0) else 1.0
    width = int(np.ceil(2.0 * stretch)) + 1
    first = np.zeros(n_out, np.int64)
    count = np.zeros(n_out, np.int64)
    weights = np.zeros((n_out, width), np.float32)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - stretch + 0.5), 0)
        hi = min(int(centre + stretch + 0.5), n_in)
        raw = np.zeros(hi - lo)
        for j in range(lo, hi):
            x = abs((j - centre + 0.5) / stretch)
            raw[j - lo] = 1.0 - x if x < 1.0 else 0.0
        total = raw.sum()
        for k in range(hi - lo):
            weights[i, k] = raw[k] / total
        first[i] = lo
        count[i] = hi - lo
    return first, count, weights


@numba.njit(cache=True)
def _resample_rows(image, first, count, weights, out_w):
    """(C, H, W) -> (C, H, out_w): each output sample the weighted sum of its taps along the last axis."""
    channels, height, _ = image.shape
    out = np.empty((channels, height, out_w), np.float32)
    for c in range(channels):
        for y in range(height):
            for x in range(out_w):
                acc = np.float32(0.0)
                for k in range(count[x]):
                    acc = np.float32(acc + weights[x, k] * np.float32(image[c, y, first[x] + k]))
                out[c, y, x] = acc
    return out


@numba.njit(cache=True)
def _resize(image, out_h, out_w, antialias):
    xf, xc, xw = _axis(image.shape[2], out_w, antialias)
    yf, yc, yw = _axis(image.shape[1], out_h, antialias)
    rows = _resample_rows(image, xf, xc, xw, out_w)
    # Columns: the same pass over the transposed rows, transposed back.
    columns = _resample_rows(np.ascontiguousarray(rows.transpose(0, 2, 1)), yf, yc, yw, out_h)
    return np.ascontiguousarray(columns.transpose(0, 2, 1))


def resize(image: np.ndarray, out_h: int, out_w: int, antialias: bool) -> np.ndarray:
    """(C, H, W) uint8/uint16/float32 -> (C, out_h, out_w) float32."""
    return _resize(image, out_h, out_w, antialias)
