"""numba mask NMS: the fallback and the reference the C++ backend is held to,
written from the contract in nms.py (greedy by descending score, ties by
index; suppress when the masks' IoU exceeds ``iou_threshold`` or their
intersection over the smaller exceeds ``ios_threshold``; same class only
when class-aware). Plain O(N^2) over box-overlapping pairs."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _intersection(boxes, offsets, data, a, b):
    y0 = max(boxes[a, 0], boxes[b, 0])
    x0 = max(boxes[a, 1], boxes[b, 1])
    y1 = min(boxes[a, 2], boxes[b, 2])
    x1 = min(boxes[a, 3], boxes[b, 3])
    if y0 >= y1 or x0 >= x1:
        return 0
    wa = boxes[a, 3] - boxes[a, 1]
    wb = boxes[b, 3] - boxes[b, 1]
    both = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            ia = offsets[a] + (y - boxes[a, 0]) * wa + (x - boxes[a, 1])
            ib = offsets[b] + (y - boxes[b, 0]) * wb + (x - boxes[b, 1])
            if data[ia] != 0 and data[ib] != 0:
                both += 1
    return both


@numba.njit(cache=True)
def _areas(offsets, data):
    n = offsets.shape[0] - 1
    out = np.zeros(n, np.int64)
    for i in range(n):
        for p in range(offsets[i], offsets[i + 1]):
            if data[p] != 0:
                out[i] += 1
    return out


@numba.njit(cache=True)
def _greedy(order, boxes, classes, use_classes, offsets, data, iou_threshold, ios_threshold):
    n = order.shape[0]
    areas = _areas(offsets, data)
    suppressed = np.zeros(n, np.bool_)
    keep = np.zeros(n, np.uint8)
    for r in range(n):
        i = order[r]
        if suppressed[i]:
            continue
        keep[i] = 1
        for s in range(r + 1, n):
            j = order[s]
            if suppressed[j] or (use_classes and classes[i] != classes[j]):
                continue
            both = _intersection(boxes, offsets, data, i, j)
            if both == 0:
                continue
            union = areas[i] + areas[j] - both
            smaller = min(areas[i], areas[j])
            if both > iou_threshold * union or both > ios_threshold * smaller:
                suppressed[j] = True
    return keep


def mask_nms(order, boxes, classes, offsets, data, iou_threshold, ios_threshold):
    use_classes = classes is not None
    cls = classes if use_classes else np.zeros(len(boxes), np.int32)
    return _greedy(order, boxes, cls, use_classes, offsets, data, np.float64(np.float32(iou_threshold)),
                   np.float64(np.float32(ios_threshold)))


@numba.njit(cache=True)
def _matrix(order, boxes, classes, use_classes, offsets, data, gaussian, sigma):
    n = order.shape[0]
    areas = _areas(offsets, data)
    iou = np.zeros((n, n), np.float64)   # ranks: iou[a, b] for a < b
    for a in range(n):
        for b in range(a + 1, n):
            i, j = order[a], order[b]
            if use_classes and classes[i] != classes[j]:
                continue
            both = _intersection(boxes, offsets, data, i, j)
            if both:
                iou[a, b] = both / (areas[i] + areas[j] - both)
    compensate = np.zeros(n, np.float64)  # each instance's largest IoU with a higher-scored one
    for b in range(n):
        for a in range(b):
            compensate[b] = max(compensate[b], iou[a, b])
    decay = np.ones(n, np.float64)
    for b in range(n):
        for a in range(b):
            if gaussian:
                d = math.exp(-sigma * (iou[a, b] ** 2 - compensate[a] ** 2))
            else:
                d = (1.0 - iou[a, b]) / (1.0 - compensate[a]) if compensate[a] < 1.0 else 1.0
            decay[b] = min(decay[b], d)
    out = np.empty(n, np.float64)
    for r in range(n):
        out[order[r]] = decay[r]
    return out


def matrix_decay(order, boxes, classes, offsets, data, kernel: str, sigma: float):
    use_classes = classes is not None
    cls = classes if use_classes else np.zeros(len(boxes), np.int32)
    return _matrix(order, boxes, cls, use_classes, offsets, data, kernel == "gaussian", float(sigma))
