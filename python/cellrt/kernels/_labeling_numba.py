"""numba implementations of label and measure, from their contracts.

label floods each component breadth-first in raster order of its first
pixel (the C++ backend uses union-find); measure takes two passes with
central moments (the C++ backend uses raw sums in one pass).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SHAPE_COLUMNS = 11
INTENSITY_COLUMNS = 5


@njit(cache=True)
def _label(mask, eight):
    height, width = mask.shape
    labels = np.zeros((height, width), np.int32)
    queue = np.empty(height * width, np.int64)
    count = 0
    for y0 in range(height):
        for x0 in range(width):
            if mask[y0, x0] == 0 or labels[y0, x0] != 0:
                continue
            count += 1
            labels[y0, x0] = count
            head, tail = 0, 1
            queue[0] = y0 * width + x0
            while head < tail:
                p = queue[head]
                head += 1
                y, x = p // width, p % width
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        if (dy == 0 and dx == 0) or (not eight and dy != 0 and dx != 0):
                            continue
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] != 0 and labels[ny, nx] == 0:
                            labels[ny, nx] = count
                            queue[tail] = ny * width + nx
                            tail += 1
    return labels, count


def label(mask: np.ndarray, connectivity: int):
    return _label(mask, connectivity == 8)


@njit(cache=True)
def _measure(labels, num_objects, intensities):
    height, width = labels.shape
    channels = intensities.shape[0]
    n = num_objects + 1
    area = np.zeros(n, np.int64)
    sx = np.zeros(n, np.float64)
    sy = np.zeros(n, np.float64)
    bbox = np.empty((n, 4), np.int64)
    bbox[:, 0] = bbox[:, 1] = np.iinfo(np.int32).max
    bbox[:, 2] = bbox[:, 3] = -1
    isum = np.zeros((channels, n), np.float64)
    imin = np.full((channels, n), np.inf)
    imax = np.full((channels, n), -np.inf)
    out_of_range = 0
    for y in range(height):
        for x in range(width):
            lab = labels[y, x]
            if lab == 0:
                continue
            if lab < 0 or lab > num_objects:
                out_of_range += 1
                continue
            area[lab] += 1
            sx[lab] += x
            sy[lab] += y
            bbox[lab, 0] = min(bbox[lab, 0], x)
            bbox[lab, 1] = min(bbox[lab, 1], y)
            bbox[lab, 2] = max(bbox[lab, 2], x)
            bbox[lab, 3] = max(bbox[lab, 3], y)
            for k in range(channels):
                v = np.float64(np.float32(intensities[k, y, x]))
                isum[k, lab] += v
                imin[k, lab] = min(imin[k, lab], v)
                imax[k, lab] = max(imax[k, lab], v)
    cx = sx / np.maximum(area, 1)
    cy = sy / np.maximum(area, 1)
    # Second pass: central moments and intensity deviations.
    mxx = np.zeros(n)
    myy = np.zeros(n)
    mxy = np.zeros(n)
    idev = np.zeros((channels, n))
    for y in range(height):
        for x in range(width):
            lab = labels[y, x]
            if lab <= 0 or lab > num_objects:
                continue
            dx, dy = x - cx[lab], y - cy[lab]
            mxx[lab] += dx * dx
            myy[lab] += dy * dy
            mxy[lab] += dx * dy
            for k in range(channels):
                d = np.float64(np.float32(intensities[k, y, x])) - isum[k, lab] / area[lab]
                idev[k, lab] += d * d
    out = np.full((num_objects, SHAPE_COLUMNS + INTENSITY_COLUMNS * channels), np.nan)
    for lab in range(1, n):
        row = out[lab - 1]
        a = area[lab]
        row[0] = a
        row[1], row[2] = bbox[lab, 0], bbox[lab, 1]
        row[3], row[4] = bbox[lab, 2] + 1, bbox[lab, 3] + 1
        for k in range(channels):
            row[SHAPE_COLUMNS + INTENSITY_COLUMNS * k] = isum[k, lab]
        if a == 0:
            continue
        row[5], row[6] = cx[lab], cy[lab]
        a_ = mxx[lab] / a
        c_ = myy[lab] / a
        b_ = mxy[lab] / a
        root = math.sqrt(((a_ - c_) / 2) ** 2 + b_ * b_)
        l1 = (a_ + c_) / 2 + root
        l2 = max((a_ + c_) / 2 - root, 0.0)
        row[7] = 4 * math.sqrt(l1)
        row[8] = 4 * math.sqrt(l2)
        row[9] = math.sqrt(1 - l2 / l1) if l1 > 0 else 0.0
        row[10] = math.sqrt(4 * a / math.pi)
        for k in range(channels):
            base = SHAPE_COLUMNS + INTENSITY_COLUMNS * k
            row[base + 1] = isum[k, lab] / a
            row[base + 2] = math.sqrt(idev[k, lab] / a)
            row[base + 3] = imin[k, lab]
            row[base + 4] = imax[k, lab]
    return out, out_of_range


def measure(labels, num_objects, intensities):
    if intensities is None:
        intensities = np.zeros((0, 1, 1), np.float32)
    return _measure(labels, num_objects, intensities)

