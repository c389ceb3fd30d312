"""Non-maximum suppression of instance masks: DESIGN's second kernel family.

An instance model (Mask R-CNN style) reports several overlapping
candidates for one cell, and overlapping tiles report a cell twice - once
whole, once cut at the tile's edge. ``mask_nms`` keeps the best of each
group: greedy by score, suppressing by the masks' intersection over union
and, for the cut copies, by intersection over the smaller mask.
``matrix_nms`` is the parallel variant (SOLOv2's Matrix NMS): every score
decays by its overlap with higher-scored instances, nothing is removed.

Instances are given as boxes ``(N, 4)`` ``[y0, x0, y1, x1)`` in field pixels
and one mask per instance covering exactly its box, as a list of 2-D
arrays or packed with :func:`pack_masks` (one buffer plus offsets: what the
kernels take).
"""

from __future__ import annotations

import numpy as np

from . import _backend


def pack_masks(boxes, masks) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets (N + 1,) int64, data (M,) uint8)`` from one 2-D mask per box."""
    boxes = _boxes(boxes, "pack_masks")
    if len(masks) != len(boxes):
        raise ValueError(f"pack_masks: {len(boxes)} boxes but {len(masks)} masks")
    sizes = (boxes[:, 2] - boxes[:, 0]).astype(np.int64) * (boxes[:, 3] - boxes[:, 1])
    offsets = np.zeros(len(boxes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        mask = np.asarray(mask)
        shape = (int(box[2] - box[0]), int(box[3] - box[1]))
        if mask.shape != shape:
            raise ValueError(f"pack_masks: mask {i} has shape {mask.shape}; its box {box.tolist()} is {shape}")
        data[offsets[i]:offsets[i + 1]] = (mask != 0).ravel()
    return offsets, data


def instances_from_labels(labels, *, offset=(0, 0)) -> tuple[np.ndarray, list]:
    """Boxes and masks of objects 1..N of a label image (a tile's, placed at
    ``offset`` = (y, x) in the field): the form the NMS takes."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"instances_from_labels: labels should be a 2-D integer array, got {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and int(labels.min()) < 0:
        raise ValueError(f"instances_from_labels: labels should be >= 0, got {int(np.count_nonzero(labels < 0))} "
                         f"negative pixel(s)")
    if labels.size and int(labels.max()) > labels.size:
        # find_objects keeps a slot per label value (1e9 of them for one pixel labelled 1e9): number the
        # labels present 1..N in their order first - the same objects, in the same order.
        values, inverse = np.unique(labels, return_inverse=True)
        labels = inverse.reshape(labels.shape) + (0 if values[0] == 0 else 1)
    from scipy import ndimage  # noqa: PLC0415 - a dependency of the test/benchmark paths only

    boxes, masks = [], []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        ys, xs = found
        boxes.append([ys.start + offset[0], xs.start + offset[1], ys.stop + offset[0], xs.stop + offset[1]])
        masks.append(labels[found] == index)
    return np.asarray(boxes, np.int32).reshape(-1, 4), masks


def _class_aware(class_aware, classes, op: str) -> bool:
    """Whether only same-class instances suppress each other: as asked, else when classes are given."""
    if class_aware is not None and not _backend.is_flag(class_aware):
        raise ValueError(f"{op}: class_aware should be True, False or None, got {class_aware!r}")
    aware = classes is not None if class_aware is None else bool(class_aware)
    if aware and classes is None:
        raise ValueError(f"{op}: class_aware=True needs classes=")
    return aware


def _boxes(boxes, op: str) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.size == 0 and boxes.ndim <= 2 and (boxes.ndim < 2 or boxes.shape[1] in (0, 4)):
        boxes = np.zeros((0, 4), np.int32)   # no instances, however spelled ([] is a float array to numpy)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "iu":
        raise ValueError(f"{op}: boxes should be an integer (N, 4) array [y0, x0, y1, x1), got {boxes.dtype} "
                         f"{boxes.shape}")
    if boxes.size and (boxes.min() < 0 or boxes.max() >= 2**31):
        raise ValueError(f"{op}: box corners should be in [0, 2^31), got {boxes.min()}..{boxes.max()}")
    boxes = np.ascontiguousarray(boxes, np.int32)
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{op}: box {i} = {boxes[i].tolist()} is empty; boxes are [y0, x0, y1, x1) with y0 < y1, "
                         f"x0 < x1")
    return boxes


def _instances(boxes, scores, masks, classes, op: str):
    boxes = _boxes(boxes, op)
    scores = np.asarray(scores)
    if scores.shape != (len(boxes),) or scores.dtype.kind != "f":
        raise ValueError(f"{op}: scores should be a float ({len(boxes)},) array, got {scores.dtype} {scores.shape}")
    scores = np.ascontiguousarray(scores, np.float32)
    if not np.isfinite(scores).all():
        raise ValueError(f"{op}: score {int(np.flatnonzero(~np.isfinite(scores))[0])} is not finite")
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != (len(boxes),) or classes.dtype.kind not in "iu":
            raise ValueError(f"{op}: classes should be an integer ({len(boxes)},) array, got {classes.dtype} "
                             f"{classes.shape}")
        classes = np.ascontiguousarray(classes, np.int32)
    # Packed: (1-D offsets, data). A tuple of two 2-D masks (two instances) is a list of masks, not packed.
    if isinstance(masks, tuple) and len(masks) == 2 and isinstance(masks[0], np.ndarray) and masks[0].ndim == 1:
        if masks[0].dtype.kind not in "iu":   # a cast would truncate 3.7 to 3: another instance's pixels
            raise ValueError(f"{op}: packed mask offsets should be integers, got {masks[0].dtype}")
        offsets = np.ascontiguousarray(masks[0], np.int64)
        data = np.asarray(masks[1])
        # Non-zero is inside, as pack_masks reads masks: a cast to uint8 made 0.5 (a float mask) outside.
        data = np.ascontiguousarray(data if data.dtype == np.uint8 else data != 0, np.uint8).reshape(-1)
        sizes = (boxes[:, 2] - boxes[:, 0]).astype(np.int64) * (boxes[:, 3] - boxes[:, 1])
        if offsets.shape != (len(boxes) + 1,) or offsets[0] != 0 or not np.array_equal(np.diff(offsets), sizes) \
                or offsets[-1] > data.size:
            raise ValueError(f"{op}: packed masks should have offsets (N + 1,) from 0 with one box-sized block per "
                             "instance (see pack_masks)")
    else:
        offsets, data = pack_masks(boxes, masks)
    order = np.argsort(-scores, kind="stable")   # descending score, ties by index
    return boxes, scores, classes, offsets, data, order


def mask_nms(boxes, scores, masks, *, classes=None, iou_threshold: float = 0.5, ios_threshold: float | None = None,
             class_aware: bool | None = None, backend: str = "auto", num_threads: int = 0) -> np.ndarray:
    """Indices of the instances kept, in descending score order.

    Parameters
    ----------
    boxes : (N, 4) int array, ``[y0, x0, y1, x1)`` in field pixels
    scores : (N,) float array
    masks : list of N 2-D arrays (each its box's shape; non-zero = inside), or ``pack_masks`` output
    classes : (N,) int array, optional
    iou_threshold : float
        Suppress a lower-scored instance whose mask IoU with a kept one is above this.
    ios_threshold : float, optional
        Also suppress when the intersection over the smaller mask is above
        this (a cell cut at a tile seam lies mostly inside its whole twin;
        0.8 is a common choice). Default: off.
    class_aware : bool, optional
        Only instances of one class suppress each other; default: when
        ``classes`` are given.

    Examples
    --------
    >>> square = np.ones((4, 4), bool)   # the second overlaps the first in 12 of 20 pixels: IoU 0.6
    >>> mask_nms([[0, 0, 4, 4], [0, 1, 4, 5], [10, 10, 14, 14]], [0.9, 0.8, 0.7], [square] * 3).tolist()
    [0, 2]
    """
    num_threads = _backend.check_num_threads("mask_nms", num_threads)
    for name, value, high in (("iou_threshold", iou_threshold, 1.0), ("ios_threshold", ios_threshold, None)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or value < 0 or (high is not None and value > high):
            raise ValueError(f"mask_nms: {name} should be a number in [0, {high or 'inf'}], got {value!r}")
    aware = _class_aware(class_aware, classes, "mask_nms")
    ios = 2.0 if ios_threshold is None else float(ios_threshold)
    if _backend.is_device_array(boxes):
        return _mask_nms_device(boxes, scores, masks, classes, float(iou_threshold), ios, aware, backend)
    boxes, scores, classes, offsets, data, order = _instances(boxes, scores, masks, classes, "mask_nms")
    chosen = _backend.resolve("mask_nms", backend, False)
    keep = np.zeros(len(boxes), np.uint8)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        _core.mask_nms(boxes, scores, classes if aware else None, offsets, data, keep, float(iou_threshold), ios,
                       aware, int(num_threads))
    else:
        from . import _nms_numba  # noqa: PLC0415

        keep = _nms_numba.mask_nms(order, boxes, classes if aware else None, offsets, data, iou_threshold, ios)
    return order[keep[order] != 0].astype(np.int64)


def _mask_nms_device(boxes, scores, masks, classes, iou_threshold, ios_threshold, aware, backend):
    """Device (cupy) instances: masks packed as (offsets, data) device arrays; the masks' areas and the
    pairs' overlaps run on the GPU, the instance tables are checked and scanned on the host."""
    _backend.resolve("mask_nms", backend, True)
    if not (isinstance(masks, tuple) and len(masks) == 2 and all(_backend.is_device_array(m) for m in masks)):
        raise ValueError("mask_nms: device boxes need their masks packed on the device, (offsets, data) as "
                         "pack_masks makes them, moved with cupy.asarray")
    for name, value in (("scores", scores), ("classes", classes)):
        if value is not None and not _backend.is_device_array(value):
            raise ValueError(f"mask_nms: {name} should be on the device like the boxes")
    from . import _cuda  # noqa: PLC0415 - needs cupy

    n = int(boxes.shape[0]) if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4 or tuple(scores.shape) != (n,) or tuple(masks[0].shape) != (n + 1,):
        raise ValueError(f"mask_nms: device instances should be boxes (N, 4), scores (N,) and mask offsets "
                         f"(N + 1,), got {tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(masks[0].shape)}")
    host_scores = scores.get() if hasattr(scores, "get") else np.asarray(scores)
    # The kernel checks boxes, scores, classes and offsets in full (on its host copies) before any work.
    keep = _cuda.mask_nms(boxes, scores, classes if aware else None, masks[0], masks[1], iou_threshold,
                          ios_threshold, aware)
    order = np.argsort(-np.asarray(host_scores, np.float32), kind="stable")
    host_keep = keep.get() if hasattr(keep, "get") else np.asarray(keep)
    import cupy  # noqa: PLC0415

    return cupy.asarray(order[host_keep[order] != 0].astype(np.int64))


def matrix_nms(boxes, scores, masks, *, classes=None, kernel: str = "gaussian", sigma: float = 2.0,
               class_aware: bool | None = None, backend: str = "auto", num_threads: int = 0) -> np.ndarray:
    """Matrix NMS (SOLOv2): the decayed scores ``(N,)`` float32, nothing removed.

    Each instance's score is multiplied by the smallest, over the
    higher-scored instances ``i`` it overlaps, of ``f(iou) / f(comp_i)``,
    ``comp_i`` being ``i``'s own largest IoU with a higher-scored instance;
    ``f(x) = exp(-sigma x^2)`` ('gaussian') or ``1 - x`` ('linear'). Keep
    the instances whose decayed score passes a threshold. The C++ backend
    takes only the overlapping pairs (from the same grid as ``mask_nms``):
    a pair that does not overlap has IoU 0, whose term is never the
    minimum, so the result is the dense matrix's. numba is the dense
    reference.
    """
    num_threads = _backend.check_num_threads("matrix_nms", num_threads)
    if kernel not in ("gaussian", "linear"):
        raise ValueError(f"matrix_nms: kernel should be 'gaussian' or 'linear', got {kernel!r}")
    if not (_backend.is_real(sigma) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"matrix_nms: sigma should be a positive number, got {sigma!r}")
    aware = _class_aware(class_aware, classes, "matrix_nms")
    boxes, scores, classes, offsets, data, order = _instances(boxes, scores, masks, classes, "matrix_nms")
    chosen = _backend.resolve("matrix_nms", backend, False)
    if len(boxes) == 0:
        return np.zeros(0, np.float32)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        decayed = np.empty(len(boxes), np.float32)
        _core.matrix_nms(boxes, scores, classes if aware else None, offsets, data, decayed,
                         0 if kernel == "gaussian" else 1, float(sigma), aware, int(num_threads))
        return decayed
    from . import _nms_numba  # noqa: PLC0415

    decay = _nms_numba.matrix_decay(order, boxes, classes if aware else None, offsets, data, kernel, sigma)
    return (scores.astype(np.float64) * decay).astype(np.float32)
