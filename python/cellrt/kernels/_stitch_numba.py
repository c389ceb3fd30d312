"""numba implementation of tile and stitch.

Written from the contract in ``cellrt.kernels.stitch`` (and
``csrc/include/cellrt/stitch.h``), not translated from the C++: a scatter
over tiles in ascending order into full-image sums, where the C++ backend
gathers per output row span. Tests hold the two to each other.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

CONSTANT, LINEAR, COSINE, GAUSSIAN, CROP = 0, 1, 2, 3, 4
MIN_WINDOW = 1e-4


@njit(cache=True)
def _reflect(i, n):
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = i % period
    return i if i < n else period - i


@njit(cache=True)
def _window(length, lo_inside, hi_inside, mode, overlap, sigma_scale):
    w = np.ones(length, np.float64)
    if (mode == LINEAR or mode == COSINE) and overlap > 0:
        for i in range(length):
            for d, inside in ((i, lo_inside), (length - 1 - i, hi_inside)):
                if inside and d < overlap:
                    t = (d + 0.5) / overlap
                    w[i] *= t if mode == LINEAR else 0.5 - 0.5 * math.cos(math.pi * t)
    elif mode == GAUSSIAN:
        centre = (length - 1) / 2.0
        sigma = sigma_scale * length
        for i in range(length):
            if (i < centre and not lo_inside) or (i > centre and not hi_inside):
                continue
            w[i] = math.exp(-((i - centre) ** 2) / (2.0 * sigma * sigma))
    return np.maximum(w, MIN_WINDOW).astype(np.float32)


@njit(cache=True)
def _coverage(origins, th, tw, height, width):
    count = np.zeros((height, width), np.int32)
    for k in range(origins.shape[0]):
        oy, ox = origins[k, 0], origins[k, 1]
        count[oy:min(oy + th, height), ox:min(ox + tw, width)] += 1
    return count


@njit(cache=True, parallel=True)
def _blend(tiles, origins, height, width, mode, overlap_y, overlap_x, sigma_scale):
    n, channels, th, tw = tiles.shape
    # A pixel covered by a single tile takes its value unchanged (weight 1).
    coverage = _coverage(origins, th, tw, height, width)
    num = np.zeros((channels, height, width), np.float32)
    den = np.zeros((height, width), np.float32)
    best = np.full((height, width), np.iinfo(np.int64).max, np.int64)
    for k in range(n):
        oy, ox = origins[k, 0], origins[k, 1]
        y1, x1 = min(oy + th, height), min(ox + tw, width)
        wy = _window(th, oy > 0, oy + th < height, mode, overlap_y, sigma_scale)
        wx = _window(tw, ox > 0, ox + tw < width, mode, overlap_x, sigma_scale)
        for y in prange(oy, y1):
            for x in range(ox, x1):
                if mode == CROP:
                    # Distance to the tile centre in half pixels; the first
                    # (lowest-index) tile keeps ties.
                    dy = 2 * y - (2 * oy + th - 1)
                    dx = 2 * x - (2 * ox + tw - 1)
                    d = dy * dy + dx * dx
                    if d < best[y, x]:
                        best[y, x] = d
                        den[y, x] = np.float32(1.0)
                        for c in range(channels):
                            num[c, y, x] = tiles[k, c, y - oy, x - ox]
                else:
                    w = np.float32(1.0) if coverage[y, x] == 1 else wy[y - oy] * wx[x - ox]
                    den[y, x] += w
                    for c in range(channels):
                        num[c, y, x] += w * tiles[k, c, y - oy, x - ox]
    return num, den


@njit(cache=True, parallel=True)
def _finalize(num, den, activation, fill_value):
    channels, height, width = num.shape
    out = np.empty_like(num)
    for y in prange(height):
        for x in range(width):
            if den[y, x] > 0:
                for c in range(channels):
                    out[c, y, x] = num[c, y, x] / den[y, x]
                if activation == 1:
                    for c in range(channels):
                        out[c, y, x] = 1.0 / (1.0 + math.exp(-out[c, y, x]))
                elif activation == 2:
                    m = out[0, y, x]
                    for c in range(1, channels):
                        m = max(m, out[c, y, x])
                    s = 0.0
                    for c in range(channels):
                        out[c, y, x] = math.exp(out[c, y, x] - m)
                        s += out[c, y, x]
                    for c in range(channels):
                        out[c, y, x] /= s
            else:
                for c in range(channels):
                    out[c, y, x] = fill_value
    return out


def stitch(tiles, origins, height, width, mode, overlap_y, overlap_x, sigma_scale, activation, argmax, fill_value):
    """Returns (out, uncovered, nonfinite) with the C++ backend's meaning."""
    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    origins = np.ascontiguousarray(origins, dtype=np.int64)
    num, den = _blend(tiles, origins, height, width, mode, overlap_y, overlap_x, np.float32(sigma_scale))
    covered = den > 0
    uncovered = int(covered.size - np.count_nonzero(covered))
    blended = _finalize(num, den, 0, np.float32(fill_value))
    nonfinite = int(np.count_nonzero(~np.isfinite(blended) & covered[None]))
    if argmax:
        labels = np.argmax(blended, axis=0).astype(np.int32)
        labels[~covered] = -1
        return labels, uncovered, nonfinite
    if activation:
        blended = _finalize(num, den, activation, np.float32(fill_value))
    return blended, uncovered, nonfinite


@njit(cache=True, parallel=True)
def _tile(image, origins, th, tw, scale, offset, out):
    channels, height, width = image.shape
    for k in prange(origins.shape[0]):
        oy, ox = origins[k, 0], origins[k, 1]
        for c in range(channels):
            for r in range(th):
                y = _reflect(oy + r, height)
                for j in range(tw):
                    x = _reflect(ox + j, width)
                    out[k, c, r, j] = (np.float32(image[c, y, x]) - offset[c]) * scale[c]


def tile(image, origins, tile_h, tile_w, scale, offset, dtype):
    """Returns (tiles, nonfinite) with the C++ backend's meaning."""
    n = origins.shape[0]
    out = np.empty((n, image.shape[0], tile_h, tile_w), np.float32)
    if n:
        _tile(image, np.ascontiguousarray(origins, dtype=np.int64), tile_h, tile_w,
              np.asarray(scale, np.float32), np.asarray(offset, np.float32), out)
    if dtype == np.float16:
        with np.errstate(over="ignore"):
            out = out.astype(np.float16)
    return out, int(np.count_nonzero(~np.isfinite(out)))
