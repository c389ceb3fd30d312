"""Kernel family 4: RBF kernel sums (cpu, numba, cuda) and the streaming MMD drift monitor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellrt.drift import DriftMonitor, DriftReference, DriftReferenceError, monitor_stream
from cellrt.kernels import rbf_kernel_matrix, rbf_kernel_sums

from .conftest import HOST_BACKENDS, needs_cuda


def reference_values(queries, points, sigma):
    d2 = ((np.asarray(queries, np.float64)[:, None, :] - np.asarray(points, np.float64)[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 9, 3), (33, 200, 128), (4, 0, 8)])
def test_rbf_kernel_matches_float64_reference(backend, shape, rng):
    m, n, d = shape
    queries = rng.normal(size=(m, d)).astype(np.float32)
    points = (rng.normal(size=(n, d)) * 2).astype(np.float32)
    sigma = 1.7 * np.sqrt(d)
    want = reference_values(queries, points, sigma)
    np.testing.assert_allclose(rbf_kernel_matrix(queries, points, sigma, backend=backend), want, rtol=1e-13)
    np.testing.assert_allclose(rbf_kernel_sums(queries, points, sigma, backend=backend), want.sum(axis=1),
                               rtol=1e-12)


def test_rbf_kernel_near_points_do_not_cancel():
    """Distances from differences, not |q|^2 + |p|^2 - 2 q.p: far from the origin, near points keep their
    distance (the expansion in float32 or even float64 would round it away)."""
    base = np.full((1, 64), 3.0e3, np.float32)
    near = base + np.float32(1e-3) * np.arange(64, dtype=np.float32)
    want = np.exp(-((1e-3 * np.arange(64)) ** 2).sum() / (2 * 1e-3**2))
    for backend in HOST_BACKENDS:
        got = rbf_kernel_matrix(base, near, 1e-3, backend=backend)[0, 0]
        np.testing.assert_allclose(got, want, rtol=1e-3)


def test_rbf_kernel_cpu_equals_numba_and_is_thread_count_independent(rng):
    queries, points = rng.normal(size=(64, 40)), rng.normal(size=(500, 40))
    cpu = rbf_kernel_sums(queries, points, 5.0, backend="cpu", num_threads=1)
    np.testing.assert_array_equal(rbf_kernel_sums(queries, points, 5.0, backend="cpu", num_threads=3), cpu)
    if "numba" in HOST_BACKENDS:
        np.testing.assert_allclose(rbf_kernel_sums(queries, points, 5.0, backend="numba"), cpu, rtol=1e-14)


def test_rbf_kernel_rejects_bad_input(rng):
    good = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match=r"rbf_kernel_sums: queries should have shape \(count, dims\), got \(4,\)"):
        rbf_kernel_sums(good[0], good, 1.0)
    with pytest.raises(ValueError, match="same dimension, got 4 and 5"):
        rbf_kernel_sums(good, rng.normal(size=(3, 5)), 1.0)
    with pytest.raises(ValueError, match="sigma should be a positive number, got 0"):
        rbf_kernel_matrix(good, good, 0)
    with pytest.raises(ValueError, match=r"points holds NaN or inf \(row 1\)"):
        rbf_kernel_sums(good, np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]]), 1.0)
    with pytest.raises(ValueError, match="backend should be one of"):
        rbf_kernel_sums(good, good, 1.0, backend="gpu")


@needs_cuda
def test_cuda_rbf_kernel_matches_cpu(rng):
    import cupy as cp

    for m, n, d in ((1, 1, 1), (300, 1000, 128), (5, 3, 7)):
        queries, points = rng.normal(size=(m, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
        sigma = np.sqrt(d)
        np.testing.assert_allclose(cp.asnumpy(rbf_kernel_sums(cp.asarray(queries), cp.asarray(points), sigma)),
                                   rbf_kernel_sums(queries, points, sigma, backend="cpu"), rtol=1e-12)
        np.testing.assert_allclose(cp.asnumpy(rbf_kernel_matrix(cp.asarray(queries), cp.asarray(points), sigma)),
                                   rbf_kernel_matrix(queries, points, sigma, backend="cpu"), rtol=1e-13)


# -- the drift monitor ------------------------------------------------------------------------------------------

def mmd2_from_scratch(reference, window, sigma):
    """The statistic computed directly from its definition, in float64."""
    kxx, kyy, kxy = (reference_values(a, b, sigma) for a, b in
                     ((reference, reference), (window, window), (reference, window)))
    n, m = len(reference), len(window)
    return ((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean())


def test_streaming_statistic_equals_the_definition_at_every_step(rng):
    reference = DriftReference.build(rng.normal(size=(120, 16)), window=8, ert=100, bootstraps=2000)
    stream = rng.normal(size=(40, 16)).astype(np.float32)
    stream[25:] += 0.8
    steps = monitor_stream(reference, stream)
    for step in steps[1:]:
        window = stream[max(0, step.index + 1 - 8):step.index + 1]
        assert step.statistic == pytest.approx(mmd2_from_scratch(reference.embeddings, window, reference.sigma),
                                               rel=1e-9, abs=1e-12)
        assert step.window_full == (step.index >= 7)
        assert step.alarm == (step.window_full and step.statistic > reference.threshold)


def test_threshold_gives_the_expected_run_time_without_drift_and_alarms_on_drift(rng):
    """A stream from the reference distribution exceeds the threshold at about 1 step in ERT; a shift of
    half a standard deviation in a quarter of the dimensions raises an alarm within a few windows.
    The rate is counted on disjoint windows (every 12th step): consecutive steps share 11 of their 12 fields,
    so their exceedances come in clusters and a count over all steps would hardly average out. The bounds are
    wide because the threshold comes from a finite calibration set (300 fields here): how close that set
    happens to lie to the reference moves the realised rate by up to about a factor of two."""
    dims, ert, window = 24, 100, 12
    reference = DriftReference.build(rng.normal(size=(600, dims)), window=window, ert=ert, seed=3)
    null = monitor_stream(reference, rng.normal(size=(3000 * window, dims)))
    rate = np.mean([s.alarm for s in null[window - 1::window]])
    assert 0.4 / ert < rate < 2.5 / ert, rate
    shifted = rng.normal(size=(200, dims))
    shifted[:, : dims // 4] += 0.5
    monitor = DriftMonitor(reference)
    for v in rng.normal(size=(30, dims)):
        monitor.update(v)
    first = next(i for i, v in enumerate(shifted) if monitor.update(v).alarm)
    assert first < 3 * reference.window, first


def test_reference_round_trips_through_a_file_and_refuses_other_embeddings(tmp_path, rng):
    reference = DriftReference.build(rng.normal(size=(80, 10)), window=6, ert=50, bootstraps=1000,
                                     metadata={"model": "nuclei", "precision": "fp32"})
    path = reference.save(tmp_path / "ref.npz")
    loaded = DriftReference.load(path)
    np.testing.assert_array_equal(loaded.embeddings, reference.embeddings)
    np.testing.assert_array_equal(loaded.calibration, reference.calibration)
    assert (loaded.sigma, loaded.threshold, loaded.window, loaded.metadata) == \
        (reference.sigma, reference.threshold, reference.window, reference.metadata)
    assert list(tmp_path.iterdir()) == [path], "no temporary file left beside it"
    loaded.check_compatible(dims=10, precision="fp32", model="nuclei")
    with pytest.raises(DriftReferenceError, match="made from fp32 embeddings, this run computes int8 ones"):
        loaded.check_compatible(dims=10, precision="int8")
    with pytest.raises(DriftReferenceError, match="its embeddings have 10 values, the model's 128"):
        loaded.check_compatible(dims=128)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DriftReferenceError, match="bad.npz: not a cellrt drift reference") as refused:
        DriftReference.load(tmp_path / "bad.npz")
    assert "pickle" not in str(refused.value)   # numpy's advice to load it unsafely is no help here
    (tmp_path / "table.csv").write_text("Metadata_Well,Count\nA01,3\n")   # a run's table given by mistake
    with pytest.raises(DriftReferenceError, match=r"table.csv: not a cellrt drift reference .*: not an .npz"):
        DriftReference.load(tmp_path / "table.csv")
    with pytest.raises(DriftReferenceError, match="missing.npz: no such drift reference file"):
        DriftReference.load(tmp_path / "missing.npz")


def test_reference_rejects_too_few_fields_and_bad_arguments(rng):
    with pytest.raises(DriftReferenceError, match="30 reference fields are too few for a window of 16: calibration "
                                                  r"needs at least 80 held-out fields .* at least 160"):
        DriftReference.build(rng.normal(size=(30, 4)), window=16)
    with pytest.raises(DriftReferenceError, match="window should be an int >= 2"):
        DriftReference.build(rng.normal(size=(30, 4)), window=1)
    with pytest.raises(DriftReferenceError, match="ert should be a number of fields > 1"):
        DriftReference.build(rng.normal(size=(30, 4)), window=4, ert=1)
    with pytest.raises(DriftReferenceError, match="all reference embeddings are identical"):
        DriftReference.build(np.ones((40, 4)), window=4)
    with pytest.raises(DriftReferenceError, match=r"6 vectors hold NaN or inf \(first: row 3\)"):
        DriftReference.build(np.where(np.arange(40)[:, None] % 7 == 3, np.nan, rng.normal(size=(40, 4))), window=4)
    monitor = DriftMonitor(DriftReference.build(rng.normal(size=(40, 4)), window=4, bootstraps=500))
    with pytest.raises(ValueError, match="an embedding should have 4 values, got 5"):
        monitor.update(np.zeros(5))


def test_real_embeddings_flag_uneven_illumination(dsb_dir):
    """The bundled nuclei model's field embeddings of held-out dsb2018 nuclei images (dark-background
    256^2 fluorescence): fresh images of the same kind stay quiet; the same images under uneven illumination
    (a left-to-right ramp up to the image's maximum, as from a misaligned lamp) raise an alarm. Exposure
    alone would not: the model's percentile normalisation removes it before the embedding."""
    import cellrt
    from cellrt.training import data as training_data

    model = cellrt.load_model("nuclei", backend="ort", precision="fp32")
    images = [tifffile.imread(dsb_dir / "images" / f"{i}.tif") for i in training_data.dsb_ids(dsb_dir, held_out=True)]
    images = [im for im in images if im.ndim == 2 and im.shape == (256, 256) and im.mean() < 60]
    assert len(images) >= 60

    def embed(fields):
        return np.stack([model.run(f[None].astype(np.float32)).embedding for f in fields])

    reference = DriftReference.build(embed(images[:-16]), window=5, ert=200, seed=1,
                                     metadata={"model": model.name, "precision": model.precision})
    fresh = embed(images[-16:])
    assert not any(s.alarm for s in monitor_stream(reference, fresh))
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :]
    uneven = embed([im.astype(np.float32) + ramp * float(im.max()) for im in images[-16:]])
    steps = monitor_stream(reference, np.vstack([fresh, uneven]))
    assert not any(s.alarm for s in steps[:16])
    assert sum(s.alarm for s in steps[16:]) >= 8, [round(s.ratio, 2) for s in steps]


def test_groups_keep_wells_on_one_side_and_small_pools_are_refused(rng):
    """Fields of one well never land on both sides of the reference/calibration split; a split whose
    calibration pool is under five windows' worth is refused (its threshold would be far too low)."""
    wells = np.repeat([f"W{i:02d}" for i in range(40)], 4)
    vectors = rng.normal(size=(160, 6)) + np.repeat(rng.normal(size=(40, 6)), 4, axis=0)
    reference = DriftReference.build(vectors, window=4, ert=100, groups=wells, bootstraps=1000, seed=2)
    held_out = {tuple(v) for v in reference.calibration.tolist()}
    for well in np.unique(wells):
        sides = {tuple(v) in held_out for v in vectors[wells == well].astype(np.float32).tolist()}
        assert len(sides) == 1, well
    assert reference.metadata["split_by_groups"] and reference.metadata["calibration_pool"] == len(held_out)
    with pytest.raises(DriftReferenceError, match="groups should give one label per field"):
        DriftReference.build(vectors, window=4, groups=wells[:-1])
    with pytest.raises(DriftReferenceError, match="needs at least 20 held-out fields"):
        DriftReference.build(rng.normal(size=(30, 6)), window=4)


def test_damaged_reference_files_are_named(tmp_path, rng):
    reference = DriftReference.build(rng.normal(size=(80, 5)), window=4, ert=50, bootstraps=500)
    good = reference.save(tmp_path / "ref.npz")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DriftReferenceError, match="truncated.npz: not a cellrt drift reference"):
        DriftReference.load(tmp_path / "truncated.npz")
    with np.load(good) as data:
        header = json.loads(bytes(data["header"]).decode())
    header.pop("sigma")
    np.savez(tmp_path / "nosigma.npz", embeddings=reference.embeddings, calibration=reference.calibration,
             header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(DriftReferenceError, match="nosigma.npz: not a cellrt drift reference .KeyError"):
        DriftReference.load(tmp_path / "nosigma.npz")
    header["sigma"] = -1.0
    np.savez(tmp_path / "negative.npz", embeddings=reference.embeddings, calibration=reference.calibration,
             header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(DriftReferenceError, match="negative.npz: inconsistent header"):
        DriftReference.load(tmp_path / "negative.npz")
    with pytest.raises(DriftReferenceError, match="made with other weights"):
        reference.__class__(**{**reference.__dict__, "metadata": {"weights_sha256": "a" * 64}}).check_compatible(
            dims=5, weights_sha256="b" * 64)
    with pytest.raises(ValueError, match="DriftMonitor: backend should be 'auto', 'cpu' or 'numba'"):
        DriftMonitor(reference, backend="cuda")


def test_c_abi_drift_monitor_equals_the_python_monitor(tmp_path, rng):
    """The C++ DriftMonitor behind the C ABI (what acquisition software links), fed from the raw export of
    a DriftReference, gives the Python monitor's statistics and alarms field for field."""
    import ctypes

    import cellrt

    reference = DriftReference.build(rng.normal(size=(120, 24)), window=6, ert=50, bootstraps=2000, seed=4)
    folder = reference.save_raw(tmp_path / "raw")
    header = json.loads((folder / "reference.json").read_text())
    embeddings = np.fromfile(folder / "reference.f32", "<f4").reshape(header["count"], header["dims"])
    np.testing.assert_array_equal(embeddings, reference.embeddings)

    lib = ctypes.CDLL(str(Path(cellrt.cmake_dir()).parents[1] / "libcellrt_c.so"))

    class Tensor(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_size_t), ("data", ctypes.c_void_p), ("dtype", ctypes.c_int32),
                    ("device", ctypes.c_int32), ("ndim", ctypes.c_int32), ("shape", ctypes.c_int64 * 4),
                    ("strides", ctypes.c_int64 * 4)]

    class Step(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_size_t), ("index", ctypes.c_int64), ("statistic", ctypes.c_double),
                    ("threshold", ctypes.c_double), ("window_full", ctypes.c_int32), ("alarm", ctypes.c_int32)]

    ref = np.ascontiguousarray(embeddings, np.float32)
    view = Tensor(ctypes.sizeof(Tensor), ref.ctypes.data, 3, 0, 2, (ctypes.c_int64 * 4)(*ref.shape, 0, 0),
                  (ctypes.c_int64 * 4)(ref.shape[1], 1, 0, 0))
    monitor = ctypes.c_void_p()
    lib.cellrt_drift_monitor_create.argtypes = [ctypes.POINTER(Tensor), ctypes.c_double, ctypes.c_int32,
                                                ctypes.c_double, ctypes.POINTER(ctypes.c_void_p)]
    lib.cellrt_drift_monitor_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                ctypes.POINTER(Step)]
    lib.cellrt_drift_monitor_destroy.argtypes = [ctypes.c_void_p]
    assert lib.cellrt_drift_monitor_create(ctypes.byref(view), header["sigma"], header["window"],
                                           header["threshold"], ctypes.byref(monitor)) == 0
    stream = rng.normal(size=(60, 24)).astype(np.float32)
    stream[30:] += 0.7
    try:
        for field, want in zip(stream, monitor_stream(reference, stream)):
            step = Step(ctypes.sizeof(Step))
            assert lib.cellrt_drift_monitor_update(monitor, field.ctypes.data, 24, ctypes.byref(step)) == 0
            assert step.index == want.index
            assert step.statistic == pytest.approx(want.statistic, rel=1e-10, abs=1e-13)
            assert bool(step.alarm) == want.alarm and bool(step.window_full) == want.window_full
    finally:
        lib.cellrt_drift_monitor_destroy(monitor)
    assert any(s.alarm for s in monitor_stream(reference, stream))


def test_rbf_values_beyond_float32_are_named_as_such():
    from cellrt.kernels import rbf_kernel_sums

    points = np.zeros((3, 2), np.float64)
    queries = np.array([[0.0, 1.0], [1e39, 0.0]])
    with pytest.raises(ValueError, match=r"rbf_kernel_sums: queries holds values beyond float32's range .*row 1"):
        rbf_kernel_sums(queries, points, 1.0)
    queries[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"rbf_kernel_sums: queries holds NaN or inf \(row 1\)"):
        rbf_kernel_sums(queries, points, 1.0)
