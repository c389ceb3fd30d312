"""label and measure against OpenCV and scikit-image, on real and adversarial masks."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellrt.kernels import feature_names, label, measure

from .conftest import HOST_BACKENDS

cv2 = pytest.importorskip("cv2", reason="OpenCV is the reference for labelling (pip install '.[test]')")
skm = pytest.importorskip("skimage.measure", reason="scikit-image is the reference for measurements")


def spiral(n: int) -> np.ndarray:
    m = np.zeros((n, n), np.uint8)
    y, x, dy, dx = 0, 0, 0, 1
    lo, hi = 0, n - 1
    while lo <= hi:
        m[lo, lo:hi + 1] = m[lo:hi + 1, hi] = 1
        m[hi, lo + 2:hi + 1] = 1
        m[lo + 2:hi + 1, lo] = 1
        lo, hi = lo + 2, hi - 2
    return m


def adversarial_masks():
    rng = np.random.default_rng(7)
    checker = (np.indices((37, 41)).sum(axis=0) % 2).astype(np.uint8)
    borders = np.zeros((30, 30), np.uint8)
    borders[0, :] = borders[-1, :] = borders[:, 0] = borders[:, -1] = 1
    borders[5:25, 5] = 1
    one = np.zeros((9, 9), np.uint8)
    one[4, 4] = 1
    return {
        "empty": np.zeros((16, 23), np.uint8),
        "full": np.ones((19, 17), np.uint8),
        "one_pixel": one,
        "corner_pixel": np.pad(np.ones((1, 1), np.uint8), ((0, 5), (6, 0))),
        "checkerboard": checker,
        "spiral": spiral(45),
        "touching_borders": borders,
        "random_sparse": (rng.random((257, 300)) > 0.8).astype(np.uint8),
        "random_dense": (rng.random((300, 257)) > 0.45).astype(np.uint8),
        "single_row": (rng.random((1, 200)) > 0.5).astype(np.uint8),
        "single_column": (rng.random((200, 1)) > 0.5).astype(np.uint8),
        "tall_strips": (rng.random((600, 31)) > 0.4).astype(np.uint8),  # many CPU strips, seams everywhere
    }


def reference_labels(mask, connectivity):
    """skimage and OpenCV's pixel-raster algorithm agree with each other; both are checked."""
    sk = skm.label(mask > 0, connectivity=1 if connectivity == 4 else 2).astype(np.int32)
    _, cv = cv2.connectedComponentsWithAlgorithm(mask.astype(np.uint8), connectivity, cv2.CV_32S, cv2.CCL_WU)
    np.testing.assert_array_equal(sk, cv)
    return sk


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("name", list(adversarial_masks()))
def test_label_matches_opencv_and_skimage(backend, connectivity, name):
    mask = adversarial_masks()[name]
    labels, count = label(mask, connectivity, backend=backend)
    want = reference_labels(mask, connectivity)
    np.testing.assert_array_equal(labels, want)
    assert count == want.max()


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_label_does_not_depend_on_thread_count(threads):
    mask = adversarial_masks()["tall_strips"]
    ref, n = label(mask, 8, num_threads=1, backend="cpu")
    got, m = label(mask, 8, num_threads=threads, backend="cpu")
    assert n == m
    np.testing.assert_array_equal(got, ref)


def test_label_partition_equals_opencv_default_algorithm():
    # OpenCV's default 8-connected algorithm scans 2x2 blocks and numbers
    # components in block order: the same partition, numbered differently.
    mask = adversarial_masks()["random_dense"]
    labels, count = label(mask, 8)
    n, cv, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    assert count == n - 1
    pairs = np.unique(np.stack([labels.ravel(), cv.ravel()]), axis=1)
    assert pairs.shape[1] == n  # a bijection between the two numberings


def real_masks(dsb_dir, count=12):
    paths = sorted((dsb_dir / "labels").glob("*.tif"))[::45][:count]
    for path in paths:
        truth = tifffile.imread(path)
        image = tifffile.imread(dsb_dir / "images" / path.name)
        yield path.name, truth > 0, image


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_real_nuclei_masks(backend, connectivity, dsb_dir):
    for name, mask, _ in real_masks(dsb_dir):
        labels, count = label(mask, connectivity, backend=backend)
        want = reference_labels(mask.astype(np.uint8), connectivity)
        np.testing.assert_array_equal(labels, want, err_msg=name)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_measure_matches_opencv_stats_and_skimage_regionprops(backend, dsb_dir):
    for name, mask, image in real_masks(dsb_dir):
        labels, count = label(mask, 8, backend=backend)
        channels = np.stack([image, (image.astype(np.uint16) * 37) % 4096]).astype(np.uint16)
        table = measure(labels, channels, channel_names=["dapi", "other"], backend=backend)
        assert list(table) == ["ObjectNumber", *feature_names(["dapi", "other"])]

        _, _, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(mask.astype(np.uint8), 8,
                                                                              cv2.CV_32S, cv2.CCL_WU)
        np.testing.assert_array_equal(table["AreaShape_Area"], stats[1:, cv2.CC_STAT_AREA], err_msg=name)
        np.testing.assert_array_equal(table["AreaShape_BoundingBoxMinimum_X"], stats[1:, cv2.CC_STAT_LEFT])
        np.testing.assert_array_equal(table["AreaShape_BoundingBoxMinimum_Y"], stats[1:, cv2.CC_STAT_TOP])
        np.testing.assert_array_equal(table["AreaShape_BoundingBoxMaximum_X"],
                                      stats[1:, cv2.CC_STAT_LEFT] + stats[1:, cv2.CC_STAT_WIDTH])
        np.testing.assert_array_equal(table["AreaShape_BoundingBoxMaximum_Y"],
                                      stats[1:, cv2.CC_STAT_TOP] + stats[1:, cv2.CC_STAT_HEIGHT])
        np.testing.assert_allclose(table["Location_Center_X"], centroids[1:, 0], rtol=1e-12)
        np.testing.assert_allclose(table["Location_Center_Y"], centroids[1:, 1], rtol=1e-12)

        props = skm.regionprops_table(labels, np.moveaxis(channels, 0, -1),
                                      properties=("major_axis_length", "minor_axis_length", "eccentricity",
                                                  "equivalent_diameter_area", "intensity_mean", "intensity_min",
                                                  "intensity_max", "intensity_std"))
        # Both sides work in float64 and differ only in summation order: measured up to 3e-14 relative on these
        # masks. 1e-10 leaves room for that and still catches a float32 step (6e-8). No object here is a line
        # or a disc (minor axis >= 3.1, eccentricity >= 0.25, std >= 1.2), where the square root of a
        # cancelled difference would need an absolute tolerance of ~sqrt(eps); an atol of 1e-6 or 1e-7 let
        # float32-rounded columns through.
        np.testing.assert_allclose(table["AreaShape_MajorAxisLength"], props["major_axis_length"], rtol=1e-10)
        np.testing.assert_allclose(table["AreaShape_MinorAxisLength"], props["minor_axis_length"], rtol=1e-10)
        np.testing.assert_allclose(table["AreaShape_Eccentricity"], props["eccentricity"], rtol=1e-10)
        np.testing.assert_allclose(table["AreaShape_EquivalentDiameter"], props["equivalent_diameter_area"],
                                   rtol=1e-12)
        for k, ch in enumerate(["dapi", "other"]):
            np.testing.assert_allclose(table[f"Intensity_MeanIntensity_{ch}"], props[f"intensity_mean-{k}"],
                                       rtol=1e-12)
            np.testing.assert_array_equal(table[f"Intensity_MinIntensity_{ch}"], props[f"intensity_min-{k}"])
            np.testing.assert_array_equal(table[f"Intensity_MaxIntensity_{ch}"], props[f"intensity_max-{k}"])
            np.testing.assert_allclose(table[f"Intensity_StdIntensity_{ch}"], props[f"intensity_std-{k}"],
                                       rtol=1e-10)
            np.testing.assert_array_equal(table[f"Intensity_IntegratedIntensity_{ch}"],
                                          np.bincount(labels.ravel(), channels[k].ravel().astype(np.float64))[1:])


def test_cpu_and_numba_measure_agree(rng):
    if HOST_BACKENDS != ["cpu", "numba"]:
        pytest.skip(f"the cpu or numba backend is not available (have {HOST_BACKENDS})")
    labels, _ = label(rng.random((400, 300)) > 0.55, 8)
    image = rng.random((2, 400, 300), dtype=np.float32) * 1000
    a = measure(labels, image, backend="cpu")
    b = measure(labels, image, backend="numba")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-7, err_msg=key)


def test_measure_moments_hold_across_the_64_bit_fast_path_limit():
    """Row runs sum x^2 in closed form, in 64 bits below x = 2^20 and 128 bits beyond (the
    64-bit product overflows from x ~ 1.66e6 on): objects on both sides of that column, one
    across it and one past x = 2.09e6 give the moments of their pixels."""
    width = 2_100_000
    labels = np.zeros((3, width), np.int32)
    labels[0, 1048570:1048590] = 1
    labels[1, 1048560:1048600] = 1
    labels[2, 1048575:1048580] = 1
    labels[0, 5:9] = 2
    labels[2, width - 10:] = 3
    table = measure(labels, backend="cpu")
    for index in range(3):
        ys, xs = np.nonzero(labels == index + 1)
        cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True)
        major = 4 * np.sqrt(np.linalg.eigvalsh(cov).max())   # as scikit-image's axis_major_length
        assert table["AreaShape_Area"][index] == len(xs)
        assert table["Location_Center_X"][index] == pytest.approx(xs.mean(), rel=1e-12)
        assert table["AreaShape_MajorAxisLength"][index] == pytest.approx(major, rel=1e-9)


def test_measure_handles_missing_labels_and_no_intensities():
    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 2:5] = 3
    table = measure(labels, num_objects=4)
    assert table["ObjectNumber"].tolist() == [1, 2, 3, 4]
    assert table["AreaShape_Area"].tolist() == [0, 0, 6, 0]
    assert table["Location_Center_X"][2] == 3.0 and table["Location_Center_Y"][2] == 2.5
    assert np.isnan(table["Location_Center_X"][0])
    empty = measure(np.zeros((5, 5), np.int32))
    assert all(len(v) == 0 for v in empty.values())


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_measure_does_not_depend_on_thread_count(threads, rng):
    labels, _ = label(rng.random((333, 211)) > 0.5, 4)
    image = rng.integers(0, 65535, (333, 211)).astype(np.uint16)
    ref = measure(labels, image, num_threads=1, backend="cpu")
    got = measure(labels, image, num_threads=threads, backend="cpu")
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)  # integer data: exact sums


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_connectivity_should_be_an_int(backend):
    # 4.0 == 4 passed the check, then failed in pybind11 ('incompatible function arguments') on cpu.
    from cellrt.kernels import fill_holes, h_maxima_seeds, split_touching, watershed

    mask = np.ones((3, 3), bool)
    calls = {"label": lambda c: label(mask, c, backend=backend),
             "fill_holes": lambda c: fill_holes(mask, c, backend=backend),
             "watershed": lambda c: watershed(np.zeros((3, 3)), np.eye(3, dtype=np.int32), mask, connectivity=c,
                                              backend=backend),
             "split_touching": lambda c: split_touching(mask, connectivity=c, backend=backend),
             "h_maxima_seeds": lambda c: h_maxima_seeds(np.zeros((3, 3)), 1.0, connectivity=c, backend=backend)}
    for name, call in calls.items():
        call(np.int64(4))
        with pytest.raises(ValueError, match=rf"{name}: connectivity should be 4 or 8, got 4.0"):
            call(4.0)


def test_label_and_measure_bad_input():
    with pytest.raises(ValueError, match=r"label: connectivity should be 4 or 8, got 6"):
        label(np.ones((4, 4)), 6)
    with pytest.raises(ValueError, match=r"label: mask should have shape \(H, W\), got \(2, 4, 4\)"):
        label(np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match=r"label: mask holds NaN or inf"):
        label(np.array([[np.nan, 1.0]]))
    labels = np.array([[0, 1], [2, 7]], np.int32)
    with pytest.raises(ValueError, match=r"measure: 1 label pixels are negative or above num_objects=2"):
        measure(labels, num_objects=2)
    with pytest.raises(ValueError, match=r"measure: intensities should be \(H, W\) or \(K, H, W\) with H, W = \(2, 2\)"):
        measure(labels, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"measure: channel_names should be 1 distinct names, got \['a', 'b'\]"):
        measure(labels, np.zeros((2, 2)), channel_names=["a", "b"])
    with pytest.raises(ValueError, match=r"measure: labels should be an integer array, got float64"):
        measure(labels.astype(float))
    with pytest.raises(ValueError, match=r"measure: labels should lie in \[0, 2\^31\)"):
        measure(np.array([[-1, 0]], np.int64))
    # A sparse id: a clear error, not an attempt at a 2e9-row table (a MemoryError of ~250 GiB before).
    with pytest.raises(ValueError, match=r"measure: the largest label is 2000000000 but the image has 2 pixels"):
        measure(np.array([[0, 2_000_000_000]], np.int32))


@pytest.mark.parametrize("backend", ["cpu", "numba"])
def test_measure_refuses_objects_on_non_finite_intensities(backend):
    """Such an object's mean was NaN while its min/max skipped the value and its std read 0: no
    statistic of it could be trusted. Non-finite pixels outside objects do not matter."""
    labels = np.zeros((4, 4), np.int32)
    labels[0, :2], labels[2:, 2:] = 1, 2
    for bad in (np.nan, np.inf, -np.inf):
        image = np.ones((2, 4, 4), np.float32)
        image[1, 3, 3] = bad
        with pytest.raises(ValueError, match=r"measure: 1 object\(s\) \(the first: object 2\) cover NaN or infinite "
                                             r"pixels of intensity channel 'GFP'"):
            measure(labels, image, channel_names=["DNA", "GFP"], backend=backend)
        image[1, 3, 3], image[0, 3, 0] = 1.0, bad   # background pixel
        table = measure(labels, image, channel_names=["DNA", "GFP"], backend=backend)
        assert table["Intensity_StdIntensity_DNA"].tolist() == [0.0, 0.0]


# --- thresholds -------------------------------------------------------------------------------

from cellrt.kernels import threshold  # noqa: E402

skf = pytest.importorskip("skimage.filters")


def exact_between_class_variance(image, t):
    """n0 n1 (mean0 - mean1)^2 / N^2 as an exact fraction, for the split image <= t."""
    from fractions import Fraction

    values = image.ravel().astype(np.int64)
    low = values <= t
    n0, n1 = int(low.sum()), int((~low).sum())
    m0, m1 = int(values[low].sum()), int(values[~low].sum())
    return Fraction((n1 * m0 - n0 * m1) ** 2, n0 * n1 * values.size ** 2)


def test_otsu_equals_skimage_on_real_8_and_16_bit_images(dsb_dir, isl_dir):
    images = [tifffile.imread(p) for p in sorted((dsb_dir / "images").glob("*.tif"))[::60]]
    images.append(tifffile.imread(isl_dir / "dapi.tif"))
    images += [tifffile.imread(isl_dir / f"phase_z{z:02d}.tif") for z in (0, 6, 12)]
    assert {im.dtype for im in images} == {np.dtype(np.uint8), np.dtype(np.uint16)}
    differ = 0
    for im in images:
        ours, theirs = threshold(im, "otsu"), float(skf.threshold_otsu(im))
        if ours != theirs:
            # scikit-image accumulates the class weights in float32, which can
            # flip near-ties on megapixel 16-bit images; ours must then be the
            # exact maximum.
            differ += 1
            assert exact_between_class_variance(im, ours) > exact_between_class_variance(im, theirs)
    assert differ <= len(images) // 4  # near-ties are the exception


@pytest.mark.parametrize("nbins", [64, 256, 1000])
def test_otsu_equals_skimage_on_float_images_with_the_same_bins(nbins, isl_dir):
    im = tifffile.imread(isl_dir / "dapi.tif").astype(np.float32) / 65535
    assert threshold(im, "otsu", nbins=nbins) == pytest.approx(float(skf.threshold_otsu(im, nbins=nbins)), rel=1e-6)


@pytest.mark.parametrize("method", ["li", "triangle"])
def test_li_and_triangle_equal_skimage_on_real_images(method, dsb_dir, isl_dir):
    reference = {"li": skf.threshold_li, "triangle": skf.threshold_triangle}[method]
    images = [tifffile.imread(p) for p in sorted((dsb_dir / "images").glob("*.tif"))[::40]]
    images += [tifffile.imread(isl_dir / name) for name in ("dapi.tif", "map2.tif", "phase_z06.tif")]
    images.append(images[-3].astype(np.float32) / 65535)
    for im in images:
        assert threshold(im, method) == pytest.approx(float(reference(im)), rel=1e-6, abs=1e-9), im.dtype


def test_li_stops_where_skimage_does_when_the_lower_class_is_only_the_minimum():
    # A masked image (zero background, objects above 20): Li's iteration reaches a threshold below every
    # object value, where the lower class mean is 0 and log(0) undefined. scikit-image stops there; an
    # iteration that restarts from elsewhere cycles and returns wherever its iteration cap falls.
    rng = np.random.default_rng(0)
    masked = np.zeros((100, 100), np.uint8)
    masked[:30] = rng.integers(20, 255, (30, 100))
    for im in (masked, masked.astype(np.float32)):
        ours = threshold(im, "li")
        assert ours == pytest.approx(float(skf.threshold_li(im)), rel=1e-6), im.dtype
        assert np.count_nonzero(im > ours) == 3000


def test_li_on_integer_images_converges_as_finely_as_skimage():
    # 12-bit camera values stored MSB-aligned in 16 bits are multiples of 16: the iteration stops within
    # 0.5 grey levels for integer images, as scikit-image's, not within half the gap between used values.
    rng = np.random.default_rng(1)
    im = (rng.integers(0, 4096, (60, 100)) ** 2 // 4096).astype(np.uint16) * 16
    assert threshold(im, "li") == pytest.approx(float(skf.threshold_li(im)), rel=1e-6)


def test_wide_integer_images_are_binned_instead_of_counted_per_value():
    # One bin per value between 0 and 4e9 was a 30 GiB allocation for two pixels.
    from cellrt.kernels import histogram

    im = np.array([[0, 10, 4_000_000_000, 3_999_999_000]], np.uint32)
    counts, centres = histogram(im, nbins=64)
    assert counts.sum() == 4 and len(counts) == 64
    assert threshold(im) == pytest.approx(float(skf.threshold_otsu(im.astype(np.float64), nbins=256)))
    wide = np.array([[-2**40, 0, 2**40]], np.int64)
    assert -2**40 < threshold(wide) < 2**40
    small = np.array([[0, 5, 60_000]], np.int32)   # a span within 16 bits stays exact, one bin per value
    assert len(histogram(small)[0]) == 60_001


def test_float32_values_near_the_type_limit_give_finite_bin_centres_and_thresholds():
    from cellrt.kernels import histogram

    im = np.array([[3e38, -3e38, 0, 1e38]], np.float32)
    _, centres = histogram(im)
    assert np.isfinite(centres).all() and centres[0] > -3e38 and centres[-1] < 3e38
    for method in ("otsu", "triangle", "li"):
        assert -3e38 < threshold(im, method) < 3e38, method


def test_smoothing_thresholds_the_blurred_image(isl_dir):
    from cellrt.kernels import gaussian_blur

    dapi = tifffile.imread(isl_dir / "dapi.tif").astype(np.float32)
    assert threshold(dapi, smoothing=2.0) == threshold(gaussian_blur(dapi, 2.0))
    assert threshold(dapi, smoothing=2.0) != threshold(dapi)


def test_mean_manual_correction_and_constant_images(rng):
    im = rng.integers(0, 4000, (50, 60)).astype(np.uint16)
    assert threshold(im, "mean") == pytest.approx(im.mean())
    assert threshold(im, "mean", correction=1.5) == pytest.approx(1.5 * im.mean())
    assert threshold(im, "manual", value=100) == 100.0
    assert threshold(np.full((4, 4), 7, np.uint16)) == 7.0


def test_threshold_bad_input():
    with pytest.raises(ValueError, match=r"threshold: method should be one of otsu, li, triangle, mean, manual, "
                                         r"got 'yen'"):
        threshold(np.ones((2, 2)), "yen")
    with pytest.raises(ValueError, match=r"threshold: image holds 1 NaN/inf values"):
        threshold(np.array([1.0, np.nan, 3.0]))
    with pytest.raises(ValueError, match=r"threshold: method='manual' needs a finite value="):
        threshold(np.ones(3), "manual")
    with pytest.raises(ValueError, match=r"threshold: image should be non-empty"):
        threshold(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"threshold: correction should be a positive number"):
        threshold(np.ones(3), correction=0)
    assert threshold(np.ones(3), "manual", value=2, correction=np.int64(2)) == 4.0
    for bad in (True, "2"):
        with pytest.raises(ValueError, match=r"threshold: correction should be a positive number"):
            threshold(np.ones(3), correction=bad)
    for bad in ("abc", [1, 2], True):   # 'abc' and [1, 2] failed inside numpy, True was taken as 1
        with pytest.raises(ValueError, match=r"threshold: method='manual' needs a finite value="):
            threshold(np.ones(3), "manual", value=bad)


# --- mask clean-up, instances, matching -----------------------------------------------------------

from cellrt.kernels import fill_holes, instances_from_mask, match_instances, remove_small_objects  # noqa: E402

ndi = pytest.importorskip("scipy.ndimage")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name", list(adversarial_masks()))
def test_fill_holes_matches_scipy(backend, name):
    mask = adversarial_masks()[name].astype(bool)
    # 8-connected foreground encloses 4-connected holes: scipy's default structure.
    np.testing.assert_array_equal(fill_holes(mask, 8, backend=backend), ndi.binary_fill_holes(mask))
    np.testing.assert_array_equal(fill_holes(mask, 4, backend=backend),
                                  ndi.binary_fill_holes(mask, structure=np.ones((3, 3))))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_fill_holes_on_real_masks(backend, dsb_dir):
    for name, mask, _ in real_masks(dsb_dir):
        np.testing.assert_array_equal(fill_holes(mask, backend=backend), ndi.binary_fill_holes(mask), err_msg=name)


def test_fill_holes_nested_rings():
    mask = np.zeros((11, 11), bool)
    mask[1:10, 1:10] = True
    mask[2:9, 2:9] = False      # hole
    mask[4:7, 4:7] = True       # island inside the hole
    mask[5, 5] = False          # hole in the island
    np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    assert fill_holes(mask)[1:10, 1:10].all()


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_fill_holes_of_empty_masks_and_its_errors_name_it(backend):
    from cellrt.kernels import grow_labels

    for shape in ((0, 5), (5, 0), (0, 0)):   # numba indexed the border rows of an empty mask (IndexError)
        assert fill_holes(np.zeros(shape, bool), backend=backend).shape == shape
        labels, count = instances_from_mask(np.zeros(shape, bool), backend=backend)
        assert labels.shape == shape and count == 0
    with pytest.raises(ValueError, match=r"^fill_holes: mask should have shape \(H, W\), got \(2, 3, 4\)"):
        fill_holes(np.zeros((2, 3, 4)), backend=backend)
    with pytest.raises(ValueError, match=r"^fill_holes: mask should be boolean or numeric, got dtype complex128"):
        fill_holes(np.zeros((3, 4), complex), backend=backend)
    with pytest.raises(ValueError, match=r"^grow_labels: mask holds NaN or inf"):
        grow_labels(np.zeros((2, 2), np.int32), np.full((2, 2), np.nan), 1, backend=backend)


def test_remove_small_objects_keeps_order_and_renumbers():
    from skimage.morphology import remove_small_objects as sk_remove
    from skimage.segmentation import relabel_sequential

    mask = adversarial_masks()["random_dense"]
    labels, _ = label(mask, 8)
    ours, count = remove_small_objects(labels, 5)
    theirs = relabel_sequential(sk_remove(labels, max_size=4))[0]
    np.testing.assert_array_equal(ours, theirs)
    assert count == theirs.max()
    with pytest.raises(ValueError, match=r"min_area should be a non-negative int, got -1"):
        remove_small_objects(labels, -1)


def _random_labels(rng, shape, objects, largest):
    """Rectangles of random labels up to ``largest`` (repeated, absent, overlapping: any label image)."""
    labels = np.zeros(shape, np.int32)
    for value in rng.integers(1, largest + 1, objects):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(1, 9, 2)
        labels[y:y + h, x:x + w] = value
    return labels


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_remove_small_objects_matches_the_whole_array_steps(backend, rng):
    """The C++ kernel (a label table, or sorted distinct labels when labels run far above the pixel count) and
    numba (sorted distinct labels) against the numpy steps the GPU runs (bincount, or np.unique for sparse
    labels): dense and sparse labels, absent labels, min_area 0 (labels kept as they are), 1 (absent ones
    dropped), none or all dropped."""
    from cellrt.kernels.objects import _remove_small_whole_array  # noqa: PLC0415

    cases = [_random_labels(rng, (61, 47), 60, 80), _random_labels(rng, (128, 96), 300, 150),
             _random_labels(rng, (40, 50), 30, 2**31 - 1),    # sparse: beyond any table
             _random_labels(rng, (33, 1), 8, 5), np.zeros((7, 9), np.int32)]
    for labels in cases:
        for min_area in (0, 1, 2, 5, 17, 10**6):
            expected = _remove_small_whole_array(labels, min_area)
            got = remove_small_objects(labels, min_area, backend=backend)
            assert got[0].dtype == np.int32 and got[1] == expected[1], (labels.shape, min_area)
            np.testing.assert_array_equal(got[0], expected[0], err_msg=f"{labels.shape} min_area {min_area}")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_remove_small_objects_on_real_nuclei_matches_scikit_image(backend, dsb_dir):
    from skimage.morphology import remove_small_objects as sk_remove
    from skimage.segmentation import relabel_sequential

    for name, mask, _ in real_masks(dsb_dir):
        labels, _ = label(mask, 8)
        for min_area in (20, 60):
            ours, count = remove_small_objects(labels, min_area, backend=backend)
            theirs = relabel_sequential(sk_remove(labels, max_size=min_area - 1))[0]
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
            assert count == theirs.max()


def test_remove_small_objects_in_place_and_thread_counts(rng):
    """out may be labels itself (the C ABI's in-place form); strips of rows give the same result for any
    thread count (tables per thread, or one table when labels outnumber the pixels per thread)."""
    if "cpu" not in HOST_BACKENDS:
        pytest.skip("the C++ extension is not available")
    from cellrt._build import _core  # noqa: PLC0415

    # 300 x 257 pixels: labels to 200 and 40,000 are counted in a table per thread, labels to 200,000 (more
    # than 2^16 and than the pixels per thread) in one table, still indexed by label (below 4 x the pixels).
    for largest in (200, 40_000, 200_000):
        labels = _random_labels(rng, (300, 257), 4000, largest)
        expected, count = remove_small_objects(labels, 6, num_threads=1)
        for threads in (2, 3, 8):
            np.testing.assert_array_equal(remove_small_objects(labels, 6, num_threads=threads)[0], expected)
        in_place = labels.copy()
        assert _core.remove_small_objects(in_place, in_place, 6, 0) == count
        np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_remove_small_objects_writes_into_out_or_in_place(backend, rng):
    labels = _random_labels(rng, (90, 70), 300, 2000)
    expected, count = remove_small_objects(labels, 5, backend=backend)
    into = np.full(labels.shape, -7, np.int32)
    result, n = remove_small_objects(labels, 5, backend=backend, out=into)
    assert result is into and n == count
    np.testing.assert_array_equal(into, expected)
    in_place = labels.astype(np.int32)
    result, n = remove_small_objects(in_place, 5, backend=backend, out=in_place)
    assert result is in_place and n == count
    np.testing.assert_array_equal(in_place, expected)
    # labels made by numba (an array whose base is numba's, not an ndarray) were refused in place, which
    # broke instances_from_mask(min_area > 1) on the numba backend
    mask = adversarial_masks()["random_dense"]
    made, _ = label(mask, 8, backend=backend)
    expected, count = remove_small_objects(made, 5, backend=backend)
    result, n = remove_small_objects(made, 5, backend=backend, out=made)
    assert result is made and n == count
    np.testing.assert_array_equal(made, expected)
    assert instances_from_mask(mask, min_area=5, fill=False, backend=backend)[1] == count
    with pytest.raises(ValueError, match=r"remove_small_objects: out=labels \(in place\) needs int32 C-contiguous "
                                         r"labels, got int64 labels"):
        wide = labels.astype(np.int64)
        remove_small_objects(wide, 5, backend=backend, out=wide)
    # int32 labels are taken as they are only when C-contiguous: a strided view is refused in place, and read
    # through a copy otherwise
    strided = np.ascontiguousarray(labels.T, dtype=np.int32).T
    with pytest.raises(ValueError, match=r"remove_small_objects: out=labels \(in place\) needs int32 C-contiguous "
                                         r"labels, got int32 labels, not C-contiguous"):
        remove_small_objects(strided, 5, backend=backend, out=strided)
    np.testing.assert_array_equal(remove_small_objects(strided, 5, backend=backend)[0],
                                  remove_small_objects(np.ascontiguousarray(strided), 5, backend=backend)[0])
    with pytest.raises(ValueError, match=r"remove_small_objects: out should be a writable C-contiguous int32 array "
                                         r"of shape \(90, 70\), got float32 \(90, 70\)"):
        remove_small_objects(labels, 5, backend=backend, out=np.zeros(labels.shape, np.float32))
    shared = np.zeros(labels.size + 1, np.int32)
    shared[:-1] = labels.ravel()
    with pytest.raises(ValueError, match=r"out should not overlap labels other than being it \(in place\)"):
        remove_small_objects(shared[:-1].reshape(labels.shape), 5, backend=backend,
                             out=shared[1:].reshape(labels.shape))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_remove_small_objects_refuses_labels_it_cannot_number(backend):
    labels = np.array([[1, 1, 0], [0, 2, -4]], np.int32)
    with pytest.raises(ValueError, match=r"labels should be >= 0, got 1 negative pixel\(s\)"):
        remove_small_objects(labels, 1, backend=backend)
    with pytest.raises(ValueError, match=r"labels should be >= 0, got 1 negative pixel\(s\)"):
        remove_small_objects(labels.astype(np.int64), 1, backend=backend)
    big = np.array([[1, 2**31]], np.int64)     # a cast to int32 would make it -2^31
    with pytest.raises(ValueError, match=r"labels should be below 2\^31, got a largest label of 2147483648"):
        remove_small_objects(big, 1, backend=backend)
    with pytest.raises(ValueError, match=r"labels should be a 2-D integer array, got float32"):
        remove_small_objects(labels.astype(np.float32), 1, backend=backend)
    with pytest.raises(ValueError, match=r"labels should be a 2-D integer array, got int32 \(2, 3, 1\)"):
        remove_small_objects(labels[..., None], 1, backend=backend)
    for bad in (True, 2.5, -1):
        with pytest.raises(ValueError, match=r"min_area should be a non-negative int"):
            remove_small_objects(np.abs(labels), bad, backend=backend)
    # Other integer types are renumbered like int32 ones.
    np.testing.assert_array_equal(remove_small_objects(np.abs(labels).astype(np.uint16), 2, backend=backend)[0],
                                  [[1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_remove_small_objects_takes_any_min_area_above_the_pixel_count(backend):
    """Any min_area past the pixel count drops every object, as the whole-array steps do for any int (one
    past int64 met pybind11's 'incompatible function arguments' on the C++ path, numba's OverflowError)."""
    labels = np.array([[1, 1, 0], [0, 2, 2]], np.int32)
    for min_area in (7, 2**63 - 1, 2**63, np.uint64(2**64 - 1), 10**30):
        got, count = remove_small_objects(labels, min_area, backend=backend)
        assert count == 0 and got.dtype == np.int32 and not got.any(), min_area


def test_remove_small_objects_whole_array_steps_refuse_labels_beyond_int32():
    """The GPU path (the whole-array steps, run here on numpy) refuses labels its int32 result cannot hold,
    as the host kernels do: with min_area 0 it cast them, label 2^31 coming back as -2^31."""
    from cellrt.kernels.objects import _remove_small_whole_array  # noqa: PLC0415

    big = np.array([[1, 2**31]], np.int64)
    for min_area in (0, 1):
        with pytest.raises(ValueError, match=r"labels should be below 2\^31, got a largest label of 2147483648"):
            _remove_small_whole_array(big, min_area)


def test_match_instances_counts_unique_iou_matches():
    truth = np.zeros((10, 10), np.int32)
    truth[0:4, 0:4] = 1   # matched exactly
    truth[6:10, 6:10] = 2  # predicted too small (IoU 4/16)
    truth[0:2, 7:10] = 3   # missed
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 5
    pred[6:8, 6:8] = 1
    pred[5, 0:3] = 2       # false positive
    r = match_instances(pred, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 2)
    assert r["f1"] == pytest.approx(2 * 1 / (3 + 3))


def test_match_instances_takes_sparse_ids_and_refuses_bad_labels_and_thresholds():
    truth = np.zeros((4, 4), np.int64)
    truth[:2, :2] = 70_000   # ids from another tool: the overlap table was 70001^2 cells (36 GiB)
    truth[2:, 2:] = 3
    pred = np.zeros_like(truth)
    pred[:2, :2] = 2**40
    r = match_instances(pred, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    with pytest.raises(ValueError, match=r"match_instances: predicted should be integer labels, got float64"):
        match_instances(pred.astype(np.float64), truth)
    with pytest.raises(ValueError, match=r"match_instances: truth should be labels >= 0, got a smallest label of -1"):
        match_instances(pred, -truth.clip(0, 1))
    for bad in (np.nan, 0.4, 1.5, "0.5", True):
        with pytest.raises(ValueError, match=r"match_instances: iou_threshold should be a number in \[0.5, 1\]"):
            match_instances(pred, truth, bad)


def test_classical_segmentation_f1_on_real_nuclei_does_not_regress(dsb_dir):
    # tools/eval_segmentation.py on every 10th image measured F1 0.854 for
    # segment(), 0.810 for Otsu + fill holes + min area 10, and 0.765 for
    # plain Otsu + label (all 541 images: see the issue notes).
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("eval_segmentation",
                                                  Path(__file__).resolve().parents[1] / "tools/eval_segmentation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.evaluate(dsb_dir, every=10)
    assert summary["images"] == 55
    assert summary["segment"]["f1"] >= 0.84
    assert summary["otsu+fill"]["f1"] >= 0.79
    assert summary["segment"]["f1"] > summary["otsu+fill"]["f1"] > summary["otsu+label"]["f1"]


def test_segment_on_the_real_dapi_field_counts_nuclei(isl_dir):
    from cellrt.kernels import segment

    dapi = tifffile.imread(isl_dir / "dapi.tif")
    labels, count = segment(dapi)
    assert labels.dtype == np.int32 and labels.max() == count
    table = measure(labels, dapi)
    assert count > 20 and np.all(table["AreaShape_Area"] >= 20)
    published, n_published = segment(dapi, global_method="mean", block_size=51)
    assert n_published > 0 and published.shape == dapi.shape


def test_segment_bad_input():
    from cellrt.kernels import segment

    with pytest.raises(ValueError, match=r"segment: image should have shape \(H, W\), got \(2, 4, 4\)"):
        segment(np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match=r"segment: image holds 1 NaN/inf values"):
        segment(np.array([[1.0, np.nan], [0.0, 2.0]]))
    with pytest.raises(ValueError, match=r"segment: image is empty \(shape \(0, 0\)\)"):
        segment(np.zeros((0, 0), np.float32))
    with pytest.raises(ValueError, match=r"threshold_local: block_size should be an odd int >= 3, got 10"):
        segment(np.random.default_rng(0).random((32, 32)), block_size=10)
    image = np.random.default_rng(0).random((32, 32))
    with pytest.raises(ValueError, match=r"segment: percentiles should be a \(lo, hi\) pair"):   # said 'tile:'
        segment(image, percentiles=(50, 10))
    for name, bad in (("opening_radius", -1), ("opening_radius", 1.5), ("blur_sigma", -1.0),
                      ("blur_sigma", np.nan), ("min_area", -1), ("min_area", True), ("min_area", None)):
        with pytest.raises(ValueError, match=rf"segment: {name} should be "):
            segment(image, **{name: bad})
    from cellrt.kernels import instances_from_probability

    for op in (instances_from_mask, instances_from_probability):
        for bad in (-1, True, None, 2.5):
            with pytest.raises(ValueError, match=rf"{op.__name__}: min_area should be an int >= 0, got "):
                op(image > 0.5, min_area=bad)


def test_instances_from_probability_splits_touching_nuclei_along_the_boundary_class(dsb_dir):
    # Class maps made from the hand-made labels: 2-pixel boundaries between
    # and around nuclei, interior inside. The split must recover the nuclei,
    # including touching ones that a plain foreground threshold merges.
    from cellrt.kernels import instances_from_probability

    scores_split, scores_merged = [], []
    for path in sorted((dsb_dir / "labels").glob("*.tif"))[::40]:
        truth = tifffile.imread(path).astype(np.int32)
        eroded = truth * ndi.binary_erosion(truth > 0, iterations=2)
        boundary_px = (truth > 0) & (ndi.grey_erosion(truth, size=5) != ndi.grey_dilation(truth, size=5))
        interior = (eroded > 0) & ~boundary_px
        prob = np.stack([(truth == 0), interior, (truth > 0) & ~interior]).astype(np.float32)
        labels, _ = instances_from_probability(prob, grow_steps=4)
        scores_split.append(match_instances(labels, truth)["f1"])
        merged, _ = instances_from_probability(1 - prob[0])
        scores_merged.append(match_instances(merged, truth)["f1"])
    assert np.mean(scores_split) > 0.95
    assert np.mean(scores_split) > np.mean(scores_merged)


def test_instances_from_probability_bad_input():
    from cellrt.kernels import instances_from_probability

    with pytest.raises(ValueError, match=r"prob should be \(H, W\) or \(3, H, W\)"):
        instances_from_probability(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"grow_steps should be a non-negative int, got -1"):
        instances_from_probability(np.zeros((3, 4, 4)), grow_steps=-1)
    prob = np.full((4, 4), 0.9, np.float32)
    prob[1, 1] = np.nan
    for shaped in (prob, np.stack([1 - prob, prob, 0 * prob])):   # one map took NaN as background
        with pytest.raises(ValueError, match=r"instances_from_probability: prob holds \d+ NaN/inf values"):
            instances_from_probability(shaped)
    for name in ("foreground", "seed"):
        for bad in (np.nan, "0.5", None):
            with pytest.raises(ValueError, match=rf"instances_from_probability: {name} should be a finite number"):
                instances_from_probability(np.zeros((3, 4, 4)), **{name: bad})


# --- contours --------------------------------------------------------------------------------------

from cellrt.kernels import contours  # noqa: E402


def opencv_contour(labels, value):
    found, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    assert len(found) == 1
    return found[0][:, 0, :]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name", list(adversarial_masks()))
def test_contours_equal_opencv_point_sequences(backend, name):
    labels, count = label(adversarial_masks()[name], 8)
    found = contours(labels, backend=backend)
    perimeter = measure(labels, backend=backend)["AreaShape_Perimeter"]
    assert len(found) == count
    for i in range(count):
        ref = opencv_contour(labels, i + 1)
        np.testing.assert_array_equal(found[i], ref, err_msg=f"{name} object {i + 1}")
        # OpenCV sums in single precision; cellrt in double.
        assert perimeter[i] == pytest.approx(cv2.arcLength(ref.reshape(-1, 1, 2), True), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_contours_of_real_nuclei(backend, dsb_dir):
    for name, mask, _ in list(real_masks(dsb_dir))[:6]:
        labels, count = label(mask, 8)
        found = contours(labels, backend=backend)
        for i in range(count):
            np.testing.assert_array_equal(found[i], opencv_contour(labels, i + 1), err_msg=f"{name} {i + 1}")


def opencv_holes(labels, value):
    """Hole contours of cv2.findContours(RETR_CCOMP) on one object's mask, by first point (y, x)."""
    found, hierarchy = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    holes = [c[:, 0, :] for c, h in zip(found, hierarchy[0]) if h[3] >= 0]
    return sorted(holes, key=lambda c: (c[0, 1], c[0, 0]))


def assert_holes_equal_opencv(labels, count, backend, where):
    found = contours(labels, holes=True, backend=backend)
    assert len(found) == count
    for i in range(count):
        outer, *holes = found[i]
        np.testing.assert_array_equal(outer, opencv_contour(labels, i + 1), err_msg=f"{where} object {i + 1}")
        reference = opencv_holes(labels, i + 1)
        assert len(holes) == len(reference), f"{where} object {i + 1}: {len(holes)} holes, OpenCV {len(reference)}"
        assert [(h[0, 1], h[0, 0]) for h in holes] == sorted((h[0, 1], h[0, 0]) for h in holes)
        for k, (ours, theirs) in enumerate(zip(holes, reference)):
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{where} object {i + 1} hole {k}")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_hole_contours_equal_opencv_ccomp(backend, dsb_dir, rng):
    for name, mask in adversarial_masks().items():
        assert_holes_equal_opencv(*label(mask, 8), backend, name)
    for name, mask, _ in list(real_masks(dsb_dir))[:4]:
        assert_holes_equal_opencv(*label(mask, 8), backend, name)
    # Random masks: many objects with holes, holes touching diagonally, holes holding other objects.
    for density in (0.45, 0.6, 0.75):
        mask = rng.random((64, 80)) < density
        labels, count = label(mask, 8)
        assert_holes_equal_opencv(labels, count, backend, f"random {density}")
    # A ring around another object (which is part of the ring's hole), and a one-pixel hole.
    labels = np.zeros((12, 14), np.int32)
    labels[1:10, 1:10] = 1
    labels[2:9, 2:9] = 0
    labels[4:7, 4:7] = 2
    labels[2:6, 11:14] = 3
    labels[3, 12] = 0
    assert_holes_equal_opencv(labels, 3, backend, "ring")
    found = contours(labels, holes=True, backend=backend)
    assert [len(f) for f in found] == [2, 1, 2]


def test_contours_of_missing_labels_are_empty():
    labels = np.zeros((6, 6), np.int32)
    labels[1:3, 1:4] = 2
    found = contours(labels, num_objects=3)
    assert [len(c) for c in found] == [0, 6, 0]
    assert measure(labels, num_objects=3)["AreaShape_Perimeter"].tolist()[::2] == [0.0, 0.0]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_contours_refuse_bad_num_objects_sparse_and_negative_labels(backend):
    labels = np.zeros((4, 4), np.int32)
    labels[1, 1] = 1
    for bad in (2.5, True, "3", -1, 2**31):
        with pytest.raises(ValueError, match=r"contours: num_objects should be an int in \[0, 2\^31\), got "):
            contours(labels, num_objects=bad, backend=backend)
        # measure's table of 10**10 rows died in numpy's allocator (MemoryError) before anything said why
        with pytest.raises(ValueError, match=r"measure: num_objects should be an int in \[0, 2\^31\), got "):
            measure(labels, num_objects=10**10 if bad == 2**31 else bad, backend=backend)
    assert len(contours(labels, num_objects=np.int64(2), backend=backend)) == 2
    sparse = labels.copy()
    sparse[1, 1] = 2_000_000_000   # 16 GiB of offsets: the process was killed
    with pytest.raises(ValueError, match=r"contours: the largest label is 2000000000 but the image has 16 pixels"):
        contours(sparse, backend=backend)
    negative = labels.copy()
    negative[2, 2] = -1   # was traced as background on int32 labels, refused on int64 ones
    for dtype in (np.int32, np.int64):
        with pytest.raises(ValueError, match=r"contours: labels should lie in \[0, 2\^31\), got -1\.\.1"):
            contours(negative.astype(dtype), backend=backend)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("threads", [1, 3])
def test_histogram_kernel_equals_bincount(dtype, threads, rng):
    from cellrt._build import _core

    image = rng.integers(0, np.iinfo(dtype).max, (301, 257), endpoint=True).astype(dtype)
    image[:40] = 7  # long runs of one value
    want = np.bincount(image.ravel(), minlength=np.iinfo(dtype).max + 1)
    np.testing.assert_array_equal(_core.histogram(image, threads), want)
    with pytest.raises(ValueError, match=r"histogram: image should be uint8 or uint16, got float32"):
        _core.histogram(image.astype(np.float32))


def _numpy_bins(values: np.ndarray, nbins: int):
    """numpy.histogram over the finite values between their min and max; where numpy itself fails
    (a range wider than float32 holds: its bin guess overflows), the same edges and a sorted search."""
    finite = values[np.isfinite(values)]
    lo, hi = float(finite.min()), float(finite.max())
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.histogram(finite, bins=nbins, range=(lo, hi))
    except IndexError:
        edges = np.histogram_bin_edges(finite, bins=nbins, range=(lo, hi))
        bins = np.clip(np.searchsorted(edges, finite, side="right") - 1, 0, nbins - 1)
        return np.bincount(bins, minlength=nbins), edges


@pytest.mark.parametrize("threads", [1, 3])
def test_float_histogram_kernel_counts_numpys_bins(threads, isl_dir, rng):
    from cellrt._build import _core

    dapi = tifffile.imread(isl_dir / "dapi.tif").astype(np.float32)
    cases = [dapi / 65535, dapi[::3, ::2], np.log1p(dapi)]
    cases.append(rng.integers(-5, 6, 5000).astype(np.float32) / np.float32(3))   # many values on bin edges
    cases.append(rng.integers(0, 2 ** 16, 5000).astype(np.float32) / np.float32(65535))
    cases.append(np.full(1000, 0.3, np.float32))   # constant: numpy widens the range by 0.5 either side
    cases.append(np.array([np.float32(2.5)]))
    cases.append(rng.normal(size=4000).astype(np.float32) * np.float32(1e-30))
    random_bits = rng.integers(0, 2 ** 32, 20000, dtype=np.uint32).view(np.float32)
    cases.append(random_bits[np.isfinite(random_bits)])   # +-3e38 together: numpy.histogram fails on these
    with_nan = rng.normal(size=3000).astype(np.float32)
    with_nan[::7], with_nan[3], with_nan[5] = np.nan, np.inf, -np.inf
    cases.append(with_nan)
    for case, values in enumerate(cases):
        for nbins in (1, 2, 7, 256, 1000):
            counts, edges, finite = _core.float_histogram(np.ascontiguousarray(values), nbins, threads)
            want_counts, want_edges = _numpy_bins(values, nbins)
            assert finite == np.count_nonzero(np.isfinite(values))
            assert edges.dtype == want_edges.dtype == np.float32
            np.testing.assert_array_equal(edges, want_edges, err_msg=f"case {case}, {nbins} bins")
            np.testing.assert_array_equal(counts, want_counts, err_msg=f"case {case}, {nbins} bins")
    counts, edges, finite = _core.float_histogram(np.array([np.nan, np.inf], np.float32), 4, threads)
    assert finite == 0 and not counts.any() and np.isnan(edges).all()


def test_float_histogram_refuses_bins_without_width_and_bad_arguments():
    from cellrt._build import _core
    from cellrt.kernels import histogram

    narrow = np.float32(1e5) + np.arange(0, 0.05, 0.0078125, dtype=np.float32)   # 7 float32 steps
    edges = np.linspace(float(narrow.min()), float(narrow.max()), 257).astype(np.float32)   # numpy's edges
    assert np.unique(edges).size < 257
    with pytest.raises(ValueError, match=r"float_histogram: 256 bins are too many for the values' range "
                                         r"\[100000, 100000\]: in float32 some would have no width"):
        histogram(narrow, 256)
    counts, _ = histogram(narrow, 4)
    assert counts.sum() == narrow.size
    with pytest.raises(ValueError, match=r"^threshold: 256 bins are too many for the values' range"):
        threshold(narrow)   # the function called is the one named
    with pytest.raises(ValueError, match=r"^threshold: nbins should be an int >= 2, got 1$"):
        threshold(narrow, nbins=1)
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":   # numpy 1.x makes the zero-width bins without a word
        with pytest.raises(ValueError, match=r"histogram: 256 bins are too many for the values' range \[1, 1\]: "
                                             r"in float64 some would have no width"):
            histogram(np.array([1.0, 1 + 2e-16, 1.0]), 256)
    with pytest.raises(ValueError, match=r"float_histogram: nbins should be 1 .. 2\^24, got 0"):
        _core.float_histogram(narrow, 0)
    with pytest.raises(ValueError, match=r"float_histogram: values should be float32, got float64"):
        _core.float_histogram(narrow.astype(np.float64), 4)
    for dtype in (np.float32, np.float64):
        with pytest.raises(ValueError, match=r"histogram: image holds 2 NaN/inf values"):
            histogram(np.array([1, np.nan, 3, -np.inf], dtype))
        # Constant images too far from 0 for numpy's +-0.5 bins: one bin at the value.
        flat = np.full((4, 4), 1e30, dtype)
        counts, centres = histogram(flat, 256)
        assert counts.tolist() == [16] and centres.tolist() == [flat[0, 0]]
        assert threshold(flat) == float(flat[0, 0]) and threshold(flat, "triangle") == float(flat[0, 0])


def test_numpy_bin_edges_are_numpys_for_the_device_histogram(rng):
    """The GPU path hands these edges to cupy.histogram (cupy makes its own on the device); checked here
    against numpy's own edges and refusals, over ranges and bin counts."""
    from cellrt.kernels.threshold import numpy_bin_edges

    for _ in range(500):
        dtype = np.dtype(rng.choice([np.float16, np.float32, np.float64]))
        with np.errstate(over="ignore"):   # float16 overflows to inf: such pairs are skipped below
            values = (rng.normal(size=2) * 10.0 ** rng.integers(-20, 20)).astype(dtype)
        if rng.random() < 0.2:
            values[1] = values[0]
        if not np.isfinite(values).all():
            continue
        lo, hi = float(values.min()), float(values.max())
        nbins = int(rng.choice([1, 2, 7, 256, 1000]))
        try:
            want = np.histogram_bin_edges(values, nbins, range=(lo, hi))
        except ValueError:
            if lo != hi:
                with pytest.raises(ValueError, match="bins are too many for the values' range"):
                    numpy_bin_edges(lo, hi, nbins, dtype)
            else:
                assert numpy_bin_edges(lo, hi, nbins, dtype) is None
            continue
        got = numpy_bin_edges(lo, hi, nbins, dtype)
        assert got is not None and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_histogram_of_float_images_equals_numpy_for_every_float_type(isl_dir):
    from cellrt.kernels import histogram

    dapi = tifffile.imread(isl_dir / "dapi.tif")
    for dtype in (np.float16, np.float32, np.float64):
        image = (dapi[::2, ::2] / 65535).astype(dtype)
        counts, centres = histogram(image, 256)
        want, edges = np.histogram(image, bins=256, range=(float(image.min()), float(image.max())))
        np.testing.assert_array_equal(counts, want)
        np.testing.assert_array_equal(centres, (edges[:-1] + edges[1:]) / 2)
        assert centres.dtype == edges.dtype
        many_axes = image.reshape(1, 1, 1, *image.shape)[..., ::-1]   # any shape and strides, as documented
        np.testing.assert_array_equal(histogram(many_axes, 256)[0], want)


# --- CUDA (skipped without a GPU) -------------------------------------------------------------------

from .conftest import needs_cuda  # noqa: E402


@needs_cuda
@pytest.mark.parametrize("connectivity", [4, 8])
def test_cuda_label_and_measure_match_cpu(connectivity, dsb_dir):
    import cupy as cp

    for name, mask, image in list(real_masks(dsb_dir))[:4]:
        labels, count = label(mask, connectivity, backend="cpu")
        dev_labels, dev_count = label(cp.asarray(mask.astype(np.uint8)), connectivity)
        assert dev_count == count
        np.testing.assert_array_equal(cp.asnumpy(dev_labels), labels, err_msg=name)
        host = measure(labels, image)
        dev = measure(dev_labels, cp.asarray(image))
        for key in host:
            np.testing.assert_allclose(cp.asnumpy(dev[key]), host[key], rtol=1e-12, err_msg=f"{name} {key}")


@needs_cuda
def test_cuda_remove_small_objects_matches_cpu(dsb_dir):
    import cupy as cp

    for name, mask, _ in list(real_masks(dsb_dir))[:4]:
        labels, _ = label(mask, 8, backend="cpu")
        host, host_count = remove_small_objects(labels, 30, backend="cpu")
        dev, dev_count = remove_small_objects(cp.asarray(labels), 30)
        assert isinstance(dev, cp.ndarray) and dev.dtype == cp.int32 and dev_count == host_count
        np.testing.assert_array_equal(cp.asnumpy(dev), host, err_msg=name)


@needs_cuda
def test_cuda_fill_holes_histogram_and_threshold_match_cpu(dsb_dir, rng):
    import cupy as cp

    from cellrt.kernels import fill_holes, histogram, threshold  # noqa: PLC0415

    for name, mask, image in list(real_masks(dsb_dir))[:4]:
        for connectivity in (4, 8):
            np.testing.assert_array_equal(cp.asnumpy(fill_holes(cp.asarray(mask), connectivity)),
                                          fill_holes(mask, connectivity, backend="cpu"), err_msg=name)
        for dtype in (np.uint8, np.uint16):
            typed = image.astype(dtype)
            host_counts, host_centres = histogram(typed)
            counts, centres = histogram(cp.asarray(typed))
            np.testing.assert_array_equal(counts, host_counts)
            np.testing.assert_array_equal(centres, host_centres)
            for method in ("otsu", "li", "triangle", "mean"):
                assert threshold(cp.asarray(typed), method) == threshold(typed, method), (name, method)
        # Float images: numpy's bins on both sides (cupy counts into the host's edges), values on edges included.
        unit = (image.astype(np.float32) / np.float32(image.max())).astype(np.float32)
        for nbins in (7, 256):
            host_counts, host_centres = histogram(unit, nbins)
            counts, centres = histogram(cp.asarray(unit), nbins)
            np.testing.assert_array_equal(counts, host_counts, err_msg=name)
            np.testing.assert_array_equal(centres, host_centres, err_msg=name)
        for method in ("otsu", "triangle", "mean"):
            assert threshold(cp.asarray(unit), method) == threshold(unit, method), (name, method)
    noise = (rng.random((517, 301)) > 0.45)
    np.testing.assert_array_equal(cp.asnumpy(fill_holes(cp.asarray(noise))), fill_holes(noise, backend="cpu"))


@needs_cuda
def test_cuda_contours_match_cpu(dsb_dir):
    import cupy as cp

    for name, mask in list(adversarial_masks().items()) + [(n, m) for n, m, _ in list(real_masks(dsb_dir))[:3]]:
        labels, count = label(mask, 8)
        host = contours(labels, backend="cpu")
        device = contours(cp.asarray(labels))
        assert len(device) == count
        for i in range(count):
            np.testing.assert_array_equal(cp.asnumpy(device[i]), host[i], err_msg=f"{name} object {i + 1}")
        host_holes = contours(labels, holes=True, backend="cpu")
        device_holes = contours(cp.asarray(labels), holes=True)
        for i in range(count):
            assert len(device_holes[i]) == len(host_holes[i]), f"{name} object {i + 1}"
            for a, b in zip(device_holes[i], host_holes[i]):
                np.testing.assert_array_equal(cp.asnumpy(a), b, err_msg=f"{name} object {i + 1}")


@needs_cuda
def test_cuda_instances_from_probability_equal_the_host_chain(dsb_dir):
    """The semantic post-processing written once for numpy and cupy: same objects on the GPU."""
    import cupy as cp

    from cellrt.kernels import instances_from_probability  # noqa: PLC0415

    for name, mask, image in list(real_masks(dsb_dir))[:3]:
        labels, _ = label(mask, 8)
        interior = (labels > 0).astype(np.float32) * 0.9
        boundary = np.zeros_like(interior)
        boundary[1:][labels[1:] != labels[:-1]] = 0.8
        prob = np.stack([1 - np.maximum(interior, boundary), interior, boundary]).astype(np.float32)
        host, host_count = instances_from_probability(prob, min_area=5)
        device, device_count = instances_from_probability(cp.asarray(prob), min_area=5)
        assert device_count == host_count
        np.testing.assert_array_equal(cp.asnumpy(device), host, err_msg=name)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_grow_labels_equals_whole_array_steps(backend, dsb_dir, rng):
    """The frontier kernels against the whole-array definition (what the GPU path runs)."""
    from cellrt.kernels import binary_erosion, grow_labels
    from cellrt.kernels.objects import _grow_whole_array

    cases = []
    for name, mask, _ in list(real_masks(dsb_dir))[:3]:
        seeds, _ = label(binary_erosion(mask, 3), 8)
        cases.append((name, seeds, mask))
    noise_mask = rng.random((70, 90)) < 0.7
    noise_seeds = np.where(rng.random((70, 90)) < 0.02, rng.integers(1, 9, (70, 90)), 0).astype(np.int32)
    cases.append(("noise", noise_seeds, noise_mask))
    cases.append(("empty seeds", np.zeros((5, 6), np.int32), np.ones((5, 6), bool)))
    for name, seeds, mask in cases:
        for steps in (0, 1, 3, 8, 500):
            before = seeds.copy()
            np.testing.assert_array_equal(grow_labels(seeds, mask, steps, backend=backend),
                                          _grow_whole_array(seeds, mask, steps), err_msg=f"{name} {steps}")
            np.testing.assert_array_equal(seeds, before)   # the input is not modified
    with pytest.raises(ValueError, match=r"grow_labels: steps should be a non-negative int, got -1"):
        grow_labels(noise_seeds, noise_mask, -1)
    # More steps than a C int holds: as many as it takes (the kernel refused the Python int)
    np.testing.assert_array_equal(grow_labels(noise_seeds, noise_mask, 10**12, backend=backend),
                                  grow_labels(noise_seeds, noise_mask, noise_mask.size, backend=backend))
    for bad, found in ((noise_seeds + 0.7, "should be an integer array, got float64"),
                       (noise_seeds.astype(np.int64) + 2**32, r"should lie in \[0, 2\^31\), got 4294967296\.\."),
                       (noise_seeds - 1, r"should lie in \[0, 2\^31\), got -1\.\.")):
        with pytest.raises(ValueError, match=r"grow_labels: labels " + found):   # was cast: truncated or wrapped
            grow_labels(bad, noise_mask, 1, backend=backend)
    with pytest.raises(ValueError, match=r"grow_labels: labels and mask should be \(H, W\) of one shape"):
        grow_labels(noise_seeds, noise_mask[:10], 2)


@needs_cuda
def test_cuda_segment_finds_the_host_objects(dsb_dir):
    """segment() on a cupy image runs every step on the GPU. cupy.histogram may bin a value lying exactly
    on a bin edge differently from numpy, which can move Otsu's threshold by one bin: the objects are held
    to the host's by matching (F1 at IoU 0.5), not pixel for pixel."""
    import cupy as cp

    from cellrt.kernels import match_instances, segment  # noqa: PLC0415

    for name, _, image in list(real_masks(dsb_dir))[:6]:
        image = image if image.ndim == 2 else image[..., 0]
        host, host_count = segment(image)
        device, device_count = segment(cp.asarray(image))
        assert isinstance(device, cp.ndarray)
        score = match_instances(cp.asnumpy(device), host)
        assert score["f1"] >= 0.99 and abs(device_count - host_count) <= max(1, host_count // 100), (name, score)


def test_yes_no_arguments_take_bools_only():
    """A string such as "no" is truthy and True is an int to Python: both slipped through as the opposite or as
    a number."""
    from cellrt.kernels import instances_from_probability, mask_nms, matrix_nms, segment, stitch

    image = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match=r"segment: normalize should be True or False, got 'yes'"):
        segment(image, normalize="yes")
    with pytest.raises(ValueError, match=r"segment: fill should be True or False, got 1"):
        segment(image, fill=1)
    with pytest.raises(ValueError, match=r"instances_from_mask: fill should be True or False, got 'no'"):
        instances_from_mask(image > 0, fill="no")
    with pytest.raises(ValueError, match=r"instances_from_probability: fill should be True or False, got None"):
        instances_from_probability(image, fill=None)
    assert instances_from_mask(image > 0, fill=np.bool_(False))[1] == 0
    boxes = np.array([[0, 0, 4, 4], [1, 1, 5, 5]], np.int32)
    scores = np.array([0.9, 0.8], np.float32)
    masks = [np.ones((4, 4), bool), np.ones((4, 4), bool)]
    with pytest.raises(ValueError, match=r"mask_nms: class_aware should be True, False or None, got 'no'"):
        mask_nms(boxes, scores, masks, class_aware="no")
    with pytest.raises(ValueError, match=r"matrix_nms: class_aware should be True, False or None, got 0"):
        matrix_nms(boxes, scores, masks, class_aware=0)
    with pytest.raises(ValueError, match=r"matrix_nms: sigma should be a positive number, got True"):
        matrix_nms(boxes, scores, masks, sigma=True)
    tiles = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"stitch: fill_value should be a number or None, got True"):
        stitch(tiles, np.zeros((1, 2), np.int64), (8, 8), fill_value=True)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_label_writes_into_out_and_names_what_it_refuses(backend, rng):
    mask = rng.random((40, 30)) > 0.6
    expected, count = label(mask, 8, backend=backend)
    out = np.full(mask.shape, -1, np.int32)
    labels, n = label(mask, 8, backend=backend, out=out)
    assert labels is out and n == count
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match=r"label: out should be a writable C-contiguous int32 array of shape "
                                         r"\(40, 30\), got int64 \(40, 30\)"):
        label(mask, 8, backend=backend, out=np.zeros(mask.shape, np.int64))
    read_only = np.zeros(mask.shape, np.int32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"got int32 \(40, 30\), read-only"):
        label(mask, 8, backend=backend, out=read_only)
    with pytest.raises(ValueError, match=r"got int32 \(30, 40\), not C-contiguous"):
        label(mask.T.copy(), 8, backend=backend, out=np.zeros(mask.shape, np.int32).T)
    with pytest.raises(ValueError, match=r"got list"):
        label(mask, 8, backend=backend, out=[[0] * 30] * 40)
    storage = np.zeros(mask.size, np.int32)
    as_mask = storage.view(np.uint8)[:mask.size].reshape(mask.shape)   # the mask in out's own bytes
    as_mask[...] = mask
    with pytest.raises(ValueError, match=r"label: out should not share memory with mask"):
        label(as_mask, 8, backend=backend, out=storage.reshape(mask.shape))
