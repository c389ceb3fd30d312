"""TensorRTBackend's stream discipline, run without a GPU.

No GPU exists where these tests run, so CUDA streams are a stand-in whose
asynchrony is the worst case CUDA allows: work queued on a stream runs only
when something waits for it (a host synchronisation, an event, or another
stream made to wait on one of its events), never on its own. A device array
here is host memory whose copies and kernels are queued on the current
stream; the "engine" is a TensorRT stand-in whose enqueue reads its input
and writes its outputs through the tensor addresses given to it, on the
stream given to ``execute_async_v3``. What runs for real is
``TensorRTBackend``: its buffer slots, its stream, the order in which it
queues copies and the engine, and what it waits for. The engine itself and
the CUDA semantics it relies on are covered by the ``cuda``-marked tests on
a GPU machine.
"""
from __future__ import annotations

import threading
import types
from pathlib import Path

import numpy as np
import pytest

from cellrt.runtime import tensorrt as trt_runtime
from cellrt.runtime.manifest import OutputSpec

_LOCAL = threading.local()


class Stream:
    _next = 100

    def __init__(self, null: bool = False, non_blocking: bool = False):
        self.ptr = 0 if null else Stream._next
        Stream._next += 1
        self.pending: list = []
        self.done_count = 0

    def enqueue(self, op) -> None:
        self.pending.append(op)

    def run_to(self, count: int) -> None:
        while self.done_count < count:
            op = self.pending[self.done_count]
            self.done_count += 1
            op()

    def synchronize(self) -> None:
        self.run_to(len(self.pending))

    def record(self, event=None):
        event = event or Event()
        event.stream, event.count = self, len(self.pending)
        return event

    def wait_event(self, event) -> None:
        stream, count = event.stream, event.count
        self.enqueue(lambda: stream.run_to(count))

    def __enter__(self):
        _LOCAL.stack = getattr(_LOCAL, "stack", []) + [self]
        return self

    def __exit__(self, *args):
        _LOCAL.stack.pop()


NULL = Stream(null=True)


def current_stream() -> Stream:
    stack = getattr(_LOCAL, "stack", [])
    return stack[-1] if stack else NULL


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.stream, self.count = None, 0

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.run_to(self.count)


class Device:
    def __init__(self, device_id=None):
        self.id = 0 if device_id is None else device_id
        self.compute_capability = "90"

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass


MEMORY: dict[int, np.ndarray] = {}   # device address -> the buffer allocated there


class DeviceArray:
    """Host memory posing as device memory: data operations are queued on the current stream."""

    def __init__(self, array: np.ndarray):
        self._a = array
        self.shape, self.dtype, self.size, self.nbytes = array.shape, array.dtype, array.size, array.nbytes
        self.data = types.SimpleNamespace(ptr=array.ctypes.data)

    def __len__(self):
        return len(self._a)

    def __getitem__(self, key):
        return DeviceArray(self._a[key])

    def __setitem__(self, key, value):
        source = value._a if isinstance(value, DeviceArray) else np.asarray(value)
        current_stream().enqueue(lambda: self._a.__setitem__(key, source))

    def set(self, host, stream=None):
        (stream or current_stream()).enqueue(lambda: self._a.__setitem__(Ellipsis, host))

    def get(self):
        current_stream().synchronize()
        return self._a.copy()


def _alloc(shape, dtype=np.float32) -> DeviceArray:
    array = np.full(shape, np.nan, dtype)   # what a fresh allocation holds is unknown: NaN shows a stale read
    MEMORY[array.ctypes.data] = array
    return DeviceArray(array)


def _concatenate(parts) -> DeviceArray:
    out = _alloc((sum(len(p) for p in parts),) + tuple(parts[0].shape[1:]), parts[0].dtype)
    offset = 0
    for part in parts:
        out[offset:offset + len(part)] = part
        offset += len(part)
    return out


def _fake_cupy() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.float32 = np.float32
    cupy.empty = _alloc
    cupy.concatenate = _concatenate
    cupy.ascontiguousarray = lambda a: a

    def asarray(a):
        out = _alloc(np.shape(a), np.float32)
        out[...] = np.asarray(a, np.float32)
        return out

    cupy.asarray = asarray
    cupy.cuda = types.SimpleNamespace(Stream=Stream, Event=Event, Device=Device, get_current_stream=current_stream,
                                      alloc_pinned_memory=lambda n: bytearray(n))
    return cupy


class Context:
    """A TensorRT execution context stand-in: outputs = a function of the input, written on the given stream."""

    def __init__(self, manifest):
        self.manifest, self.addresses, self.shape = manifest, {}, None
        self.max_batch = 8

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return shape[0] <= self.max_batch

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_ptr):
        stream = next(s for s in STREAMS if s.ptr == stream_ptr)
        n = self.shape[0]
        image = MEMORY[self.addresses[self.manifest.input_name]]
        dense = MEMORY[self.addresses["logits"]]
        embedding = MEMORY[self.addresses["embedding"]]

        def run():
            x = image[:n]
            dense[:n] = np.concatenate([x * (k + 1) for k in range(dense.shape[1])], axis=1)
            embedding[:n] = x.mean(axis=(1, 2, 3))[:, None] + np.arange(embedding.shape[1])

        stream.enqueue(run)
        return True


STREAMS: list = []


def _expected(batch: np.ndarray) -> dict:
    return {"logits": np.concatenate([batch * (k + 1) for k in range(3)], axis=1),
            "embedding": batch.mean(axis=(1, 2, 3))[:, None] + np.arange(4)}


@pytest.fixture
def backend(monkeypatch):
    cupy = _fake_cupy()
    monkeypatch.setitem(__import__("sys").modules, "cupy", cupy)
    STREAMS.clear()
    STREAMS.append(NULL)
    original = Stream.__init__

    def tracked(self, *args, **kwargs):
        original(self, *args, **kwargs)
        STREAMS.append(self)

    monkeypatch.setattr(Stream, "__init__", tracked)
    manifest = types.SimpleNamespace(
        name="stand-in", input_name="image", input_channels=("DNA",),
        outputs=[OutputSpec("logits", "class_logits", ("background", "interior", "boundary")),
                 OutputSpec("embedding", "embedding", size=4)])
    fake_trt = types.SimpleNamespace(__version__="10.0")
    engine = types.SimpleNamespace(create_execution_context=lambda: Context(manifest))
    monkeypatch.setattr(trt_runtime, "import_tensorrt", lambda flavour="auto": (fake_trt, "tensorrt"))
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "90")
    monkeypatch.setattr(trt_runtime, "load_engine", lambda artifact: (object(), engine))
    key = {"flavour": "tensorrt", "version": "10.0", "compute_capabilities": ["90"],
           "profile": {"min_batch": 1, "opt_batch": 4, "max_batch": 8, "tile_size": 8}}
    artifact = trt_runtime.EngineArtifact(Path("stand-in.engine"), key, reused=True, build_seconds=0.0,
                                          fp16_error=None)
    yield trt_runtime.TensorRTBackend(manifest, artifact), cupy


def _tiles(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def test_a_batch_the_callers_stream_is_still_making_is_waited_for(backend):
    """The plate's inference thread concatenates tiles of several fields on its (default) stream and hands the
    result to the backend at once; the engine's non-blocking stream copied it before it was made."""
    backend, cupy = backend
    first, second = _tiles(0, 3), _tiles(1, 2)
    batch = cupy.concatenate([cupy.asarray(first), cupy.asarray(second)])   # queued on the caller's stream
    got = {name: array.get() for name, array in backend.infer(batch).items()}
    for name, want in _expected(np.concatenate([first, second])).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-6)


def test_outputs_the_caller_still_copies_are_not_overwritten_by_a_later_call(backend):
    """Callers copy each batch's outputs into the field's buffers on their own stream; two calls later the engine
    writes that slot again, and had not waited for those copies."""
    backend, cupy = backend
    batches = [_tiles(seed, 4) for seed in range(4)]
    fields = {"logits": cupy.empty((16, 3, 8, 8)), "embedding": cupy.empty((16, 4))}
    for index, batch in enumerate(batches):
        for name, array in backend.infer(cupy.asarray(batch)).items():
            fields[name][4 * index:4 * index + 4] = array   # queued on the caller's stream
    for name, want in _expected(np.concatenate(batches)).items():
        np.testing.assert_allclose(fields[name].get(), want, rtol=1e-6)


def test_host_batches_and_shorter_last_batches_alternate_slots_per_shape(backend):
    """A shorter batch in between (a field's last) does not hand a shape's previous outputs to its next call."""
    backend, cupy = backend
    full, short, again = _tiles(0, 4), _tiles(1, 2), _tiles(2, 4)
    first, _ = backend.infer_async(full)
    backend.infer_async(short)
    backend.infer_async(again)
    backend.stream.synchronize()
    np.testing.assert_allclose(first["logits"].get(), _expected(full)["logits"], rtol=1e-6)
