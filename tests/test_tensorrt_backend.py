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

import gc
import threading
import types
import weakref

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

    def begin_capture(self) -> None:
        self.capture, self.pending = self.pending, []

    def end_capture(self):
        ops, self.pending = self.pending, self.capture
        self.capture = None

        def launch(stream):
            for op in ops:
                stream.enqueue(op)

        return types.SimpleNamespace(launch=launch)

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


def current_device() -> int:
    """The thread's current device: CUDA's is per thread, and 0 in a thread that chose none."""
    stack = getattr(_LOCAL, "devices", [])
    return stack[-1] if stack else 0


class Device:
    def __init__(self, device_id=None):
        self.id = current_device() if device_id is None else device_id
        self.compute_capability = "90"

    def __enter__(self):
        _LOCAL.devices = getattr(_LOCAL, "devices", []) + [self.id]
        return self

    def __exit__(self, *args):
        _LOCAL.devices.pop()


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
        self.capturable = True

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return shape[0] <= self.max_batch

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def get_tensor_shape(self, name):
        n, _, h, w = self.shape
        return {"logits": (n, 3, h, w), "embedding": (n, 4)}[name]

    def execute_async_v3(self, stream_ptr):
        stream = next(s for s in STREAMS if s.ptr == stream_ptr)
        if getattr(stream, "capture", None) is not None and not self.capturable:
            return False
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


class Engine:
    def __init__(self, manifest, dtypes=None):
        self.manifest, self.dtypes = manifest, dtypes or {}
        self.names = [manifest.input_name] + [spec.name for spec in manifest.outputs]
        self.num_io_tensors = len(self.names)
        self.runtime_cache = RuntimeCache(b"")

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_dtype(self, name):
        return self.dtypes.get(name, FLOAT)

    def create_execution_context(self, runtime_config=None):
        # Held weakly, as TensorRT's context does not keep the Python object alive: its owner must.
        self.runtime_config = None if runtime_config is None else weakref.ref(runtime_config)
        return Context(self.manifest)

    def create_runtime_config(self):
        return RuntimeConfig(self)


class RuntimeConfig:
    def __init__(self, engine):
        self.engine = engine

    def create_runtime_cache(self):
        return self.engine.runtime_cache

    def set_runtime_cache(self, cache):
        return True


class RuntimeCache:
    """TensorRT-RTX's runtime cache: the kernels JIT-compiled so far (here: one per batch shape run)."""

    def __init__(self, blob: bytes):
        self.blob = blob

    def deserialize(self, blob) -> bool:
        self.blob = bytes(blob)
        return True

    def serialize(self):
        return self.blob


FLOAT, HALF = types.SimpleNamespace(name="FLOAT"), types.SimpleNamespace(name="HALF")


def _manifest():
    return types.SimpleNamespace(
        name="stand-in", input_name="image", input_channels=("DNA",),
        outputs=[OutputSpec("logits", "class_logits", ("background", "interior", "boundary")),
                 OutputSpec("embedding", "embedding", size=4)])


def _make(monkeypatch, tmp_path, flavour="tensorrt", engine=None, cuda_graph=False, gpu=None):
    fake_trt = types.SimpleNamespace(__version__="10.0", DataType=types.SimpleNamespace(FLOAT=FLOAT))
    engine = engine or Engine(_manifest())
    monkeypatch.setattr(trt_runtime, "import_tensorrt", lambda name="auto": (fake_trt, flavour))
    monkeypatch.setattr(trt_runtime, "load_engine", lambda artifact: (object(), engine))
    key = {"flavour": flavour, "version": "10.0", "compute_capabilities": ["90"],
           "profile": {"min_batch": 1, "opt_batch": 4, "max_batch": 8, "tile_size": 8}}
    if gpu is not None:
        key["gpu"] = gpu
    artifact = trt_runtime.EngineArtifact(tmp_path / "stand-in.engine", key, reused=True, build_seconds=0.0,
                                          fp16_error=None)
    return trt_runtime.TensorRTBackend(engine.manifest, artifact, cuda_graph=cuda_graph)


@pytest.fixture
def backend(monkeypatch, tmp_path):
    cupy = _fake_cupy()
    monkeypatch.setitem(__import__("sys").modules, "cupy", cupy)
    STREAMS.clear()
    STREAMS.append(NULL)
    original = Stream.__init__

    def tracked(self, *args, **kwargs):
        original(self, *args, **kwargs)
        STREAMS.append(self)

    monkeypatch.setattr(Stream, "__init__", tracked)
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "90")
    yield _make(monkeypatch, tmp_path), cupy


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


def test_a_slots_host_staging_is_rewritten_only_after_its_previous_batch_was_copied_in(backend):
    """A pipelined caller: each host batch enqueued with infer_async, its outputs copied out on the caller's
    stream after the returned event. The third batch of a shape reuses the first's slot and pinned staging
    buffer, written on the host at the call: before the first batch's copy from it had run, that batch was
    computed from the third's tiles."""
    backend, cupy = backend
    batches = [_tiles(seed, 4) for seed in range(4)]
    fields = {"logits": cupy.empty((16, 3, 8, 8)), "embedding": cupy.empty((16, 4))}
    caller = cupy.cuda.get_current_stream()
    for index, batch in enumerate(batches):
        outputs, done = backend.infer_async(batch)
        caller.wait_event(done)
        for name, array in outputs.items():
            fields[name][4 * index:4 * index + 4] = array   # queued on the caller's stream
    for name, want in _expected(np.concatenate(batches)).items():
        np.testing.assert_allclose(fields[name].get(), want, rtol=1e-6, err_msg=name)


def test_calls_from_any_thread_run_on_the_device_the_backend_was_made_on(backend, monkeypatch, tmp_path):
    """CUDA's current device is per thread and 0 in a new one: the plate's inference thread called infer for an
    engine, stream and context made on device 1, and allocated its buffers and enqueued it on device 0."""
    _, cupy = backend
    with cupy.cuda.Device(1):
        on_one = _make(monkeypatch, tmp_path)
    seen = []
    allocate, execute = cupy.empty, Context.execute_async_v3

    def recording_empty(*args, **kwargs):
        seen.append(("empty", current_device()))
        return allocate(*args, **kwargs)

    def recording_execute(self, stream_ptr):
        seen.append(("execute", current_device()))
        return execute(self, stream_ptr)

    monkeypatch.setattr(cupy, "empty", recording_empty)
    monkeypatch.setattr(Context, "execute_async_v3", recording_execute)
    results = []
    worker = threading.Thread(target=lambda: results.append(on_one.infer(_tiles(0, 3))["logits"].get()))
    worker.start()
    worker.join()
    np.testing.assert_allclose(results[0], _expected(_tiles(0, 3))["logits"], rtol=1e-6)
    assert ("execute", 1) in seen and ("empty", 1) in seen
    assert all(device == 1 for _, device in seen), seen
    assert current_device() == 0


def test_host_batches_of_any_dtype_are_staged_as_float32(backend):
    """The pinned staging buffer was sized by the batch's bytes: a uint16 or float16 batch had too few."""
    backend, _ = backend
    tiles = (_tiles(3, 2) * 1000).astype(np.uint16)
    got = backend.infer(tiles)["logits"].get()
    np.testing.assert_allclose(got, _expected(tiles.astype(np.float32))["logits"], rtol=1e-6)


def test_the_engine_is_checked_against_the_manifest(backend, monkeypatch, tmp_path):
    """Buffers are float32 and sized from the manifest: an engine with FP16 I/O, other tensors or other output
    shapes would be fed or write garbage (or past its buffers), so it is refused, naming what differs."""
    _, cupy = backend
    with pytest.raises(trt_runtime.EngineError, match="tensor 'logits' is HALF, expected FLOAT"):
        _make(monkeypatch, tmp_path, engine=Engine(_manifest(), dtypes={"logits": HALF}))
    engine = Engine(_manifest())
    engine.names = engine.names[:2]
    engine.num_io_tensors = 2
    with pytest.raises(trt_runtime.EngineError, match=r"tensors are \['image', 'logits'\], the manifest names"):
        _make(monkeypatch, tmp_path, engine=engine)
    backend = _make(monkeypatch, tmp_path)
    monkeypatch.setattr(Context, "get_tensor_shape", lambda self, name: (self.shape[0], 3, 4, 4)
                        if name == "logits" else (self.shape[0], 4))
    with pytest.raises(trt_runtime.EngineError, match=r"output 'logits' is \(2, 3, 4, 4\), the manifest makes it "
                                                      r"\(2, 3, 8, 8\)"):
        backend.infer(_tiles(0, 2))
    # each output is checked, not only the first
    backend = _make(monkeypatch, tmp_path)
    monkeypatch.setattr(Context, "get_tensor_shape", lambda self, name: (self.shape[0], 5)
                        if name == "embedding" else (self.shape[0], 3, 8, 8))
    with pytest.raises(trt_runtime.EngineError, match=r"output 'embedding' is \(2, 5\), the manifest makes it "
                                                      r"\(2, 4\)"):
        backend.infer(_tiles(0, 2))
    with pytest.raises(trt_runtime.EngineError, match=r"outside the engine's profile \(1..8 tiles of 8 px\)"):
        _make(monkeypatch, tmp_path).infer(_tiles(0, 9))


def test_tensorrt_rtx_kernels_compiled_at_the_first_batch_are_kept_without_close(backend, monkeypatch, tmp_path):
    """The runtime cache was written by close() only, which neither Model nor the plate runner calls: every
    process compiled the engine's kernels again."""
    _, cupy = backend
    engine = Engine(_manifest())
    first = _make(monkeypatch, tmp_path, flavour="tensorrt_rtx", engine=engine)
    cache = tmp_path / "stand-in.rtxcache"
    gc.collect()
    assert engine.runtime_config is not None and not cache.exists()
    assert engine.runtime_config() is not None, "the runtime config the context runs with was let go"
    engine.runtime_cache.blob = b"kernels for batches of 2"
    first.infer(_tiles(0, 2))
    assert cache.read_bytes() == b"kernels for batches of 2"
    engine.runtime_cache.blob = b"and of 3"
    first.infer(_tiles(0, 3))
    first.close()
    assert cache.read_bytes() == b"and of 3"
    again = Engine(_manifest())
    _make(monkeypatch, tmp_path, flavour="tensorrt_rtx", engine=again)
    assert again.runtime_cache.blob == b"and of 3"


def test_cuda_graphs_replay_each_shape_and_slot_and_a_refused_capture_is_an_error(backend, monkeypatch, tmp_path):
    """Captured once per (batch shape, slot) after an eager run, replayed after; a capture TensorRT refused left an
    empty graph whose replays wrote nothing - each later batch of that shape returned stale outputs."""
    _, cupy = backend
    graphs = _make(monkeypatch, tmp_path, cuda_graph=True)
    batches = [_tiles(seed, 4 if seed % 3 else 2) for seed in range(7)]
    for batch in batches:
        got = {name: array.get() for name, array in graphs.infer(cupy.asarray(batch)).items()}
        for name, want in _expected(batch).items():
            np.testing.assert_allclose(got[name], want, rtol=1e-6)
    assert len(graphs._graphs) == 4
    refused = _make(monkeypatch, tmp_path, cuda_graph=True)
    refused.context.capturable = False
    with pytest.raises(trt_runtime.EngineError, match="refused to enqueue batch shape .* into a CUDA graph"):
        refused.infer(_tiles(0, 2))
    assert refused.stream.capture is None and not refused._graphs


def test_an_engine_tuned_on_another_gpu_model_of_the_same_compute_capability_is_refused(backend, monkeypatch,
                                                                                          tmp_path):
    """H100 and H200 are both sm_90: a cache folder shared between them handed one's engine to the other."""
    monkeypatch.setattr(trt_runtime, "current_gpu_name", lambda: "NVIDIA H200")
    assert _make(monkeypatch, tmp_path, gpu="NVIDIA H200").tile_size == 8
    with pytest.raises(trt_runtime.EngineError, match=r"TensorRT tuned it on a NVIDIA H100 80GB HBM3, this GPU is a "
                                                      r"NVIDIA H200; rebuild it"):
        _make(monkeypatch, tmp_path, gpu="NVIDIA H100 80GB HBM3")
