"""resize and resize_labels: against torch's and OpenCV's resampling, across backends, and their refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile
import torch

from cellrt._build import _core
from cellrt.kernels import rescaled_shape, resize, resize_labels

from .conftest import HOST_BACKENDS, needs_cuda

# Upsampling, downsampling by integer and fractional factors, extreme ratios, one pixel, the same size.
SHAPES = [((37, 53), (18, 26)), ((37, 53), (100, 140)), ((37, 53), (37, 53)), ((37, 53), (13, 80)),
          ((40, 40), (20, 20)), ((40, 40), (120, 120)), ((97, 3), (5, 300)), ((1, 1), (3, 4)), ((7, 9), (1, 1)),
          ((256, 256), (85, 171))]


def torch_resize(image: np.ndarray, shape, antialias: bool) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False,
                                           antialias=antialias)[0].numpy()


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_resize_matches_torch_interpolate(rng, backend, shapes, antialias):
    source, target = shapes
    image = rng.random((3,) + source, dtype=np.float32)
    out = resize(image, target, antialias=antialias, backend=backend)
    assert out.shape == (3,) + target and out.dtype == np.float32
    # torch computes coordinates and weights in float32 (errors ~1e-5 at coordinates of a few hundred
    # pixels); cellrt in double.
    np.testing.assert_allclose(out, torch_resize(image, target, antialias), rtol=0, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16, np.float64, np.bool_])
def test_resize_reads_every_dtype_as_its_values(rng, dtype):
    image = (rng.random((45, 61)) * (np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1.0)).astype(dtype)
    out = resize(image, (30, 80))
    np.testing.assert_allclose(out, torch_resize(image.astype(np.float32)[None], (30, 80), True)[0],
                               rtol=1e-6, atol=1e-5 * max(1.0, float(image.max())))


def test_upsampling_equals_opencv_inter_linear(rng):
    image = rng.random((50, 70), dtype=np.float32)
    for target in ((150, 210), (73, 101)):
        expected = cv2.resize(image, target[::-1], interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(resize(image, target), expected, rtol=0, atol=1e-5)


def test_backends_agree_and_cuda_bodies_equal_the_cpu_bit_for_bit(rng):
    """The CUDA kernels' per-sample bodies run on the host (_resize_by_pixels) give the CPU backend's
    floats exactly: CI has no GPU, so this is what holds the CUDA arithmetic to the CPU's."""
    for source, target in SHAPES:
        for dtype in (np.uint8, np.uint16, np.float32):
            image = (rng.random((2,) + source) * 300).astype(dtype)
            for antialias in (True, False):
                cpu = resize(image, target, antialias=antialias, backend="cpu", num_threads=2)
                by_pixels = np.empty_like(cpu)
                _core._resize_by_pixels(np.ascontiguousarray(image), by_pixels, antialias)
                np.testing.assert_array_equal(cpu, by_pixels)
                if "numba" in HOST_BACKENDS:
                    np.testing.assert_allclose(resize(image, target, antialias=antialias, backend="numba"), cpu,
                                               rtol=2e-7, atol=1e-6)


def test_taps_are_normalised_and_cover_the_filter():
    for n_in, n_out in ((100, 7), (7, 100), (64, 32), (33, 33), (1, 9), (9, 1)):
        for antialias in (True, False):
            first, count, weights = _core._resize_taps(n_in, n_out, antialias)
            assert (count >= 1).all() and (count <= weights.shape[1]).all()
            assert (first >= 0).all() and (first + count <= n_in).all()
            sums = np.array([weights[i, :c].sum(dtype=np.float64) for i, c in enumerate(count)])
            np.testing.assert_allclose(sums, 1.0, atol=1e-6)
            if antialias and n_in > n_out:
                # Every input pixel weighs in some output sample: nothing falls between the taps.
                covered = np.zeros(n_in, bool)
                for i, c in enumerate(count):
                    covered[first[i]:first[i] + c][weights[i, :c] > 0] = True
                assert covered.all()


def test_flat_images_stay_flat_and_downsampling_keeps_the_mean(rng):
    flat = np.full((2, 63, 90), 1234.5, np.float32)
    for target in ((21, 30), (200, 77), (1, 1)):
        np.testing.assert_allclose(resize(flat, target), 1234.5, rtol=1e-6)
    image = rng.random((512, 512), dtype=np.float32)
    assert abs(float(resize(image, (256, 256)).mean()) - float(image.mean())) < 1e-3


def test_antialias_removes_the_aliasing_of_fine_texture():
    # A one-pixel stripe pattern downsampled by 3: averaged (a triangle 3 pixels wide), it is nearly flat;
    # sampled, it makes stripes of full contrast.
    stripes = np.tile(np.array([0, 1], np.float32), (90, 45))
    smooth = resize(stripes, (30, 30))
    aliased = resize(stripes, (30, 30), antialias=False)
    assert aliased.std() > 0.45 and smooth.std() < 0.06
    assert abs(float(smooth.mean()) - 0.5) < 0.02


def test_real_nuclei_downsampled_then_upsampled_stay_close(dsb_dir):
    path = sorted((dsb_dir / "images").glob("*.tif"))[0]
    image = tifffile.imread(path).astype(np.float32)
    half = resize(image, rescaled_shape(image.shape, 0.5))
    back = resize(half, image.shape)
    assert back.shape == image.shape
    # Detail finer than the half-resolution grid is gone; the nuclei are not.
    assert np.corrcoef(back.ravel(), image.ravel())[0, 1] > 0.95


def test_resize_labels_matches_opencv_nearest_exact(rng):
    labels = rng.integers(0, 50, (37, 53)).astype(np.int32)
    for target in ((18, 26), (111, 160), (37, 53), (5, 300), (1, 1)):
        expected = cv2.resize(labels.astype(np.float32), target[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        out = resize_labels(labels, target)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, expected.astype(np.int32))
    # Scaling up by an integer factor and back gives the labels back.
    np.testing.assert_array_equal(resize_labels(resize_labels(labels, (111, 159)), labels.shape), labels)


def test_rescaled_shape():
    assert rescaled_shape((1024, 1360), 0.5) == (512, 680)
    assert rescaled_shape((3, 5, 7), 2.0) == (10, 14)
    assert rescaled_shape((3, 3), 1e-6) == (1, 1)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="factor should be a finite number > 0"):
            rescaled_shape((10, 10), bad)


@pytest.mark.parametrize("bad, match", [
    ((10,), "shape should be"), ((0, 5), "shape should be"), ((5.0, 5), "shape should be"),
    ((True, 5), "shape should be"), (None, "shape should be")])
def test_resize_refuses_bad_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        resize(np.zeros((4, 4), np.float32), bad)


def test_resize_refuses_bad_images():
    with pytest.raises(ValueError, match=r"should have shape \(H, W\) or \(C, H, W\)"):
        resize(np.zeros((1, 2, 4, 4), np.float32), (2, 2))
    with pytest.raises(ValueError, match="should be numeric"):
        resize(np.zeros((4, 4), np.complex64), (2, 2))
    with pytest.raises(ValueError, match="sides >= 1"):
        resize(np.zeros((0, 4), np.float32), (2, 2))
    image = np.ones((4, 4), np.float32)
    image[1, 2] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        resize(image, (2, 2))
    with pytest.raises(ValueError, match="antialias should be True or False"):
        resize(np.ones((4, 4), np.float32), (2, 2), antialias="no")
    with pytest.raises(ValueError, match="backend 'cpu' takes host|backend should be one of"):
        resize(np.ones((4, 4), np.float32), (2, 2), backend="gpu")
    with pytest.raises(ValueError, match="labels should be a 2-D integer"):
        resize_labels(np.ones((4, 4), np.float32), (2, 2))


def test_the_cpp_api_refuses_what_the_python_api_never_passes():
    with pytest.raises(ValueError, match="out should have the image's 2 channel"):
        _core.resize(np.zeros((2, 4, 4), np.float32), np.zeros((1, 2, 2), np.float32), True)
    with pytest.raises(ValueError, match="out should be float32"):
        _core.resize(np.zeros((1, 4, 4), np.float32), np.zeros((1, 2, 2), np.float64), True)
    with pytest.raises(ValueError, match="image should be uint8, uint16 or float32"):
        _core.resize(np.zeros((1, 4, 4), np.int32), np.zeros((1, 2, 2), np.float32), True)
    buffer = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="should not overlap"):
        _core.resize(buffer, buffer, True)


@needs_cuda
def test_cuda_resize_equals_the_cpu_bit_for_bit(rng):
    import cupy as cp

    for source, target in SHAPES:
        for dtype in (np.uint8, np.uint16, np.float32):
            image = (rng.random((2,) + source) * 300).astype(dtype)
            for antialias in (True, False):
                expected = resize(image, target, antialias=antialias, backend="cpu")
                out = resize(cp.asarray(image), target, antialias=antialias)
                assert isinstance(out, cp.ndarray)
                np.testing.assert_array_equal(out.get(), expected)
