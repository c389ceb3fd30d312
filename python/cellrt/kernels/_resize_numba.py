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
def _resize(image, out_h, out_w, antialias):
    channels, height, width = image.shape
    xf, xc, xw = _axis(width, out_w, antialias)
    yf, yc, yw = _axis(height, out_h, antialias)
    rows = np.empty((channels, height, out_w), np.float32)
    for c in range(channels):
        for y in range(height):
            for x in range(out_w):
                acc = np.float32(0.0)
                for k in range(xc[x]):
                    acc = np.float32(acc + xw[x, k] * np.float32(image[c, y, xf[x] + k]))
                rows[c, y, x] = acc
    out = np.empty((channels, out_h, out_w), np.float32)
    for c in range(channels):
        for y in range(out_h):
            for x in range(out_w):
                acc = np.float32(0.0)
                for k in range(yc[y]):
                    acc = np.float32(acc + yw[y, k] * rows[c, yf[y] + k, x])
                out[c, y, x] = acc
    return out


def resize(image: np.ndarray, out_h: int, out_w: int, antialias: bool) -> np.ndarray:
    """(C, H, W) uint8/uint16/float32 -> (C, out_h, out_w) float32."""
    return _resize(image, out_h, out_w, antialias)
