"""label_measure: label, remove_small_objects and measure in one call.

Each backend must give what the three separate calls give. The CUDA
backend's computation (the count left on the device, the small-object
filter at the union-find roots, the table's capacity) is tested here without
a GPU through ``_core.label_measure_by_pixels``, which runs the CUDA
kernels' per-thread bodies (csrc/segment/label_measure_kernel.h) one after
another on the host; the GPU test at the end runs the kernels themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from cellrt import _core
from cellrt.kernels import feature_names, label, label_measure, measure, remove_small_objects

from .conftest import HOST_BACKENDS, needs_cuda
from .test_segment import adversarial_masks, real_masks

INT_COLUMNS = ["AreaShape_Area", "AreaShape_BoundingBoxMinimum_X", "AreaShape_BoundingBoxMinimum_Y",
               "AreaShape_BoundingBoxMaximum_X", "AreaShape_BoundingBoxMaximum_Y"]


def separate_calls(mask, intensities, connectivity, min_area, channel_names=None):
    labels, count = label(mask, connectivity, backend="cpu")
    if min_area > 1:
        labels, count = remove_small_objects(labels, min_area, backend="cpu")
    return labels, count, measure(labels, intensities, channel_names=channel_names, num_objects=count,
                                  backend="cpu")


def assert_tables_equal(got, want, rtol=0.0, where=""):
    assert list(got) == list(want), where
    # the column types measure documents (pinned here: got and want are made by the same code)
    for key, column in got.items():
        expected = np.int32 if key == "ObjectNumber" else np.int64 if key in INT_COLUMNS else np.float64
        assert column.dtype == expected, f"{where} {key}: {column.dtype}"
    for key in want:
        assert got[key].dtype == want[key].dtype, f"{where} {key}"
        if rtol == 0.0 or key in INT_COLUMNS or key == "ObjectNumber":
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{where} {key}")
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, equal_nan=True, err_msg=f"{where} {key}")


def rows(table, channel_names):
    return np.stack([table[name] for name in feature_names(channel_names)], axis=1).astype(np.float64)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_measure_equals_the_three_calls_on_real_nuclei(backend, connectivity, dsb_dir):
    total = 0
    for name, mask, image in real_masks(dsb_dir, count=6):
        channels = np.stack([image, image[::-1, ::-1] // 3])   # two uint8/uint16 channels, one reversed
        want_labels, want_count, want = separate_calls(mask, channels, connectivity, 20, ["a", "b"])
        labels, count, table = label_measure(mask, channels, connectivity=connectivity, min_area=20,
                                             channel_names=["a", "b"], backend=backend)
        assert count == want_count > 0, name
        np.testing.assert_array_equal(labels, want_labels, err_msg=name)
        assert_tables_equal(table, want, rtol=1e-12 if backend == "numba" else 0.0, where=name)
        total += count
    assert total > 100


@pytest.mark.parametrize("capacity", [0, 1, 7, "exact", "plus_one", None])
def test_a_capacity_below_the_count_measures_the_rest_in_a_second_pass(capacity, dsb_dir):
    name, mask, image = next(real_masks(dsb_dir, count=1))
    want_labels, want_count, want = separate_calls(mask, image, 8, 0)
    capacity = {"exact": want_count, "plus_one": want_count + 1}.get(capacity, capacity)
    labels, count, table = label_measure(mask, image, capacity=capacity)
    assert count == want_count
    np.testing.assert_array_equal(labels, want_labels)
    assert_tables_equal(table, want, where=f"{name} capacity={capacity}")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16])
def test_label_measure_reads_every_intensity_type_and_strided_channels(dtype, rng):
    mask = rng.random((97, 83)) > 0.55
    values = rng.integers(0, 200, (83, 97, 3)).astype(dtype)
    channels = values.transpose(2, 1, 0)   # (3, 97, 83) with non-contiguous strides
    _, _, want = separate_calls(mask, np.ascontiguousarray(channels), 8, 3)
    _, _, table = label_measure(mask, channels, min_area=3)
    assert_tables_equal(table, want)


# ---- the CUDA kernels' bodies, run on the host ------------------------------------------------------------


def by_pixels(mask, intensities, connectivity, min_area, capacity):
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    channels = 0 if intensities is None else intensities.shape[0]
    labels = np.full(mask.shape, -5, np.int32)
    features = np.full((capacity, 12 + 5 * channels), -7.0)
    count, measured = _core.label_measure_by_pixels(mask, labels, intensities, features, connectivity, min_area)
    return labels, count, measured, features


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("name", list(adversarial_masks()))
def test_cuda_kernel_bodies_label_and_measure_adversarial_masks_as_the_cpu(connectivity, name):
    mask = adversarial_masks()[name]
    intensities = (np.arange(mask.size, dtype=np.uint16).reshape(mask.shape) * 7 % 1013)[None]
    for min_area in (0, 2, 5):
        want_labels, want_count, want = separate_calls(mask, intensities, connectivity, min_area)
        for capacity in sorted({0, max(want_count - 3, 0), want_count, want_count + 2}):
            labels, count, measured, features = by_pixels(mask, intensities, connectivity, min_area, capacity)
            where = f"{name} min_area={min_area} capacity={capacity}"
            assert count == want_count and measured == min(count, capacity), where
            np.testing.assert_array_equal(labels, want_labels, err_msg=where)
            # integer intensities: every sum exact, so the rows equal the CPU's bit for bit
            np.testing.assert_array_equal(features[:measured], rows(want, ["ch0"])[:measured], err_msg=where)
            assert np.all(features[measured:] == -7.0), f"{where}: rows past the count written"


@pytest.mark.parametrize("connectivity", [4, 8])
def test_cuda_kernel_bodies_on_real_nuclei_with_float_intensities(connectivity, dsb_dir):
    for name, mask, image in real_masks(dsb_dir, count=4):
        intensities = np.stack([image.astype(np.float32) / 7.0, image.astype(np.float32)])
        want_labels, want_count, want = separate_calls(mask, intensities, connectivity, 15)
        labels, count, measured, features = by_pixels(mask, intensities, connectivity, 15, want_count + 5)
        assert count == measured == want_count > 0, name
        np.testing.assert_array_equal(labels, want_labels, err_msg=name)
        got = rows(want, ["ch0", "ch1"])
        # float sums in another order (pixel by pixel vs runs): equal to the last bits
        np.testing.assert_allclose(features[:count], got, rtol=1e-12, equal_nan=True, err_msg=name)


def test_cuda_kernel_bodies_drop_objects_by_area_at_the_roots():
    # Components of areas 1, 2, 3 and 4 in raster order of first pixel; min_area 3 keeps the last two,
    # renumbered 1 and 2 in that order.
    mask = np.zeros((6, 12), np.uint8)
    mask[0, 0] = 1
    mask[0, 3:5] = 1
    mask[2, 0:3] = 1
    mask[4:6, 6:8] = 1
    labels, count, measured, features = by_pixels(mask, None, 8, 3, 4)
    assert (count, measured) == (2, 2)
    assert labels[2, 0] == 1 and labels[4, 6] == 2 and labels[0, 0] == labels[0, 3] == 0
    np.testing.assert_array_equal(features[:2, 0], [3, 4])
    assert np.all(features[2:] == -7.0)


# ---- bad input -------------------------------------------------------------------------------------------


def test_label_measure_bad_input_names_the_argument(rng):
    mask = rng.random((20, 30)) > 0.5
    with pytest.raises(ValueError, match=r"label_measure: connectivity should be 4 or 8, got 6"):
        label_measure(mask, connectivity=6)
    with pytest.raises(ValueError, match=r"label_measure: min_area should be an int >= 0, got -1"):
        label_measure(mask, min_area=-1)
    for bad in (2.5, -1, 2**31, True):
        with pytest.raises(ValueError, match=rf"label_measure: capacity should be an int in \[0, 2\^31\).*got {bad}"):
            label_measure(mask, capacity=bad)
    with pytest.raises(ValueError, match=r"label_measure: intensities should be \(H, W\) or \(K, H, W\) with "
                                         r"H, W = \(20, 30\), got \(30, 20\)$"):
        label_measure(mask, np.zeros((30, 20), np.uint16))
    with pytest.raises(ValueError, match=r"label_measure: mask should have shape \(H, W\), got \(2, 20, 30\)"):
        label_measure(np.stack([mask, mask]))
    with pytest.raises(ValueError, match=r"label_measure: mask holds NaN or inf"):
        label_measure(np.where(mask, np.nan, 1.0))
    with pytest.raises(ValueError, match=r"^label_measure: channel_names should be 1 distinct names"):
        label_measure(mask, np.zeros((20, 30), np.uint8), channel_names=["a", "b"])
    with pytest.raises(ValueError, match=r"label_measure: backend should be one of"):
        label_measure(mask, backend="gpu")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_label_measure_refusals_after_the_work_name_label_measure(backend, rng):
    # the checks shared with measure (channel names, NaN under an object) named measure, which was not called
    mask = rng.random((20, 30)) > 0.5
    with pytest.raises(ValueError, match=r"^label_measure: channel_names should be 1 distinct names"):
        label_measure(mask, np.zeros((20, 30), np.uint8), channel_names=["a", "b"], backend=backend)
    with pytest.raises(ValueError, match=r"^label_measure: \d+ object\(s\) .* cover NaN or infinite pixels of "
                                         r"intensity channel 'ch0'"):
        label_measure(mask, np.full((20, 30), np.nan, np.float32), backend=backend)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_label_measure_takes_any_min_area_and_capacity_int(backend, rng):
    # min_area past int64 reached the extension as a TypeError; a capacity far above the pixel count
    # allocated its rows (2^31 - 1 of them: 192 GiB) before any object was found
    mask = rng.random((20, 30)) > 0.5
    labels, count, table = label_measure(mask, min_area=2**70, backend=backend)
    assert count == 0 and not labels.any() and table["ObjectNumber"].shape == (0,)
    # one object of every pixel is still under a min_area past the pixel count
    full = np.ones((20, 30), bool)
    assert label_measure(full, min_area=601, backend=backend)[1] == 0
    assert label_measure(full, min_area=2**70, backend=backend)[1] == 0
    assert label_measure(full, min_area=600, backend=backend)[1] == 1
    want_labels, want_count, want = separate_calls(mask, None, 8, 0)
    labels, count, table = label_measure(mask, capacity=2**31 - 1, backend=backend)
    assert count == want_count
    np.testing.assert_array_equal(labels, want_labels)
    assert_tables_equal(table, want, rtol=1e-12 if backend == "numba" else 0.0)


def test_label_measure_core_checks_its_views(rng):
    mask = (rng.random((20, 30)) > 0.5).astype(np.uint8)
    labels = np.empty((20, 30), np.int32)
    with pytest.raises(ValueError, match=r"label_measure: features should be \(capacity, 17\) for 1 intensity "
                                         r"channel\(s\), got \(5, 12\)"):
        _core.label_measure(mask, labels, np.zeros((1, 20, 30), np.uint8), np.empty((5, 12)), 8, 0)
    with pytest.raises(ValueError, match=r"label_measure: labels should have the mask's shape \(20, 30\), got "
                                         r"\(20, 31\)"):
        _core.label_measure(mask, np.empty((20, 31), np.int32), None, np.empty((5, 12)), 8, 0)
    with pytest.raises(ValueError, match=r"label_measure: min_area should be >= 0"):
        _core.label_measure(mask, labels, None, np.empty((5, 12)), 8, -3)
    with pytest.raises(ValueError, match=r"label_measure: features should be float64, got float32"):
        _core.label_measure(mask, labels, None, np.empty((5, 12), np.float32), 8, 0)


def test_a_capacity_beyond_any_possible_count_is_capped(rng, monkeypatch):
    # 2^31 - 1 rows of 12 float64 would be 190 GB; a 40 x 30 mask holds at most 600 objects (a checkerboard's).
    mask = (np.indices((40, 30)).sum(axis=0) % 2).astype(bool)
    labels, count, table = label_measure(mask, connectivity=4, capacity=2**31 - 1)
    assert count == 600 and len(table["ObjectNumber"]) == 600 and int(labels.max()) == 600
    # capped at (H W + 1) / 2, not below: the odd checkerboard's objects all fit the first pass
    second_passes = []
    measure_again = _core.measure
    monkeypatch.setattr(_core, "measure", lambda *args: second_passes.append(args) or measure_again(*args))
    odd = (np.indices((41, 31)).sum(axis=0) % 2 == 0)
    labels, count, table = label_measure(odd, connectivity=4, capacity=2**31 - 1)
    assert count == (41 * 31 + 1) // 2 == len(table["ObjectNumber"]) and not second_passes
    label_measure(odd, connectivity=4, capacity=count - 1)   # the spy sees a second pass when there is one
    assert len(second_passes) == 1


def test_label_measure_of_empty_and_object_free_masks():
    for mask in (np.zeros((0, 5), bool), np.zeros((4, 0), bool), np.zeros((9, 7), bool)):
        labels, count, table = label_measure(mask, np.zeros(mask.shape, np.uint16))
        assert count == 0 and labels.shape == mask.shape and not labels.any()
        assert table["ObjectNumber"].shape == (0,) and "Intensity_MeanIntensity_ch0" in table


# ---- on a GPU --------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("connectivity", [4, 8])
def test_cuda_label_measure_matches_the_cpu_with_one_sync(connectivity, dsb_dir):
    import cupy as cp

    for name, mask, image in list(real_masks(dsb_dir))[:4]:
        want_labels, want_count, want = separate_calls(mask, image, connectivity, 20)
        for capacity in (None, 3, want_count):   # default, a second measure pass, exactly enough
            labels, count, table = label_measure(cp.asarray(mask), cp.asarray(image), connectivity=connectivity,
                                                 min_area=20, capacity=capacity)
            where = f"{name} capacity={capacity}"
            assert isinstance(labels, cp.ndarray) and count == want_count, where
            np.testing.assert_array_equal(cp.asnumpy(labels), want_labels, err_msg=where)
            assert_tables_equal({k: cp.asnumpy(v) for k, v in table.items()}, want, rtol=1e-12, where=where)
