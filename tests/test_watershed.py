"""Touching objects split by shape: distance transform, h-maxima seeds, seeded watershed, checked against
scipy and scikit-image, on random and hand-made masks and on the hand-made labels of dsb2018_fluo."""
import numpy as np
import pytest
import tifffile

from cellrt.kernels import (distance_transform, h_maxima_seeds, instances_from_probability, label, match_instances,
                            split_touching, watershed)

ndi = pytest.importorskip("scipy.ndimage")
skimage_morphology = pytest.importorskip("skimage.morphology")
skimage_segmentation = pytest.importorskip("skimage.segmentation")

HOST = ["cpu", "numba"]


def _random_masks(seed=0):
    rng = np.random.default_rng(seed)
    masks = [rng.random(shape) > 0.3 for shape in [(1, 1), (1, 9), (9, 1), (37, 53), (128, 96)]]
    masks += [ndi.binary_opening(rng.random((120, 140)) > 0.35, iterations=2) for _ in range(3)]
    masks.append(np.pad(np.ones((20, 30), bool), 1))          # one block, background only on the frame
    return masks


@pytest.mark.parametrize("backend", HOST)
def test_distance_transform_equals_scipy(backend, dsb_dir):
    truths = [tifffile.imread(p) > 0 for p in sorted((dsb_dir / "labels").glob("*.tif"))[::25]]
    for mask in _random_masks() + truths:
        if mask.all():
            continue
        expected = ndi.distance_transform_edt(mask).astype(np.float32)
        np.testing.assert_array_equal(distance_transform(mask, backend=backend), expected)
    assert np.all(distance_transform(np.ones((3, 4)), backend=backend) == np.inf)   # no background anywhere
    assert np.all(distance_transform(np.zeros((3, 4)), backend=backend) == 0)


@pytest.mark.parametrize("backend", HOST)
def test_h_maxima_seeds_mark_one_pixel_of_each_scikit_image_h_maximum(backend):
    rng = np.random.default_rng(1)
    for _ in range(6):
        values = (ndi.gaussian_filter(rng.random((80, 90)), 3) * 100).astype(np.float32)
        values -= values.min() - 0.5
        for h in (0.0, 0.5, 2.0):
            seeds, count = h_maxima_seeds(values, h, backend=backend)
            maxima = (skimage_morphology.h_maxima(values, h) if h > 0 else     # h = 0: the regional maxima
                      skimage_morphology.local_maxima(values, connectivity=2))
            regions, expected = label(maxima > 0, 8)
            assert count == expected == int(seeds.max())
            assert np.count_nonzero(seeds) == count
            assert sorted(regions[seeds > 0].tolist()) == list(range(1, count + 1))   # one seed per region
            flat = np.flatnonzero(seeds)
            assert list(seeds.ravel()[flat]) == list(range(1, count + 1))          # numbered in raster order
    # Two equal maxima with a dip of 0.5 < h between them are one dome (scikit-image marks two regions).
    assert h_maxima_seeds(np.array([[1, 3, 2.5, 3, 1]], np.float32), 1.0, backend=backend)[1] == 1
    assert h_maxima_seeds(np.array([[1, 3, 1.5, 3, 1]], np.float32), 1.0, backend=backend)[1] == 2
    plateau = np.zeros((5, 7), np.float32)
    plateau[1:4, 1:6] = 2.0
    seeds, count = h_maxima_seeds(plateau, 1.0, backend=backend)
    assert count == 1 and seeds[1, 1] == 1                                            # first pixel of the plateau


def test_host_backends_agree_bit_for_bit(dsb_dir):
    for mask in _random_masks(2) + [tifffile.imread(p) > 0 for p in sorted((dsb_dir / "labels").glob("*.tif"))[::30]]:
        distance = distance_transform(mask)
        for h in (0.5, 1.0, 3.0):
            cpu, numba = (h_maxima_seeds(distance, h, backend=b)[0] for b in HOST)
            np.testing.assert_array_equal(cpu, numba)
            for connectivity in (4, 8):
                a, b = (watershed(-distance, cpu, mask, connectivity=connectivity, backend=b) for b in HOST)
                np.testing.assert_array_equal(a, b)


def test_thread_counts_and_any_surface_give_the_same_labels(dsb_dir):
    """The C++ watershed floods the mask's components one at a time, shared out among threads, with the
    flood order as integer keys; the numba one floods the whole image at once with float keys. Surfaces
    of both signs, many ties and signed zeros (-0 and +0 are one value: first come, first served), any
    thread count: the same labels."""
    rng = np.random.default_rng(11)
    masks = _random_masks(4) + [tifffile.imread(p) > 0 for p in sorted((dsb_dir / "labels").glob("*.tif"))[::40]]
    for mask in masks:
        distance = distance_transform(mask, num_threads=1)
        for threads in (2, 7):
            np.testing.assert_array_equal(distance_transform(mask, num_threads=threads), distance)
        seeds = h_maxima_seeds(distance, 1.0)[0]
        surfaces = [-distance, np.round(rng.normal(size=mask.shape), 1).astype(np.float32),
                    np.where(rng.random(mask.shape) < 0.5, np.float32(-0.0), np.float32(0.0))]
        for surface in surfaces:
            for connectivity in (4, 8):
                expected = watershed(surface, seeds, mask, connectivity=connectivity, backend="numba")
                for threads in (1, 2, 7):
                    np.testing.assert_array_equal(
                        watershed(surface, seeds, mask, connectivity=connectivity, backend="cpu", num_threads=threads),
                        expected)


def test_split_touching_is_its_three_kernels_on_every_backend(dsb_dir):
    """On the C++ backend split_touching calls the kernels directly (no checks or copies between them): the
    same labels and count as the three public functions composed, and as numba, for any thread count."""
    masks = _random_masks(6) + [tifffile.imread(p) > 0 for p in sorted((dsb_dir / "labels").glob("*.tif"))[::35]]
    for mask in masks:
        for connectivity in (4, 8):
            distance = distance_transform(mask)
            seeds, count = h_maxima_seeds(distance, 1.0, connectivity=connectivity)
            composed = watershed(-distance, seeds, mask, connectivity=connectivity)
            for backend, threads in (("cpu", 1), ("cpu", 3), ("numba", 0)):
                labels, n = split_touching(mask, h=1.0, connectivity=connectivity, backend=backend,
                                           num_threads=threads)
                assert n == count
                np.testing.assert_array_equal(labels, composed)


@pytest.mark.parametrize("backend", HOST)
def test_watershed_matches_scikit_image(backend):
    rng = np.random.default_rng(3)
    for _ in range(10):
        mask = ndi.binary_opening(rng.random((120, 140)) > 0.35, iterations=2)
        distance = distance_transform(mask)
        seeds, _ = label(distance >= np.maximum(2, ndi.maximum_filter(distance, 9)), 8)
        ours = watershed(-distance, seeds, mask, backend=backend)
        theirs = skimage_segmentation.watershed(-distance, seeds, mask=mask, connectivity=2)
        assert np.all((ours > 0) == (theirs > 0))      # the same pixels are reached
        assert np.mean(ours == theirs) > 0.999           # and take the same seed but for ties at equal levels
    # A seed outside the mask is dropped; a mask region with no seed stays 0.
    mask = np.zeros((5, 9), bool)
    mask[:, :4] = mask[:, 5:] = True
    seeds = np.zeros((5, 9), np.int32)
    seeds[2, 1], seeds[2, 4] = 1, 2
    labels = watershed(np.zeros((5, 9)), seeds, mask, backend=backend)
    assert np.all(labels[:, :4] == 1) and np.all(labels[:, 4:] == 0)


@pytest.mark.parametrize("backend", HOST)
def test_split_touching_parts_two_discs_at_their_neck_and_keeps_an_ellipse_whole(backend):
    yy, xx = np.mgrid[:60, :100]
    discs = ((yy - 30) ** 2 + (xx - 32) ** 2 <= 18 ** 2) | ((yy - 30) ** 2 + (xx - 64) ** 2 <= 16 ** 2)
    labels, count = split_touching(discs, backend=backend)
    assert count == 2 and labels[30, 32] == 1 and labels[30, 64] == 2
    column = np.flatnonzero((labels[30] == 1)[:-1] & (labels[30, 1:] == 2))[0]   # the cut, near the neck (x 49)
    assert abs(column - 49) <= 2
    assert set(np.unique(labels[discs])) == {1, 2} and np.all(labels[~discs] == 0)
    ellipse = ((yy - 30) / 12.0) ** 2 + ((xx - 50) / 40.0) ** 2 <= 1
    assert split_touching(ellipse, backend=backend)[1] == 1


def test_split_touching_separates_touching_nuclei_of_dsb2018(dsb_dir):
    """On the hand-made labels' masks: merged touching nuclei are split, elongated ones are not cut."""
    truths = [tifffile.imread(p).astype(np.int32) for p in sorted((dsb_dir / "labels").glob("*.tif"))[::10]]
    merged = np.mean([match_instances(label(t > 0, 8)[0], t)["f1"] for t in truths])
    split = np.mean([match_instances(split_touching(t > 0, h=1.0)[0], t)["f1"] for t in truths])
    assert split > 0.97 and split > merged + 0.02   # measured: 0.979 vs 0.941


def test_instances_from_probability_splits_a_foreground_map_on_request():
    yy, xx = np.mgrid[:60, :100]
    discs = ((yy - 30) ** 2 + (xx - 32) ** 2 <= 18 ** 2) | ((yy - 30) ** 2 + (xx - 64) ** 2 <= 16 ** 2)
    prob = discs.astype(np.float32) * 0.9
    assert instances_from_probability(prob)[1] == 1
    labels, count = instances_from_probability(prob, split_h=1.0, min_area=20)
    assert count == 2 and labels.max() == 2
    with pytest.raises(ValueError, match="split_h splits a single foreground map"):
        instances_from_probability(np.stack([1 - prob, prob, 0 * prob]), split_h=1.0)


def test_segment_splits_touching_nuclei_on_request(dsb_dir):
    """segment()'s last step with split_h: on real images the split keeps F1 at least as high and finds
    more objects where nuclei touch."""
    from cellrt.kernels import segment

    images = sorted((dsb_dir / "images").glob("*.tif"))[::20]
    plain, split, more = [], [], 0
    for path in images:
        image = tifffile.imread(path)
        truth = tifffile.imread(dsb_dir / "labels" / path.name).astype(np.int32)
        a, b = segment(image), segment(image, split_h=1.0)
        plain.append(match_instances(a[0], truth)["f1"])
        split.append(match_instances(b[0], truth)["f1"])
        more += b[1] > a[1]
    assert np.mean(split) >= np.mean(plain) - 0.005 and more > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"distance_transform: mask should have shape \(H, W\), got \(2, 3, 3\)"):
        distance_transform(np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="distance_transform: mask holds NaN or inf"):
        distance_transform(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="h_maxima_seeds: h should be a number >= 0, got -1"):
        h_maxima_seeds(np.ones((3, 3)), -1)
    with pytest.raises(ValueError, match="h_maxima_seeds: values hold NaN"):
        h_maxima_seeds(np.array([[np.nan, 1.0]]), 1.0)
    with pytest.raises(ValueError, match=r"h_maxima_seeds: values should be real numbers, got dtype <U3"):
        h_maxima_seeds(np.array([["63.", "1"]]), 1.0)   # was parsed as 63 and 1
    with pytest.raises(ValueError, match=r"h_maxima_seeds: values should be real numbers, got dtype complex128"):
        h_maxima_seeds(np.ones((2, 2), complex), 1.0)
    with pytest.raises(ValueError, match=r"watershed: surface should be real numbers, got dtype complex128"):
        watershed(np.ones((2, 2), complex), np.eye(2, dtype=np.int32), np.ones((2, 2)))
    for op in (distance_transform, split_touching):   # a string mask was all foreground
        with pytest.raises(ValueError, match=rf"{op.__name__}: mask should be boolean or numeric, got dtype <U1"):
            op(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"watershed: surface, markers and mask should have one shape"):
        watershed(np.zeros((3, 3)), np.zeros((3, 4), np.int32), np.ones((3, 3)))
    with pytest.raises(ValueError, match="watershed: connectivity should be 4 or 8, got 6"):
        watershed(np.zeros((3, 3)), np.zeros((3, 3), np.int32), np.ones((3, 3)), connectivity=6)
    with pytest.raises(ValueError, match="watershed: markers should be non-negative integer labels"):
        watershed(np.zeros((3, 3)), -np.ones((3, 3), np.int32), np.ones((3, 3)))
    for backend in HOST:
        with pytest.raises(ValueError, match="split_touching: h should be a number >= 0, got -1"):
            split_touching(np.ones((3, 3)), h=-1, backend=backend)
        with pytest.raises(ValueError, match="split_touching: connectivity should be 4 or 8, got 6"):
            split_touching(np.ones((3, 3)), connectivity=6, backend=backend)
        with pytest.raises(ValueError, match=r"split_touching: mask should have shape \(H, W\)"):
            split_touching(np.ones((2, 3, 3)), backend=backend)
    # The C++ kernels check NaN themselves: the C ABI reaches them without the Python checks.
    core = pytest.importorskip("cellrt._core", reason="needs the compiled extension")
    nan = np.array([[np.nan, 1.0]], np.float32)
    with pytest.raises(ValueError, match="watershed: surface holds 1 NaN"):
        core.watershed(nan, np.zeros((1, 2), np.int32), np.ones((1, 2), np.uint8), 8)
    with pytest.raises(ValueError, match="h_maxima_seeds: values hold 1 NaN"):
        core.h_maxima_seeds(nan, 1.0, 8)


@pytest.mark.cuda
def test_a_device_foreground_map_is_split_on_the_host_and_comes_back_to_the_device():
    """instances_from_probability(split_h=...) on a cupy map: the split runs on the host (its flood is
    sequential) and the labels return as a cupy array equal to the host result."""
    import cupy as cp

    yy, xx = np.mgrid[:60, :100]
    discs = ((yy - 30) ** 2 + (xx - 32) ** 2 <= 18 ** 2) | ((yy - 30) ** 2 + (xx - 64) ** 2 <= 16 ** 2)
    prob = discs.astype(np.float32) * 0.9
    host, count = instances_from_probability(prob, split_h=1.0)
    device, device_count = instances_from_probability(cp.asarray(prob), split_h=1.0)
    assert isinstance(device, cp.ndarray) and device_count == count == 2
    np.testing.assert_array_equal(device.get(), host)
