"""numba twins of csrc/segment/watershed.cpp: the reference the C++ kernels are tested against, and the
fallback without the compiled extension."""
from __future__ import annotations

import heapq

import numba
import numpy as np

_FAR = np.int64(1) << np.int64(60)


@numba.njit(cache=True)
def _envelope(g, f, roots, bounds):
    n = g.shape[0]
    k = -1
    for q in range(n):
        if g[q] >= _FAR:
            continue
        s = 0.0
        while k >= 0:
            r = roots[k]
            s = ((g[q] + q * q) - (g[r] + r * r)) / (2.0 * (q - r))
            if s > bounds[k]:
                break
            k -= 1
        k += 1
        roots[k] = q
        bounds[k] = -np.inf if k == 0 else s
    if k < 0:
        f[:] = _FAR
        return
    j = 0
    for i in range(n):
        while j < k and bounds[j + 1] <= i:
            j += 1
        d = i - roots[j]
        f[i] = d * d + g[roots[j]]


@numba.njit(cache=True)
def distance_transform(mask):
    h, w = mask.shape
    squared = np.empty((h, w), np.int64)
    for x in range(w):
        run = _FAR
        for y in range(h):
            run = (_FAR if run >= _FAR else run + 1) if mask[y, x] else 0
            squared[y, x] = run
        run = _FAR
        for y in range(h - 1, -1, -1):
            run = (_FAR if run >= _FAR else run + 1) if mask[y, x] else 0
            best = min(squared[y, x], run)
            squared[y, x] = _FAR if best >= _FAR else best * best
    out = np.empty((h, w), np.float32)
    f = np.empty(w, np.int64)
    roots = np.empty(w, np.int64)
    bounds = np.empty(w, np.float64)
    for y in range(h):
        _envelope(squared[y], f, roots, bounds)
        for x in range(w):
            out[y, x] = np.inf if f[x] >= _FAR else np.float32(np.sqrt(np.float64(f[x])))
    return out


@numba.njit(cache=True)
def _neighbour(y, x, k, rows, w, connectivity):
    """Flat index of the k-th (0..7, raster order) neighbour of pixel (y, x), or -1 (outside the image, or
    a diagonal one under 4-connectivity)."""
    cell = k if k < 4 else k + 1   # the 3 x 3 square without its centre
    dy, dx = cell // 3 - 1, cell % 3 - 1
    if connectivity == 4 and dy != 0 and dx != 0:
        return -1
    y, x = y + dy, x + dx
    if y < 0 or y >= rows or x < 0 or x >= w:
        return -1
    return y * w + x


@numba.njit(cache=True)
def _find(parent, p):
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@numba.njit(cache=True)
def h_maxima_seeds(values, h, connectivity):
    rows, w = values.shape
    flat = values.ravel()
    candidates = np.nonzero(flat > 0)[0]
    order = candidates[np.argsort(-flat[candidates], kind="mergesort")]
    parent = np.full(flat.size, -1, np.int64)
    peak = np.full(flat.size, -1, np.int64)
    domes = []
    for p in order:
        parent[p] = p
        peak[p] = p
        y, x = p // w, p % w
        for k in range(8):
            q = _neighbour(y, x, k, rows, w, connectivity)
            if q < 0 or parent[q] < 0:
                continue
            a, b = _find(parent, p), _find(parent, q)
            if a == b:
                continue
            if flat[peak[b]] > flat[peak[a]] or (flat[peak[b]] == flat[peak[a]] and peak[b] < peak[a]):
                a, b = b, a
            if flat[peak[b]] > flat[p] and flat[peak[b]] - flat[p] >= h:
                domes.append(peak[b])
            parent[b] = a
    for p in order:
        if _find(parent, p) == p:
            domes.append(peak[p])
    seeds = np.zeros(flat.size, np.int32)
    ordered = np.sort(np.array(domes, dtype=np.int64)) if len(domes) else np.zeros(0, np.int64)
    for i in range(ordered.size):
        seeds[ordered[i]] = i + 1
    return seeds.reshape(rows, w)


@numba.njit(cache=True)
def watershed(surface, labels, mask, connectivity):
    h, w = surface.shape
    heap = [(np.float32(0.0), np.int64(0), np.int64(0))]
    heap.pop()
    age = 0
    for y in range(h):
        for x in range(w):
            if labels[y, x] != 0 and not mask[y, x]:
                labels[y, x] = 0
            if labels[y, x] > 0:
                heapq.heappush(heap, (surface[y, x], np.int64(age), np.int64(y * w + x)))
                age += 1
    flat_mask, flat_labels, flat_surface = mask.ravel(), labels.ravel(), surface.ravel()
    labelled = 0
    while len(heap) > 0:
        _, _, p = heapq.heappop(heap)
        y, x = p // w, p % w
        for k in range(8):
            q = _neighbour(y, x, k, h, w, connectivity)
            if q < 0 or not flat_mask[q] or flat_labels[q] != 0:
                continue
            flat_labels[q] = flat_labels[p]
            labelled += 1
            heapq.heappush(heap, (flat_surface[q], np.int64(age), np.int64(q)))
            age += 1
    return labelled
