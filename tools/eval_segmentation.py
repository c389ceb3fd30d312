"""Segmentation evaluation on dsb2018_fluo: are the numbers right on images (and magnifications) never trained on?

    python tools/eval_segmentation.py [--split held-out|all] [--scales 1,0.5,2,3] [--every K]
        [--max-images N] [--pipelines model,classical-sized,segment,otsu+label] [--model nuclei]
        [--precision fp32|int8] [--json out.json]
    python tools/eval_segmentation.py --legacy [--every K]   # the rows this tool printed before

Data: the dsb2018_fluo folder under the data root, which is ``$CELLRT_DATA``
when set, else ``../shared/data`` beside the project (``--data`` names the
dsb2018_fluo folder itself). Held-out images (the default split) are those
the bundled ``nuclei`` model never trained on
(:func:`cellrt.training.data.dsb_ids`); ``--every K`` keeps every K-th of
them, ``--max-images`` the first N.

Scales. Each image and its labels are resampled by each factor of
``--scales`` before anything runs, standing in for other magnifications:
the image with scikit-image's ``rescale`` (linear, anti-aliased when
shrinking, range preserved, rounded back to the input dtype), the labels
by nearest neighbour (order 0, no anti-aliasing). Scale 1 is the image as
stored. The group of an image (``dsb_group``) is that of its stored shape.

Pipelines, each an image -> int32 instance labels of the same shape:

- ``model``: the bundled model (``--model``, default ``nuclei``) through
  the engine on ONNX Runtime, one thread, ``--precision`` fp32 or int8,
  each image run as it is (``m.run(image, object_diameter=None)``);
- ``model+rescale``: the same with ``m.run(image, object_diameter="auto")``:
  the engine estimates the image's object diameter and, where it lies
  outside the model's range, resamples the image to the model's scale and
  the labels back (:mod:`cellrt.pipeline.scale`);
- ``classical-sized``: the scikit-image recipe a lab would write, its
  lengths taken from the image's own estimated nucleus diameter ``d``
  (:func:`estimate_diameter`, from the image alone: a median over Otsu
  components of their equivalent diameter capped at 1.4x their inscribed
  one, in two passes): gaussian smoothing (1 px), Otsu, fill holes, distance transform,
  peaks at least ``0.4 d`` apart within each component, watershed on
  ``-distance`` within the mask, objects under ``0.1 pi d^2 / 4`` pixels
  removed (:func:`classical_sized`);
- ``segment``: :func:`cellrt.kernels.segment` with its defaults;
- ``otsu+fill``: Otsu -> fill holes -> label -> drop objects under
  ``--min-area`` (the old tool's middle row);
- ``otsu+label``: plain Otsu + label, the baseline.

Metrics, per image and then per group and over all images:

- F1 at IoU 0.5 and 0.75: pooled (true/false positives and negatives summed
  over the images, then 2TP / (2TP + FP + FN)) and the mean of per-image F1;
- AP@0.5:0.95, the DSB2018 score: per image the mean over the IoU
  thresholds 0.50, 0.55, ..., 0.95 of TP / (TP + FP + FN), averaged over
  the images;
- the count error |predicted - true| / true per image, reported as the median.

A predicted object matches a true one when their IoU is above the threshold
(strictly, as :func:`cellrt.kernels.match_instances`); see :func:`match`.
Edge cases: an image with no true and no predicted objects scores F1 = AP
= 1 and count error 0; with no true objects but some predicted, F1 = AP = 0
and count error inf; with true objects but none predicted, F1 = AP = 0 and
count error 1. Pooled F1 weighs images by their objects: a few images
where a pipeline makes thousands of false objects pull it down far more
than the per-image mean.

Measured on the 113 held-out images (``--scales 1,0.5,2,3``, about 4 min
on one core; mean per-image F1@0.5 / AP@0.5:0.95 at scales 1, 0.5, 2, 3):
model 0.856/0.548, 0.833/0.481, 0.766/0.405, 0.668/0.332; classical-sized
0.840/0.510, 0.811/0.424, 0.850/0.527, 0.851/0.529; segment 0.824/0.513,
0.748/0.416, 0.811/0.479, 0.771/0.441; otsu+label 0.745/0.446,
0.758/0.414, 0.750/0.439, 0.733/0.426. The model's pooled F1@0.5 at scale
1 (0.846) is the held-out figure in its manifest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from cellrt.kernels import instances_from_mask, label, match_instances, segment, threshold
from cellrt.pipeline.scale import equivalent_diameters

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_root() -> Path:
    """The shared data root: ``$CELLRT_DATA`` when set, else ``../shared/data`` beside the project."""
    env = os.environ.get("CELLRT_DATA")
    return Path(env) if env else DEFAULT_ROOT


DEFAULT_DATA = data_root() / "dsb2018_fluo"

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))   # 0.50, 0.55, ..., 0.95
PIPELINES = ("model", "model+rescale", "classical-sized", "segment", "otsu+fill", "otsu+label")
DEFAULT_PIPELINES = PIPELINES
# overlap_pairs() counts pixel pairs with np.bincount up to a table of this many cells, else np.unique.
_BINCOUNT_CELLS = 1 << 22
# estimate_diameter(): a component's diameter is at most CLUMP_CAP x its inscribed diameter, area weights are capped
# at the AREA_WEIGHT_CAP-th percentile of the areas, and components under DEBRIS_FRACTION of the weighted estimate's
# disc are left out of the final median.
CLUMP_CAP = 1.4
AREA_WEIGHT_CAP = 90
DEBRIS_FRACTION = 0.1


def fail(message: str):
    raise SystemExit(f"eval_segmentation: {message}")


# ----------------------------------------------------------------------------------------------------------------
# Matching


def _dense(labels: np.ndarray) -> np.ndarray:
    """int64 labels >= 0, renumbered 0..N when the ids are sparse (so bincount tables stay small)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels should be integers, got {labels.dtype}")
    flat = labels.ravel().astype(np.int64, copy=False)
    if flat.size and int(flat.min()) < 0:
        raise ValueError(f"labels should be >= 0, got a smallest label of {int(flat.min())}")
    if flat.size and int(flat.max()) > flat.size:
        ids, inverse = np.unique(flat, return_inverse=True)
        return inverse.astype(np.int64) + (0 if ids[0] == 0 else 1)
    return flat


def overlap_pairs(predicted, truth) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Every (predicted, true) object pair that overlaps, with its IoU.

    Returns ``pred_ids, true_ids, iou`` (one entry per overlapping pair, ids as
    in the renumbered labels) and the number of objects present in each image.
    The intersections come from one count over the pixel pairs: ``np.bincount``
    of ``pred * (n_true + 1) + true`` when that table is small, else
    ``np.unique`` over the pixels where both are foreground.
    """
    if np.shape(predicted) != np.shape(truth):
        raise ValueError(f"shapes differ: predicted {np.shape(predicted)} vs truth {np.shape(truth)}")
    p, t = _dense(predicted), _dense(truth)
    area_p = np.bincount(p, minlength=1)
    area_t = np.bincount(t, minlength=1)
    n_pred, n_true = int(np.count_nonzero(area_p[1:])), int(np.count_nonzero(area_t[1:]))
    width = len(area_t)
    if len(area_p) * width <= _BINCOUNT_CELLS:
        table = np.bincount(p * width + t, minlength=len(area_p) * width).reshape(len(area_p), width)
        table[0, :] = 0
        table[:, 0] = 0
        pi, ti = np.nonzero(table)
        inter = table[pi, ti]
    else:
        both = (p > 0) & (t > 0)
        keys, inter = np.unique(p[both] * width + t[both], return_counts=True)
        pi, ti = keys // width, keys % width
    inter = inter.astype(np.float64)
    iou = inter / (area_p[pi] + area_t[ti] - inter)
    return pi, ti, iou, n_pred, n_true


def match(predicted, truth, thresholds=THRESHOLDS) -> dict:
    """True positives at each IoU threshold, and the object counts.

    A pair matches when its IoU is above the threshold. For thresholds >= 0.5
    matches are unique (two objects cannot both cover more than half of a
    third's union), so TP is the number of pairs above it. Lower thresholds
    match greedily, highest IoU first (ties by ids); since the greedy choice
    among pairs above a threshold never depends on pairs below it, one pass
    at the lowest threshold gives every threshold's matching as its prefix.

    Returns ``{"thresholds", "tp" (list, one per threshold), "n_pred", "n_true"}``.
    """
    thresholds = [float(v) for v in thresholds]
    if not thresholds or any(not 0 <= v < 1 for v in thresholds):
        raise ValueError(f"thresholds should be numbers in [0, 1), got {thresholds}")
    pi, ti, iou, n_pred, n_true = overlap_pairs(predicted, truth)
    lowest = min(thresholds)
    keep = iou > lowest
    pi, ti, iou = pi[keep], ti[keep], iou[keep]
    if lowest < 0.5:
        order = np.lexsort((ti, pi, -iou))
        used_p, used_t, matched = set(), set(), []
        for k in order:
            a, b = int(pi[k]), int(ti[k])
            if a not in used_p and b not in used_t:
                used_p.add(a)
                used_t.add(b)
                matched.append(iou[k])
        iou = np.asarray(matched, dtype=np.float64)
    tp = [int(np.count_nonzero(iou > v)) for v in thresholds]
    return {"thresholds": thresholds, "tp": tp, "n_pred": n_pred, "n_true": n_true}


def image_scores(m: dict) -> dict:
    """Per-image F1 and AP terms TP / (TP + FP + FN) at each threshold, AP@0.5:0.95 and the count error."""
    n_pred, n_true = m["n_pred"], m["n_true"]
    both = n_pred + n_true
    f1 = [2 * tp / both if both else 1.0 for tp in m["tp"]]
    ap_terms = [tp / (both - tp) if both else 1.0 for tp in m["tp"]]
    if n_true:
        count_error = abs(n_pred - n_true) / n_true
    else:
        count_error = 0.0 if n_pred == 0 else math.inf
    return {"f1": f1, "ap_terms": ap_terms, "ap": float(np.mean(ap_terms)), "count_error": count_error}


def _at(thresholds, value) -> int:
    for i, v in enumerate(thresholds):
        if abs(v - value) < 1e-9:
            return i
    raise ValueError(f"threshold {value} not among {thresholds}")


def aggregate(records: list[dict], thresholds=THRESHOLDS) -> dict:
    """Group metrics over per-image ``match`` results (each with ``tp``, ``n_pred``, ``n_true``)."""
    thresholds = [float(v) for v in thresholds]
    if not records:
        return {"images": 0}
    tp = np.array([r["tp"] for r in records], dtype=np.int64)          # (images, thresholds)
    n_pred = np.array([r["n_pred"] for r in records], dtype=np.int64)
    n_true = np.array([r["n_true"] for r in records], dtype=np.int64)
    scores = [image_scores(r) for r in records]
    out = {"images": len(records), "true_objects": int(n_true.sum()), "predicted_objects": int(n_pred.sum())}
    total = int(n_pred.sum() + n_true.sum())
    for value in (0.5, 0.75):
        i = _at(thresholds, value)
        key = f"{value:g}"
        s_tp = int(tp[:, i].sum())
        out[f"f1@{key}"] = 2 * s_tp / total if total else 1.0
        out[f"mean_f1@{key}"] = float(np.mean([s["f1"][i] for s in scores]))
        out[f"tp@{key}"] = s_tp
        out[f"fp@{key}"] = int(n_pred.sum()) - s_tp
        out[f"fn@{key}"] = int(n_true.sum()) - s_tp
    i = _at(thresholds, 0.5)
    # Mean per-image precision and recall at 0.5, with match_instances' conventions (1 when empty).
    out["mean_precision@0.5"] = float(np.mean([r["tp"][i] / r["n_pred"] if r["n_pred"] else 1.0 for r in records]))
    out["mean_recall@0.5"] = float(np.mean([r["tp"][i] / r["n_true"] if r["n_true"] else 1.0 for r in records]))
    out["ap@0.5:0.95"] = float(np.mean([s["ap"] for s in scores]))
    out["ap_by_threshold"] = {f"{v:g}": float(np.mean([s["ap_terms"][j] for s in scores]))
                              for j, v in enumerate(thresholds)}
    errors = np.array([s["count_error"] for s in scores], dtype=np.float64)
    out["median_count_error"] = float(np.median(errors))
    out["mean_count_error"] = float(np.mean(errors))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Resampling and the diameter


def rescale_pair(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels resampled by ``factor`` (a stand-in for another magnification); 1 returns them as they are.

    Image: linear, anti-aliased when shrinking, range preserved, rounded and
    clipped back to its dtype. Labels: nearest neighbour, no anti-aliasing.
    """
    if factor == 1:
        return image, labels
    from skimage.transform import rescale  # noqa: PLC0415

    scaled = rescale(image.astype(np.float32), factor, order=1, anti_aliasing=factor < 1, preserve_range=True,
                     mode="reflect")
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        scaled = np.clip(np.rint(scaled), info.min, info.max)
    scaled = scaled.astype(image.dtype)
    scaled_labels = rescale(labels, factor, order=0, anti_aliasing=False, preserve_range=True,
                            mode="edge").astype(labels.dtype)
    assert scaled.shape == scaled_labels.shape, (scaled.shape, scaled_labels.shape)
    return scaled, scaled_labels


def true_diameter(labels: np.ndarray) -> float:
    """Median equivalent diameter (2 sqrt(area / pi)) of the labelled objects; nan without objects."""
    diameters = equivalent_diameters(_dense(labels))
    return float(np.median(diameters)) if diameters.size else math.nan


def _otsu_components(image: np.ndarray, sigma: float):
    from scipy import ndimage as ndi  # noqa: PLC0415
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    smooth = ndi.gaussian_filter(image.astype(np.float32), sigma) if sigma > 0 else image.astype(np.float32)
    if float(smooth.min()) == float(smooth.max()):
        return smooth, np.zeros(image.shape, bool)
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    return smooth, mask


def _component_diameters(image: np.ndarray, sigma: float):
    """Per Otsu component (gaussian ``sigma``, holes filled, 4-connected, 4 px or more): its diameter, the
    equivalent one capped at CLUMP_CAP x the inscribed one, and its area; None when nothing is foreground."""
    from scipy import ndimage as ndi  # noqa: PLC0415

    _, mask = _otsu_components(image, sigma)
    components, n = ndi.label(mask)
    if n == 0:
        return None
    dist = ndi.distance_transform_edt(mask)
    # The transform counts to the centre of the nearest background pixel: a disc of diameter d peaks at ~(d+1)/2.
    inscribed = 2 * np.asarray(ndi.maximum(dist, components, np.arange(1, n + 1)), dtype=np.float64) - 1
    areas = np.bincount(components.ravel(), minlength=n + 1)[1:].astype(np.float64)
    keep = areas >= 4
    if not keep.any():
        keep[:] = True
    areas, inscribed = areas[keep], inscribed[keep]
    return np.minimum(2 * np.sqrt(areas / np.pi), CLUMP_CAP * np.maximum(inscribed, 1.0)), areas


def _capped_weighted_median(diameters: np.ndarray, areas: np.ndarray) -> float:
    """Median of the diameters weighted by area, each weight capped at the 90th percentile of the areas."""
    weights = np.minimum(areas, np.percentile(areas, AREA_WEIGHT_CAP))
    order = np.argsort(diameters, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(diameters[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def estimate_diameter(image: np.ndarray) -> float:
    """The typical nucleus diameter of an image in pixels, from the image alone (no labels).

    Components of an Otsu mask (gaussian smoothing, holes filled,
    4-connected, 4 pixels or more) each get a diameter: the equivalent
    diameter 2 sqrt(area / pi), capped at 1.4 times the inscribed diameter
    (twice the largest distance-transform value, less a pixel), so that a
    clump of touching nuclei Otsu leaves whole counts about as one nucleus.

    1. Smoothing 1 px; the median of the component diameters weighted by
       area, each weight capped at the 90th percentile of the areas: dim,
       textured nuclei that Otsu breaks into many small fragments (the
       512x640 group) then weigh little, and one large bright region
       weighs no more than a big nucleus.
    2. Smoothing max(1, d/16) px with that first estimate d (the noise and
       texture of an upsampled image are coarser, and 1 px smoothing left
       it in pieces), the capped weighted median again, then the plain
       median of the component diameters over components of at least a
       tenth of its disc (specks and fragments left out).

    Chosen on every 8th training image plus the 22 training images of the
    smaller groups (never the held-out split), at scales 0.5, 1, 2 and 3
    (resampled as in :func:`rescale_pair`): 0.995 of the true median
    equivalent diameter (median ratio), median |log ratio| 0.063 - 0.072 at
    each scale, 90th percentile 0.25. A plain median of component diameters
    did as well on most groups but fell to 4 px on the fragmented 512x640
    nuclei (|log ratio| up to 3). It fails where Otsu itself does: the
    603x1272 tissue sections, where Otsu takes in the stained background
    (none are held out). On the 113 held-out images: median |log ratio|
    0.048, 0.062, 0.045, 0.045 at scales 1, 0.5, 2, 3 (90th percentile
    0.19 - 0.24), and the estimate at scale s over that at scale 1 within
    a median 0.4 % of s at 2 and 3 (3 % at 0.5). Returns nan when nothing
    stands out of the background.
    """
    first = _component_diameters(image, 1.0)
    if first is None:
        return math.nan
    estimate = _capped_weighted_median(*first)
    diameters, areas = _component_diameters(image, max(1.0, estimate / 16))
    estimate = _capped_weighted_median(diameters, areas)
    kept = areas >= DEBRIS_FRACTION * np.pi / 4 * estimate ** 2
    return float(np.median(diameters[kept])) if kept.any() else estimate


def classical_sized(image: np.ndarray, diameter: float | None = None, *, sigma: float = 0.0,
                    min_distance: float = 0.4, min_area: float = 0.1) -> np.ndarray:
    """The scikit-image nucleus recipe, its lengths from the nucleus diameter ``d`` (estimated when None).

    gaussian of sigma max(1 px, ``sigma`` d) -> Otsu -> fill holes -> distance
    transform -> peaks at least max(1, ``min_distance`` d) apart within each
    component (``peak_local_max``; a component left without one is seeded at
    its deepest pixel) -> watershed of -distance from the peaks within the
    mask -> objects under ``min_area`` pi d^2 / 4 pixels removed -> int32
    labels 1..N.

    The fractions were chosen on every 8th training image (never the
    held-out split) at scales 0.5, 1 and 2, by F1 at IoU 0.5 and AP: peaks
    0.4 d apart (1/4 d over-splits, 0.53 -> 0.47 AP at scale 1; 1/2 d merges
    at scale 2); smoothing that grows with d lowered AP (d/12: 0.527 -> 0.487
    at scale 1, d/6: 0.39), so smoothing stays at 1 px; the smallest object
    (0.05 - 0.3 of the disc) changed little.
    """
    from scipy import ndimage as ndi  # noqa: PLC0415
    from skimage.feature import peak_local_max  # noqa: PLC0415
    from skimage.segmentation import watershed  # noqa: PLC0415

    if diameter is None:
        diameter = estimate_diameter(image)
    if not math.isfinite(diameter):
        return np.zeros(image.shape, np.int32)
    _, mask = _otsu_components(image, max(1.0, sigma * diameter))
    components, n = ndi.label(mask)
    if n == 0:
        return np.zeros(image.shape, np.int32)
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    peaks = peak_local_max(dist, min_distance=max(1, int(round(min_distance * diameter))), labels=components,
                           exclude_border=False)
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A component without a peak (a plateau peak_local_max dropped) keeps one seed at its deepest pixel.
    seeded = np.zeros(n + 1, bool)
    seeded[components[tuple(peaks.T)]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if missing.size:
        at = ndi.maximum_position(dist, components, missing)
        for k, pos in enumerate(at):
            markers[pos] = len(peaks) + 1 + k
    labels = watershed(-dist, markers, mask=mask)
    areas = np.bincount(labels.ravel())
    small = areas < min_area * np.pi / 4 * diameter ** 2
    small[0] = False
    keep = ~small
    keep[0] = True
    remap = np.where(keep, np.cumsum(keep) - 1, 0).astype(np.int32)
    return remap[labels]


# ----------------------------------------------------------------------------------------------------------------
# Pipelines


def otsu_label(image: np.ndarray) -> np.ndarray:
    return label(image > threshold(image, "otsu"))[0]


def otsu_fill(image: np.ndarray, min_area: int = 10) -> np.ndarray:
    return instances_from_mask(image > threshold(image, "otsu"), min_area=min_area)[0]


def load_engine_model(name: str, precision: str):
    import cellrt  # noqa: PLC0415

    try:
        return cellrt.load_model(name, backend="ort", threads=1, precision=precision)
    except Exception as error:   # a missing model, or INT8 refused on this CPU: say which and stop
        fail(f"cannot load model {name!r} at precision {precision}: {type(error).__name__}: {error}")


def make_pipelines(names, *, model: str = "nuclei", precision: str = "fp32", min_area: int = 10):
    """``{name: fn(image, diameter) -> labels}`` for the pipelines named.

    ``diameter`` is the image's :func:`estimate_diameter`, computed once per
    image and scale by the caller; only ``classical-sized`` uses it.
    """
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        fail(f"unknown pipelines {unknown}; choose from {', '.join(PIPELINES)}")
    pipelines = {}
    engine = load_engine_model(model, precision) if {"model", "model+rescale"} & set(names) else None
    for name in names:
        if name == "model":
            pipelines[name] = lambda image, d: engine.run(image, object_diameter=None).labels
        elif name == "model+rescale":
            pipelines[name] = lambda image, d: engine.run(image, object_diameter="auto").labels
        elif name == "classical-sized":
            pipelines[name] = lambda image, d: classical_sized(image, d)
        elif name == "segment":
            pipelines[name] = lambda image, d: segment(image)[0]
        elif name == "otsu+fill":
            pipelines[name] = lambda image, d: otsu_fill(image, min_area)
        elif name == "otsu+label":
            pipelines[name] = lambda image, d: otsu_label(image)
    return pipelines


# ----------------------------------------------------------------------------------------------------------------
# Data


def image_ids(data: Path, split: str) -> list[str]:
    from cellrt.training.data import dsb_ids  # noqa: PLC0415

    if not (data / "images").is_dir() or not (data / "labels").is_dir():
        fail(f"no dsb2018_fluo data at {data} (expected images/ and labels/ there; set CELLRT_DATA to the data "
             f"root holding dsb2018_fluo/, or pass --data)")
    if split == "held-out":
        ids = dsb_ids(data, held_out=True)
    elif split == "all":
        ids = sorted(p.stem for p in (data / "images").glob("*.tif"))
    else:
        fail(f"--split should be held-out or all, got {split!r}")
    if not ids:
        fail(f"no images under {data / 'images'}")
    return ids


def read_pair(data: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """An image and its labels, checked: a 2-D image, integer labels of the same shape."""
    image_path, label_path = data / "images" / f"{image_id}.tif", data / "labels" / f"{image_id}.tif"
    for path in (image_path, label_path):
        if not path.is_file():
            fail(f"{path}: missing")
    image = tifffile.imread(image_path)
    if image.ndim != 2:
        fail(f"{image_path}: expected a 2-D image, got shape {image.shape}")
    truth = tifffile.imread(label_path)
    if truth.shape != image.shape:
        fail(f"{label_path}: labels of shape {truth.shape} for an image of shape {image.shape} ({image_path.name})")
    if truth.dtype.kind not in "iu":
        fail(f"{label_path}: labels should be integers, got {truth.dtype}")
    return image, truth


def parse_scales(text: str) -> list[float]:
    try:
        scales = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"--scales should be comma-separated numbers, got {text!r}")
    if not scales or any(not (math.isfinite(s) and s > 0) for s in scales):
        fail(f"--scales should be positive numbers, got {text!r}")
    return scales


def scale_key(scale: float) -> str:
    return f"{scale:g}"


# ----------------------------------------------------------------------------------------------------------------
# The evaluation


def evaluate_scales(data: Path, *, split: str = "held-out", scales=(1.0,), every: int = 1,
                    max_images: int | None = None, pipelines=DEFAULT_PIPELINES, model: str = "nuclei",
                    precision: str = "fp32", min_area: int = 10, progress=None) -> dict:
    """Every pipeline on every selected image at every scale: per-image records and their summaries."""
    from cellrt.training.data import dsb_group  # noqa: PLC0415

    if every < 1:
        fail(f"--every should be >= 1, got {every}")
    ids = image_ids(Path(data), split)[::every]
    if max_images is not None:
        ids = ids[:max_images]
    runs = make_pipelines(list(pipelines), model=model, precision=precision, min_area=min_area)
    per_image, seconds = [], {name: {scale_key(s): 0.0 for s in scales} for name in runs}
    started = time.perf_counter()
    for index, image_id in enumerate(ids):
        image, truth = read_pair(Path(data), image_id)
        group = dsb_group(image.shape)
        for scale in scales:
            scaled, scaled_truth = rescale_pair(image, truth, scale)
            t0 = time.perf_counter()
            diameter = estimate_diameter(scaled)
            diameter_seconds = time.perf_counter() - t0
            record = {"id": image_id, "group": group, "scale": scale, "shape": list(scaled.shape),
                      "true_diameter": true_diameter(scaled_truth), "estimated_diameter": diameter,
                      "results": {}}
            for name, fn in runs.items():
                t0 = time.perf_counter()
                predicted = np.asarray(fn(scaled, diameter))
                elapsed = time.perf_counter() - t0
                if name == "classical-sized":
                    elapsed += diameter_seconds
                seconds[name][scale_key(scale)] += elapsed
                if predicted.shape != scaled.shape:
                    fail(f"pipeline {name} returned labels of shape {predicted.shape} for {image_id} at scale "
                         f"{scale:g} (image {scaled.shape})")
                result = match(predicted, scaled_truth)
                result.pop("thresholds")
                record["results"][name] = result
            per_image.append(record)
        if progress:
            progress(f"{index + 1}/{len(ids)} images, {time.perf_counter() - started:.0f} s")
    summary = {}
    for name in runs:
        summary[name] = {}
        for scale in scales:
            rows = [r for r in per_image if r["scale"] == scale]
            groups = sorted({r["group"] for r in rows}, key=_group_order)
            summary[name][scale_key(scale)] = {
                "all": aggregate([r["results"][name] for r in rows]),
                "groups": {g: aggregate([r["results"][name] for r in rows if r["group"] == g]) for g in groups},
            }
    return {"data": str(data), "split": split, "every": every, "max_images": max_images,
            "scales": [scale_key(s) for s in scales], "images": len(ids), "image_ids": ids,
            "pipelines": list(runs), "model": model, "precision": precision,
            "thresholds": list(THRESHOLDS), "summary": summary, "diameter": diameter_tracking(per_image, scales),
            "seconds": seconds, "wall_seconds": time.perf_counter() - started, "per_image": per_image}


def _group_order(group: str):
    h, w = (int(v) for v in group.split("x"))
    return (h * w, h)


def diameter_tracking(per_image: list[dict], scales) -> dict:
    """How well estimate_diameter follows the true median equivalent diameter: |log(estimate / true)| per
    image (median and 90th percentile, and the median signed log ratio), per scale and per group; and how the
    estimate follows the scale itself: log(estimate at s / estimate at 1) - log(s)."""
    out = {}
    at_one = {r["id"]: r["estimated_diameter"] for r in per_image if r["scale"] == 1}
    for scale in scales:
        rows = [r for r in per_image if r["scale"] == scale]

        def stats(subset):
            ratios = np.array([math.log(r["estimated_diameter"] / r["true_diameter"]) for r in subset
                               if math.isfinite(r["estimated_diameter"]) and math.isfinite(r["true_diameter"])
                               and r["estimated_diameter"] > 0 and r["true_diameter"] > 0])
            if not ratios.size:
                return {"images": 0}
            return {"images": int(ratios.size), "median_abs_log_ratio": float(np.median(np.abs(ratios))),
                    "p90_abs_log_ratio": float(np.percentile(np.abs(ratios), 90)),
                    "median_log_ratio": float(np.median(ratios)),
                    "median_true_diameter": float(np.median([r["true_diameter"] for r in subset])),
                    "median_estimated_diameter": float(np.nanmedian([r["estimated_diameter"] for r in subset]))}

        entry = stats(rows)
        entry["no_estimate"] = sum(1 for r in rows if not math.isfinite(r["estimated_diameter"]))
        follow = [math.log(r["estimated_diameter"] / at_one[r["id"]]) - math.log(scale) for r in rows
                  if r["id"] in at_one and at_one[r["id"]] > 0 and math.isfinite(at_one[r["id"]])
                  and math.isfinite(r["estimated_diameter"]) and r["estimated_diameter"] > 0]
        if follow:
            entry["median_abs_log_scale_error"] = float(np.median(np.abs(follow)))
        entry["groups"] = {g: stats([r for r in rows if r["group"] == g])
                           for g in sorted({r["group"] for r in rows}, key=_group_order)}
        out[scale_key(scale)] = entry
    return out


COLUMNS = (("F1@0.5", "f1@0.5"), ("F1@0.75", "f1@0.75"), ("mF1@0.5", "mean_f1@0.5"), ("mF1@0.75", "mean_f1@0.75"),
           ("AP@.5:.95", "ap@0.5:0.95"), ("cnt err", "median_count_error"))


def _row(label: str, metrics: dict, width: int) -> str:
    cells = "".join(f"{metrics[key]:>{max(9, len(head)) + 2}.3f}" for head, key in COLUMNS)
    return f"{label:<{width}}{cells}{metrics['images']:>8d}"


def _header(first: str, width: int) -> str:
    return f"{first:<{width}}" + "".join(f"{head:>{max(9, len(head)) + 2}}" for head, _ in COLUMNS) + f"{'images':>8}"


def format_tables(result: dict) -> str:
    lines = [f"{result['images']} images ({result['split']}, every {result['every']}), scales "
             f"{', '.join(result['scales'])}; F1 pooled over objects, mF1 the mean of per-image F1, "
             f"AP the DSB2018 mean over IoU 0.50:0.05:0.95, cnt err the median |pred - true| / true", ""]
    width = 28
    lines.append(_header("pipeline @ scale", width))
    for name, by_scale in result["summary"].items():
        for scale in result["scales"]:
            lines.append(_row(f"{name} @ {scale}", by_scale[scale]["all"], width))
    first = "1" if "1" in result["scales"] else result["scales"][0]
    lines += ["", f"per group at scale {first}:", _header("pipeline / group", width)]
    for name, by_scale in result["summary"].items():
        for group, metrics in by_scale[first]["groups"].items():
            lines.append(_row(f"{name} / {group}", metrics, width))
    lines += ["", "F1@0.5 / AP@0.5:0.95 per group and scale:",
              f"{'pipeline / group':<{width}}" + "".join(f"{'x' + sc:>14}" for sc in result["scales"])]
    for name, by_scale in result["summary"].items():
        for group in by_scale[first]["groups"]:
            cells = "".join(f"{by_scale[sc]['groups'][group]['f1@0.5']:>8.3f}/{by_scale[sc]['groups'][group]['ap@0.5:0.95']:.3f}"
                            for sc in result["scales"])
            lines.append(f"{name + ' / ' + group:<{width}}{cells}")
    lines += ["", "classical-sized diameter estimate vs the true median equivalent diameter "
                  "(|log ratio|: median, 90th percentile; signed median; follows scale: median |log(d_s/d_1) - log s|):"]
    for scale, entry in result["diameter"].items():
        if entry.get("images"):
            lines.append(f"  scale {scale:>4}: median |log| {entry['median_abs_log_ratio']:.3f}, p90 "
                         f"{entry['p90_abs_log_ratio']:.3f}, signed {entry['median_log_ratio']:+.3f}, follows scale "
                         f"{entry.get('median_abs_log_scale_error', math.nan):.3f} (true median "
                         f"{entry['median_true_diameter']:.1f} px, estimated {entry['median_estimated_diameter']:.1f})"
                         + (f"; no estimate (nothing above Otsu) on {entry['no_estimate']} images, where "
                            f"classical-sized predicts nothing" if entry["no_estimate"] else ""))
    lines += ["", "seconds per pipeline and scale: " + "; ".join(
        f"{name} " + " ".join(f"{s}:{v:.0f}" for s, v in by_scale.items()) for name, by_scale in result["seconds"].items())
        + f"; wall {result['wall_seconds']:.0f} s"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# The rows this tool printed before (kept: tests/test_segment.py holds segment() to them)


def evaluate(data: Path, every: int = 1, min_area: int = 10) -> dict:
    """The old rows: mean per-image F1, precision and recall at IoU 0.5 (match_instances) of segment,
    otsu+fill and otsu+label on every ``every``-th of all dsb2018_fluo images (sorted by label file name)."""
    paths = sorted((Path(data) / "labels").glob("*.tif"))[::every]
    if not paths:
        fail(f"no labels under {Path(data) / 'labels'} (set CELLRT_DATA to the data root holding dsb2018_fluo/)")
    rows = {"segment": [], "otsu+fill": [], "otsu+label": []}
    for path in paths:
        image, truth = read_pair(Path(data), path.stem)
        rows["otsu+fill"].append(match_instances(otsu_fill(image, min_area), truth))
        rows["segment"].append(match_instances(segment(image)[0], truth))
        rows["otsu+label"].append(match_instances(otsu_label(image), truth))
    summary = {"images": len(paths), "min_area": min_area}
    for name, results in rows.items():
        summary[name] = {k: float(np.mean([r[k] for r in results])) for k in ("f1", "precision", "recall")}
    return summary


def rows_order() -> tuple[str, ...]:
    return ("segment", "otsu+fill", "otsu+label")


def _json_safe(value):
    """Strict JSON: nan -> null, inf -> "inf" (a count error with no true objects), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="the dsb2018_fluo folder (default: $CELLRT_DATA/dsb2018_fluo, else ../shared/data/...)")
    parser.add_argument("--split", default="held-out", choices=("held-out", "all"))
    parser.add_argument("--scales", default="1,0.5,2,3", help="comma-separated resampling factors (1: as stored)")
    parser.add_argument("--every", type=int, default=1, help="use every k-th image of the split")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--pipelines", default=",".join(DEFAULT_PIPELINES),
                        help=f"comma-separated, from {', '.join(PIPELINES)}")
    parser.add_argument("--model", default="nuclei", help="a bundled model name or a model folder")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    parser.add_argument("--min-area", type=int, default=10, help="otsu+fill's smallest object")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--legacy", action="store_true",
                        help="print the old rows instead (segment, otsu+fill, otsu+label: mean F1, precision, "
                             "recall at IoU 0.5 over every k-th of all images)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    data = args.data if args.data is not None else data_root() / "dsb2018_fluo"
    if not data.is_dir():
        fail(f"no dsb2018_fluo data at {data} (set CELLRT_DATA to the data root holding dsb2018_fluo/, or pass "
             f"--data; see shared/data/README.md)")
    if args.legacy:
        summary = evaluate(data, args.every, args.min_area)
        for name in rows_order():
            s = summary[name]
            print(f"{name:<10} F1@0.5 {s['f1']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
                  f"  ({summary['images']} images)")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        return 0
    if args.max_images is not None and args.max_images < 1:
        fail(f"--max-images should be >= 1, got {args.max_images}")
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    progress = None if args.quiet else (lambda text: print(f"eval_segmentation: {text}", file=sys.stderr, flush=True))
    result = evaluate_scales(data, split=args.split, scales=parse_scales(args.scales), every=args.every,
                             max_images=args.max_images, pipelines=names, model=args.model, precision=args.precision,
                             min_area=args.min_area, progress=progress)
    result["command"] = " ".join([Path(sys.argv[0]).name if argv is None else "eval_segmentation.py",
                                  *(sys.argv[1:] if argv is None else argv)])
    print(format_tables(result))
    if args.json:
        args.json.write_text(json.dumps(_json_safe(result), indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
