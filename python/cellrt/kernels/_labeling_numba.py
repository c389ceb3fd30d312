"""numba implementations of label and measure, from their contracts.

label floods each component breadth-first in raster order of its first
pixel (the C++ backend uses union-find); measure takes two passes with
central moments (the C++ backend uses raw sums in one pass).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SHAPE_COLUMNS = 12
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
        row[11] = 0.0  # perimeter, below
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
        start = bbox[lab, 1] * width + bbox[lab, 0]
        while labels.flat[start] != lab:
            start += 1
        row[11] = _trace(labels, lab, start // width, start % width, np.empty((0, 2), np.int32))[1]
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



_DY = np.array([0, 1, 1, 1, 0, -1, -1, -1])
_DX = np.array([1, 1, 0, -1, -1, -1, 0, 1])


@njit(cache=True)
def _inside(labels, y, x, lab):
    return 0 <= y < labels.shape[0] and 0 <= x < labels.shape[1] and labels[y, x] == lab


@njit(cache=True)
def _trace(labels, lab, sy, sx, out, entry=4):
    """Moore-neighbour tracing with Suzuki-Abe's stop rule from object pixel
    (sy, sx) entered from its background neighbour in direction ``entry``
    (4, west: an outer border; 0, east: a hole border); writes xy into out
    (if it has room) and returns (points, closed length)."""
    n = 0
    if n < out.shape[0]:
        out[n, 0], out[n, 1] = sx, sy
    n += 1
    k1 = -1
    for i in range(8):
        k = (entry + i) % 8
        if _inside(labels, sy + _DY[k], sx + _DX[k], lab):
            k1 = k
            break
    if k1 < 0:
        return n, 0.0
    y1, x1 = sy + _DY[k1], sx + _DX[k1]
    y3, x3, back, length = sy, sx, k1, 0.0
    while True:
        k4 = back
        for i in range(1, 9):
            k = (back - i) % 8
            if _inside(labels, y3 + _DY[k], x3 + _DX[k], lab):
                k4 = k
                break
        y4, x4 = y3 + _DY[k4], x3 + _DX[k4]
        length += math.sqrt(2.0) if k4 % 2 else 1.0
        if y4 == sy and x4 == sx and y3 == y1 and x3 == x1:
            return n, length
        if n < out.shape[0]:
            out[n, 0], out[n, 1] = x4, y4
        n += 1
        back = (k4 + 4) % 8
        y3, x3 = y4, x4


@njit(cache=True)
def _trace_all(labels, labs, ys, xs, entry):
    """Borders traced from each start (label, y, x): CSR offsets, xy points and closed lengths."""
    n = len(labs)
    empty = np.empty((0, 2), np.int32)
    offsets = np.zeros(n + 1, np.int64)
    lengths = np.zeros(n)
    for i in range(n):
        count, lengths[i] = _trace(labels, labs[i], ys[i], xs[i], empty, entry)
        offsets[i + 1] = offsets[i] + count
    points = np.empty((offsets[-1], 2), np.int32)
    for i in range(n):
        _trace(labels, labs[i], ys[i], xs[i], points[offsets[i]:offsets[i + 1]], entry)
    return offsets, points, lengths


@njit(cache=True)
def _contours(labels, num_objects):
    first = np.full(num_objects + 1, -1, np.int64)
    height, width = labels.shape
    for y in range(height):
        for x in range(width):
            lab = labels[y, x]
            if 0 < lab <= num_objects and first[lab] < 0:
                first[lab] = y * width + x
    present = np.array([lab for lab in range(1, num_objects + 1) if first[lab] >= 0], np.int64)
    starts = first[present]
    traced, points, lengths = _trace_all(labels, present, starts // width, starts % width, 4)
    counts = np.zeros(num_objects + 1, np.int64)   # labels that do not occur have no points
    perimeter = np.zeros(num_objects)
    for i in range(len(present)):
        counts[present[i]] = traced[i + 1] - traced[i]
        perimeter[present[i] - 1] = lengths[i]
    offsets = np.zeros(num_objects + 1, np.int64)
    offsets[1:] = np.cumsum(counts[1:])
    return offsets, points, perimeter


def contours(labels, num_objects):
    return _contours(labels, num_objects)


@njit(cache=True)
def _flood(state, seed_y, seed_x):
    """4-connected flood of state == 1 pixels from a seed, marking them 2."""
    bh, bw = state.shape
    stack = [(seed_y, seed_x)]
    state[seed_y, seed_x] = 2
    while stack:
        y, x = stack.pop()
        for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
            ny, nx = y + dy, x + dx
            if 0 <= ny < bh and 0 <= nx < bw and state[ny, nx] == 1:
                state[ny, nx] = 2
                stack.append((ny, nx))


@njit(cache=True)
def _hole_contours(labels, num_objects):
    height, width = labels.shape
    y0 = np.full(num_objects + 1, height, np.int64)
    y1 = np.full(num_objects + 1, -1, np.int64)
    x0 = np.full(num_objects + 1, width, np.int64)
    x1 = np.full(num_objects + 1, -1, np.int64)
    for y in range(height):
        for x in range(width):
            lab = labels[y, x]
            if 0 < lab <= num_objects:
                y0[lab] = min(y0[lab], y)
                y1[lab] = y
                x0[lab] = min(x0[lab], x)
                x1[lab] = max(x1[lab], x)
    object_offsets = np.zeros(num_objects + 1, np.int64)
    starts = []        # (label, hole's first y, x) in label then raster order
    for lab in range(1, num_objects + 1):
        bh, bw = y1[lab] - y0[lab] + 1, x1[lab] - x0[lab] + 1
        object_offsets[lab] = object_offsets[lab - 1]
        if bh < 3 or bw < 3:
            continue
        state = np.ones((bh, bw), np.uint8)
        for y in range(bh):
            for x in range(bw):
                if labels[y0[lab] + y, x0[lab] + x] == lab:
                    state[y, x] = 0
        for x in range(bw):
            for y in (0, bh - 1):
                if state[y, x] == 1:
                    _flood(state, y, x)
        for y in range(bh):
            for x in (0, bw - 1):
                if state[y, x] == 1:
                    _flood(state, y, x)
        for y in range(bh):
            for x in range(bw):
                if state[y, x] == 1:
                    starts.append((lab, y0[lab] + y, x0[lab] + x))
                    object_offsets[lab] += 1
                    _flood(state, y, x)
    labs = np.array([start[0] for start in starts], np.int64)
    ys = np.array([start[1] for start in starts], np.int64)
    xs = np.array([start[2] - 1 for start in starts], np.int64)   # traced from the object pixel left of the hole
    point_offsets, points, _ = _trace_all(labels, labs, ys, xs, 0)
    return object_offsets, point_offsets, points


def hole_contours(labels, num_objects):
    return _hole_contours(labels, num_objects)


@njit(cache=True)
def _largest_neighbour(labels, y, x):
    height, width = labels.shape
    best = 0
    if x > 0:
        best = max(best, labels[y, x - 1])
    if x + 1 < width:
        best = max(best, labels[y, x + 1])
    if y > 0:
        best = max(best, labels[y - 1, x])
    if y + 1 < height:
        best = max(best, labels[y + 1, x])
    return best


@njit(cache=True)
def grow_labels(labels, mask, steps):
    """In place, as cellrt::grow_labels: synchronous frontier growth."""
    height, width = labels.shape
    stamp = np.full((height, width), -1, np.int32)
    frontier = []
    for y in range(height):
        for x in range(width):
            if labels[y, x] == 0 and mask[y, x] and _largest_neighbour(labels, y, x) > 0:
                frontier.append((y, x))
                stamp[y, x] = 0
    grown = 0
    for step in range(steps):
        if len(frontier) == 0:
            break
        values = np.empty(len(frontier), np.int32)
        for i in range(len(frontier)):
            values[i] = _largest_neighbour(labels, frontier[i][0], frontier[i][1])
        for i in range(len(frontier)):
            labels[frontier[i][0], frontier[i][1]] = values[i]
        grown += len(frontier)
        following = []
        for i in range(len(frontier)):
            y, x = frontier[i]
            for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and stamp[ny, nx] != step + 1 and labels[ny, nx] == 0 \
                        and mask[ny, nx]:
                    stamp[ny, nx] = step + 1
                    following.append((ny, nx))
        frontier = following
    return grown


@njit(cache=True)
def _remove_small_objects(labels, min_area, out):
    flat = labels.ravel()
    destination = out.ravel()
    if min_area <= 0:
        destination[:] = flat
        return flat.max() if flat.size else 0
    # The distinct labels by sorting (the C++ backend indexes a table by label), with their areas.
    values = np.sort(flat[flat > 0])
    distinct = np.empty(values.size, np.int32)
    new_label = np.zeros(values.size, np.int32)
    groups, kept, i = 0, 0, 0
    while i < values.size:
        j = i
        while j < values.size and values[j] == values[i]:
            j += 1
        distinct[groups] = values[i]
        if j - i >= min_area:
            kept += 1
            new_label[groups] = kept
        groups += 1
        i = j
    distinct, new_label = distinct[:groups], new_label[:groups]
    for p in range(flat.size):
        v = flat[p]
        destination[p] = 0 if v == 0 else new_label[np.searchsorted(distinct, v)]
    return kept


def remove_small_objects(labels, min_area, out):
    """As cellrt::remove_small_objects: labels int32 (H, W), out int32 (H, W); returns the count kept."""
    negative = int(np.count_nonzero(labels < 0))
    if negative:
        raise ValueError(f"remove_small_objects: labels should be >= 0, got {negative} negative pixel(s)")
    return int(_remove_small_objects(labels, min_area, out))
