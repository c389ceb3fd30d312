"""Every CUDA kernel of cellrt once, on small arrays, each checked against the
CPU backend: small enough to run under compute-sanitizer (tools/gpu_check.sh).

    compute-sanitizer --tool memcheck python tools/gpu_smoke.py
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from cellrt.kernels import (binary_closing, binary_opening, box_mean, contours, fill_holes, gaussian_blur,
                            histogram, instances_from_labels, instances_from_probability, label, label_measure,
                            mask_nms, measure, pack_masks, rbf_kernel_matrix, rbf_kernel_sums, segment, stitch,
                            threshold, tile)


def same(name, device, host, tol=0.0):
    got = cp.asnumpy(device)
    if tol:
        ok = np.allclose(got, host, atol=tol, rtol=tol)
    else:
        ok = np.array_equal(got, host)
    print(f"{'ok  ' if ok else 'DIFF'} {name}")
    return ok


def main() -> int:
    rng = np.random.default_rng(7)
    image = rng.random((2, 157, 203)).astype(np.float32)
    checks = []
    for dtype in (np.float32, np.float16):
        host = tile(image, 64, 0.25, dtype=dtype, backend="cpu")
        dev = tile(cp.asarray(image), 64, 0.25, dtype=dtype)
        checks.append(same(f"tile {np.dtype(dtype).name}", dev.tiles, host.tiles))
        for blend in ("constant", "linear", "cosine", "gaussian", "crop"):
            for activation in (None, "sigmoid", "softmax", "argmax"):
                kw = {"argmax": True} if activation == "argmax" else {"activation": activation}
                kw["overlap"] = 0.25
                want = stitch(host.tiles, host.origins, image.shape, blend=blend, backend="cpu", **kw)
                got = stitch(dev.tiles, dev.origins, image.shape, blend=blend, **kw)
                checks.append(same(f"stitch {blend} {activation} {np.dtype(dtype).name}", got, want,
                                   1e-6 if activation in ("sigmoid", "softmax") else 0.0))
    plane = (image[0] * 1000).astype(np.uint16)
    dplane = cp.asarray(plane)
    checks.append(same("gaussian_blur", gaussian_blur(cp.asarray(image[0]), 2.0),
                       gaussian_blur(image[0], 2.0, backend="cpu"), 1e-6))
    checks.append(same("box_mean", box_mean(cp.asarray(image[0]), 7), box_mean(image[0], 7, backend="cpu"), 1e-6))
    counts, _ = histogram(dplane)
    checks.append(same("histogram", cp.asarray(counts), histogram(plane)[0]))
    checks.append(threshold(dplane, "otsu") == threshold(plane, "otsu"))
    print(f"{'ok  ' if checks[-1] else 'DIFF'} threshold otsu")
    mask = gaussian_blur(image[0], 3.0, backend="cpu") > 0.5
    dmask = cp.asarray(mask)
    checks.append(same("fill_holes", fill_holes(dmask), fill_holes(mask, backend="cpu")))
    for footprint in ("disk", "square"):
        checks.append(same(f"opening {footprint}", binary_opening(dmask, 2, footprint),
                           binary_opening(mask, 2, footprint, backend="cpu")))
        checks.append(same(f"closing {footprint}", binary_closing(dmask, 2, footprint),
                           binary_closing(mask, 2, footprint, backend="cpu")))
    for connectivity in (4, 8):
        labels, count = label(mask, connectivity, backend="cpu")
        dlabels, dcount = label(dmask, connectivity)
        checks.append(same(f"label {connectivity}", dlabels, labels) and dcount == count)
        want = measure(labels, image[0], backend="cpu")
        got = measure(dlabels, cp.asarray(image[0]))
        checks.append(all(same(f"measure {connectivity} {k}", got[k], want[k], 1e-9) for k in want))
        for capacity in (None, 2):   # the count on the device; too few rows: measured again
            want_labels, want_count, want = label_measure(mask, image[0], connectivity=connectivity, min_area=4,
                                                          backend="cpu")
            got_labels, got_count, got = label_measure(dmask, cp.asarray(image[0]), connectivity=connectivity,
                                                       min_area=4, capacity=capacity)
            checks.append(same(f"label_measure {connectivity} {capacity} labels", got_labels, want_labels)
                          and got_count == want_count)
            checks.append(all(same(f"label_measure {connectivity} {capacity} {k}", got[k], want[k], 1e-9)
                              for k in want))
        host_c = contours(labels, holes=True, backend="cpu")
        dev_c = contours(dlabels, holes=True)
        checks.append(all(same(f"contours {connectivity} #{i}", cp.asarray(d[0]), h[0])
                          for i, (d, h) in enumerate(zip(dev_c, host_c))))
    prob = np.stack([1 - image[0], image[0] * 0.8, image[0] * 0.2]).astype(np.float32)
    host_inst, _ = instances_from_probability(prob, min_area=3)
    dev_inst, _ = instances_from_probability(cp.asarray(prob), min_area=3)
    checks.append(same("instances_from_probability", dev_inst, host_inst))
    segmented, _ = segment(plane)
    device_segmented, _ = segment(dplane)
    checks.append(same("segment", device_segmented, segmented))
    queries, points = rng.random((9, 33)).astype(np.float32), rng.random((70, 33)).astype(np.float32)
    checks.append(same("rbf_kernel_sums", rbf_kernel_sums(cp.asarray(queries), cp.asarray(points), 1.3),
                       rbf_kernel_sums(queries, points, 1.3, backend="cpu"), 1e-12))
    checks.append(same("rbf_kernel_matrix", rbf_kernel_matrix(cp.asarray(queries), cp.asarray(points), 1.3),
                       rbf_kernel_matrix(queries, points, 1.3, backend="cpu"), 1e-12))
    labels, _ = label(mask, 8, backend="cpu")
    boxes, masks = instances_from_labels(labels)
    boxes = np.concatenate([boxes, boxes + 1])
    masks = masks + masks
    scores = rng.random(len(boxes)).astype(np.float32)
    offsets, data = pack_masks(boxes, masks)
    want = mask_nms(boxes, scores, masks, iou_threshold=0.3, backend="cpu")
    got = mask_nms(cp.asarray(boxes), cp.asarray(scores), (cp.asarray(offsets), cp.asarray(data)), iou_threshold=0.3)
    checks.append(same("mask_nms", got, want))
    cp.cuda.Device().synchronize()
    failed = len(checks) - sum(bool(c) for c in checks)
    print(f"{len(checks)} checks, {failed} differ")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
