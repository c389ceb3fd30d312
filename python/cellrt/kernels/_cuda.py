"""cupy glue for the CUDA kernels of the extension (tile, stitch, label, measure).

Device arrays cross into C++ as (pointer, dtype code, shape, strides) read
from ``__cuda_array_interface__``; the kernels run on cupy's current stream.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from .._build import _core
from .stitch import dtype_code


def _describe(a):
    iface = a.__cuda_array_interface__
    itemsize = np.dtype(a.dtype).itemsize
    shape = [int(s) for s in iface["shape"]]
    if iface.get("strides") is None:
        strides = [1] * len(shape)
        for i in range(len(shape) - 2, -1, -1):
            strides[i] = strides[i + 1] * shape[i + 1]
    else:
        strides = [int(s) // itemsize for s in iface["strides"]]
    return int(iface["data"][0]), dtype_code(a.dtype), shape, strides


def _pointer(a) -> int:
    """Device address of an array whose element type the binding fixes (any dtype: int64 offsets,
    float64 tables... which have no cellrt dtype code)."""
    return int(a.__cuda_array_interface__["data"][0])


def _stream() -> int:
    return int(cp.cuda.get_current_stream().ptr)


def tile(image, origins, tile_h, tile_w, scale, offset, dtype, out=None):
    image = cp.asarray(image)
    ptr, code, shape, strides = _describe(image)
    if out is None:
        out = cp.empty((origins.shape[0], shape[0], tile_h, tile_w), dtype)
    out_ptr, out_code, out_shape, _ = _describe(out)
    nonfinite = _core.tile_cuda(ptr, code, shape, strides, origins, out_ptr, out_code, out_shape,
                                scale, offset, _stream())
    return out, int(nonfinite)


def stitch(tiles, origins, out_shape, out_dtype, mode, overlap_y, overlap_x, sigma_scale, activation, argmax,
           fill_value, out=None):
    tiles = cp.asarray(tiles)
    ptr, code, shape, strides = _describe(tiles)
    if out is None:
        out = cp.empty(out_shape, out_dtype)
    out_ptr, out_code, _, _ = _describe(out)
    uncovered, nonfinite = _core.stitch_cuda(ptr, code, shape, strides, origins, out_ptr, out_code,
                                             list(out_shape), mode, overlap_y, overlap_x, float(sigma_scale),
                                             activation, bool(argmax), float(fill_value), _stream())
    return out, int(uncovered), int(nonfinite)


def label(mask, connectivity):
    mask = cp.ascontiguousarray(mask)
    if mask.dtype != cp.uint8:
        mask = (mask != 0).astype(cp.uint8)
    labels = cp.empty(mask.shape, cp.int32)
    count = _core.label_cuda(_pointer(mask), list(mask.shape), _pointer(labels), connectivity, _stream())
    return labels, int(count)


def measure(labels, num_objects, intensities, columns):
    labels = cp.ascontiguousarray(cp.asarray(labels, dtype=cp.int32))
    table = cp.empty((num_objects, columns), cp.float64)
    if intensities is None:
        image, code, shape, strides = 0, 3, [], []
    else:
        image, code, shape, strides = _describe(intensities)
    out_of_range = _core.measure_cuda(_pointer(labels), list(labels.shape), num_objects, image, code, shape,
                                      strides, _pointer(table) if num_objects else 0, columns, _stream())
    return table, int(out_of_range)


def label_measure(mask, intensities, connectivity, min_area, capacity, columns):
    """(labels, count, features[count, columns]): one pass on the stream, the count read back once at the end;
    a second measure pass only when the count exceeds ``capacity``."""
    mask = cp.ascontiguousarray(mask)
    if mask.dtype != cp.uint8:
        mask = (mask != 0).astype(cp.uint8)
    labels = cp.empty(mask.shape, cp.int32)
    features = cp.empty((capacity, columns), cp.float64)
    if intensities is None:
        image, code, shape, strides = 0, 3, [], []
    else:
        image, code, shape, strides = _describe(intensities)
    count, measured = _core.label_measure_cuda(_pointer(mask), list(mask.shape), _pointer(labels), image, code,
                                               shape, strides, _pointer(features) if capacity else 0, capacity,
                                               columns, connectivity, min_area, _stream())
    if count > measured:
        features, _ = measure(labels, count, intensities, columns)
    return labels, int(count), features[:count]


def binary_morphology(mask, radius, footprint, dilate):
    mask = cp.ascontiguousarray(mask)
    if mask.dtype != cp.uint8:
        mask = (mask != 0).astype(cp.uint8)
    out = cp.empty(mask.shape, cp.uint8)
    _core.binary_morphology_cuda(_pointer(mask), _pointer(out), list(mask.shape), int(radius), footprint,
                                 bool(dilate), _stream())
    return out.view(cp.bool_)


def separable_filter(op, image, a, b, border):
    """op 0: gaussian_blur (a = sigma, b = truncate); op 1: box_mean (a = size_y, b = size_x);
    op 2: gaussian_blur_recursive (a = sigma)."""
    image = cp.ascontiguousarray(cp.asarray(image, dtype=cp.float32))
    if not bool(cp.all(cp.isfinite(image))):
        raise ValueError(f"{('gaussian_blur', 'box_mean', 'gaussian_blur_recursive')[op]}: image holds NaN/inf values")
    out = cp.empty_like(image)
    _core.filter_cuda(op, _pointer(image), _pointer(out), list(image.shape), float(a), float(b), border,
                      _stream())
    return out


def resize(image, out_h, out_w, antialias):
    """(C, H, W) uint8/uint16/float32 C-contiguous device image -> (C, out_h, out_w) float32."""
    out = cp.empty((image.shape[0], out_h, out_w), cp.float32)
    _core.resize_cuda(_pointer(image), dtype_code(image.dtype), list(image.shape), _pointer(out), list(out.shape),
                      antialias, _stream())
    return out


def fill_holes(mask, connectivity):
    mask = cp.ascontiguousarray(mask)
    if mask.dtype != cp.uint8:
        mask = (mask != 0).astype(cp.uint8)
    out = cp.empty(mask.shape, cp.uint8)
    _core.fill_holes_cuda(_pointer(mask), _pointer(out), list(mask.shape), connectivity, _stream())
    return out.view(cp.bool_)


def value_counts(image):
    """Per-value counts of a uint8/uint16 device image, counted on the device; the counts come back."""
    image = cp.ascontiguousarray(image)
    counts = cp.empty(256 if image.dtype == cp.uint8 else 65536, cp.int64)
    _core.histogram_cuda(_pointer(image), dtype_code(image.dtype), int(image.size), _pointer(counts),
                         _stream())
    return cp.asnumpy(counts)


def contour_arrays(labels, num_objects):
    """(offsets[N+1], points[P, 2] int32 xy, perimeter[N]) as cupy arrays, traced on the device."""
    labels = cp.ascontiguousarray(cp.asarray(labels, dtype=cp.int32))
    offsets = cp.zeros(num_objects + 1, cp.int64)
    perimeter = cp.zeros(num_objects, cp.float64)
    args = (_pointer(labels), list(labels.shape), num_objects, _pointer(offsets))
    total = _core.contours_cuda(*args, 0, _pointer(perimeter) if num_objects else 0, _stream())
    points = cp.empty((total, 2), cp.int32)
    if total:
        _core.contours_cuda(*args, _pointer(points), 0, _stream())
    return offsets, points, perimeter


def hole_contour_arrays(labels, num_objects):
    """(object_offsets, point_offsets, points) of the holes, found on the device; host arrays (small)."""
    labels = cp.ascontiguousarray(cp.asarray(labels, dtype=cp.int32))
    return _core.hole_contours_cuda(_pointer(labels), list(labels.shape), num_objects, _stream())


def rbf_kernel(queries, points, sigma, sums):
    queries = cp.ascontiguousarray(queries, dtype=cp.float32)
    points = cp.ascontiguousarray(points, dtype=cp.float32)
    out = cp.empty((queries.shape[0],) if sums else (queries.shape[0], points.shape[0]), cp.float64)
    _core.rbf_kernel_cuda(_pointer(queries), list(queries.shape), _pointer(points), list(points.shape),
                          float(sigma), _pointer(out), list(out.shape), _stream())
    return out


def mask_nms(boxes, scores, classes, offsets, data, iou_threshold, ios_threshold, class_aware):
    boxes = cp.ascontiguousarray(boxes, dtype=cp.int32)
    scores = cp.ascontiguousarray(scores, dtype=cp.float32)
    offsets = cp.ascontiguousarray(offsets, dtype=cp.int64)
    data = cp.ascontiguousarray(data, dtype=cp.uint8)
    classes = None if classes is None else cp.ascontiguousarray(classes, dtype=cp.int32)
    keep = cp.empty(len(boxes), cp.uint8)
    # The C++ side reads the small tables and writes keep with synchronous copies on the legacy default stream,
    # which a non-blocking stream neither waits for nor is waited on by: the caller's stream finishes first, and
    # the copies finish before the caller's stream reads keep.
    cp.cuda.get_current_stream().synchronize()
    _core.mask_nms_cuda(_pointer(boxes), _pointer(scores), 0 if classes is None else _pointer(classes),
                        _pointer(offsets), _pointer(data), int(data.size), _pointer(keep), len(boxes),
                        float(iou_threshold), float(ios_threshold), bool(class_aware))
    cp.cuda.Stream.null.synchronize()
    return keep
