"""numba implementation of tile and stitch.

Written from the contract in ``cellrt.kernels.stitch`` (and
``csrc/include/cellrt/stitch.h``), not translated from the C++: a scatter
over tiles in ascending order into full-image sums (one parallel loop over
row bands, each band taking its tiles in order), where the C++ backend
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


# Rows per parallel task: one parallel loop over row bands for the whole
# stitch (a loop per tile started 100+ parallel regions per call, which cost
# more than the arithmetic on small machines).
BAND_ROWS = 16


@njit(cache=True, parallel=True)
def _blend(tiles, origins, height, width, mode, overlap_y, overlap_x, sigma_scale):
    n, channels, th, tw = tiles.shape
    num = np.zeros((channels, height, width), np.float32)
    den = np.zeros((height, width), np.float32)
    windows_y = np.empty((n, th), np.float32)
    windows_x = np.empty((n, tw), np.float32)
    for k in range(n):
        oy, ox = origins[k, 0], origins[k, 1]
        windows_y[k] = _window(th, oy > 0, oy + th < height, mode, overlap_y, sigma_scale)
        windows_x[k] = _window(tw, ox > 0, ox + tw < width, mode, overlap_x, sigma_scale)
    bands = (height + BAND_ROWS - 1) // BAND_ROWS
    for band in prange(bands):
        y0 = band * BAND_ROWS
        y1 = min(y0 + BAND_ROWS, height)
        # A pixel covered by a single tile takes its value unchanged (weight 1); crop keeps the nearest
        # centre instead. Each table has rows only in the mode that reads it.
        crop = mode == CROP
        coverage = np.zeros((0 if crop else y1 - y0, width), np.int32)
        best = np.full((y1 - y0 if crop else 0, width), np.iinfo(np.int64).max, np.int64)
        if not crop:
            for k in range(n):
                oy, ox = origins[k, 0], origins[k, 1]
                coverage[max(oy, y0) - y0:max(min(oy + th, y1), y0) - y0, ox:min(ox + tw, width)] += 1
        # Tiles in ascending order within every band: each pixel sums its
        # tiles in the same order whatever the thread count.
        row_weights = np.empty(width, np.float32)
        for k in range(n):
            oy, ox = origins[k, 0], origins[k, 1]
            x1 = min(ox + tw, width)
            for y in range(max(oy, y0), min(oy + th, y1)):
                if crop:
                    for x in range(ox, x1):
                        # Distance to the tile centre in half pixels; the first
                        # (lowest-index) tile keeps ties.
                        dy = 2 * y - (2 * oy + th - 1)
                        dx = 2 * x - (2 * ox + tw - 1)
                        d = dy * dy + dx * dx
                        if d < best[y - y0, x]:
                            best[y - y0, x] = d
                            den[y, x] = np.float32(1.0)
                            for c in range(channels):
                                num[c, y, x] = tiles[k, c, y - oy, x - ox]
                    continue
                # Weights of the row first, then one branch-free loop per
                # channel (which the compiler vectorises).
                weight_y = windows_y[k, y - oy]
                span = x1 - ox
                window_x = windows_x[k]
                covered = coverage[y - y0, ox:x1]
                den_row = den[y, ox:x1]
                for i in range(span):
                    w = np.float32(1.0) if covered[i] == 1 else weight_y * window_x[i]
                    row_weights[i] = w
                    den_row[i] += w
                for c in range(channels):
                    tile_row = tiles[k, c, y - oy]
                    num_row = num[c, y, ox:x1]
                    for i in range(span):
                        num_row[i] += row_weights[i] * tile_row[i]
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
        inside = min(tw, width - ox)  # columns read as they are; the rest mirror the right border
        for c in range(channels):
            s, o = scale[c], offset[c]
            for r in range(th):
                source = image[c, _reflect(oy + r, height)]
                row = out[k, c, r]
                for j in range(inside):
                    row[j] = (np.float32(source[ox + j]) - o) * s
                for j in range(inside, tw):
                    row[j] = (np.float32(source[_reflect(ox + j, width)]) - o) * s


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
