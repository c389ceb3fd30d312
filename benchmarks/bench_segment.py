"""label + measure, and the whole segmentation chain, on a 2048x2048 16-bit
field tiled from real nuclei, side by side with OpenCV and scikit-image.

Part 1, label + measure: cellrt label + measure (intensities included) vs
OpenCV's connectedComponentsWithStats (which computes no intensities) vs
scikit-image's label + regionprops_table.

Part 2, the chain: Otsu threshold, fill holes, opening (3x3), label,
measurements and outer contours. cellrt: threshold, fill_holes,
binary_opening, label, measure (with perimeter from contours) and contours.
OpenCV: threshold at the same Otsu value, morphologyEx(OPEN),
connectedComponentsWithStats, findContours(RETR_EXTERNAL) (no hole
filling, no intensities: less work). scikit-image + scipy: threshold_otsu,
binary_fill_holes, binary_opening, label, regionprops_table with
intensities and perimeter.

Part 3, opening by a disk of radius 2 (scikit-image's disk(2) as the
footprint for all three, results checked equal first): cellrt
binary_opening (C++ and numba) vs OpenCV morphologyEx(MORPH_OPEN) vs
scikit-image opening.

Part 4, touching objects split by shape on the Otsu mask: cellrt
split_touching (h = 1: distance transform, h-maxima seeds, watershed; C++
and numba) vs scikit-image + scipy (distance_transform_edt, h_maxima,
label, watershed with the mask). The same recipe; scikit-image's h_maxima
marks a dome's equal maxima that are not 8-connected as separate patches,
so it seeds a few more objects (the counts are printed).

Part 5, local threshold with blocks of 35 and 101 pixels on the field (as
float32): cellrt threshold_local 'mean' (integral sums), 'gaussian'
(separable taps, O(sigma) a pixel) and 'gaussian_recursive' (recursive,
O(1) a pixel; within ~6.5e-4 of the image's largest value of 'gaussian')
vs OpenCV GaussianBlur (float32, the same sigma (block - 1) / 6 and
radius, BORDER_REFLECT) and scikit-image threshold_local('gaussian').

Part 7, Otsu on a float32 field (the field scaled to [0, 1], as `segment`
thresholds a normalised model output): cellrt threshold (C++ histogram on
numpy.histogram's 256 bins, then Otsu) vs numpy.histogram + the same Otsu
(cellrt's path before the kernel) vs scikit-image threshold_otsu (the same
bins; its result checked equal). No OpenCV twin: its Otsu takes 8/16-bit
images only.

The field: the densest dsb2018_fluo images tiled into a 2048x2048 uint16
field (scaled from 8 bits; `--field windows`: their densest 64x64 windows,
~8,000 objects), foreground = Otsu threshold (scikit-image's, computed once,
not timed). cellrt computes labels plus area, bbox, centroid, axes and
intensity total/mean/std/min/max; OpenCV computes labels plus area, bbox and
centroid only; scikit-image computes the same table as cellrt. Areas and
centroids are checked equal across all three.

    python benchmarks/bench_segment.py [--side 2048] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, note, set_threads, time_interleaved, write_record  # noqa: E402

from cellrt.kernels import (available_backends, binary_opening, contours, fill_holes, label,  # noqa: E402
                            measure, remove_small_objects, split_touching, threshold, threshold_local)

THREADS = 2
DATA = Path(os.environ.get("CELLRT_SHARED_DATA")
            or Path(__file__).resolve().parents[2] / "shared" / "data") / "dsb2018_fluo" / "images"


def nuclei_field(side: int) -> np.ndarray:
    """The densest dark-background 256^2 dsb2018 images (most Otsu objects first) tiled into one field:
    the crowded fields a screen images (64 images give ~3,500 objects; the set has no denser ones)."""
    candidates = []
    for path in sorted(DATA.glob("*.tif")):
        img = tifffile.imread(path)
        if img.ndim == 2 and img.shape == (256, 256) and img.mean() < 60:  # dark-background fluorescence
            candidates.append((-label(img > threshold(img, "otsu"))[1], path.name, img))
    candidates.sort(key=lambda c: c[:2])
    tiles = [img for _, _, img in candidates[:(side // 256) ** 2]]
    per_row = side // 256
    rows = [np.hstack(tiles[r * per_row:(r + 1) * per_row]) for r in range(per_row)]
    return (np.vstack(rows).astype(np.uint16) * 257)[:side, :side]


def dense_windows_field(side: int, window: int = 64) -> np.ndarray:
    """The most crowded 64^2 windows of the dark-background dsb2018 images (objects the window
    holds pixels of, after each image's own Otsu), tiled into one field, each window scaled so
    that its image's Otsu threshold lands on one level (the field then thresholds as each image
    does alone): ~8,000 objects at 2048^2, the density issue 3 quotes (~7,500). Nuclei cut at a
    window's edge stay objects, as at a real field's border."""
    candidates = []
    for path in sorted(DATA.glob("*.tif")):
        img = tifffile.imread(path)
        if img.ndim != 2 or img.mean() >= 60 or min(img.shape) < window:
            continue
        level = threshold(img, "otsu")
        labels, _ = label(img > level)
        for y in range(0, img.shape[0] - window + 1, window):
            for x in range(0, img.shape[1] - window + 1, window):
                inside = np.unique(labels[y:y + window, x:x + window])
                crop = img[y:y + window, x:x + window].astype(np.float32) * (100.0 / max(level, 1.0))
                candidates.append((-(len(inside) - (inside[0] == 0)), path.name, y, x, np.clip(crop, 0, 255)))
    candidates.sort(key=lambda c: c[:4])
    per_row = side // window
    tiles = [c[4] for c in candidates[:per_row ** 2]]
    rows = [np.hstack(tiles[r * per_row:(r + 1) * per_row]) for r in range(per_row)]
    return (np.vstack(rows) * 257).astype(np.uint16)[:side, :side]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--field", choices=["images", "windows"], default="images",
                        help="whole densest images (~3,600 objects at 2048^2) or the densest 64^2 "
                             "windows (~8,000)")
    args = parser.parse_args()
    set_threads(THREADS)
    if not DATA.is_dir():
        note(f"real data not found at {DATA}")
        return 1
    import cv2
    from skimage.filters import threshold_otsu
    from skimage.measure import label as sk_label
    from skimage.measure import regionprops_table

    cv2.setNumThreads(THREADS)
    field = nuclei_field(args.side) if args.field == "images" else dense_windows_field(args.side)
    mask = (field > threshold_otsu(field)).astype(np.uint8)
    props = ("label", "area", "bbox", "centroid", "axis_major_length", "axis_minor_length", "eccentricity",
             "intensity_mean", "intensity_min", "intensity_max", "intensity_std")

    contenders = {}
    for backend in [b for b in available_backends() if b != "cuda"]:
        contenders[f"cellrt {backend} label+measure"] = (
            lambda backend=backend: measure(label(mask, 8, backend=backend, num_threads=THREADS)[0], field,
                                            backend=backend, num_threads=THREADS))
    contenders["OpenCV connectedComponentsWithStats"] = lambda: cv2.connectedComponentsWithStats(
        mask, connectivity=8, ltype=cv2.CV_32S)
    contenders["scikit-image label+regionprops_table"] = lambda: regionprops_table(
        sk_label(mask, connectivity=2), field, properties=props)

    ref = measure(label(mask, 8)[0], field)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    if n - 1 != len(ref["AreaShape_Area"]) or sorted(stats[1:, 4]) != sorted(ref["AreaShape_Area"].tolist()):
        raise SystemExit("OpenCV and cellrt disagree on the objects")
    sk = regionprops_table(sk_label(mask, connectivity=2), field, properties=props)
    if not np.allclose(sk["intensity_mean"], ref["Intensity_MeanIntensity_ch0"]):
        raise SystemExit("scikit-image and cellrt disagree on mean intensities")
    note(f"{args.side}x{args.side} field, {n - 1} objects, {mask.mean():.1%} foreground")

    import scipy.ndimage as ndi

    def cellrt_chain():
        m = fill_holes(field > threshold(field, "otsu"))
        m = binary_opening(m, 1, "square")
        labels, _ = label(m, 8, num_threads=THREADS)
        return measure(labels, field, num_threads=THREADS), contours(labels, num_threads=THREADS)

    def opencv_chain():
        m = (field > threshold_otsu(field)).astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
        return cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)

    def skimage_chain():
        m = ndi.binary_fill_holes(field > threshold_otsu(field))
        m = ndi.binary_opening(m, np.ones((3, 3), bool), border_value=1)
        return regionprops_table(sk_label(m, connectivity=2), field, properties=props + ("perimeter",))

    chains = {"cellrt chain": cellrt_chain, "OpenCV chain": opencv_chain, "scikit-image chain": skimage_chain}

    # Part 3: opening by a disk of radius 2 (the same footprint everywhere; results checked equal).
    from skimage.morphology import opening as sk_opening
    from skimage.morphology import disk
    footprint = disk(2).astype(np.uint8)
    reference = binary_opening(mask, 2, "disk", backend="cpu", num_threads=THREADS)
    if not (np.array_equal(cv2.morphologyEx(mask, cv2.MORPH_OPEN, footprint).view(bool), reference)
            and np.array_equal(sk_opening(mask.view(bool), footprint.view(bool)), reference)):
        raise SystemExit("OpenCV, scikit-image and cellrt disagree on the opening")
    openings = {f"cellrt {backend} opening (disk r=2)": (
        lambda backend=backend: binary_opening(mask, 2, "disk", backend=backend, num_threads=THREADS))
        for backend in available_backends() if backend != "cuda"}
    openings["OpenCV morphologyEx(OPEN)"] = lambda: cv2.morphologyEx(mask, cv2.MORPH_OPEN, footprint)
    openings["scikit-image opening"] = lambda: sk_opening(mask.view(bool), footprint.view(bool))

    # Part 4: split touching objects by shape (the same recipe on both sides).
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed as sk_watershed

    def skimage_split():
        distance = ndi.distance_transform_edt(mask)
        markers, _ = ndi.label(h_maxima(distance, 1.0), np.ones((3, 3)))
        return sk_watershed(-distance, markers, mask=mask.view(bool))

    splits = {f"cellrt {backend} split_touching": (lambda backend=backend: split_touching(mask, h=1.0,
                                                                                          backend=backend))
              for backend in available_backends() if backend != "cuda"}
    splits["scikit-image distance+h_maxima+watershed"] = skimage_split
    split_counts = {"cellrt": split_touching(mask, h=1.0)[1], "scikit-image": int(skimage_split().max())}
    note(f"split touching: {split_counts['cellrt']} objects (cellrt), {split_counts['scikit-image']} "
         f"(scikit-image), {n - 1} connected components")

    # Part 5: local thresholds, cost against block size (sigma = (block - 1) / 6, as scikit-image).
    from skimage.filters import threshold_local as sk_threshold_local
    field_float = field.astype(np.float32)
    locals_by_block = {}
    for block in (35, 101):
        sigma = (block - 1) / 6.0
        ksize = 2 * int(4.0 * sigma + 0.5) + 1   # scipy's (and cellrt's gaussian) truncation at 4 sigma
        group = {f"cellrt threshold_local {method} (block {block})": (
            lambda method=method, block=block: threshold_local(field_float, block, method, num_threads=THREADS))
            for method in ("mean", "gaussian", "gaussian_recursive")}
        group[f"OpenCV GaussianBlur (block {block})"] = (
            lambda sigma=sigma, ksize=ksize: cv2.GaussianBlur(field_float, (ksize, ksize), sigma,
                                                              borderType=cv2.BORDER_REFLECT))
        group[f"scikit-image threshold_local gaussian (block {block})"] = (
            lambda block=block: sk_threshold_local(field_float, block, "gaussian"))
        locals_by_block[block] = group
    recursive_error = float(np.abs(threshold_local(field_float, 101, "gaussian_recursive")
                                   - threshold_local(field_float, 101, "gaussian")).max() / field_float.max())
    note(f"local threshold, block 101: gaussian_recursive within {recursive_error:.1e} of the field's largest "
         f"value of gaussian")
    local_thresholds = {name: fn for group in locals_by_block.values() for name, fn in group.items()}

    # Part 6: drop objects below 20 pixels and renumber (results checked equal).
    from skimage.morphology import remove_small_objects as sk_remove_small
    from skimage.segmentation import relabel_sequential

    from cellrt.kernels.objects import _remove_small_whole_array

    field_labels = label(mask, 8)[0]
    kept, kept_count = remove_small_objects(field_labels, 20, num_threads=THREADS)
    if not np.array_equal(relabel_sequential(sk_remove_small(field_labels, max_size=19))[0], kept):
        raise SystemExit("scikit-image and cellrt disagree on the objects kept")
    removals = {f"cellrt {backend} remove_small_objects": (
        lambda backend=backend: remove_small_objects(field_labels, 20, backend=backend, num_threads=THREADS))
        for backend in available_backends() if backend != "cuda"}
    removals["numpy bincount + cumsum + gather (cellrt's GPU steps)"] = lambda: _remove_small_whole_array(
        field_labels, 20)
    removals["scikit-image remove_small_objects + relabel_sequential"] = lambda: relabel_sequential(
        sk_remove_small(field_labels, max_size=19))
    note(f"remove_small_objects: {kept_count} of {n - 1} objects have 20 pixels or more")

    # Part 7: Otsu of a float32 field (results checked equal).
    from cellrt.kernels.threshold import otsu_from_histogram

    field_unit = field.astype(np.float32) / np.float32(field.max())
    ours, theirs = threshold(field_unit, "otsu"), float(threshold_otsu(field_unit, nbins=256))
    if abs(ours - theirs) > 1e-6 * abs(theirs):   # the same bin centre, summed in another order
        raise SystemExit(f"scikit-image and cellrt disagree on the float Otsu threshold: {ours} vs {theirs}")

    def numpy_histogram_otsu():
        counts, edges = np.histogram(field_unit, bins=256, range=(float(field_unit.min()), float(field_unit.max())))
        return otsu_from_histogram(counts, (edges[:-1] + edges[1:]) / 2)
    float_otsus = {"cellrt threshold otsu (float32)": lambda: threshold(field_unit, "otsu"),
                   "numpy.histogram + Otsu (float32)": numpy_histogram_otsu,
                   "scikit-image threshold_otsu (float32)": lambda: threshold_otsu(field_unit, nbins=256)}

    timings = time_interleaved({**contenders, **chains, **openings, **splits, **local_thresholds,
                                **removals, **float_otsus}, args.repeats)
    cv_ms = timings["OpenCV connectedComponentsWithStats"]["median_ms"]
    sk_ms = timings["scikit-image label+regionprops_table"]["median_ms"]
    rows, records = [], []
    for name, t in timings.items():
        if name in chains:
            cv_ms, sk_ms = timings["OpenCV chain"]["median_ms"], timings["scikit-image chain"]["median_ms"]
        if name in openings:
            cv_ms = timings["OpenCV morphologyEx(OPEN)"]["median_ms"]
            sk_ms = timings["scikit-image opening"]["median_ms"]
        if name in local_thresholds:
            block = next(b for b, group in locals_by_block.items() if name in group)
            cv_ms = timings[f"OpenCV GaussianBlur (block {block})"]["median_ms"]
            sk_ms = timings[f"scikit-image threshold_local gaussian (block {block})"]["median_ms"]
        if name in splits:
            cv_ms, sk_ms = None, timings["scikit-image distance+h_maxima+watershed"]["median_ms"]   # no OpenCV twin
        if name in removals:
            cv_ms = None
            sk_ms = timings["scikit-image remove_small_objects + relabel_sequential"]["median_ms"]
        if name in float_otsus:
            cv_ms, sk_ms = None, timings["scikit-image threshold_otsu (float32)"]["median_ms"]
        rec = {"name": name, **t, "objects": int(n - 1), "vs_opencv": cv_ms / t["median_ms"] if cv_ms else None,
               "vs_skimage": sk_ms / t["median_ms"]}
        records.append(rec)
        rows.append([name, t["median_ms"], t["min_ms"], "–" if rec["vs_opencv"] is None else rec["vs_opencv"],
                     rec["vs_skimage"]])
    table = markdown_table(["contender", "median ms", "min ms", "speed-up vs OpenCV", "speed-up vs scikit-image"],
                           rows)
    print(table)
    path = write_record("bench_segment", {"benchmark": "bench_segment", "side": args.side, "field": args.field,
                                          "threads": THREADS,
                                          "objects": int(n - 1), "split_objects": split_counts,
                                          "machine": machine(), "results": records,
                                          "table": table})
    note(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
