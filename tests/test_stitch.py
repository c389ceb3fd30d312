"""tile and stitch: invariants, references, backends, edge cases and errors."""

from __future__ import annotations

import inspect
import os
import sys

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellrt import kernels
from cellrt.kernels import BackendUnavailableError, stitch, tile, tile_origins
from cellrt.kernels.stitch import percentile_normalization

from .conftest import HOST_BACKENDS, needs_cuda
from .reference import BLENDS, stitch_reference, tile_reference

# Tolerances against the float64 references, per tile dtype: float32
# accumulation of at most four weighted terms, and float16 storage.
TOL = {np.float32: 2e-6, np.float16: 1e-3}
# cpu and numba share float32 accumulation in the same tile order; they may
# differ only through window values (float32 vs float64-then-rounded math).
CPU_NUMBA_RTOL = 1e-6
# Relative error of a float32 weighted mean of up to four tiles whose values
# agree: each weight*value, the sums and the division round once each.
ROUNDING = 8 * 2.0**-24


def crop_tiles(image, origins, th, tw):
    """Exact crops of image (reflect beyond the border), as a model-free 'identity model'."""
    return tile_reference(image, origins, th, tw).astype(np.float32)


# --- tile_origins --------------------------------------------------------------------

def test_tile_origins_regular_grid_with_flush_last_tile():
    origins = tile_origins((1000, 700), 256, overlap=64)
    ys, xs = np.unique(origins[:, 0]), np.unique(origins[:, 1])
    assert ys.tolist() == [0, 192, 384, 576, 744]
    assert xs.tolist() == [0, 192, 384, 444]
    # raster order: y outer, x inner
    assert origins[:4].tolist() == [[0, 0], [0, 192], [0, 384], [0, 444]]


def test_tile_origins_fraction_follows_monai_stride():
    # MONAI: interval = int(roi * (1 - overlap)); 256 * 0.75 = 192
    assert tile_origins((2048, 2048), 256, overlap=0.25).shape == (121, 2)
    assert tile_origins((2048, 2048), 100, overlap=0.3)[1, 1] == int(100 * 0.7)


def test_tile_origins_image_smaller_than_tile():
    assert tile_origins((3, 50, 40), 64, 16).tolist() == [[0, 0]]


def test_tile_origins_rectangular_tiles_and_overlaps():
    origins = tile_origins((300, 500), (128, 256), overlap=(32, 0))
    assert np.unique(origins[:, 0]).tolist() == [0, 96, 172]
    assert np.unique(origins[:, 1]).tolist() == [0, 244]


def _core_or_skip():
    from cellrt._build import _core

    if _core is None:
        pytest.skip("the compiled extension is not available")
    return _core


def test_tile_origins_cpp_grid_equals_the_numpy_grid_exhaustively():
    # cellrt.kernels.tile_origins returns the C++ grid (cellrt::tile_origins, cellrt_tile_origins in C); the numpy
    # grid it replaced stays the reference. Every tile side and overlap against every image side up to 3 tiles.
    from cellrt.kernels.stitch import _grid_numpy

    core = _core_or_skip()
    for tile_side in range(1, 13):
        for overlap in range(tile_side):
            for side in range(1, 3 * tile_side + 2):
                expected = _grid_numpy(side, 5, tile_side, 3, overlap, 1)
                got = core.tile_origins(side, 5, tile_side, 3, overlap, 1)
                assert got.dtype == np.int64 and got.flags.c_contiguous
                np.testing.assert_array_equal(got, expected, err_msg=f"{side} {tile_side} {overlap}")
                np.testing.assert_array_equal(core.tile_origins(5, side, 3, tile_side, 1, overlap),
                                              _grid_numpy(5, side, 3, tile_side, 1, overlap))


@settings(max_examples=200, deadline=None)
@given(height=st.integers(1, 6000), width=st.integers(1, 6000), tile_h=st.integers(32, 2048),
       tile_w=st.integers(32, 2048), overlap=st.floats(0.0, 0.9))
def test_tile_origins_cpp_grid_equals_the_numpy_grid(height, width, tile_h, tile_w, overlap):
    # Plate-sized fields, tiles and fractional overlaps, through the public function.
    from cellrt.kernels.stitch import _grid_numpy, resolve_overlap

    _core_or_skip()
    oy, ox = resolve_overlap(overlap, (tile_h, tile_w))
    np.testing.assert_array_equal(tile_origins((height, width), (tile_h, tile_w), overlap),
                                  _grid_numpy(height, width, tile_h, tile_w, oy, ox))


def test_tile_origins_cpp_checks_its_arguments():
    core = _core_or_skip()
    with pytest.raises(ValueError, match=r"overlap_x should be in \[0, tile_w\) = \[0, 16\), got 16"):
        core.tile_origins(100, 100, 16, 16, 0, 16)
    with pytest.raises(ValueError, match=r"height and width should be >= 1, got 0 x 100"):
        core.tile_origins(0, 100, 16, 16, 0, 0)
    with pytest.raises(ValueError, match=r"tile_h and tile_w should be >= 1, got 16 x 0"):
        core.tile_origins(100, 100, 16, 0, 0, 0)
    # One-pixel tiles on the largest image: the count does not overflow, and is refused.
    with pytest.raises(ValueError, match="too large to address"):
        core.tile_origins(2**62, 2**62, 1, 1, 0, 0)
    assert core.tile_origins(2**62, 1, 2**61, 1, 0, 0).tolist() == [[0, 0], [2**61, 0]]


# --- tile -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("in_dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(1, 300, 260), (3, 64, 64), (2, 40, 100), (1, 1, 7)])
def test_tile_matches_reflect_pad_reference(backend, in_dtype, shape, rng):
    info = np.iinfo(in_dtype) if np.dtype(in_dtype).kind == "u" else None
    image = (rng.integers(0, info.max, shape) if info else rng.normal(size=shape)).astype(in_dtype)
    batch = tile(image, 48, overlap=12, backend=backend)
    assert batch.tiles.dtype == np.float32 and batch.tiles.flags.c_contiguous
    np.testing.assert_array_equal(batch.origins, tile_origins(shape, 48, 12))
    expected = tile_reference(image, batch.origins, 48, 48)
    np.testing.assert_array_equal(batch.tiles, expected.astype(np.float32))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_reads_strided_images(backend, rng):
    base = rng.integers(0, 60000, (200, 3, 150)).astype(np.uint16)
    image = base.transpose(1, 0, 2)[:, ::2, 1:]  # channel-last source, every other row, offset column
    assert not image.flags.c_contiguous
    batch = tile(image, 32, overlap=8, backend=backend)
    expected = tile_reference(np.ascontiguousarray(image), batch.origins, 32, 32)
    np.testing.assert_array_equal(batch.tiles, expected.astype(np.float32))


def _tile_with_origins(backend, image, origins, th, tw, dtype):
    """(tiles, nonfinite) for caller-chosen origins, as the C++ API and C ABI take them."""
    scale, offset = np.ones(image.shape[0], np.float32), np.zeros(image.shape[0], np.float32)
    if backend == "cpu":
        from cellrt._build import _core  # noqa: PLC0415

        out = np.empty((len(origins), image.shape[0], th, tw), dtype)
        return out, _core.tile(image, origins, out, scale, offset, 2)
    from cellrt.kernels import _stitch_numba  # noqa: PLC0415

    return _stitch_numba.tile(image, origins, th, tw, scale, offset, dtype)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_tile_takes_any_origins_in_any_order(backend, dtype, rng):
    """Origins off any grid, rows shared by tiles listed far apart, tiles running past the
    right and bottom borders (mirrored), images narrower and shorter than a tile."""
    for shape, (th, tw) in (((2, 90, 70), (32, 24)), ((1, 50, 20), (16, 40)), ((1, 10, 30), (24, 8))):
        image = rng.normal(size=shape).astype(np.float32)
        ys = rng.integers(0, shape[1], 40)
        ys[::3] = ys[0]   # one row origin shared by tiles scattered through the list
        origins = np.stack([ys, rng.integers(0, shape[2], 40)], axis=1).astype(np.int64)
        tiles, bad = _tile_with_origins(backend, image, origins, th, tw, dtype)
        expected = tile_reference(image, origins, th, tw).astype(np.float32)
        np.testing.assert_array_equal(tiles, expected.astype(dtype))
        assert bad == 0


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_counts_every_tile_value_that_overflows_float16(backend, rng):
    """The count is of tile values (a pixel in an overlap, or mirrored, counts in every tile
    that holds it), the same on every backend: it is what the overflow error reports."""
    image = rng.uniform(0, 60000, (2, 70, 25)).astype(np.float32)   # narrower than a tile: mirrored
    image[0, 30:34, 2:6] = 70000.0      # in the overlap of two tiles
    image[1, 50, 20] = 65520.0          # rounds to a float16 infinity; also mirrored into column 28
    image[1, 5, 5] = np.inf
    origins = tile_origins(image.shape, 32, 12)
    tiles, bad = _tile_with_origins(backend, image, origins, 32, 32, np.float16)
    reference = tile_reference(image, origins, 32, 32)
    assert bad == int(np.count_nonzero(~(np.abs(reference) < 65520.0))) > 24
    assert np.count_nonzero(np.isinf(tiles[:, 1, :, 28])) >= 1   # the mirrored copy is there, and counted
    assert np.count_nonzero(np.isinf(tiles)) == bad


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_tile_finds_a_nonfinite_value_at_every_column(backend, dtype):
    """The CPU tiler stages rows eight values at a time and the rest one by one: one bad value
    in an otherwise finite row, at each column of a row 19 wide (two groups and a rest), is
    found and counted in every tile that holds it."""
    bad_value = 70000.0 if dtype == np.float16 else np.nan
    for column in range(19):
        image = np.ones((1, 12, 19), np.float32)
        image[0, 7, column] = bad_value
        origins = tile_origins(image.shape, 8, 3)
        tiles, bad = _tile_with_origins(backend, image, origins, 8, 8, dtype)
        reference = tile_reference(image, origins, 8, 8)
        with np.errstate(over="ignore"):
            expected = int(np.count_nonzero(~np.isfinite(reference.astype(dtype))))
        assert bad == expected >= 1, column
        assert np.count_nonzero(~np.isfinite(tiles)) == expected, column


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_fixed_normalisation_and_float16_cast(backend, rng):
    image = rng.integers(0, 65535, (2, 130, 90)).astype(np.uint16)
    scale, offset = [1 / 65535, 2 / 65535], [100.0, 30000.0]
    batch = tile(image, 64, overlap=16, dtype=np.float16, normalize="fixed", scale=scale, offset=offset,
                 backend=backend)
    assert batch.tiles.dtype == np.float16
    f32 = (tile_reference(image, batch.origins, 64, 64, scale, offset)).astype(np.float32)
    # The float16 values are the round-to-nearest-even of the float32 ones.
    np.testing.assert_array_equal(batch.tiles, f32.astype(np.float16))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_percentile_normalisation(backend, rng):
    image = rng.gamma(2.0, 800.0, (2, 120, 140)).astype(np.uint16)
    batch = tile(image, 64, normalize="percentile", percentiles=(1, 99.8), backend=backend)
    lo = np.percentile(image, 1, axis=(1, 2))
    hi = np.percentile(image, 99.8, axis=(1, 2))
    expected = tile_reference(image, batch.origins, 64, 64, 1 / (hi - lo), lo)
    np.testing.assert_allclose(batch.tiles, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_percentiles_are_exact(dtype, rng):
    image = (rng.gamma(1.5, 900.0, (3, 97, 61)) % 250).astype(dtype)
    scale, offset = percentile_normalization(image, (0.5, 99.5))
    for c in range(3):
        lo, hi = np.percentile(image[c], [0.5, 99.5])
        # Exact means the float32 of numpy's float64 answer: a rel tolerance let a float32 difference pass.
        assert offset[c] == np.float32(lo)
        assert scale[c] == np.float32(1 / (hi - lo))


def test_integer_percentiles_over_the_whole_16_bit_range_and_strided_channels(rng):
    """The 8/16-bit percentiles come from the C++ histogram (65,536 bins whatever the image's maximum) where
    numpy's bincount made as many bins as the maximum: the same order statistics, up to the last grey
    value and on channels that are views with strides."""
    image = np.concatenate([rng.integers(0, 65536, (1, 90, 70)), rng.gamma(2.0, 300.0, (1, 90, 70))]).astype(np.uint16)
    image[0, 0, 0], image[1, 5, 5] = 65535, 0
    for view in (image, image[:, ::3, 1::2]):
        for qs in ((0.0, 100.0), (1.0, 99.8), (0.3, 57.1)):
            scale, offset = percentile_normalization(view, qs)
            for c in range(2):
                lo, hi = np.percentile(view[c], qs)
                assert offset[c] == np.float32(lo) and scale[c] == pytest.approx(1 / (hi - lo), rel=1e-6)


def test_float_percentiles_equal_numpys_to_the_bit(rng):
    """Float32 percentiles come from the C++ radix selection (two passes over the values), not from a partial
    sort of a copy: order statistics and numpy's interpolation reproduced exactly, over the finite values -
    ties, signed zeros, subnormals, values near the float32 limits, non-finite pixels left out."""
    if "cpu" not in HOST_BACKENDS:
        pytest.skip("the C++ extension is not available")
    from cellrt._build import _core

    pools = [rng.normal(size=5000), rng.integers(-4, 4, 5000), rng.normal(size=5000) * 1e-41,
             np.array([-0.0, 0.0, 1.5, -2.25, 3e38, -3e38]), rng.gamma(2.0, 800.0, 5000)]
    for pool in pools:
        for n in (1, 2, 7, 1000, 70_001):
            values = rng.choice(np.asarray(pool, np.float32), n)
            if n > 2:
                values[rng.integers(0, n, 3)] = [np.nan, np.inf, -np.inf]
            qs = [0.0, 1.0, 37.5, 50.0, 99.8, 100.0, float(rng.random() * 100)]
            got, finite = _core.percentiles(values, qs)
            kept = values[np.isfinite(values)]
            assert finite == kept.size
            if kept.size:
                np.testing.assert_array_equal(got, np.percentile(kept, qs), err_msg=f"{n} values of {pool[:3]}")
    image = rng.gamma(2.0, 800.0, (2, 300, 200)).astype(np.float32)
    image[1, 3, 4] = np.nan
    scale, offset = percentile_normalization(image, (1.0, 99.8))
    for c in range(2):
        lo, hi = np.percentile(image[c][np.isfinite(image[c])], [1.0, 99.8])
        assert offset[c] == np.float32(lo) and scale[c] == np.float32(1.0 / (hi - lo))
    assert percentile_normalization(np.full((1, 4, 4), np.nan, np.float32))[0].tolist() == [0.0]


def test_percentile_of_flat_image_gives_zero_scale():
    scale, offset = percentile_normalization(np.full((1, 8, 8), 7, np.uint16))
    assert scale.tolist() == [0.0] and offset.tolist() == [7.0]


# --- stitch: invariants -----------------------------------------------------------------

SIZES = [(256, 256), (300, 517), (97, 61), (31, 20), (129, 130)]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("overlap", [0, 8, 21])
def test_crops_reconstruct_the_image(backend, blend, size, overlap, rng):
    image = rng.normal(size=(2, *size)).astype(np.float32)
    origins = tile_origins(image.shape, 64, overlap)
    tiles = crop_tiles(image, origins, 64, 64)
    back = stitch(tiles, origins, image.shape, overlap=overlap, blend=blend, backend=backend)
    np.testing.assert_allclose(back, image, rtol=0, atol=4e-6 * np.abs(image).max())


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("blend", BLENDS)
def test_constant_tiles_give_a_constant_image(backend, blend):
    origins = tile_origins((200, 150), 64, 20)
    tiles = np.full((len(origins), 1, 64, 64), 3.25, np.float32)
    back = stitch(tiles, origins, (200, 150), overlap=20, blend=blend, backend=backend)
    np.testing.assert_allclose(back, 3.25, rtol=ROUNDING)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("blend", BLENDS)
def test_linear_function_of_crops_is_that_function_of_the_image(backend, blend, rng):
    image = rng.random((1, 170, 230), dtype=np.float32)
    origins = tile_origins(image.shape, 80, 24)
    tiles = (2.5 * crop_tiles(image, origins, 80, 80) - 1.0).astype(np.float32)
    back = stitch(tiles, origins, image.shape, overlap=24, blend=blend, backend=backend)
    np.testing.assert_allclose(back, 2.5 * image - 1.0, atol=2e-6)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_constant_blend_is_the_plain_average(backend):
    # Two tiles that disagree on their overlap: constant weights average them.
    tiles = np.stack([np.full((1, 10, 10), 1.0), np.full((1, 10, 10), 3.0)]).astype(np.float32)
    origins = np.array([[0, 0], [0, 6]])
    back = stitch(tiles, origins, (10, 16), overlap=4, blend="constant", backend=backend)[0]
    assert np.all(back[:, :6] == 1.0) and np.all(back[:, 6:10] == 2.0) and np.all(back[:, 10:] == 3.0)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_pixels_under_one_tile_keep_its_value_exactly(backend, blend, activation, rng):
    tiles = rng.normal(size=(2, 2, 12, 12)).astype(np.float32)
    back = stitch(tiles, [[0, 0], [0, 8]], (12, 20), overlap=4, blend=blend, activation=activation,
                  backend=backend)
    expect_left, expect_right = tiles[0, :, :, :8], tiles[1, :, :, 4:]
    if activation == "sigmoid":
        expect_left, expect_right = (1 / (1 + np.exp(-e.astype(np.float64))) for e in (expect_left, expect_right))
        np.testing.assert_allclose(back[:, :, :8], expect_left, rtol=1e-6)
        np.testing.assert_allclose(back[:, :, 12:], expect_right, rtol=1e-6)
    else:
        np.testing.assert_array_equal(back[:, :, :8], expect_left)
        np.testing.assert_array_equal(back[:, :, 12:], expect_right)


# --- stitch: against the float64 reference on arbitrary tiles ---------------------------

@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("tile_dtype", [np.float32, np.float16])
def test_stitch_matches_reference(backend, blend, tile_dtype, rng):
    height, width, t, overlap = 150, 211, 64, 20
    origins = tile_origins((height, width), t, overlap)
    tiles = rng.normal(size=(len(origins), 3, t, t)).astype(tile_dtype)
    got = stitch(tiles, origins, (height, width), overlap=overlap, blend=blend, sigma_scale=0.2,
                 backend=backend)
    want = stitch_reference(tiles, origins, height, width, blend, (overlap, overlap), 0.2)
    np.testing.assert_allclose(got, want, rtol=TOL[np.float32], atol=TOL[np.float32])


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_fused_activation_matches_reference(backend, activation, rng):
    origins = tile_origins((120, 100), 48, 12)
    tiles = (4 * rng.normal(size=(len(origins), 4, 48, 48))).astype(np.float32)
    got = stitch(tiles, origins, (120, 100), overlap=12, blend="cosine", activation=activation, backend=backend)
    want = stitch_reference(tiles, origins, 120, 100, "cosine", (12, 12), activation=activation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if activation == "softmax":
        np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_activations_hold_over_the_whole_float_range(backend, rng):
    """Sigmoid and softmax of logits from -110 to 110 (exp over- and underflows), NaN and
    infinities, spans of every length modulo 8 (vector body and tail) and uncovered pixels
    (fill value): within a few ulp of float64 where the result is a normal float, and the
    IEEE answer for the special values."""
    values = np.concatenate([rng.uniform(-110, 110, 3000), rng.uniform(-6, 6, 3000)]).astype(np.float32)
    width = 37
    tiles = values[: 2 * 3 * 27 * width].reshape(2, 3, 27, width).copy()
    tiles[0, :, 0, :3] = [[np.inf, -np.inf, np.nan]] * 3
    origins = [[0, 0], [0, 30]]   # 30 .. 36 overlap; columns 67 .. 69 are covered by no tile
    kwargs = dict(overlap=7, blend="cosine", nan_policy="propagate", fill_value=-1.0, backend=backend)
    plain = stitch(tiles, origins, (27, 70), **kwargs).astype(np.float64)[:, :, :67]
    got = stitch(tiles, origins, (27, 70), activation="sigmoid", **kwargs)
    assert np.all(got[:, :, 67:] == -1.0)
    got = got[:, :, :67]
    want = 1 / (1 + np.exp(-plain))
    finite = np.isfinite(plain)
    ulp = np.abs(got - want) / np.spacing(np.maximum(want, 2.0**-126).astype(np.float32))
    assert ulp[finite & (want > 2.0**-126)].max() <= 4
    assert np.all(got[~finite & (plain > 0)] == 1) and np.all(got[~finite & (plain < 0)] == 0)
    assert np.all(np.isnan(got[np.isnan(plain)]))
    got = stitch(tiles, origins, (27, 70), activation="softmax", **kwargs)
    assert np.all(got[:, :, 67:] == -1.0)
    got = got[:, :, :67]
    with np.errstate(invalid="ignore"):   # inf - inf in the columns with infinities
        shifted = plain - plain.max(axis=0)
        want = np.exp(shifted) / np.exp(shifted).sum(axis=0)
    rows = np.all(np.isfinite(plain), axis=0)
    normal = rows[None] & (want > 2.0**-126)
    # float32 logits lose digits in x - max before exp: numba's scalar float32 formula meets the same bound.
    ulp = np.abs(got - want) / np.spacing(want.astype(np.float32))
    assert ulp[normal].max() <= 128
    np.testing.assert_allclose(got[:, rows].sum(axis=0), 1.0, atol=4e-7)
    assert np.all(np.isnan(got[:, np.isnan(plain).any(axis=0)]))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_argmax_matches_argmax_of_blended_values(backend, rng):
    origins = tile_origins((140, 90), 40, 10)
    tiles = rng.normal(size=(len(origins), 5, 40, 40)).astype(np.float32)
    values = stitch(tiles, origins, (140, 90), backend=backend)
    labels = stitch(tiles, origins, (140, 90), argmax=True, backend=backend)
    assert labels.dtype == np.int32 and labels.shape == (140, 90)
    np.testing.assert_array_equal(labels, np.argmax(values, axis=0))


def test_argmax_ties_pick_the_first_channel():
    tiles = np.zeros((1, 3, 8, 8), np.float32)
    tiles[0, 1:] = 1.0
    labels = stitch(tiles, [[0, 0]], (8, 8), argmax=True, backend="cpu")
    assert np.all(labels == 1)


@pytest.mark.parametrize("blend", BLENDS)
def test_cpu_and_numba_agree(blend, rng):
    if HOST_BACKENDS != ["cpu", "numba"]:
        pytest.skip(f"the cpu or numba backend is not available (have {HOST_BACKENDS})")
    origins = tile_origins((333, 287), 96, 0.3)
    tiles = rng.normal(size=(len(origins), 2, 96, 96)).astype(np.float32)
    kwargs = dict(overlap=0.3, blend=blend)
    a = stitch(tiles, origins, (333, 287), backend="cpu", **kwargs)
    b = stitch(tiles, origins, (333, 287), backend="numba", **kwargs)
    np.testing.assert_allclose(a, b, rtol=CPU_NUMBA_RTOL, atol=CPU_NUMBA_RTOL)
    if blend in ("constant", "crop"):  # no transcendental windows: identical arithmetic
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("blend", BLENDS)
def test_numba_stitch_bits_do_not_depend_on_the_thread_count(blend, rng):
    """The numba stitch runs one parallel loop over 16-row bands, each summing its tiles in
    ascending order: 1 and 2 threads give the same bits (tiles cross band edges here: 333 rows,
    tile origins off the band grid)."""
    if "numba" not in HOST_BACKENDS:
        pytest.skip(f"numba is not available (have {HOST_BACKENDS})")
    import numba  # noqa: PLC0415

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread")
    origins = tile_origins((333, 287), 45, 0.3)
    tiles = rng.normal(size=(len(origins), 2, 45, 45)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append(stitch(tiles, origins, (333, 287), overlap=0.3, blend=blend, backend="numba"))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("shape, tile_size, overlap", [((200, 200), 64, 16), ((151, 233), 48, 13), ((90, 77), 30, 29)])
def test_float16_tiles_blend_exactly_like_their_float32_values(blend, shape, tile_size, overlap, rng):
    """The float16 path converts in registers, eight pixels at a time (any overlap width: vector body plus
    scalar tail); the float32 path runs the scalar loop. Same operations in the same order: same bits."""
    origins = tile_origins(shape, tile_size, overlap)
    tiles16 = rng.normal(size=(len(origins), 3, tile_size, tile_size)).astype(np.float16)
    a = stitch(tiles16, origins, shape, overlap=overlap, blend=blend, backend="cpu")
    b = stitch(tiles16.astype(np.float32), origins, shape, overlap=overlap, blend=blend, backend="cpu")
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_cpu_result_does_not_depend_on_thread_count(threads, rng):
    origins = tile_origins((257, 300), 64, 16)
    tiles = rng.normal(size=(len(origins), 3, 64, 64)).astype(np.float32)
    ref = stitch(tiles, origins, (257, 300), num_threads=1, backend="cpu")
    got = stitch(tiles, origins, (257, 300), num_threads=threads, backend="cpu")
    np.testing.assert_array_equal(got, ref)
    img = rng.integers(0, 4000, (3, 257, 300)).astype(np.uint16)
    t1 = tile(img, 64, 16, num_threads=1, backend="cpu").tiles
    np.testing.assert_array_equal(tile(img, 64, 16, num_threads=threads, backend="cpu").tiles, t1)


def _num_threads_calls():
    """One valid call per public kernel taking num_threads, keyed by name."""
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 3:7] = 1
    labels = mask.astype(np.int32)
    image = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    boxes, masks = kernels.instances_from_labels(labels)
    scores = np.ones(len(boxes), np.float32)
    embeddings = np.zeros((3, 2), np.float32)
    origins = tile_origins((16, 16), 8, 2)
    return {
        "binary_closing": lambda **kw: kernels.binary_closing(mask, 1, **kw),
        "binary_dilation": lambda **kw: kernels.binary_dilation(mask, 1, **kw),
        "binary_erosion": lambda **kw: kernels.binary_erosion(mask, 1, **kw),
        "binary_opening": lambda **kw: kernels.binary_opening(mask, 1, **kw),
        "box_mean": lambda **kw: kernels.box_mean(image, 3, **kw),
        "contours": lambda **kw: kernels.contours(labels, **kw),
        "distance_transform": lambda **kw: kernels.distance_transform(mask, **kw),
        "gaussian_blur": lambda **kw: kernels.gaussian_blur(image, 1.0, **kw),
        "gaussian_blur_recursive": lambda **kw: kernels.gaussian_blur_recursive(image, 1.0, **kw),
        "label": lambda **kw: kernels.label(mask, **kw),
        "label_measure": lambda **kw: kernels.label_measure(mask, image, **kw),
        "mask_nms": lambda **kw: kernels.mask_nms(boxes, scores, masks, **kw),
        "matrix_nms": lambda **kw: kernels.matrix_nms(boxes, scores, masks, **kw),
        "measure": lambda **kw: kernels.measure(labels, image, **kw),
        "remove_small_objects": lambda **kw: kernels.remove_small_objects(labels, 2, **kw),
        "resize": lambda **kw: kernels.resize(image, (8, 24), **kw),
        "rbf_kernel_matrix": lambda **kw: kernels.rbf_kernel_matrix(embeddings, embeddings, 1.0, **kw),
        "rbf_kernel_sums": lambda **kw: kernels.rbf_kernel_sums(embeddings, embeddings, 1.0, **kw),
        "split_touching": lambda **kw: kernels.split_touching(mask, **kw),
        "stitch": lambda **kw: stitch(np.zeros((len(origins), 1, 8, 8), np.float32), origins, (16, 16), **kw),
        "threshold_local": lambda **kw: kernels.threshold_local(image, 3, **kw),
        "tile": lambda **kw: tile(image, 8, 2, **kw),
        "watershed": lambda **kw: kernels.watershed(-image, labels, mask, **kw),
    }


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_every_kernel_checks_num_threads(backend):
    """A negative num_threads used to mean 'all cores' silently, and a float or bool got through
    int(); each kernel now names the argument. The list of calls must name every kernel that takes
    num_threads, so one added later without a check fails here."""
    calls = _num_threads_calls()
    takes = {name for name in kernels.__all__ if callable(getattr(kernels, name))
             and not isinstance(getattr(kernels, name), type)
             and "num_threads" in inspect.signature(getattr(kernels, name)).parameters}
    assert takes == set(calls)
    for name, call in calls.items():
        call(backend=backend, num_threads=1)
        call(backend=backend, num_threads=np.int64(0))
        for bad in (-1, 1.5, True, "2", None):
            with pytest.raises(ValueError, match=rf"^{name}: num_threads should be an int >= 0 \(0: all hardware "
                                                 rf"threads\), got {bad!r}$"):
                call(backend=backend, num_threads=bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts the process's threads in /proc/self/task")
def test_cpu_backend_starts_at_most_four_threads_per_hardware_thread():
    """num_threads=100000 on a 3000-row image used to start 3000 threads, which the C++ pool keeps for
    the life of the process. The cap is in the C++ core, so C callers get it too: the extension is called
    directly here, past the Python check."""
    from cellrt._build import _core

    origins = tile_origins((3000, 3000), 512, 64)
    tiles = np.ones((len(origins), 1, 512, 512), np.float32)
    out = np.empty((1, 3000, 3000), np.float32)
    before = len(os.listdir("/proc/self/task"))
    _core.stitch(tiles, origins, out, 0, 0, 0, 0.125, 0, False, 0.0, 100000)
    started = len(os.listdir("/proc/self/task")) - before
    assert started <= 4 * os.cpu_count()
    assert np.all(out == 1.0)


# --- edge cases ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_single_tile_larger_than_the_image(backend, rng):
    image = rng.random((1, 5, 9), dtype=np.float32)
    batch = tile(image, 16, overlap=4, backend=backend)
    assert batch.tiles.shape == (1, 1, 16, 16)
    np.testing.assert_array_equal(batch.tiles[0, 0, :5, :9], image[0])
    np.testing.assert_array_equal(batch.tiles[0, 0, 5, :9], image[0, 3])  # reflect, edge not repeated
    back = stitch(batch.tiles, batch.origins, image.shape, overlap=4, blend="linear", backend=backend)
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_uncovered_pixels_raise_or_take_the_fill_value(backend):
    tiles = np.ones((1, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"36 pixels of the 10 x 10 image are covered by no tile"):
        stitch(tiles, [[0, 0]], (10, 10), backend=backend)
    back = stitch(tiles, [[0, 0]], (10, 10), fill_value=-5.0, backend=backend)
    assert back[0, :8, :8].min() == 1.0 and back[0, 8:, :].max() == -5.0 and back[0, :, 8:].max() == -5.0
    labels = stitch(tiles, [[0, 0]], (10, 10), argmax=True, fill_value=0, backend=backend)
    assert labels[9, 9] == -1 and labels[0, 0] == 0


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("argmax", [False, True])
def test_uncovered_gaps_wider_than_a_tile(backend, argmax):
    # Gaps between tiles can be wider than a tile; they must be filled, not overrun.
    tiles = np.stack([np.full((2, 8, 8), 1.0), np.full((2, 8, 8), 2.0)]).astype(np.float32)
    out = stitch(tiles, [[0, 0], [30, 40]], (40, 50), fill_value=-1.0, argmax=argmax, backend=backend)
    fill = -1
    region = out if argmax else out[0]
    assert np.all(region[:8, :8] == (0 if argmax else 1.0)) and np.all(region[30:38, 40:48] == (0 if argmax else 2.0))
    mask = np.ones((40, 50), bool)
    mask[:8, :8] = mask[30:38, 40:48] = False
    assert np.all(region[mask] == fill)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_no_tiles_is_an_empty_batch(backend):
    tiles = np.zeros((0, 2, 8, 8), np.float32)
    out = stitch(tiles, np.zeros((0, 2), np.int64), (4, 4), fill_value=0.5, backend=backend)
    assert out.shape == (2, 4, 4) and np.all(out == 0.5)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_fills_a_reused_buffer(backend, rng):
    image = rng.integers(0, 255, (2, 90, 70)).astype(np.uint8)
    n = len(tile_origins(image.shape, 32, 8))
    buffer = np.full((n, 2, 32, 32), np.nan, np.float16)
    batch = tile(image, 32, 8, dtype=np.float16, out=buffer, backend=backend)
    assert batch.tiles is buffer
    np.testing.assert_array_equal(buffer, tile(image, 32, 8, dtype=np.float16, backend=backend).tiles)
    with pytest.raises(ValueError, match=r"tile: out should be a writable C-contiguous float32 array of shape "
                                         r"\(12, 2, 32, 32\) for the \w+ backend, got float16"):
        tile(image, 32, 8, out=buffer, backend=backend)


def test_out_is_filled_in_place(rng):
    origins = tile_origins((64, 64), 32, 8)
    tiles = rng.random((len(origins), 1, 32, 32), dtype=np.float32)
    out = np.empty((1, 64, 64), np.float32)
    result = stitch(tiles, origins, (64, 64), out=out, backend="cpu")
    assert result is out
    np.testing.assert_array_equal(out, stitch(tiles, origins, (64, 64), backend="cpu"))
    with pytest.raises(ValueError, match=r"out should be a writable C-contiguous float32 array of shape \(1, 64, 64\)"):
        stitch(tiles, origins, (64, 64), out=np.empty((1, 64, 63), np.float32), backend="cpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_out_at_every_offset_from_a_cache_line_gets_the_same_values(dtype, rng):
    """Spans start anywhere relative to a cache line when the caller's buffer does (numpy's are 16 bytes
    past one): the streamed edges of each span must land exactly as the aligned middle does."""
    image_shape = (70, 150)
    origins = tile_origins(image_shape, 40, 12)
    tiles = rng.random((len(origins), 2, 40, 40), dtype=np.float32).astype(dtype)
    tiles[0, 1, 5, 7] = np.inf   # counted the same from a streamed edge value
    reference = stitch(tiles, origins, image_shape, backend="numba", nan_policy="propagate")
    size = 2 * image_shape[0] * image_shape[1]
    storage = np.full(size + 32, -1.0, np.float32)
    results = []
    for offset in range(16):   # floats: every 4-byte position in a 64-byte line
        storage[:] = -1.0
        out = storage[offset:offset + size].reshape(2, *image_shape)
        results.append(stitch(tiles, origins, image_shape, out=out, backend="cpu", nan_policy="propagate").copy())
        np.testing.assert_array_equal(results[-1], results[0])
        np.testing.assert_allclose(results[-1], reference, rtol=1e-6)
        assert np.all(storage[:offset] == -1.0) and np.all(storage[offset + size:] == -1.0)   # nothing outside
    with pytest.raises(ValueError, match="non-finite"):
        stitch(tiles, origins, image_shape, out=storage[3:3 + size].reshape(2, *image_shape), backend="cpu")


# --- non-finite values ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_rejects_nan_images_by_default(backend):
    image = np.zeros((2, 40, 40), np.float32)
    image[1, 17, 3] = np.nan
    with pytest.raises(ValueError, match=r"image holds 1 NaN/inf values \(first at channel, y, x = \(1, 17, 3\)\)"):
        tile(image, 32, backend=backend)
    tiles = tile(image, 32, nan_policy="propagate", backend=backend).tiles
    assert np.isnan(tiles).sum() >= 1


def test_percentile_normalisation_of_an_image_with_nan(rng):
    """One NaN pixel used to make the percentiles NaN: the cpu backend then refused the derived
    scale/offset (an error about arguments the user never passed) and numba returned the whole
    channel NaN. Now: the image error under 'raise'; under 'propagate' percentiles over the
    finite values and NaN only where the pixel is, identical on every backend."""
    image = rng.gamma(2.0, 800.0, (2, 40, 40)).astype(np.float32)
    image[1, 17, 3] = np.nan
    results = {}
    for backend in HOST_BACKENDS:
        with pytest.raises(ValueError, match=r"image holds 1 NaN/inf values \(first at channel, y, x = \(1, 17, 3\)\)"):
            tile(image, 16, 4, normalize="percentile", backend=backend)
        results[backend] = tile(image, 16, 4, normalize="percentile", nan_policy="propagate", backend=backend)
    finite = image[1][np.isfinite(image[1])]
    lo = np.percentile(image, 1.0, axis=(1, 2))
    hi = np.percentile(image, 99.8, axis=(1, 2))
    lo[1], hi[1] = np.percentile(finite, [1.0, 99.8])
    assert [lo[1], hi[1]] == pytest.approx(np.nanpercentile(image[1], [1.0, 99.8]))
    first = results[HOST_BACKENDS[0]]
    expected = tile_reference(image, first.origins, 16, 16, 1 / (hi - lo), lo)
    np.testing.assert_allclose(first.tiles, expected, rtol=1e-5, atol=1e-5)  # NaN where expected is NaN
    # The pixel is NaN in every tile that holds it, and nothing else is.
    assert np.isnan(first.tiles).sum() == np.isnan(expected).sum() >= 1
    for backend, batch in results.items():
        np.testing.assert_array_equal(batch.tiles, first.tiles, err_msg=backend)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_tile_reports_float16_overflow(backend):
    image = np.full((1, 32, 32), 65535, np.uint16)
    with pytest.raises(ValueError, match=r"overflow float16 \(largest finite 65504\)"):
        tile(image, 16, dtype=np.float16, backend=backend)
    ok = tile(image, 16, dtype=np.float16, normalize="percentile", backend=backend)
    assert np.all(ok.tiles == 0)  # a flat image normalises to zeros


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("where", ["single_tile_span", "overlap_span"])
def test_stitch_nan_policy(backend, dtype, where):
    origins = tile_origins((40, 40), 24, 8)
    tiles = np.ones((len(origins), 1, 24, 24), dtype)
    # Tile 2 sits at (16, 0): its (12, 5) is image pixel (28, 5), covered by it alone; its (5, 5) is
    # (21, 5), where tile 0 overlaps it.
    tiles[2, 0, 12 if where == "single_tile_span" else 5, 5] = np.nan
    with pytest.raises(ValueError, match=r"blended values are NaN or inf \(tiles with non-finite values: \[2\]\)"):
        stitch(tiles, origins, (40, 40), backend=backend)
    out = stitch(tiles, origins, (40, 40), nan_policy="propagate", backend=backend)
    assert np.isnan(out).sum() == 1


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_finite_tiles_that_overflow_when_summed_are_not_blamed_on_tiles(backend):
    """Tiles of 3e38 are finite, but two of them sum past float32's 3.4e38 wherever tiles overlap. The
    error used to say 'tiles with non-finite values: []'; it now says what happened, with the count."""
    origins = tile_origins((50, 50), 32, 8)
    tiles = np.full((len(origins), 1, 32, 32), 3e38, np.float32)
    coverage = np.zeros((50, 50), int)
    for y, x in origins:
        coverage[y:y + 32, x:x + 32] += 1
    overlapped = int(np.count_nonzero(coverage > 1))
    with pytest.raises(ValueError, match=rf"stitch: {overlapped} blended values overflow float32: every tile value "
                                         r"is finite, but their weighted sums are too large"):
        stitch(tiles, origins, (50, 50), blend="constant", backend=backend)
    out = stitch(tiles, origins, (50, 50), blend="constant", nan_policy="propagate", backend=backend)
    assert np.count_nonzero(np.isinf(out)) == overlapped


def test_nan_outside_the_image_is_never_read():
    tiles = np.ones((1, 1, 16, 16), np.float32)
    tiles[0, 0, 12:, :] = np.nan  # model output over the reflect padding
    np.testing.assert_array_equal(stitch(tiles, [[0, 0]], (12, 16), backend="cpu"), 1.0)


# --- bad input ----------------------------------------------------------------------------------

def test_tile_bad_arguments():
    img = np.zeros((64, 64), np.uint16)
    with pytest.raises(ValueError, match=r"image should have shape \(H, W\) or \(C, H, W\), got \(1, 2, 64, 64\)"):
        tile(np.zeros((1, 2, 64, 64)), 32)
    with pytest.raises(ValueError, match=r"image should be non-empty, got shape \(1, 0, 64\)"):
        tile(np.zeros((0, 64)), 32)
    with pytest.raises(ValueError, match=r"overlap should be in \[0, tile\) = \[0, 32\) pixels for axis y, got 32"):
        tile(img, 32, overlap=32)
    with pytest.raises(ValueError, match=r"overlap as a fraction should be in \[0, 1\), got 1.5"):
        tile(img, 32, overlap=1.5)
    with pytest.raises(ValueError, match=r"tile_size should be a positive int"):
        tile(img, 0)
    with pytest.raises(ValueError, match=r"dtype should be float32 or float16, got float64"):
        tile(img, 32, dtype=np.float64)
    with pytest.raises(ValueError, match=r"scale should be a scalar or one value per channel \(1\), got 3"):
        tile(img, 32, normalize="fixed", scale=[1, 2, 3])
    with pytest.raises(ValueError, match=r"normalize should be None, 'percentile' or 'fixed', got 'zscore'"):
        tile(img, 32, normalize="zscore")
    with pytest.raises(ValueError, match=r"image should be numeric, got dtype complex64"):
        tile(np.zeros((8, 8), np.complex64), 4)
    with pytest.raises(ValueError, match=r"backend should be one of 'auto', 'cuda', 'cpu', 'numba', got 'gpu'"):
        tile(img, 32, backend="gpu")


def test_stitch_bad_arguments():
    tiles = np.zeros((4, 2, 32, 32), np.float32)
    origins = tile_origins((50, 50), 32, 8)
    with pytest.raises(ValueError, match=r"tiles should have shape \(N, C, tile_h, tile_w\), got \(4, 32, 32\)"):
        stitch(tiles[:, 0], origins, (50, 50))
    with pytest.raises(ValueError, match=r"tiles should be float32 or float16, got float64"):
        stitch(tiles.astype(np.float64), origins, (50, 50))
    with pytest.raises(ValueError, match=r"tiles should be C-contiguous"):
        stitch(np.zeros((4, 32, 32, 2), np.float32).transpose(0, 3, 1, 2), origins, (50, 50))
    with pytest.raises(ValueError, match=r"origins should be an integer array of shape \(4, 2\), got int64 \(3, 2\)"):
        stitch(tiles, origins[:3], (50, 50))
    with pytest.raises(ValueError, match=r"origins\[1\] = \(0, 50\) should lie inside the 50 x 50 image"):
        stitch(tiles, origins + [0, 32], (50, 50))
    with pytest.raises(ValueError, match=r"image_shape has 3 channels but tiles have 2"):
        stitch(tiles, origins, (3, 50, 50))
    with pytest.raises(ValueError, match=r"overlap should be in \[0, tile\) = \[0, 32\) pixels for axis x, got 40"):
        stitch(tiles, origins, (50, 50), overlap=(8, 40), blend="linear")
    with pytest.raises(ValueError, match=r"blend='cosine' tapers over the tiles' overlap; pass overlap="):
        stitch(tiles, origins, (50, 50), blend="cosine")
    with pytest.raises(ValueError, match=r"blend should be one of constant, linear, cosine, gaussian, crop, got 'max'"):
        stitch(tiles, origins, (50, 50), blend="max")
    with pytest.raises(ValueError, match=r"sigma_scale should be a positive number, got 0"):
        stitch(tiles, origins, (50, 50), sigma_scale=0)
    with pytest.raises(ValueError, match=r"activation should be None, 'sigmoid' or 'softmax', got 'relu'"):
        stitch(tiles, origins, (50, 50), activation="relu")
    with pytest.raises(ValueError, match=r"nan_policy should be 'raise' or 'propagate', got 'omit'"):
        stitch(tiles, origins, (50, 50), nan_policy="omit")
    with pytest.raises(ValueError, match=r"softmax and argmax take at most 64 channels, got 65"):
        stitch(np.zeros((1, 65, 8, 8), np.float32), [[0, 0]], (8, 8), argmax=True)


def _huge_stitch_cases(xp):
    """(tiles, image_shape, argmax, message) that stitch() refuses before it allocates its output."""
    three = xp.zeros((1, 3, 64, 64), xp.float32)
    over = (r"makes 3 x 200000 x 200000 = 120000000000 output values \(channels x pixels\), over the limit of "
            r"4294967296 \(2\*\*32, 16 GiB of float32\); stitch the image in regions")
    return [
        (three, (3, 200000, 200000), False, r"stitch: image_shape \(3, 200000, 200000\) " + over),
        (three, (200000, 200000), True, r"stitch: image_shape \(200000, 200000\) " + over),
        (xp.zeros((1, 1, 8, 8), xp.float32), (2**29, 1), False,
         r"stitch: image_shape \(536870912, 1\) has a side of 536870912 pixels; sides should be below 536870911"),
    ]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_stitch_refuses_an_image_shape_too_large_to_hold_before_allocating_it(backend):
    """(3, 200000, 200000) met numpy's MemoryError for 447 GiB (numba's 'Allocation failed'), or with less
    than that asked the operating system's out-of-memory killer; the C++ core's side limit came only after
    the output was allocated, and the numba path had none."""
    for tiles, image_shape, argmax, message in _huge_stitch_cases(np):
        with pytest.raises(ValueError, match=message):
            stitch(tiles, [[0, 0]], image_shape, argmax=argmax, fill_value=0, backend=backend)


@needs_cuda
def test_stitch_refuses_an_image_shape_too_large_to_hold_on_the_gpu():
    import cupy as cp

    for tiles, image_shape, argmax, message in _huge_stitch_cases(cp):
        with pytest.raises(ValueError, match=message):
            stitch(tiles, [[0, 0]], image_shape, argmax=argmax, fill_value=0, backend="cuda")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_the_stitch_size_limit_takes_an_output_of_exactly_its_size(backend, monkeypatch):
    monkeypatch.setattr(sys.modules["cellrt.kernels.stitch"], "MAX_STITCH_VALUES", 2 * 64 * 64)  # the function
    # cellrt.kernels.stitch hides the module of that name
    tiles = np.ones((1, 2, 64, 64), np.float32)
    assert stitch(tiles, [[0, 0]], (2, 64, 64), backend=backend).shape == (2, 64, 64)
    with pytest.raises(ValueError, match=r"makes 2 x 64 x 65 = 8320 output values .* over the limit of 8192 "):
        stitch(tiles, [[0, 0]], (2, 64, 65), fill_value=0, backend=backend)


def test_bad_arguments_are_named_and_valid_ones_taken():
    """Each of these used to fail with an error that named no argument (unpacking, numpy's size
    check, a 37 GiB MemoryError, the wrong function's name, an int64 wrap-around) or to reject or
    truncate an argument silently."""
    img = np.zeros((50, 60), np.float32)
    with pytest.raises(ValueError, match=r"tile: percentiles should be a \(lo, hi\) pair of numbers with "
                                         r"0 <= lo < hi <= 100, got \(1, 50, 99\)"):
        tile(img, 16, normalize="percentile", percentiles=(1, 50, 99))
    with pytest.raises(ValueError, match=r"percentiles should be a \(lo, hi\) pair .*, got 99"):
        tile(img, 16, normalize="percentile", percentiles=99)
    with pytest.raises(ValueError, match=r"tile: tile_size 2147483648 makes 2147483648 x 2147483648 = \d+ pixels "
                                         r"per tile, over the limit of 268435456 \(2\*\*28\); the image is 50 x 60"):
        tile(img, 2**31)
    with pytest.raises(ValueError, match=r"tile: tile_size 100000 makes 100000 x 100000 = 10000000000 pixels per "
                                         r"tile, over the limit of 268435456 \(2\*\*28\); the image is 50 x 60"):
        tile(img, 100000)
    with pytest.raises(ValueError, match=r"tile: overlap should be in \[0, tile\) = \[0, 32\) pixels for axis y"):
        tile(img, 32, overlap=32)
    with pytest.raises(ValueError, match=r"tile_origins: image_shape should hold integers, got \(50.5, 60\)"):
        tile_origins((50.5, 60), 16)
    assert tile_origins(np.array([50, 60]), np.int64(16), 0).shape == (16, 2)

    origins = tile_origins((50, 60), 32, 8)
    tiles = np.zeros((len(origins), 1, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"stitch: image_shape should hold integers, got \(50.5, 60\)"):
        stitch(tiles, origins, (50.5, 60))
    np.testing.assert_array_equal(stitch(tiles, origins, (50, 60), sigma_scale=np.float32(0.2)), 0.0)
    with pytest.raises(ValueError, match=r"sigma_scale should be a positive number, got True"):
        stitch(tiles, origins, (50, 60), sigma_scale=True)
    far = origins.astype(np.uint64)
    far[1, 0] = 2**63
    with pytest.raises(ValueError, match=r"stitch: origins\[1\] = \(9223372036854775808, 24\) should lie inside"):
        stitch(tiles, far, (50, 60))


def test_core_checks_are_value_errors_too():
    # The C++ core validates independently of the Python wrapper.
    from cellrt._build import _core

    tiles = np.zeros((1, 1, 8, 8), np.float32)
    out = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"stitch: origins\[0\] = \(8, 0\) should lie inside the 8 x 8 image"):
        _core.stitch(tiles, np.array([[8, 0]]), out, 3, 0, 0, 0.125, 0, False, 0.0)
    with pytest.raises(ValueError, match=r"stitch: overlap_y should be in \[0, 8\), got 9"):
        _core.stitch(tiles, np.array([[0, 0]]), out, 1, 9, 0, 0.125, 0, False, 0.0)
    with pytest.raises(ValueError, match=r"stitch: out should have 1 channels like tiles, got 2"):
        _core.stitch(tiles, np.array([[0, 0]]), np.zeros((2, 8, 8), np.float32), 3, 0, 0, 0.125, 0, False, 0.0)
    with pytest.raises(ValueError, match=r"tile: tiles should have 1 channels like image, got 3"):
        _core.tile(np.zeros((1, 8, 8), np.uint8), np.array([[0, 0]]), np.zeros((1, 3, 4, 4), np.float32),
                   np.ones(1, np.float32), np.zeros(1, np.float32))


class _FakeDeviceArray:
    """Stands in for a cupy array: no GPU exists on the CI machine, and only
    the backend choice (made before any memory is touched) is under test."""

    __cuda_array_interface__ = {"shape": (1, 8, 8), "typestr": "<f4", "data": (0, False), "version": 3}
    shape, ndim, dtype = (1, 8, 8), 3, np.dtype(np.float32)


def test_device_arrays_never_fall_back_to_the_cpu():
    if "cuda" in kernels.available_backends():
        pytest.skip("a CUDA device is present; this checks the error path without one")
    with pytest.raises(BackendUnavailableError, match=r"backend 'cuda' unavailable"):
        tile(_FakeDeviceArray(), 4)
    with pytest.raises(ValueError, match=r"backend 'cpu' takes host \(numpy\) arrays; got a device array"):
        tile(_FakeDeviceArray(), 4, backend="cpu")
    from cellrt.kernels import label, measure

    with pytest.raises(BackendUnavailableError, match=r"label: backend 'cuda' unavailable"):
        label(_FakeDeviceArray())
    with pytest.raises(BackendUnavailableError, match=r"measure: backend 'cuda' unavailable"):
        measure(_FakeDeviceArray())


@pytest.mark.parametrize("built_with_cuda, devices, error, message", [
    (False, 0, BackendUnavailableError, r"tile: backend 'cuda' unavailable: cellrt was built without CUDA; "
                                        r"use backend='cpu' for host arrays"),
    (True, 0, BackendUnavailableError, r"tile: backend 'cuda' unavailable: no CUDA device is visible; "
                                       r"use backend='cpu' for host arrays"),
    (True, 1, ValueError, r"tile: backend 'cuda' takes device arrays \(e.g. cupy\); got a host array"),
])
def test_cuda_on_a_host_array_says_first_whether_cuda_is_there(monkeypatch, built_with_cuda, devices, error,
                                                               message):
    """'Move it with cupy.asarray()' is advice only where a GPU exists. The build and the device count
    are forced, because any one machine shows one of the three cases: this checks all of them here."""
    from cellrt.kernels import _backend

    monkeypatch.setattr(_backend, "has_cuda", lambda: built_with_cuda)
    monkeypatch.setattr(_backend, "cuda_device_count", lambda: devices)
    with pytest.raises(error, match=message):
        tile(np.zeros((64, 64), np.uint16), 128, backend="cuda")


def test_auto_warns_once_when_it_falls_back_to_numba(monkeypatch):
    """Without the C++ extension, backend='auto' runs numba (15-50x slower): that used to happen
    silently. The extension's import is failed by monkeypatch, as a broken install would."""
    import warnings

    from cellrt.kernels import _backend

    if not _backend._numba_available():
        pytest.skip("needs numba, the fallback under test")
    monkeypatch.setattr(_backend, "_core", None)
    monkeypatch.setattr(_backend, "core_error", lambda: "ImportError: libcudart.so.13: cannot open shared object")
    monkeypatch.setattr(_backend, "_numba_fallback_warned", False, raising=False)
    image = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    with pytest.warns(RuntimeWarning, match=r"cellrt: the C\+\+ extension failed to import \(ImportError: "
                                            r"libcudart.so.13: cannot open shared object\); backend='auto' runs "
                                            r"the numba kernels instead") as record:
        batch = tile(image, 16, 4)
    assert record[0].filename == __file__  # points at the caller's line, not into cellrt
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call, and another kernel, must not warn again
        np.testing.assert_array_equal(tile(image, 16, 4).tiles, batch.tiles)
        stitch(batch.tiles, batch.origins, image.shape)
        with pytest.raises(BackendUnavailableError, match=r"backend 'cpu' unavailable"):
            tile(image, 16, 4, backend="cpu")


# --- float16 conversion used by the host kernels ---------------------------------------------------

def test_portable_half_conversion_is_exact_for_every_half_value():
    from cellrt._build import _core

    bits = np.arange(65536, dtype=np.uint16)
    got = _core._half_bits_to_float(bits)
    want = bits.view(np.float16).astype(np.float32)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert same.all()


def test_portable_float_to_half_rounds_like_numpy(rng):
    from cellrt._build import _core

    specials = np.array([0.0, -0.0, 65504, 65519.99, 65520, -65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, 6.1035156e-05,
                         np.inf, -np.inf, 1 / 3, 1 + 2.0**-11, 1 + 3 * 2.0**-11], np.float32)
    values = np.concatenate([specials, rng.normal(size=20000).astype(np.float32) * 10.0 ** rng.integers(-9, 6, 20000)])
    values = values.astype(np.float32)
    with np.errstate(over="ignore"):
        want = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(_core._float_to_half_bits(values), want)
    assert np.isnan(_core._half_bits_to_float(_core._float_to_half_bits(np.array([np.nan], np.float32))))[0]


# --- property-based ------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(1, 150), width=st.integers(1, 150), tile_h=st.integers(2, 64), tile_w=st.integers(2, 64),
       overlap_fraction=st.floats(0.0, 0.9), blend=st.sampled_from(BLENDS), channels=st.integers(1, 3),
       seed=st.integers(0, 2**31))
def test_property_roundtrip_and_backends_agree(height, width, tile_h, tile_w, overlap_fraction, blend, channels,
                                               seed):
    rng = np.random.default_rng(seed)
    image = rng.random((channels, height, width), dtype=np.float32)
    overlap = (int(overlap_fraction * (tile_h - 1)), int(overlap_fraction * (tile_w - 1)))
    results = {}
    for backend in HOST_BACKENDS:
        batch = tile(image, (tile_h, tile_w), overlap, backend=backend)
        assert batch.tiles.shape == (len(batch.origins), channels, tile_h, tile_w)
        back = stitch(batch.tiles, batch.origins, image.shape, overlap=overlap, blend=blend, backend=backend)
        np.testing.assert_allclose(back, image, atol=4e-6)
        noisy = rng.normal(size=batch.tiles.shape).astype(np.float32) if not results else results["noisy"]
        results["noisy"] = noisy
        results[backend] = stitch(noisy, batch.origins, image.shape, overlap=overlap, blend=blend, backend=backend)
    if len(HOST_BACKENDS) == 2:
        np.testing.assert_allclose(results["cpu"], results["numba"], rtol=CPU_NUMBA_RTOL, atol=CPU_NUMBA_RTOL)


# --- real images ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_real_16bit_field_roundtrips_through_float16_tiles(backend, isl_dir):
    dapi = tifffile.imread(isl_dir / "dapi.tif")
    assert dapi.dtype == np.uint16 and dapi.shape == (1024, 1024)
    batch = tile(dapi, 256, overlap=0.25, dtype=np.float16, normalize="percentile", backend=backend)
    scale, offset = percentile_normalization(dapi[None])
    expected = (dapi.astype(np.float32) - offset[0]) * scale[0]
    for blend in BLENDS:
        back = stitch(batch.tiles, batch.origins, dapi.shape, overlap=0.25, blend=blend, backend=backend)[0]
        # float16 keeps 11 significant bits: relative error <= 2^-11 per value.
        np.testing.assert_allclose(back, expected, rtol=2.0**-11, atol=1e-6)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_real_nuclei_images_of_every_size_roundtrip(backend, dsb_dir):
    paths = sorted((dsb_dir / "images").glob("*.tif"))
    shapes_seen = {}
    for path in paths:
        image = tifffile.imread(path)
        shapes_seen.setdefault(image.shape, image)
    assert len(shapes_seen) >= 3
    for shape, image in sorted(shapes_seen.items()):
        batch = tile(image, 192, overlap=48, backend=backend)
        back = stitch(batch.tiles, batch.origins, image.shape, overlap=48, blend="linear", backend=backend)
        np.testing.assert_allclose(back[0], image, rtol=ROUNDING, atol=0, err_msg=f"shape {shape}")


# --- CUDA (skipped without a GPU) --------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("tile_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("activation", [None, "sigmoid", "softmax", "argmax"])
def test_cuda_matches_cpu(blend, tile_dtype, activation, rng):
    import cupy as cp

    image = rng.integers(0, 4000, (3, 333, 287)).astype(np.uint16)
    host = tile(image, 96, 0.3, dtype=tile_dtype, normalize="percentile", backend="cpu")
    dev = tile(cp.asarray(image), 96, 0.3, dtype=tile_dtype, normalize="percentile", backend="cuda")
    np.testing.assert_array_equal(cp.asnumpy(dev.tiles), host.tiles)
    noisy = rng.normal(size=host.tiles.shape).astype(tile_dtype)
    kwargs = dict(overlap=0.3, blend=blend, argmax=activation == "argmax",
                  activation=None if activation == "argmax" else activation)
    a = stitch(noisy, host.origins, image.shape, backend="cpu", **kwargs)
    b = cp.asnumpy(stitch(cp.asarray(noisy), host.origins, image.shape, backend="cuda", **kwargs))
    if activation in (None, "argmax"):
        np.testing.assert_array_equal(b, a)  # separate mul/add rounding on both: bit-identical
    else:
        np.testing.assert_allclose(b, a, rtol=2e-6, atol=1e-7)  # device expf differs by an ulp


@needs_cuda
def test_cuda_reports_uncovered_and_nonfinite():
    import cupy as cp

    tiles = cp.ones((1, 1, 8, 8), cp.float32)
    with pytest.raises(ValueError, match=r"36 pixels of the 10 x 10 image are covered by no tile"):
        stitch(tiles, [[0, 0]], (10, 10))
    tiles[0, 0, 1, 1] = cp.nan
    with pytest.raises(ValueError, match=r"1 blended values are NaN or inf"):
        stitch(tiles, [[0, 0]], (8, 8))


@needs_cuda
def test_cuda_stitch_refuses_images_taller_than_its_grid():
    import cupy as cp

    rows = 8 * 65535 + 1   # one more than 65535 blocks of 8 thread rows
    tiles = cp.ones((2, 1, rows // 2 + 1, 1), cp.float32)
    with pytest.raises(ValueError, match=r"stitch: images of 524281 rows are taller than the CUDA stitcher takes "
                                         r"\(524280\)"):
        stitch(tiles, [[0, 0], [rows // 2, 0]], (1, rows, 1))


@needs_cuda
def test_cuda_fills_caller_buffers(rng):
    import cupy as cp

    image = rng.random((2, 300, 200)).astype(np.float32)
    host = tile(image, 64, 0.25, dtype=np.float16, backend="cpu")
    tiles_buf = cp.full(host.tiles.shape, cp.nan, cp.float16)
    batch = tile(cp.asarray(image), 64, 0.25, dtype=np.float16, out=tiles_buf)
    assert batch.tiles is tiles_buf
    np.testing.assert_array_equal(cp.asnumpy(tiles_buf), host.tiles)
    field_buf = cp.full(image.shape, cp.nan, cp.float32)
    assert stitch(batch.tiles, batch.origins, image.shape, out=field_buf) is field_buf
    np.testing.assert_array_equal(cp.asnumpy(field_buf), stitch(host.tiles, host.origins, image.shape, backend="cpu"))
