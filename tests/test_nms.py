"""Kernel family 2 (DESIGN): mask NMS, greedy (C++ and numba) and Matrix NMS, against brute-force
references on random instances and on real nuclei cut by overlapping tiles."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellrt.kernels import instances_from_labels, mask_nms, matrix_nms, pack_masks

from .conftest import HOST_BACKENDS


def random_instances(rng, n, side=96, classes=3):
    boxes, masks = [], []
    for _ in range(n):
        h, w = rng.integers(3, 20, size=2)
        y, x = rng.integers(0, side - h), rng.integers(0, side - w)
        yy, xx = np.mgrid[:h, :w]
        blob = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1 + rng.random()
        boxes.append([y, x, y + h, x + w])
        masks.append(blob)
    # Near-duplicates: jittered copies of some instances, as a model reports for one cell.
    for i in rng.choice(n, n // 3, replace=False):
        dy, dx = rng.integers(-2, 3, size=2)
        y0, x0, y1, x1 = boxes[i]
        if y0 + dy >= 0 and x0 + dx >= 0:
            boxes.append([y0 + dy, x0 + dx, y1 + dy, x1 + dx])
            masks.append(masks[i])
    count = len(boxes)
    scores = np.round(rng.random(count), 2).astype(np.float32)   # ties on purpose
    return np.asarray(boxes, np.int32), scores, masks, rng.integers(0, classes, count).astype(np.int32)


def full_frames(boxes, masks, side):
    """Each instance's mask pasted into a field of its own."""
    frames = []
    for (y0, x0, y1, x1), mask in zip(boxes, masks):
        canvas = np.zeros((side, side), bool)
        canvas[y0:y1, x0:x1] = mask
        frames.append(canvas)
    return frames


def brute_force_nms(boxes, scores, masks, classes, iou, ios, aware, side=200):
    full = full_frames(boxes, masks, side)
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), i))
    kept, gone = [], set()
    for i in order:
        if i in gone:
            continue
        kept.append(i)
        for j in order:
            if j in gone or j == i or j in kept or (aware and classes[i] != classes[j]):
                continue
            both = int((full[i] & full[j]).sum())
            a, b = int(full[i].sum()), int(full[j].sum())
            if both and (both > np.float32(iou) * (a + b - both) or both > np.float32(ios) * min(a, b)):
                gone.add(j)
    return kept


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("iou, ios, aware", [(0.5, None, False), (0.3, 0.8, True), (0.0, None, False),
                                             (1.0, 0.5, True)])
def test_greedy_mask_nms_equals_brute_force(backend, iou, ios, aware, rng):
    for trial in range(4):
        boxes, scores, masks, classes = random_instances(rng, 40 + 20 * trial)
        kept = mask_nms(boxes, scores, masks, classes=classes if aware else None, iou_threshold=iou,
                        ios_threshold=ios, backend=backend)
        want = brute_force_nms(boxes, scores, masks, classes, iou, 2.0 if ios is None else ios, aware)
        assert kept.tolist() == want


def test_cpu_and_numba_agree_and_packed_masks_are_accepted(rng):
    boxes, scores, masks, classes = random_instances(rng, 300, side=400)
    packed = pack_masks(boxes, masks)
    results = {b: mask_nms(boxes, scores, packed, classes=classes, iou_threshold=0.4, ios_threshold=0.7, backend=b)
               for b in HOST_BACKENDS}
    assert len({tuple(r.tolist()) for r in results.values()}) == 1
    one_thread = mask_nms(boxes, scores, masks, classes=classes, iou_threshold=0.4, ios_threshold=0.7,
                          backend="cpu", num_threads=1)
    np.testing.assert_array_equal(one_thread, results["cpu"])


def test_tile_seam_duplicates_of_real_nuclei_are_merged(dsb_dir):
    """Real nuclei (dsb2018 hand labels) seen by two overlapping tiles: objects inside the overlap come
    twice (whole), objects crossing a tile edge come whole from one tile and cut from the other. Scored by
    area (the whole copy is larger), greedy NMS with intersection-over-smaller keeps exactly one copy of
    every object, and it is the whole one."""
    from cellrt.training import data as training_data

    checked = 0
    for image_id in training_data.dsb_ids(dsb_dir, held_out=True)[:30]:
        truth = tifffile.imread(dsb_dir / "labels" / f"{image_id}.tif")
        height, width = truth.shape
        if width < 200:
            continue
        cut = width // 2
        left = truth[:, :cut + 48]
        right = truth[:, cut - 48:]
        boxes_l, masks_l = instances_from_labels(left)
        boxes_r, masks_r = instances_from_labels(right, offset=(0, cut - 48))
        boxes = np.concatenate([boxes_l, boxes_r])
        masks = masks_l + masks_r
        scores = np.array([m.sum() for m in masks], np.float32)
        kept = mask_nms(boxes, scores, masks, iou_threshold=0.5, ios_threshold=0.8)
        objects = {int(v) for v in np.unique(truth) if v}
        found = {}
        for i in kept:
            y0, x0, y1, x1 = boxes[i]
            values = np.unique(truth[y0:y1, x0:x1][masks[i]])
            assert values.size == 1, f"{image_id}: a kept mask spans objects {values}"
            found.setdefault(int(values[0]), []).append(i)
            assert int(masks[i].sum()) == int((truth == values[0]).sum()), f"{image_id}: a cut copy was kept"
        assert set(found) == objects and all(len(v) == 1 for v in found.values()), image_id
        checked += 1
    assert checked >= 5


def brute_force_matrix(boxes, scores, masks, sigma, side=200):
    full = full_frames(boxes, masks, side)
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), i))
    n = len(order)
    iou = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            i, j = order[a], order[b]
            both = (full[i] & full[j]).sum()
            iou[a, b] = both / ((full[i] | full[j]).sum())
    comp = iou.max(axis=0)
    decay = np.ones(n)
    for b in range(n):
        for a in range(b):
            decay[b] = min(decay[b], np.exp(-sigma * (iou[a, b] ** 2 - comp[a] ** 2)))
    out = np.empty(n)
    out[order] = decay
    return scores * out


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_matrix_nms_decays_duplicates_and_leaves_lone_instances(backend, rng):
    boxes, scores, masks, classes = random_instances(rng, 30)
    decayed = matrix_nms(boxes, scores, masks, sigma=2.0, backend=backend)
    np.testing.assert_allclose(decayed, brute_force_matrix(boxes, scores, masks, 2.0), rtol=1e-6)
    big_boxes, big_scores, big_masks, big_classes = random_instances(rng, 300, side=400)
    for kernel in ("gaussian", "linear"):
        results = [matrix_nms(big_boxes, big_scores, big_masks, classes=big_classes, kernel=kernel, backend=b)
                   for b in HOST_BACKENDS]
        for other in results[1:]:
            np.testing.assert_allclose(other, results[0], rtol=1e-6)
    square = np.ones((6, 6), bool)
    lone = matrix_nms([[0, 0, 6, 6], [0, 0, 6, 6], [30, 30, 36, 36]], np.array([0.9, 0.8, 0.7], np.float32),
                      [square] * 3, backend=backend)
    assert lone[0] == pytest.approx(0.9) and lone[2] == pytest.approx(0.7)
    assert lone[1] == pytest.approx(0.8 * np.exp(-2.0))   # an exact duplicate: IoU 1
    linear = matrix_nms([[0, 0, 6, 6], [0, 0, 6, 6]], np.array([0.9, 0.8], np.float32), [square] * 2,
                        kernel="linear", backend=backend)
    assert linear[1] == 0.0


def test_bad_instances_are_named():
    square = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match=r"box 1 = \[5, 5, 5, 9\] is empty"):
        mask_nms([[0, 0, 4, 4], [5, 5, 5, 9]], [0.5, 0.4], [square, np.ones((0, 4))])
    with pytest.raises(ValueError, match=r"mask 1 has shape \(4, 4\); its box \[0, 0, 4, 5\] is \(4, 5\)"):
        mask_nms([[0, 0, 4, 4], [0, 0, 4, 5]], [0.5, 0.4], [square, square])
    with pytest.raises(ValueError, match="score 1 is not finite"):
        mask_nms([[0, 0, 4, 4], [0, 0, 4, 4]], [0.5, np.nan], [square, square])
    with pytest.raises(ValueError, match="class_aware=True needs classes="):
        mask_nms([[0, 0, 4, 4]], [0.5], [square], class_aware=True)
    with pytest.raises(ValueError, match=r"iou_threshold should be a number in \[0, 1.0\], got 1.5"):
        mask_nms([[0, 0, 4, 4]], [0.5], [square], iou_threshold=1.5)
    with pytest.raises(ValueError, match="boxes should be an integer"):
        mask_nms(np.zeros((1, 4), np.float32), [0.5], [square])
    assert mask_nms(np.zeros((0, 4), np.int32), np.zeros(0, np.float32), []).tolist() == []


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_masks_as_a_tuple_and_packed_data_of_any_type(backend):
    boxes, scores = [[0, 0, 4, 4], [0, 1, 4, 5]], [0.9, 0.8]
    square = np.ones((4, 4), bool)
    # Two masks in a tuple were taken for packed (offsets, data) and refused.
    assert mask_nms(boxes, scores, (square, square), backend=backend).tolist() == [0]
    offsets, data = pack_masks(boxes, [square, square])
    for packed in (data, data * 0.5, data.astype(bool)):   # 0.5 was cast to 0: empty masks, both kept
        assert mask_nms(boxes, scores, (offsets, packed), backend=backend).tolist() == [0], packed.dtype
        assert matrix_nms(boxes, scores, (offsets, packed), backend=backend)[1] < 0.8


from .conftest import needs_cuda  # noqa: E402


@needs_cuda
def test_cuda_mask_nms_matches_cpu(rng):
    import cupy as cp

    for trial in range(3):
        boxes, scores, masks, classes = random_instances(rng, 100 + 100 * trial, side=300)
        offsets, data = pack_masks(boxes, masks)
        for aware in (False, True):
            want = mask_nms(boxes, scores, masks, classes=classes if aware else None, iou_threshold=0.4,
                            ios_threshold=0.7, backend="cpu")
            got = mask_nms(cp.asarray(boxes), cp.asarray(scores), (cp.asarray(offsets), cp.asarray(data)),
                           classes=cp.asarray(classes) if aware else None, iou_threshold=0.4, ios_threshold=0.7)
            np.testing.assert_array_equal(cp.asnumpy(got), want)


def test_far_apart_boxes_use_a_coarse_grid(rng):
    """Boxes in mosaic coordinates (far from the origin, half of them far from the others) build no grid
    of their extent (that would be ~10^16 cells); the C++ result equals the numba reference's, which was
    held to brute force above."""
    boxes, scores, masks, _ = random_instances(rng, 30)
    far = boxes.copy()
    far[:, [0, 2]] += 1_500_000_000
    far[::2, [1, 3]] += 900_000_000
    cpu = mask_nms(far, scores, masks, iou_threshold=0.3, backend="cpu")
    assert cpu.tolist() == mask_nms(far, scores, masks, iou_threshold=0.3, backend="numba").tolist()
    assert len(cpu) > len(mask_nms(boxes, scores, masks, iou_threshold=0.3, backend="cpu")) - len(boxes) // 2


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 40), iou=st.floats(0.0, 1.0),
       ios=st.one_of(st.none(), st.floats(0.0, 1.5)), aware=st.booleans())
def test_cpu_equals_numba_on_any_instances(seed, count, iou, ios, aware):
    """Property: for any instance set (boxes anywhere, masks of any density - empty ones too - and tied
    scores) both backends keep the same instances, those the brute-force full-frame greedy keeps."""
    rng = np.random.default_rng(seed)
    boxes, masks = [], []
    for _ in range(count):
        h, w = rng.integers(1, 12, size=2)
        y, x = rng.integers(0, 40, size=2)
        boxes.append([y, x, y + h, x + w])
        masks.append(rng.random((h, w)) < rng.random())
    boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
    scores = rng.integers(0, 5, count).astype(np.float32)
    classes = rng.integers(0, 2, count).astype(np.int32)
    kw = dict(classes=classes if aware else None, iou_threshold=iou, ios_threshold=ios)
    results = [mask_nms(boxes, scores, masks, backend=b, **kw) for b in HOST_BACKENDS]
    assert all(r.tolist() == results[0].tolist() for r in results)
    if count and "cpu" in HOST_BACKENDS:
        assert results[0].tolist() == brute_force_nms(boxes, scores, masks, classes, iou,
                                                      2.0 if ios is None else ios, aware, side=60)


def test_instances_from_labels_takes_sparse_labels_and_refuses_negative_ones():
    from cellrt.kernels import instances_from_labels

    dense = np.zeros((6, 7), np.int64)
    dense[1:3, 1:4] = 1
    dense[4:6, 5:7] = 2
    sparse = np.where(dense == 1, 70_000, np.where(dense == 2, 1_000_000_000, 0))
    boxes, masks = instances_from_labels(sparse, offset=(10, 20))
    want_boxes, want_masks = instances_from_labels(dense, offset=(10, 20))
    np.testing.assert_array_equal(boxes, want_boxes)
    assert boxes.tolist() == [[11, 21, 13, 24], [14, 25, 16, 27]]
    assert len(masks) == 2 and all(np.array_equal(a, b) for a, b in zip(masks, want_masks))
    everywhere = np.full((2, 2), 3_000_000_000, np.int64)   # no background at all
    assert instances_from_labels(everywhere)[0].tolist() == [[0, 0, 2, 2]]
    with pytest.raises(ValueError, match=r"instances_from_labels: labels should be >= 0, got 4 negative pixel"):
        instances_from_labels(np.where(dense == 2, -4, dense))


def test_no_instances_in_any_spelling_and_float_packed_offsets_refused():
    from cellrt.kernels import mask_nms, matrix_nms, pack_masks

    for backend in HOST_BACKENDS:
        assert mask_nms([], [], [], backend=backend).size == 0
        assert mask_nms(np.zeros((0, 4), np.int32), np.zeros(0, np.float32), [], backend=backend).size == 0
    assert matrix_nms([], [], []).size == 0
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.int32)
    offsets, data = pack_masks(boxes, [np.ones((2, 2), bool)] * 2)
    with pytest.raises(ValueError, match=r"mask_nms: packed mask offsets should be integers, got float64"):
        mask_nms(boxes, np.array([0.9, 0.8], np.float32), (offsets.astype(np.float64), data))
