"""gaussian_blur, box_mean, threshold_local and binary morphology against
scipy.ndimage and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellrt.kernels import (binary_closing, binary_dilation, binary_erosion, binary_opening, box_mean,
                            gaussian_blur, gaussian_blur_recursive, threshold_local)

from .conftest import HOST_BACKENDS

ndi = pytest.importorskip("scipy.ndimage", reason="scipy is the reference for filters (comes with scikit-image)")
skf = pytest.importorskip("skimage.filters")
skmorph = pytest.importorskip("skimage.morphology")

# float32 accumulation of up to ~100 taps against scipy's float64.
BLUR_RTOL = 1e-6


@pytest.fixture(scope="module")
def dapi(isl_dir):
    return tifffile.imread(isl_dir / "dapi.tif")[:300, :420].astype(np.float32)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.3, 12.0])
@pytest.mark.parametrize("border", ["reflect", "nearest"])
def test_gaussian_blur_matches_scipy(backend, sigma, border, dapi):
    got = gaussian_blur(dapi, sigma, border=border, backend=backend)
    want = ndi.gaussian_filter(dapi.astype(np.float64), sigma, mode=border, truncate=4.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=BLUR_RTOL * 10, atol=BLUR_RTOL * np.abs(want).max())


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("size", [1, 3, 8, (5, 13), 61])
def test_box_mean_matches_scipy_uniform_filter(backend, size, dapi):
    got = box_mean(dapi, size, backend=backend)
    want = ndi.uniform_filter(dapi.astype(np.float64), size, mode="reflect")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_filters_on_images_smaller_than_the_window():
    tiny = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(box_mean(tiny, 9), ndi.uniform_filter(tiny.astype(np.float64), 9, mode="reflect"),
                               rtol=1e-6)
    np.testing.assert_allclose(gaussian_blur(tiny, 4.0), ndi.gaussian_filter(tiny.astype(np.float64), 4.0),
                               rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 7])
def test_filters_do_not_depend_on_thread_count(threads, dapi):
    np.testing.assert_array_equal(gaussian_blur(dapi, 2.5, num_threads=threads), gaussian_blur(dapi, 2.5, num_threads=1))
    np.testing.assert_array_equal(box_mean(dapi, 15, num_threads=threads), box_mean(dapi, 15, num_threads=1))


@pytest.mark.parametrize("method", ["mean", "gaussian"])
def test_threshold_local_matches_skimage(method, dapi):
    got = threshold_local(dapi, 35, method, offset=5.0)
    want = skf.threshold_local(dapi.astype(np.float64), 35, method, offset=5.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


# gaussian_blur_recursive's kernel differs from scipy's taps by an L1 sum of at most 6.5e-4 per pass for
# sigma >= 1 (9.4e-4 at 0.5; tools/fit_recursive_gaussian.py): a bound on |difference| / max|image| for
# two passes, with room for float rounding.
RECURSIVE_VS_EXACT = 2 * 9.4e-4 + 1e-5


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.3, 12.0, 40.0])
@pytest.mark.parametrize("border", ["reflect", "nearest"])
def test_gaussian_blur_recursive_is_within_its_bound_of_scipy(backend, sigma, border, dapi):
    got = gaussian_blur_recursive(dapi, sigma, border=border, backend=backend)
    want = ndi.gaussian_filter(dapi.astype(np.float64), sigma, mode=border, truncate=4.0)
    assert got.dtype == np.float32 and got.shape == dapi.shape
    error = np.abs(got - want).max() / np.abs(dapi).max()
    assert error < RECURSIVE_VS_EXACT, error
    # Real images are smooth, and the kernel difference oscillates: the error is far below the bound.
    assert error < 5e-4 if sigma >= 1 else error < 1e-3


def test_gaussian_blur_recursive_cpu_equals_the_numba_convolution_with_its_kernel(rng):
    """numba convolves directly (float64) with the kernel the recursion applies; the C++ recursion runs in
    double between float32 passes: they agree to float rounding, which is what checks the recursion, its
    warm-up and its borders (a wrong pole, gain or border sample moves results by far more)."""
    image = rng.random((97, 130)).astype(np.float32) * 1000.0
    for sigma in (0.7, 3.0, 16.0, 60.0):   # 60: wider than the image, every sample border-mapped many times
        for border in ("reflect", "nearest"):
            cpu = gaussian_blur_recursive(image, sigma, border=border, backend="cpu")
            ref = gaussian_blur_recursive(image, sigma, border=border, backend="numba")
            assert np.abs(cpu - ref).max() < 5e-6 * 1000.0, (sigma, border, np.abs(cpu - ref).max())


def test_gaussian_blur_recursive_keeps_flat_images_flat_to_one_ulp_and_spreads_a_spike_as_a_gaussian(dapi):
    flat = np.full((64, 80), 1234.5, np.float32)
    for sigma in (0.3, 2.0, 150.0, 5000.0):
        ulps = np.abs(gaussian_blur_recursive(flat, sigma).view(np.int32) - flat.view(np.int32))
        assert ulps.max() <= 1, (sigma, ulps.max())
    np.testing.assert_array_equal(gaussian_blur_recursive(dapi, 0.0), dapi)
    # A spike spreads as the gaussian: unit sum, peak 1 / (2 pi sigma^2).
    spike = np.zeros((201, 201), np.float32)
    spike[100, 100] = 1.0
    out = gaussian_blur_recursive(spike, 10.0)
    assert abs(float(out.sum(dtype=np.float64)) - 1.0) < 1e-4
    assert abs(float(out[100, 100]) - 1.0 / (2 * np.pi * 100.0)) < 2e-4 / (2 * np.pi * 100.0) * 10


@pytest.mark.parametrize("threads", [1, 2, 7])
def test_gaussian_blur_recursive_does_not_depend_on_thread_count(threads, dapi):
    np.testing.assert_array_equal(gaussian_blur_recursive(dapi, 9.0, num_threads=threads),
                                  gaussian_blur_recursive(dapi, 9.0, num_threads=1))


def test_threshold_local_gaussian_recursive_masks_nearly_as_skimage(dsb_dir):
    """On real nuclei images, the recursive local threshold marks the same foreground as scikit-image's
    gaussian one except for pixels within the approximation of the threshold."""
    paths = sorted((dsb_dir / "images").glob("*.tif"))[::40]
    assert paths, "no dsb2018 images"
    differing = total = 0
    for path in paths:
        image = tifffile.imread(path).astype(np.float32)
        for block in (35, 101):
            got = image > threshold_local(image, block, "gaussian_recursive", offset=-1.0)
            want = image > skf.threshold_local(image.astype(np.float64), block, "gaussian", offset=-1.0)
            differing += int(np.count_nonzero(got != want))
            total += image.size
    assert differing <= 3e-4 * total, (differing, total)   # measured: 6e-5


def _reference_footprint(radius: int, footprint: str) -> np.ndarray:
    return skmorph.disk(radius).astype(bool) if footprint == "disk" else np.ones((2 * radius + 1,) * 2, bool)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("radius", [0, 1, 2, 5, 13])
@pytest.mark.parametrize("footprint", ["disk", "square"])
def test_binary_morphology_matches_scipy(backend, radius, footprint, rng):
    mask = rng.random((90, 110)) > 0.35
    mask[:, :3] = True  # objects touching the border
    mask[40:70, 50:95] = True  # a block wider than the largest footprint
    fp = _reference_footprint(radius, footprint)
    eroded = ndi.binary_erosion(mask, fp, border_value=1)  # the border does not erode (skimage's convention)
    dilated = ndi.binary_dilation(mask, fp)
    np.testing.assert_array_equal(binary_erosion(mask, radius, footprint, backend=backend), eroded)
    np.testing.assert_array_equal(binary_dilation(mask, radius, footprint, backend=backend), dilated)
    np.testing.assert_array_equal(binary_opening(mask, radius, footprint, backend=backend),
                                  ndi.binary_dilation(eroded, fp))
    np.testing.assert_array_equal(binary_closing(mask, radius, footprint, backend=backend),
                                  ndi.binary_erosion(dilated, fp, border_value=1))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_binary_morphology_on_real_nuclei_and_edge_shapes(backend, dsb_dir):
    from cellrt.training import data as training_data  # noqa: PLC0415

    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[2]
    masks = {"real": tifffile.imread(dsb_dir / "labels" / f"{image_id}.tif") > 0,
             "one pixel": np.pad(np.ones((1, 1), bool), 4), "empty": np.zeros((5, 7), bool),
             "full": np.ones((6, 5), bool), "one row": np.array([[1, 1, 0, 1, 1, 1, 1]], bool),
             "one column": np.array([[1], [1], [0], [1]], bool)}
    for name, mask in masks.items():
        for radius, footprint in ((1, "disk"), (3, "disk"), (2, "square"), (40, "disk")):
            fp = _reference_footprint(radius, footprint)
            np.testing.assert_array_equal(binary_erosion(mask, radius, footprint, backend=backend),
                                          ndi.binary_erosion(mask, fp, border_value=1), err_msg=f"{name} {radius}")
            np.testing.assert_array_equal(binary_dilation(mask, radius, footprint, backend=backend),
                                          ndi.binary_dilation(mask, fp), err_msg=f"{name} {radius}")


def test_footprint_half_widths_are_skimage_disks():
    from cellrt.kernels.filters import footprint_half_widths  # noqa: PLC0415

    for radius in range(0, 60):
        disk = skmorph.disk(radius).astype(bool)
        assert footprint_half_widths(radius).tolist() == (disk.sum(axis=1) // 2).tolist()


def test_binary_morphology_does_not_depend_on_thread_count(rng):
    mask = rng.random((301, 257)) > 0.3
    reference = binary_erosion(mask, 4, backend="cpu", num_threads=1)
    for threads in (2, 3, 7):
        np.testing.assert_array_equal(binary_erosion(mask, 4, backend="cpu", num_threads=threads), reference)


def test_filters_of_empty_images_return_empty_images_on_every_path():
    """Zero rows or columns: nothing to compute, and no border to map (the per-line passes once divided by the
    line's length there)."""
    from cellrt._build import _core  # noqa: PLC0415

    for shape in ((0, 5), (5, 0)):
        empty = np.zeros(shape, np.float32)
        for op, a, b in ((0, 1.0, 4.0), (1, 3, 3), (2, 1.0, 0.0)):
            assert _core.filter_by_lines(empty, op, a, b, 0).shape == shape
        assert gaussian_blur_recursive(empty, 2.0).shape == shape
        assert gaussian_blur(empty, 2.0).shape == shape and box_mean(empty, 3).shape == shape


def test_filter_bad_input():
    img = np.ones((8, 8), np.float32)
    np.testing.assert_array_equal(gaussian_blur(img, 1.0, truncate=np.float32(4.0)), gaussian_blur(img, 1.0))
    with pytest.raises(ValueError, match=r"gaussian_blur: truncate should be > 0, got True"):
        gaussian_blur(img, 1.0, truncate=True)
    with pytest.raises(ValueError, match=r"gaussian_blur: sigma should be a number >= 0, got -1"):
        gaussian_blur(img, -1)
    with pytest.raises(ValueError, match=r"gaussian_blur: image should have shape \(H, W\), got \(2, 8, 8\)"):
        gaussian_blur(np.ones((2, 8, 8)), 1)
    with pytest.raises(ValueError, match=r"gaussian_blur: image holds 1 NaN/inf values"):
        gaussian_blur(np.array([[1.0, np.inf]]), 1)
    with pytest.raises(ValueError, match=r"box_mean: size should be a positive int or a \(y, x\) pair of them, got 0"):
        box_mean(img, 0)
    for size in ((3,), (3, 4, 5)):   # failed unpacking the pair ('not enough values to unpack')
        with pytest.raises(ValueError, match=r"box_mean: size should be a positive int or a \(y, x\) pair of them"):
            box_mean(img, size)
    with pytest.raises(ValueError, match=r"box_mean: border should be 'reflect' or 'nearest', got 'wrap'"):
        box_mean(img, 3, border="wrap")
    with pytest.raises(ValueError, match=r"threshold_local: block_size should be an odd int >= 3, got 4"):
        threshold_local(img, 4)
    with pytest.raises(ValueError, match=r"threshold_local: method should be 'mean', 'gaussian' or "
                                         r"'gaussian_recursive', got 'median'"):
        threshold_local(img, 5, "median")
    for offset in (None, np.nan, np.inf, "0.1"):   # were NaN/inf thresholds everywhere: an empty mask
        with pytest.raises(ValueError, match=r"threshold_local: offset should be a finite number, got "):
            threshold_local(img, 5, offset=offset)
    with pytest.raises(ValueError, match=r"gaussian_blur_recursive: sigma should be a number in \[0, 100000\], "
                                         r"got 200000.0"):
        gaussian_blur_recursive(img, 2e5)
    with pytest.raises(ValueError, match=r"gaussian_blur_recursive: image holds 1 NaN/inf values"):
        gaussian_blur_recursive(np.array([[1.0, np.nan]]), 1)
    with pytest.raises(ValueError, match=r"gaussian_blur_recursive: border should be 'reflect' or 'nearest'"):
        gaussian_blur_recursive(img, 1.0, border="wrap")
    with pytest.raises(ValueError, match=r"binary_erosion: footprint should be 'square' or 'disk', got 'star'"):
        binary_erosion(img > 0, 1, "star")
    with pytest.raises(ValueError, match=r"binary_dilation: radius should be an int in \[0, 32767\), got -1"):
        binary_dilation(img > 0, -1)
    with pytest.raises(ValueError, match=r"binary_erosion: mask should have shape \(H, W\), got \(2, 8, 8\)"):
        binary_erosion(np.ones((2, 8, 8), bool), 1)
    with pytest.raises(ValueError, match=r"binary_erosion: mask holds NaN or inf"):
        binary_erosion(np.array([[1.0, np.nan]]), 1)


from .conftest import needs_cuda  # noqa: E402


@pytest.mark.parametrize("border", ["reflect", "nearest"])
def test_cuda_filter_passes_run_on_the_host_equal_the_cpu_backend(border, dapi):
    """The CUDA kernels' per-line arithmetic (filter_lines.h), run on the host: bit for bit the CPU
    backend (box_mean with one CPU thread: each CPU thread restarts its running column sums)."""
    from cellrt._build import _core  # noqa: PLC0415
    from cellrt.kernels.filters import BORDERS  # noqa: PLC0415

    for sigma in (0.5, 1.0, 3.3, 12.0):
        np.testing.assert_array_equal(_core.filter_by_lines(dapi, 0, sigma, 4.0, BORDERS[border]),
                                      gaussian_blur(dapi, sigma, border=border, backend="cpu", num_threads=3))
    for sigma in (0.5, 3.3, 40.0):
        np.testing.assert_array_equal(_core.filter_by_lines(dapi, 2, sigma, 0.0, BORDERS[border]),
                                      gaussian_blur_recursive(dapi, sigma, border=border, backend="cpu",
                                                              num_threads=3))
    for size in ((3, 3), (7, 5), (31, 31), (1, 9), (301, 7)):
        lines = _core.filter_by_lines(dapi, 1, size[0], size[1], BORDERS[border])
        np.testing.assert_array_equal(lines, box_mean(dapi, size, border=border, backend="cpu", num_threads=1))
        np.testing.assert_allclose(lines, box_mean(dapi, size, border=border, backend="cpu", num_threads=3),
                                   rtol=1e-6)


@needs_cuda
@pytest.mark.parametrize("border", ["reflect", "nearest"])
def test_cuda_filters_match_cpu(border, dapi):
    import cupy as cp

    device = cp.asarray(dapi)
    for sigma in (0.8, 4.0):
        np.testing.assert_array_equal(cp.asnumpy(gaussian_blur(device, sigma, border=border)),
                                      gaussian_blur(dapi, sigma, border=border, backend="cpu"))
    for sigma in (0.8, 25.0):
        np.testing.assert_array_equal(cp.asnumpy(gaussian_blur_recursive(device, sigma, border=border)),
                                      gaussian_blur_recursive(dapi, sigma, border=border, backend="cpu"))
    for size in ((3, 3), (15, 9)):
        np.testing.assert_array_equal(cp.asnumpy(box_mean(device, size, border=border)),
                                      box_mean(dapi, size, border=border, backend="cpu", num_threads=1))


@needs_cuda
def test_cuda_filters_of_tall_and_empty_images(rng):
    """A strip taller than 65535 thread rows of 8 (the gaussian's grid strides over rows), and empty images."""
    import cupy as cp

    strip = rng.random((530_000, 3)).astype(np.float32)
    np.testing.assert_array_equal(cp.asnumpy(gaussian_blur(cp.asarray(strip), 1.5)), gaussian_blur(strip, 1.5))
    for shape in ((0, 5), (5, 0)):
        empty = cp.zeros(shape, cp.float32)
        for result in (gaussian_blur(empty, 1.0), gaussian_blur_recursive(empty, 1.0), box_mean(empty, 3)):
            assert result.shape == shape


@needs_cuda
@pytest.mark.parametrize("footprint", ["disk", "square"])
def test_cuda_binary_morphology_matches_cpu(footprint, rng):
    import cupy as cp

    mask = rng.random((300, 517)) > 0.3
    for radius in (0, 1, 3, 9):
        for op in (binary_erosion, binary_dilation, binary_opening):
            host = op(mask, radius, footprint, backend="cpu")
            device = op(cp.asarray(mask), radius, footprint)
            np.testing.assert_array_equal(cp.asnumpy(device), host, err_msg=f"{op.__name__} {radius}")


def test_cuda_per_pixel_clearance_equals_the_row_sweeps(dsb_dir, rng):
    """The CUDA morphology's per-pixel clearance (morphology_kernel.h), run on the host, against the row
    sweeps the CPU backend and large CUDA footprints use: every pixel, caps 0..70, both polarities."""
    from cellrt._build import _core  # noqa: PLC0415
    from cellrt.training import data as training_data  # noqa: PLC0415

    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[2]
    masks = [(tifffile.imread(dsb_dir / "labels" / f"{image_id}.tif") > 0).astype(np.uint8),
             (rng.random((37, 301)) > 0.2).astype(np.uint8), np.ones((3, 90), np.uint8), np.zeros((2, 5), np.uint8),
             np.ones((1, 1), np.uint8)]
    for mask in masks:
        for cap in (0, 1, 2, 5, 17, 70):
            for invert in (False, True):
                np.testing.assert_array_equal(_core.row_clearances(mask, cap, invert, True),
                                              _core.row_clearances(mask, cap, invert, False),
                                              err_msg=f"{mask.shape} cap {cap} invert {invert}")
