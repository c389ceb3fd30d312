"""The Python side of the GPU path, run without a GPU.

No GPU can exist on the machines these tests run on, so the device is a
stand-in, and this test says so: "device arrays" are numpy arrays that
expose ``__cuda_array_interface__`` (host pointers), a ``cupy`` module
made of numpy, and the extension's ``*_cuda`` entry points are replaced by
functions that read and write through those pointers with the CPU kernels.
What runs for real is everything cellrt's Python does on the way to and
from the CUDA kernels: dispatch on device arrays, pointer/shape/dtype
marshalling in ``kernels/_cuda.py``, buffer allocation, the two-call
contour protocol, array-module-generic post-processing. Each stand-in binding
is checked against the real binding's signature in ``_core.pyi`` (held to
the compiled module by test_build), so a call that would not bind fails
here. The CUDA kernels themselves are covered by the ``cuda``-marked tests
on a GPU machine.
"""
from __future__ import annotations

import ast
import ctypes
import importlib
import inspect
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile

import cellrt
from cellrt._build import _core

stitch_module = importlib.import_module("cellrt.kernels.stitch")  # the module, not the function
PYI = Path(cellrt.__file__).parent / "_core.pyi"
CODES = {code: dtype for dtype, code in stitch_module._DTYPE_CODES.items()}


class DeviceArray(np.ndarray):
    """Host memory posing as device memory."""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False),
                "strides": None if self.flags.c_contiguous else self.strides, "version": 3}

    def get(self):
        return np.array(self, copy=True).view(np.ndarray)


def _device(value):
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    return value


def _fake_cupy() -> types.ModuleType:
    module = types.ModuleType("cupy")

    def wrap(fn):
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            return tuple(_device(o) for o in out) if isinstance(out, tuple) else _device(out)
        return call

    def asarray(a, dtype=None):
        return np.array(np.asarray(a), dtype=dtype, copy=True).view(DeviceArray)

    def asnumpy(a):
        return np.array(a, copy=True).view(np.ndarray)

    module.__getattr__ = lambda name: wrap(getattr(np, name)) if callable(getattr(np, name)) else getattr(np, name)
    module.asarray = asarray
    module.asnumpy = asnumpy
    module.ndarray = DeviceArray
    stream = types.SimpleNamespace(ptr=0, record=lambda event=None: types.SimpleNamespace(),
                                   wait_event=lambda event: None, synchronize=lambda: None)
    module.cuda = types.SimpleNamespace(get_current_stream=lambda: stream, Stream=types.SimpleNamespace(null=stream))
    for name in ("uint8", "uint16", "int32", "int64", "float32", "float64", "bool_"):
        setattr(module, name, getattr(np, name))
    return module


def _view(ptr: int, dtype, shape, strides=None) -> np.ndarray:
    """The numpy array behind a stand-in device pointer."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if strides is None:
        strides = [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
    span = 1 + sum((s - 1) * st for s, st in zip(shape, strides)) if all(shape) else 0
    buffer = (ctypes.c_char * (span * dtype.itemsize)).from_address(ptr)
    return np.ndarray(shape, dtype, buffer=buffer, strides=[st * dtype.itemsize for st in strides])


def _stand_ins() -> dict:
    def label_cuda(mask, shape, labels, connectivity, stream):
        out = _view(labels, np.int32, shape)
        result, count = cellrt.kernels.label(_view(mask, np.uint8, shape), connectivity, backend="cpu")
        out[...] = result
        return count

    def measure_cuda(labels, shape, num_objects, image, image_dtype, image_shape, image_strides, features, columns,
                     stream):
        intensities = None if image == 0 else _view(image, CODES[image_dtype], image_shape, image_strides)
        table = _view(features, np.float64, (num_objects, columns)) if num_objects else np.zeros((0, columns))
        return _core.measure(_view(labels, np.int32, shape), num_objects,
                             None if intensities is None else np.ascontiguousarray(intensities), table)

    def label_measure_cuda(mask, shape, labels, image, image_dtype, image_shape, image_strides, features, capacity,
                           columns, connectivity, min_area, stream):
        # The CUDA kernels' bodies, run on the host (csrc/segment/label_measure_by_pixels.cpp).
        intensities = None if image == 0 else _view(image, CODES[image_dtype], image_shape, image_strides)
        table = _view(features, np.float64, (capacity, columns)) if capacity else np.zeros((0, columns))
        return _core.label_measure_by_pixels(_view(mask, np.uint8, shape), _view(labels, np.int32, shape),
                                             None if intensities is None else np.ascontiguousarray(intensities),
                                             table, connectivity, min_area)

    def binary_morphology_cuda(mask, out, shape, radius, footprint, dilate, stream):
        _view(out, np.uint8, shape)[...] = _core.binary_morphology(_view(mask, np.uint8, shape), radius, footprint,
                                                                   dilate)

    def filter_cuda(op, image, out, shape, a, b, border, stream):
        src, dst = _view(image, np.float32, shape), _view(out, np.float32, shape)
        if op == 0:
            _core.gaussian_blur(src, dst, a, b, border)
        else:
            _core.box_mean(src, dst, int(a), int(b), border, 1)

    def fill_holes_cuda(mask, out, shape, connectivity, stream):
        _view(out, np.uint8, shape)[...] = _core.fill_holes(_view(mask, np.uint8, shape), connectivity)

    def histogram_cuda(image, dtype, size, counts, stream):
        data = _view(image, CODES[dtype], (size,))
        _view(counts, np.int64, (256 if CODES[dtype] == np.uint8 else 65536,))[...] = _core.histogram(data)

    def contours_cuda(labels, shape, num_objects, offsets, points, perimeter, stream):
        host_offsets, host_points, host_perimeter = _core.contours(_view(labels, np.int32, shape), num_objects)
        _view(offsets, np.int64, (num_objects + 1,))[...] = host_offsets
        if perimeter:
            _view(perimeter, np.float64, (num_objects,))[...] = host_perimeter
        if points:
            _view(points, np.int32, host_points.shape)[...] = host_points
        return int(host_offsets[-1])

    def hole_contours_cuda(labels, shape, num_objects, stream):
        return _core.hole_contours(np.array(_view(labels, np.int32, shape)), num_objects)

    def tile_cuda(image, image_dtype, image_shape, image_strides, origins, tiles, tiles_dtype, tiles_shape, scale,
                  offset, stream):
        source = np.ascontiguousarray(_view(image, CODES[image_dtype], image_shape, image_strides))
        return _core.tile(source, origins, _view(tiles, CODES[tiles_dtype], tiles_shape), scale, offset)

    def stitch_cuda(tiles, tiles_dtype, tiles_shape, tiles_strides, origins, out, out_dtype, out_shape, blend,
                    overlap_y, overlap_x, sigma_scale, activation, argmax, fill_value, stream):
        source = np.ascontiguousarray(_view(tiles, CODES[tiles_dtype], tiles_shape, tiles_strides))
        return _core.stitch(source, origins, _view(out, CODES[out_dtype], out_shape), blend, overlap_y, overlap_x,
                            sigma_scale, activation, argmax, fill_value)

    def rbf_kernel_cuda(queries, queries_shape, points, points_shape, sigma, out, out_shape, stream):
        _core.rbf_kernel(_view(queries, np.float32, queries_shape), _view(points, np.float32, points_shape), sigma,
                         _view(out, np.float64, out_shape))

    def mask_nms_cuda(boxes, scores, classes, mask_offsets, mask_data, mask_size, keep, n, iou_threshold,
                      ios_threshold, class_aware):
        return _core.mask_nms(_view(boxes, np.int32, (n, 4)), _view(scores, np.float32, (n,)),
                              None if classes == 0 else _view(classes, np.int32, (n,)),
                              _view(mask_offsets, np.int64, (n + 1,)), _view(mask_data, np.uint8, (mask_size,)),
                              _view(keep, np.uint8, (n,)), iou_threshold, ios_threshold, class_aware)

    def resize_cuda(image, dtype, shape, out, out_shape, antialias, stream):
        # The CUDA kernels' bodies, run on the host (csrc/resize/resize.cpp resize_by_pixels).
        _core._resize_by_pixels(np.ascontiguousarray(_view(image, CODES[dtype], shape)),
                                _view(out, np.float32, out_shape), antialias)

    return {f.__name__: f for f in (label_cuda, measure_cuda, label_measure_cuda, binary_morphology_cuda, filter_cuda, fill_holes_cuda,
                                    histogram_cuda, contours_cuda, hole_contours_cuda, tile_cuda, stitch_cuda,
                                    rbf_kernel_cuda, mask_nms_cuda, resize_cuda)}


def _pyi_signatures() -> dict[str, list[str]]:
    tree = ast.parse(PYI.read_text())
    return {node.name: [a.arg for a in node.args.args] for node in tree.body if isinstance(node, ast.FunctionDef)}


@pytest.fixture
def fake_device(monkeypatch):
    """cupy, the CUDA bindings and a visible "device", all standing in on the host (see the module doc)."""
    signatures = _pyi_signatures()
    fake_core = types.SimpleNamespace(**{name: getattr(_core, name) for name in dir(_core) if not name.startswith("__")})
    for name, fn in _stand_ins().items():
        assert name in signatures, f"_core.pyi has no {name}"
        assert list(inspect.signature(fn).parameters) == signatures[name], f"{name}: stand-in differs from the binding"
        setattr(fake_core, name, fn)
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    monkeypatch.delitem(sys.modules, "cellrt.kernels._cuda", raising=False)
    # `from . import _cuda` takes the package's attribute before sys.modules: without this, every test after the
    # first ran a _cuda bound to the first test's stand-ins, and tests after these (a GPU's) one bound to them.
    vars(cellrt.kernels).pop("_cuda", None)
    monkeypatch.setattr("cellrt._build._core", fake_core)
    monkeypatch.setattr("cellrt.kernels._backend.has_cuda", lambda: True)
    monkeypatch.setattr("cellrt.kernels._backend.cuda_device_count", lambda: 1)
    yield sys.modules["cupy"]
    sys.modules.pop("cellrt.kernels._cuda", None)
    vars(cellrt.kernels).pop("_cuda", None)


def test_device_kernels_marshal_arrays_as_the_bindings_expect(fake_device, dsb_dir):
    from cellrt import kernels
    from cellrt.training import data as training_data

    cp = fake_device
    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[3]
    image = tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")
    device_image = cp.asarray(image)
    mask = image > kernels.threshold(image, "otsu")
    assert kernels.threshold(device_image, "otsu") == kernels.threshold(image, "otsu")
    for connectivity in (4, 8):
        np.testing.assert_array_equal(kernels.fill_holes(cp.asarray(mask), connectivity).get(),
                                      kernels.fill_holes(mask, connectivity, backend="cpu"))
    for op in (kernels.binary_erosion, kernels.binary_dilation, kernels.binary_opening):
        np.testing.assert_array_equal(op(cp.asarray(mask), 2, "disk").get(), op(mask, 2, "disk", backend="cpu"))
    as_float = image.astype(np.float32)
    np.testing.assert_array_equal(kernels.gaussian_blur(cp.asarray(as_float), 2.0).get(),
                                  kernels.gaussian_blur(as_float, 2.0, backend="cpu"))
    np.testing.assert_array_equal(kernels.box_mean(cp.asarray(as_float), (5, 7)).get(),
                                  kernels.box_mean(as_float, (5, 7), backend="cpu", num_threads=1))
    labels, count = kernels.label(mask, 8, backend="cpu")
    device_labels, device_count = kernels.label(cp.asarray(mask), 8)
    assert device_count == count
    np.testing.assert_array_equal(device_labels.get(), labels)
    host_table = kernels.measure(labels, image, channel_names=["DNA"])
    device_table = kernels.measure(device_labels, device_image, channel_names=["DNA"])
    assert set(device_table) == set(host_table)
    for column, values in host_table.items():
        np.testing.assert_allclose(np.asarray(device_table[column]), values, rtol=1e-12, err_msg=column)
    host_outlines = kernels.contours(labels)
    device_outlines = kernels.contours(device_labels)
    assert len(device_outlines) == count
    for ours, theirs in zip(device_outlines, host_outlines):
        np.testing.assert_array_equal(ours.get(), theirs)
    # Holes: a random mask has objects with many (nuclei after Otsu have none).
    porous, _ = kernels.label(np.random.default_rng(0).random((64, 80)) < 0.6, 8, backend="cpu")
    host_holes = kernels.contours(porous, holes=True)
    device_holes = kernels.contours(cp.asarray(porous), holes=True)
    assert [len(h) for h in device_holes] == [len(h) for h in host_holes]
    assert sum(len(h) - 1 for h in host_holes) > 0, "the mask should have objects with holes"
    for ours, theirs in zip(device_holes, host_holes):
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a.get(), b)


def test_label_measure_on_device_arrays_with_and_without_a_second_pass(fake_device, dsb_dir):
    from cellrt import kernels

    cp = fake_device
    path = sorted((dsb_dir / "labels").glob("*.tif"))[5]
    image = tifffile.imread(dsb_dir / "images" / path.name)
    mask = image > kernels.threshold(image, "otsu")
    want_labels, want_count, want = kernels.label_measure(mask, image, min_area=8, channel_names=["DNA"],
                                                          backend="cpu")
    assert want_count > 5
    for capacity in (None, 0, want_count // 2, want_count):   # None: default rows; 0 and half: measured again
        labels, count, table = kernels.label_measure(cp.asarray(mask), cp.asarray(image), min_area=8,
                                                     channel_names=["DNA"], capacity=capacity)
        assert isinstance(labels, cp.ndarray) and count == want_count, capacity
        np.testing.assert_array_equal(labels.get(), want_labels)
        assert list(table) == list(want)
        for column, values in want.items():
            assert isinstance(table[column], cp.ndarray), column
            np.testing.assert_allclose(np.asarray(table[column]), values, rtol=1e-12, err_msg=f"{capacity} {column}")


def test_label_measure_and_measure_check_their_arguments_on_the_device_path(fake_device, rng):
    """A host mask (or labels) with device intensities is refused naming both; measure's num_objects is checked
    on the device path as on the host (it had a copy of the checks on the host path only)."""
    from cellrt import kernels

    cp = fake_device
    mask = rng.random((20, 30)) > 0.5
    image = rng.integers(0, 200, (20, 30)).astype(np.uint16)
    with pytest.raises(ValueError, match=r"^label_measure: intensities is a device array but the mask is on the "
                                         r"host; pass both on the same device"):
        kernels.label_measure(mask, cp.asarray(image))
    labels, count = kernels.label(mask, backend="cpu")
    with pytest.raises(ValueError, match=r"^measure: intensities is a device array but the labels are on the host"):
        kernels.measure(labels, cp.asarray(image))
    for bad in (2.5, True, "3", -1, 2**31):
        with pytest.raises(ValueError, match=r"^measure: num_objects should be an int in \[0, 2\^31\), got "):
            kernels.measure(cp.asarray(labels), num_objects=bad)
    sparse = labels.copy()
    sparse[0, 0] = 2_000_000_000
    with pytest.raises(ValueError, match=r"^measure: the largest label is 2000000000 but the image has 600 pixels"):
        kernels.measure(cp.asarray(sparse))
    table = kernels.measure(cp.asarray(labels), cp.asarray(image), num_objects=np.int64(count + 2))
    assert len(table["ObjectNumber"]) == count + 2


def test_tile_and_stitch_fill_caller_device_buffers(fake_device, isl_dir):
    """The plate path reuses one tile batch and one field buffer per shape on the GPU too."""
    from cellrt import kernels

    cp = fake_device
    image = tifffile.imread(isl_dir / "dapi.tif")[None, :300, :420].astype(np.float32)
    host = kernels.tile(image, 128, 0.25, backend="cpu")
    tiles_buf = cp.asarray(np.full(host.tiles.shape, np.nan, np.float32))
    batch = kernels.tile(cp.asarray(image), 128, 0.25, out=tiles_buf)
    assert batch.tiles is tiles_buf
    np.testing.assert_array_equal(tiles_buf.get(), host.tiles)
    field_buf = cp.asarray(np.full(image.shape, np.nan, np.float32))
    field = kernels.stitch(batch.tiles, batch.origins, image.shape, overlap=0.25, blend="linear", out=field_buf)
    assert field is field_buf
    np.testing.assert_array_equal(field_buf.get(), kernels.stitch(host.tiles, host.origins, image.shape,
                                                                  overlap=0.25, blend="linear", backend="cpu"))
    with pytest.raises(ValueError, match=r"stitch: out should be a C-contiguous device \(cupy\) float32"):
        kernels.stitch(batch.tiles, batch.origins, image.shape, out=np.empty(image.shape, np.float32))
    with pytest.raises(ValueError, match=r"tile: out should be .* shape \(15, 1, 128, 128\)"):
        kernels.tile(cp.asarray(image), 128, 0.25, out=cp.asarray(np.empty((3, 1, 128, 128), np.float32)))


def test_rbf_kernel_sums_and_values_on_device_arrays(fake_device, rng):
    from cellrt.kernels import rbf_kernel_matrix, rbf_kernel_sums

    cp = fake_device
    queries, points = rng.normal(size=(7, 12)), rng.normal(size=(30, 12)).astype(np.float32)
    sums = rbf_kernel_sums(cp.asarray(queries), cp.asarray(points), 3.0)
    values = rbf_kernel_matrix(cp.asarray(queries), cp.asarray(points), 3.0)
    assert isinstance(sums, np.ndarray) and hasattr(sums, "__cuda_array_interface__")
    np.testing.assert_array_equal(sums.get(), rbf_kernel_sums(queries, points, 3.0, backend="cpu"))
    np.testing.assert_array_equal(values.get(), rbf_kernel_matrix(queries, points, 3.0, backend="cpu"))
    with pytest.raises(ValueError, match="both be on the host .* or both on the GPU"):
        rbf_kernel_sums(cp.asarray(queries), points, 3.0)


def test_segment_runs_on_device_arrays_and_equals_the_host_chain(fake_device, dsb_dir, isl_dir):
    """segment() written once for numpy and cupy: percentile normalisation, the float-image Otsu
    threshold (histogram on the device), local threshold, fill, opening, blur, label, size filter."""
    from cellrt.kernels import segment, threshold
    from cellrt.training import data as training_data

    cp = fake_device
    images = [tifffile.imread(dsb_dir / "images" / f"{i}.tif") for i in training_data.dsb_ids(dsb_dir, held_out=True)[:3]]
    images.append(tifffile.imread(isl_dir / "dapi.tif")[:400, :300])
    for image in images:
        image = image if image.ndim == 2 else image[..., 0]
        host, host_count = segment(image)
        device, device_count = segment(cp.asarray(image))
        assert isinstance(device, DeviceArray) and device_count == host_count
        np.testing.assert_array_equal(device.get(), host)
        as_float = image.astype(np.float32) / 7.0
        for method in ("otsu", "li", "triangle", "mean"):
            assert threshold(cp.asarray(as_float), method) == threshold(as_float, method), method
        assert threshold(cp.asarray(as_float), "otsu", smoothing=1.5) == threshold(as_float, "otsu", smoothing=1.5)
    with pytest.raises(ValueError, match="threshold: image holds 1 NaN/inf values"):
        threshold(cp.asarray(np.array([[0.0, np.nan], [1.0, 2.0]], np.float32)))


def test_image2image_model_post_processes_on_the_device(fake_device, isl_dir):
    """The isl-dapi model (predicted DAPI from phase planes) on the GPU path: segment() of the prediction
    on the device, the same nuclei and table as on the host."""
    host_model = cellrt.load_model("isl-dapi", backend="ort", threads=2)
    device_model = cellrt.load_model("isl-dapi", backend="ort", threads=2)
    device_model._cupy = fake_device
    field = np.stack([tifffile.imread(isl_dir / f"phase_z{z:02d}.tif")[:320, :384] for z in (3, 6, 9)])
    expected, result = host_model.run(field), device_model.run(field)
    assert type(result.labels) is np.ndarray and result.count == expected.count > 0
    np.testing.assert_array_equal(result.labels, expected.labels)
    for column, values in expected.objects.items():
        np.testing.assert_allclose(np.asarray(result.objects[column]), values, rtol=1e-6, err_msg=column)


def test_semantic_post_processing_stays_on_the_device(fake_device, dsb_dir):
    from cellrt.kernels import instances_from_probability
    from cellrt.training import data as training_data

    cp = fake_device
    model = cellrt.load_model("nuclei", backend="ort", threads=2)
    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[0]
    prediction = model.run(tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")).prediction
    stacked = np.stack([prediction[0], prediction[1], prediction[2]])
    host, host_count = instances_from_probability(stacked, min_area=10)
    device, device_count = instances_from_probability(cp.asarray(stacked), min_area=10)
    assert isinstance(device, DeviceArray) and device_count == host_count > 0
    np.testing.assert_array_equal(device.get(), host)
    from cellrt.pipeline.postprocess import POSTPROCESSORS

    params = dict(model.manifest.postprocess.get("params", {}))
    labels, count, columns = POSTPROCESSORS["semantic"](model.manifest, None, cp.asarray(prediction), params)
    host_labels, host_count, host_columns = POSTPROCESSORS["semantic"](model.manifest, None, prediction, params)
    assert isinstance(labels, DeviceArray) and count == host_count
    np.testing.assert_array_equal(labels.get(), host_labels)
    np.testing.assert_array_equal(np.asarray(columns["Classify_ClassIndex"]), host_columns["Classify_ClassIndex"])


def test_model_gpu_path_keeps_tiles_outputs_and_post_processing_on_the_device(fake_device, dsb_dir):
    """Model.run as on a GPU: the field uploaded once, tiled and stitched by the device kernels, the
    engine's outputs in device buffers, post-processing on the device, one copy back at the end. The
    TensorRT backend cannot exist here; ONNX Runtime stands in for it, writing into device buffers."""
    from cellrt.training import data as training_data

    host_model = cellrt.load_model("nuclei", backend="ort", threads=2)
    device_model = cellrt.load_model("nuclei", backend="ort", threads=2)
    device_model._cupy = fake_device
    for image_id in training_data.dsb_ids(dsb_dir, held_out=True)[:3]:
        image = tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")
        prepared = device_model.prepare(image)
        assert isinstance(prepared.tiles, DeviceArray)
        expected, result = host_model.run(image), device_model.run(image)
        assert type(result.labels) is np.ndarray and type(result.prediction) is np.ndarray
        np.testing.assert_array_equal(result.labels, expected.labels)
        np.testing.assert_allclose(result.prediction, expected.prediction, rtol=0, atol=1e-6)
        for column, values in expected.objects.items():
            np.testing.assert_array_equal(np.asarray(result.objects[column]), values, err_msg=column)
    # A field outside the model's range: resampled on the device before tiling, the output back after stitching.
    expected, result = host_model.run(image, object_diameter=40.0), device_model.run(image, object_diameter=40.0)
    assert result.scale["factor"] < 1 and result.labels.shape == image.shape
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_allclose(result.prediction, expected.prediction, rtol=0, atol=1e-6)


def test_resize_of_device_arrays_runs_the_cuda_bodies(fake_device, rng):
    from cellrt.kernels import resize

    image = (rng.random((2, 37, 53)) * 1000).astype(np.uint16)
    for shape in ((18, 26), (100, 140)):
        out = resize(fake_device.asarray(image), shape)
        assert isinstance(out, DeviceArray) and out.shape == (2,) + shape
        np.testing.assert_array_equal(out.get(), resize(image, shape, backend="cpu"))


def test_mask_nms_on_device_instances(fake_device, rng, monkeypatch):
    """Device instances (packed masks on the device) through the cuda binding's marshalling: the same
    instances kept as on the host, returned as a device array. The binding reads and writes with synchronous copies on
    the legacy default stream, which a non-blocking stream is ordered with neither way: the caller's stream
    is finished before it, and the legacy default stream after it."""
    from cellrt._build import _core as fake_core
    from cellrt.kernels import mask_nms, pack_masks

    cp = fake_device
    order = []
    caller = types.SimpleNamespace(ptr=7, synchronize=lambda: order.append("caller's stream finished"))
    legacy = types.SimpleNamespace(ptr=0, synchronize=lambda: order.append("legacy default stream finished"))
    monkeypatch.setattr(cp.cuda, "get_current_stream", lambda: caller)
    monkeypatch.setattr(cp.cuda, "Stream", types.SimpleNamespace(null=legacy))
    binding = fake_core.mask_nms_cuda

    def logged(*args):
        order.append("binding")
        return binding(*args)

    monkeypatch.setattr(fake_core, "mask_nms_cuda", logged)
    boxes, masks = [], []
    for _ in range(60):
        h, w = rng.integers(3, 15, size=2)
        y, x = rng.integers(0, 80, size=2)
        boxes.append([y, x, y + h, x + w])
        masks.append(rng.random((h, w)) > 0.3)
    boxes = np.asarray(boxes, np.int32)
    scores = rng.random(len(boxes)).astype(np.float32)
    classes = rng.integers(0, 2, len(boxes)).astype(np.int32)
    offsets, data = pack_masks(boxes, masks)
    want = mask_nms(boxes, scores, masks, classes=classes, iou_threshold=0.3, ios_threshold=0.6, backend="cpu")
    got = mask_nms(cp.asarray(boxes), cp.asarray(scores), (cp.asarray(offsets), cp.asarray(data)),
                   classes=cp.asarray(classes), iou_threshold=0.3, ios_threshold=0.6)
    assert isinstance(got, DeviceArray)
    np.testing.assert_array_equal(got.get(), want)
    assert order == ["caller's stream finished", "binding", "legacy default stream finished"]
    with pytest.raises(ValueError, match="masks packed on the device"):
        mask_nms(cp.asarray(boxes), cp.asarray(scores), masks)


def test_plate_engine_workers_wait_for_the_inference_threads_copies_of_their_outputs(fake_device, monkeypatch):
    """The inference thread copies each batch's outputs into the fields' buffers on its stream, and a worker
    thread stitches the field on its own (another stream under per-thread default streams): before finishing a
    field, the worker's stream waits on an event the inference thread recorded after those copies."""
    import threading

    recorded, waits, finishes, buffers = [], {}, [], []

    class Stream:   # each thread's own: what it records and what it waits for
        ptr = 0

        def record(self, event=None):
            # what the fields' output buffers held when it was recorded: the copies queued before it
            event = types.SimpleNamespace(thread=threading.current_thread().name,
                                          held=[(b, {n: np.array(a) for n, a in b.items()}) for b in list(buffers)])
            recorded.append(event)
            return event

        def wait_event(self, event):
            waits.setdefault(threading.current_thread().name, []).append(event)

        def synchronize(self):
            pass

    monkeypatch.setattr(fake_device.cuda, "get_current_stream", Stream)
    host_model = cellrt.load_model("nuclei", backend="ort", threads=2)
    device_model = cellrt.load_model("nuclei", backend="ort", threads=2)
    device_model._cupy = fake_device
    finish, make_buffers = device_model.finish, device_model.output_buffers

    def nan_buffers(*args):
        made = make_buffers(*args)
        for array in made.values():
            array[...] = np.nan
        buffers.append(made)
        return made

    def finish_after_the_wait(prepared, outputs):
        waited = waits.pop(threading.current_thread().name, [])
        # each event waited for was recorded after all of this field's outputs were copied
        held = [[copies for made, copies in event.held if made is outputs] for event in waited]
        finishes.append((waited, all(h and all(np.array_equal(h[-1][n], outputs[n], equal_nan=True) for n in outputs)
                                     for h in held)))
        return finish(prepared, outputs)

    device_model.output_buffers = nan_buffers

    device_model.finish = finish_after_the_wait
    results, fields = _three_demo_fields_through_the_engine(device_model)
    assert len(finishes) == len(fields)
    for waited, after_the_copies in finishes:
        assert len(waited) == 1 and waited[0] in recorded and waited[0].thread == "cellrt-infer", waited
        assert after_the_copies, "the event was recorded before the field's outputs were copied"
    _assert_labels_as_on_the_host(results, fields, host_model)


def _three_demo_fields_through_the_engine(device_model):
    """(results by field key, fields): the first three fields of the demo plate through a FieldEngine."""
    from importlib import resources
    from pathlib import Path

    from cellrt.io import open_plate
    from cellrt.pipeline.engine import FieldEngine
    from cellrt.pipeline.plate import PlateOptions

    fields = open_plate(Path(str(resources.files("cellrt") / "data" / "demo" / "plate"))).fields[:3]
    engine = FieldEngine(device_model, ["1"], [], PlateOptions(batch_size=4))
    try:
        for source in fields:
            assert engine.put(source)
        engine.close_input()
        results = {state.source.key: outcome for state, outcome in (engine.next_result(timeout=60) for _ in fields)}
    finally:
        engine.shutdown()
    return results, fields


def _assert_labels_as_on_the_host(results, fields, host_model):
    from cellrt.io.plate import read_field

    for source in fields:
        expected = host_model.run(read_field(source, ["1"])[:1])
        np.testing.assert_array_equal(results[source.key].labels, expected.labels)


def test_plate_engine_threads_use_the_backend_device(fake_device):
    """CUDA's current device is per thread: the reader, inference and worker threads started on device 0
    whatever device the TensorRT engine was on; each now makes the backend's device current first."""
    import threading

    used = set()

    class Device:
        def use(self):
            used.add(threading.current_thread().name.rsplit("_", 1)[0])

    host_model = cellrt.load_model("nuclei", backend="ort", threads=2)
    device_model = cellrt.load_model("nuclei", backend="ort", threads=2)
    device_model._cupy = fake_device
    device_model.backend.device = Device()
    results, fields = _three_demo_fields_through_the_engine(device_model)
    assert used == {"cellrt-read", "cellrt-infer", "cellrt-post"}
    _assert_labels_as_on_the_host(results, fields, host_model)
