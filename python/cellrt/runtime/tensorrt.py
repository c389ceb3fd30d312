"""TensorRT engines: build (strongly typed, from the FP32 or mixed-precision ONNX), cache, run.

Both TensorRT flavours are supported with one code path:

- ``tensorrt`` - data-centre GPUs; builds for the GPU it runs on and
  persists a timing cache beside the engines;
- ``tensorrt_rtx`` - TensorRT for RTX, the runtime of RTX workstation GPUs
  in acquisition PCs; builds ahead of time for named compute capabilities
  (no GPU needed to build), compiles kernels just in time on the target and
  persists that runtime cache.

Engines are strongly typed: precision comes from the ONNX graph (the
``fp16`` model of a manifest keeps normalisation, softmax and reductions in
FP32), so both flavours build the same numerics. Every engine file is keyed
by the SHA-256 of the ONNX file it was built from, the flavour and version,
the compute capabilities, the precision and the optimisation profile; an
engine whose key does not match is rebuilt, never loaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_text
from .manifest import Manifest, ManifestError, cache_root, load_manifest, sha256_file

FLAVOURS = ("tensorrt", "tensorrt_rtx")
PRECISIONS = ("fp16", "fp32")


class EngineError(RuntimeError):
    """An engine that cannot be built, loaded or run."""


def import_tensorrt(flavour: str = "auto"):
    """(module, flavour name). ``auto`` prefers ``tensorrt``, then ``tensorrt_rtx``."""
    import importlib  # noqa: PLC0415

    if flavour not in ("auto",) + FLAVOURS:
        raise ValueError(f"flavour should be 'auto', 'tensorrt' or 'tensorrt_rtx', got {flavour!r}")
    candidates = FLAVOURS if flavour == "auto" else (flavour,)
    errors = []
    for name in candidates:
        try:
            return importlib.import_module(name), name
        except ImportError as error:
            errors.append(f"{name}: {error}")
    raise EngineError("TensorRT is not available (" + "; ".join(errors) + "); install `tensorrt` on data-centre "
                      "GPUs or `tensorrt-rtx` on RTX workstations")


_LOGGERS: dict = {}


def _logger(trt):
    """The logger of every build in this process for one TensorRT module. TensorRT keeps the first logger a
    process gives it and warns about each other one, so a new logger per build was ignored from the second on.
    It prints warnings and errors as ``trt.Logger(WARNING)`` does, except inside ``with logger.holding() as
    held``: then it keeps them in ``held``, for a step whose failure reports them in its own error message;
    ``logger.replay(held)`` prints them after a step that succeeded."""
    logger = _LOGGERS.get(trt.__name__)
    if logger is None:
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.held = None

            def log(self, severity, msg):
                if severity > trt.ILogger.WARNING:
                    return
                if self.held is not None:
                    self.held.append((severity, msg))
                else:
                    print(f"[TRT] [{severity.name}] {msg}", file=sys.stderr)

            @contextlib.contextmanager
            def holding(self):
                self.held = []
                try:
                    yield self.held
                finally:
                    self.held = None

            def replay(self, held):
                for severity, message in held:
                    self.log(severity, message)

        logger = _LOGGERS[trt.__name__] = Logger()
    return logger


def _parser_reason(error) -> str:
    """One of the ONNX parser's errors in a line: where (a node) and what, without the C++ check that failed."""
    text = " ".join(error.desc().split()).rstrip(".")
    # 'Assertion failed: model->ParseFromCodedStream(&codedInput): Failed to parse the ONNX model'
    text = re.sub(r"^Assertion failed: [^:]*: ", "", text)
    where = f"node {error.node()} ({error.node_operator()}) " if error.node() >= 0 else ""
    return f"{where}{error.code().name}: {text}"


def _log_reason(message: str) -> str:
    """One of TensorRT's logged errors in a line, without the source locations of the check that failed."""
    # '[checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime (In catchCudaError at
    # /_src/common/dispatch/checkMacros.cpp:250 (cudaError 35: CUDA driver version is insufficient ...))'
    text = re.sub(r"^\[[^\]]*::\d+\] ", "", " ".join(message.split()))
    text = re.sub(r"\(In \w+ at \S+:\d+ (\(.*\))\)", r"\1", text)   # '(In f at x.cpp:250 (reason))' -> '(reason)'
    return re.sub(r"\s*\bIn \w+ at \S+:\d+", "", text)            # 'reason. In f at x.cpp:48)' -> 'reason.)'


def cache_dir() -> Path:
    """Engine cache: ``$CELLRT_CACHE/engines`` or ``~/.cache/cellrt/engines``."""
    return cache_root() / "engines"


def rtx_compute_capabilities(trt) -> list[str]:
    """The compute capabilities a TensorRT-RTX module builds for and runs on: ['75', '80', '86', ...]."""
    names = [c[2:] for c in dir(trt.ComputeCapability) if c.startswith("SM") and c[2:].isdigit()]
    return sorted(names, key=int)


def unusable_here(flavour: str = "auto") -> str | None:
    """Why TensorRT cannot run on this machine's GPU (no GPU, no TensorRT module, or only TensorRT-RTX and
    a GPU it does not target, such as a data-centre Hopper), or None when it can."""
    current = current_compute_capability()
    if current is None:
        return "no usable CUDA GPU (or no cupy)"
    try:
        trt, name = import_tensorrt(flavour)
    except EngineError as error:
        return str(error)
    if name == "tensorrt_rtx" and current not in rtx_compute_capabilities(trt):
        return (f"tensorrt_rtx {trt.__version__} runs on sm_{rtx_compute_capabilities(trt)}, not on this GPU "
                f"(sm_{current}); install `tensorrt` for it")
    return None


def current_gpu_name() -> str | None:
    """The current GPU's model name ('NVIDIA H200'); None without a usable GPU (needs cupy)."""
    try:
        import cupy  # noqa: PLC0415
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - no cupy, no driver or no GPU all mean "none here"
        return None


def current_compute_capability() -> str | None:
    """'86' for an sm_86 GPU; None without a usable GPU (needs cupy)."""
    try:
        import cupy  # noqa: PLC0415
        return str(cupy.cuda.Device().compute_capability)
    except Exception:  # noqa: BLE001 - no cupy, no driver or no GPU all mean "none here"
        return None


@dataclass(frozen=True)
class Profile:
    """Optimisation profile: batch sizes (min, opt, max) at one tile size."""
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 16
    tile_size: int = 256

    def __post_init__(self):
        values = (self.min_batch, self.opt_batch, self.max_batch, self.tile_size)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values) or not (
                self.min_batch <= self.opt_batch <= self.max_batch):
            raise ValueError(f"Profile: expected positive ints with min_batch <= opt_batch <= max_batch, got "
                             f"{asdict(self)}")


def engine_key(*, onnx_sha256: str, flavour: str, version: str, compute_capabilities, precision: str,
               profile: Profile, gpu: str | None = None) -> dict:
    """Everything an engine depends on; its ``id`` is the SHA-256 of the rest. ``gpu`` names the device model a
    TensorRT engine was tuned on (its tactics are timed there: an H100's engine is not an H200's, though both are
    sm_90); TensorRT-RTX engines depend on the compute capabilities only, and their keys have no ``gpu``."""
    fields = {"onnx_sha256": onnx_sha256, "flavour": flavour, "version": version,
              "compute_capabilities": sorted(str(c) for c in compute_capabilities), "precision": precision,
              "profile": asdict(profile)}
    if gpu is not None:
        fields["gpu"] = gpu
    fields["id"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return fields


@dataclass
class EngineArtifact:
    path: Path
    key: dict
    reused: bool
    build_seconds: float
    fp16_error: dict | None


def _as_manifest(model) -> Manifest:
    if isinstance(model, Manifest):
        return model
    return load_manifest(Path(model))


def _onnx_for(manifest: Manifest, precision: str) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"precision should be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return manifest.onnx_path
    if manifest.fp16_path is None:
        raise EngineError(f"{manifest.folder}: the manifest has no mixed-precision ONNX ('fp16'); re-export with "
                          f"fp16=True or build with precision='fp32'")
    return manifest.fp16_path


def _calibration_tiles(manifest: Manifest, tile_size: int, count: int = 4, seed: int = 0) -> np.ndarray:
    # Normalised microscopy lies mostly in [0, 1] with bright outliers; a
    # log-normal spread covers both without real data at hand.
    rng = np.random.default_rng(seed)
    shape = (count, len(manifest.input_channels), tile_size, tile_size)
    return (rng.lognormal(-1.0, 0.8, size=shape)).astype(np.float32)


def check_fp16_accuracy(manifest: Manifest, calibration=None, tile_size: int | None = None) -> dict:
    """FP16-vs-FP32 gate with ONNX Runtime on the CPU: relative max abs error per
    output on ``calibration`` tiles must stay within the manifest's
    ``fp16.tolerance``; raises :class:`EngineError` otherwise."""
    from ..export.fp16 import fp16_error  # noqa: PLC0415 - needs onnx only for the error helper's imports

    if manifest.fp16 is None:
        raise EngineError(f"{manifest.folder}: the manifest has no mixed-precision ONNX ('fp16')")
    tiles = (_calibration_tiles(manifest, tile_size or manifest.tile_size) if calibration is None
             else np.ascontiguousarray(calibration, dtype=np.float32))
    errors = fp16_error(manifest.onnx_path, manifest.fp16_path, tiles, manifest.input_name)
    tolerance = float(manifest.fp16.get("tolerance", 0.02))
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    if bad:
        raise EngineError(f"{manifest.fp16_path}: FP16 outputs differ from FP32 by {bad} (relative max abs error "
                          f"on {len(tiles)} calibration tiles), above the manifest's fp16.tolerance {tolerance}; "
                          f"engine not built")
    return errors


def build_engine(model, *, precision: str = "fp16", profile: Profile | None = None, flavour: str = "auto",
                 compute_capabilities=None, cache: Path | None = None, rebuild: bool = False, calibration=None,
                 workspace_mib: int = 2048, log=None) -> EngineArtifact:
    """Build (or reuse from the cache) a TensorRT engine for a model folder or manifest.

    Parameters
    ----------
    precision : 'fp16' (the mixed-precision ONNX, gated by
        :func:`check_fp16_accuracy`) or 'fp32'.
    profile : batch range and tile size (default: 1/8/16 at the manifest's tile size).
    flavour : 'auto', 'tensorrt' or 'tensorrt_rtx'.
    compute_capabilities : e.g. ``["86", "89"]``. TensorRT-RTX builds ahead of
        time for these (no GPU needed); default: the current GPU's. TensorRT
        builds only for the current GPU.
    cache : engine folder (default :func:`cache_dir`).
    rebuild : build even when a matching engine is cached.
    """
    trt, flavour = import_tensorrt(flavour)
    manifest = _as_manifest(model)
    profile = profile or Profile(tile_size=manifest.tile_size)
    if profile.tile_size % manifest.size_multiple:
        raise ValueError(f"{manifest.name}: profile tile_size {profile.tile_size} is not a multiple of the model's "
                         f"input.size_multiple {manifest.size_multiple}")
    onnx_path = _onnx_for(manifest, precision)
    current = current_compute_capability()
    if compute_capabilities is None:
        if current is None:
            raise EngineError(f"{manifest.name}: no GPU here to build for; pass compute_capabilities (e.g. "
                              f"['86']) to build a TensorRT-RTX engine ahead of time")
        compute_capabilities = [current]
    capabilities = [str(c).replace("sm_", "").replace(".", "") for c in compute_capabilities]
    if flavour == "tensorrt" and capabilities != [current]:
        raise EngineError(f"{manifest.name}: TensorRT builds only for the GPU it runs on (here: {current}), "
                          f"not {capabilities}; use tensorrt_rtx to build ahead of time")
    gpu = current_gpu_name() if flavour == "tensorrt" else None
    key = engine_key(onnx_sha256=sha256_file(onnx_path), flavour=flavour, version=trt.__version__,
                     compute_capabilities=capabilities, precision=precision, profile=profile, gpu=gpu)
    folder = Path(cache) if cache is not None else cache_dir()
    stem = f"{manifest.name}-{precision}-{key['id'][:16]}"
    engine_path, key_path = folder / f"{stem}.engine", folder / f"{stem}.json"
    if not rebuild and engine_path.is_file() and key_path.is_file():
        try:
            sidecar = json.loads(key_path.read_text())
        except (OSError, json.JSONDecodeError):
            sidecar = None  # unreadable: rebuild below
        # Reuse only an engine built from these exact inputs whose bytes are the ones that build wrote.
        if (isinstance(sidecar, dict) and sidecar.get("key") == key
                and sidecar.get("engine_sha256") == sha256_file(engine_path)):
            return EngineArtifact(engine_path, key, reused=True, build_seconds=0.0, fp16_error=None)
    fp16_errors = check_fp16_accuracy(manifest, calibration, profile.tile_size) if precision == "fp16" else None

    started = time.perf_counter()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    with logger.holding() as held:   # a refusal's errors go into the ManifestError, not before it as log lines
        parsed = parser.parse_from_file(str(onnx_path))
    if not parsed:
        # The file's fault (damaged, truncated, or operators this TensorRT lacks): a ManifestError, which the
        # commands report in one line as they do ONNX Runtime's refusal of the same file.
        reasons = "; ".join(_parser_reason(parser.get_error(i)) for i in range(parser.num_errors)) or "no reason given"
        raise ManifestError(f"{onnx_path}: {flavour} {trt.__version__} cannot parse it ({reasons}); expected an ONNX "
                            f"model its parser can read - is the file complete (not a truncated or damaged copy), "
                            f"and are its operators and opset ones this {flavour} supports?")
    logger.replay(held)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    channels = len(manifest.input_channels)
    shape = lambda n: (n, channels, profile.tile_size, profile.tile_size)  # noqa: E731
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(manifest.input_name, shape(profile.min_batch), shape(profile.opt_batch),
                           shape(profile.max_batch))
    config.add_optimization_profile(optimisation)
    device_tag = "" if gpu is None else "-" + "".join(c if c.isalnum() else "_" for c in gpu)
    timing_path = folder / f"timing-{flavour}-{trt.__version__}-sm{'_'.join(capabilities)}{device_tag}.cache"
    if flavour == "tensorrt_rtx":
        config.num_compute_capabilities = len(capabilities)
        for index, capability in enumerate(capabilities):
            target = getattr(trt.ComputeCapability, f"SM{capability}", None)
            if target is None:
                supported = [f"SM{c}" for c in rtx_compute_capabilities(trt)]
                raise EngineError(f"{manifest.name}: TensorRT-RTX {trt.__version__} cannot target sm_{capability} "
                                  f"(supported: {supported})")
            config.set_compute_capability(target, index)
    else:
        # Tactic timings are the slow part of a TensorRT build; keep them across builds.
        blob = timing_path.read_bytes() if timing_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: {flavour} {trt.__version__} failed to build an engine for "
                          f"sm_{capabilities} with profile {asdict(profile)}")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(serialized))
    write_text(key_path, json.dumps({"key": key, "engine_sha256": sha256_file(engine_path)}, indent=2) + "\n")
    if flavour == "tensorrt":
        with atomic_path(timing_path) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    elapsed = time.perf_counter() - started
    if log:
        log(f"built {engine_path} ({flavour} {trt.__version__}, sm_{capabilities}, {precision}) in {elapsed:.1f} s")
    return EngineArtifact(engine_path, key, reused=False, build_seconds=elapsed, fp16_error=fp16_errors)


def load_engine(artifact: EngineArtifact):
    """(runtime, engine) for a built artifact; a file that does not deserialize
    (corrupt, another TensorRT version, no usable GPU) raises, never yields a null engine."""
    trt, flavour = import_tensorrt(artifact.key["flavour"])
    try:
        blob = artifact.path.read_bytes()
    except OSError as error:
        raise EngineError(f"{artifact.path}: cannot read the engine: {error}") from error
    # The process's one logger (see _logger), holding what deserialisation logs: TensorRT's reason for a refusal
    # goes into the EngineError, as a build's parser errors go into its ManifestError, not before it on stderr.
    logger = _logger(trt)
    runtime = trt.Runtime(logger)
    with logger.holding() as held:
        engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        reasons = "; ".join(_log_reason(message) for severity, message in held
                            if severity <= trt.ILogger.ERROR) or "TensorRT logged no reason"
        raise EngineError(f"{artifact.path}: {flavour} {trt.__version__} could not deserialize the engine ({reasons}); "
                          f"expected an engine file this {flavour} built, complete, and a GPU it can run on - rebuild "
                          f"it with `cellrt build --rebuild`")
    logger.replay(held)
    return runtime, engine


class TensorRTBackend:
    """Runs an engine on a CUDA stream: ``infer(batch) -> {name: cupy array}``.

    Outputs stay on the device (cupy) so they go straight into the CUDA
    stitch kernels. Two sets of output buffers alternate between calls, so
    the caller can consume one batch's outputs while the next batch runs;
    host inputs are staged through pinned memory. With ``cuda_graph=True``
    the enqueue for each batch shape is captured once and replayed.
    """

    name = "tensorrt"
    any_tile_size = False   # the engine's optimisation profile fixes the tile

    def __init__(self, manifest: Manifest, artifact: EngineArtifact, *, cuda_graph: bool = False):
        import cupy  # noqa: PLC0415

        self._cp = cupy
        trt, flavour = import_tensorrt(artifact.key["flavour"])
        if trt.__version__ != artifact.key["version"]:
            raise EngineError(f"{artifact.path}: built with {flavour} {artifact.key['version']}, this process has "
                              f"{trt.__version__}; rebuild it")
        current = current_compute_capability()
        if current not in artifact.key["compute_capabilities"]:
            raise EngineError(f"{artifact.path}: built for sm_{artifact.key['compute_capabilities']}, this GPU is "
                              f"sm_{current}; rebuild it")
        built_on = artifact.key.get("gpu")
        if built_on is not None and built_on != current_gpu_name():
            raise EngineError(f"{artifact.path}: TensorRT tuned it on a {built_on}, this GPU is a "
                              f"{current_gpu_name()}; rebuild it")
        self.manifest = manifest
        # What the engine accepts: batches of min_batch..max_batch tiles of tile_size pixels (the Model tiles
        # and batches by these; a shape outside them fails set_input_shape).
        self.profile = Profile(**artifact.key["profile"])
        self.tile_size, self.max_batch = self.profile.tile_size, self.profile.max_batch
        self._runtime, self.engine = load_engine(artifact)
        self._check_io(trt, artifact)
        self._runtime_cache_path = None
        self._runtime_cache_saved = False
        if flavour == "tensorrt_rtx":
            # Kept for the context's lifetime, as the runtime and the engine are.
            self._runtime_config = runtime_config = self.engine.create_runtime_config()
            self._runtime_cache = runtime_config.create_runtime_cache()
            self._runtime_cache_path = artifact.path.with_suffix(".rtxcache")
            if self._runtime_cache_path.is_file():
                self._runtime_cache.deserialize(self._runtime_cache_path.read_bytes())
            runtime_config.set_runtime_cache(self._runtime_cache)
            self.context = self.engine.create_execution_context(runtime_config)
        else:
            self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"{artifact.path}: could not create an execution context")
        # The device this backend's buffers, stream and context live on: a thread that calls infer (the plate's
        # inference thread) starts on device 0 whatever device the thread that made the backend had chosen.
        self.device = cupy.cuda.Device()
        self.stream = cupy.cuda.Stream(non_blocking=True)
        # Recorded on the caller's stream at each call, for the engine's stream to wait on (see infer_async).
        self._caller_done = cupy.cuda.Event(disable_timing=True)
        self.cuda_graph = cuda_graph
        self._slots: dict[tuple, list[dict]] = {}
        self._graphs: dict[tuple, object] = {}
        self._turns: dict[tuple, int] = {}

    def _check_io(self, trt, artifact: EngineArtifact) -> None:
        """The engine's I/O tensors are the manifest's, all float32 (the buffers bound to them are)."""
        engine, manifest = self.engine, self.manifest
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        expected = [manifest.input_name] + [spec.name for spec in manifest.outputs]
        if sorted(names) != sorted(expected):
            raise EngineError(f"{artifact.path}: the engine's tensors are {names}, the manifest names {expected}; "
                              f"rebuild it from this model")
        for name in names:
            dtype = engine.get_tensor_dtype(name)
            if dtype != trt.DataType.FLOAT:
                raise EngineError(f"{artifact.path}: tensor {name!r} is {getattr(dtype, 'name', dtype)}, expected "
                                  f"FLOAT (the ONNX model's inputs and outputs should stay float32)")

    def _check_output_shapes(self, slot: dict, shape) -> None:
        """Each output the engine writes for this batch shape fits its buffer exactly (else it writes past it)."""
        for spec in self.manifest.outputs:
            got, want = tuple(self.context.get_tensor_shape(spec.name)), tuple(slot[spec.name].shape)
            if got != want:
                raise EngineError(f"{self.manifest.name}: for batch shape {shape} the engine's output {spec.name!r} "
                                  f"is {got}, the manifest makes it {want}")

    def _slot_for(self, shape) -> dict:
        """The next of two buffer sets (input + outputs) for this batch shape;
        fixed addresses per (shape, slot) are what make graph replay valid."""
        n, _, h, w = shape
        slots = self._slots.get(shape)
        if slots is None:
            slots = []
            for _ in range(2):
                buffers = {self.manifest.input_name: self._cp.empty(shape, dtype=self._cp.float32),
                           "pinned": None, "done": None}
                for spec in self.manifest.outputs:
                    dims = (n, spec.size) if spec.role == "embedding" else (n, len(spec.channels), h, w)
                    buffers[spec.name] = self._cp.empty(dims, dtype=self._cp.float32)
                slots.append(buffers)
            self._slots[shape] = slots
        # Alternate per shape: a call with another batch shape in between (a field's last, shorter batch) must not
        # hand this shape's previous outputs' buffers to the next call of this shape.
        turn = self._turns[shape] = self._turns.get(shape, 1) ^ 1
        return slots[turn]

    def infer_async(self, batch) -> tuple[dict, object]:
        """Enqueue one ``[N, C, H, W]`` batch (numpy or cupy) and return at once:
        the outputs (cupy arrays, valid until the next call but one with a
        batch of this shape) and a CUDA event that completes when they are
        written. Staging the next host batch into its pinned buffer overlaps
        this batch's copy and compute.

        The engine runs on a stream of its own (non-blocking: it does not wait
        for the legacy default stream), so the work the caller has queued on
        its current stream - making a device ``batch`` (a concatenation of
        tiles, say), copying the outputs of earlier calls out of the buffers
        this call reuses - is made to finish first: the engine's stream waits
        for it. A caller reading the outputs on a stream of its own waits for
        the returned event (``infer`` waits on the host)."""
        with self.device:
            return self._infer_async(batch)

    def _infer_async(self, batch) -> tuple[dict, object]:
        cp = self._cp
        shape = tuple(batch.shape)
        if len(shape) != 4 or shape[1] != len(self.manifest.input_channels):
            raise ValueError(f"{self.manifest.name}: batch should be [N, {len(self.manifest.input_channels)}, H, W], "
                             f"got {shape}")
        slot = self._slot_for(shape)
        if slot.get("done") is not None:
            slot["done"].synchronize()  # this slot's previous batch has left its buffers (and its pinned staging)
        caller = cp.cuda.get_current_stream()
        if caller.ptr != self.stream.ptr:
            # Without this wait the input copy below could read a batch the caller's stream has not finished
            # writing, and the engine could overwrite a slot's outputs while the caller's stream still copies them.
            caller.record(self._caller_done)
            self.stream.wait_event(self._caller_done)
        device_input = slot[self.manifest.input_name]
        if isinstance(batch, np.ndarray):
            pinned = slot.get("pinned")
            if pinned is None:   # float32 staging whatever the batch's dtype (a uint16 batch has half the bytes)
                pinned = slot["pinned"] = cp.cuda.alloc_pinned_memory(batch.size * np.dtype(np.float32).itemsize)
            staged = np.frombuffer(pinned, np.float32, batch.size).reshape(shape)
            staged[...] = batch
            device_input.set(staged, stream=self.stream)
        else:
            with self.stream:
                device_input[...] = batch
        if not self.context.set_input_shape(self.manifest.input_name, shape):
            raise EngineError(f"{self.manifest.name}: batch shape {shape} is outside the engine's profile "
                              f"({self.profile.min_batch}..{self.profile.max_batch} tiles of {self.tile_size} px)")
        if not slot.get("checked"):
            self._check_output_shapes(slot, shape)
            slot["checked"] = True
        names = [self.manifest.input_name] + [spec.name for spec in self.manifest.outputs]
        for name in names:
            self.context.set_tensor_address(name, slot[name].data.ptr)
        graph_key = (shape, self._turns[shape])
        if self.cuda_graph and graph_key in self._graphs:
            self._graphs[graph_key].launch(self.stream)
        elif self.cuda_graph:
            # The first enqueue for a shape runs eagerly (TensorRT finishes shape-dependent setup), then is captured.
            if not self.context.execute_async_v3(self.stream.ptr):
                raise EngineError(f"{self.manifest.name}: enqueue failed for batch shape {shape}")
            self.stream.begin_capture()
            try:
                captured = self.context.execute_async_v3(self.stream.ptr)
            finally:
                graph = self.stream.end_capture()   # the stream leaves capture mode whatever happened
            if not captured:   # an empty graph would replay nothing: the outputs of an earlier batch, silently
                raise EngineError(f"{self.manifest.name}: TensorRT refused to enqueue batch shape {shape} into a CUDA "
                                  f"graph; run with cuda_graph=False")
            self._graphs[graph_key] = graph
        elif not self.context.execute_async_v3(self.stream.ptr):
            raise EngineError(f"{self.manifest.name}: enqueue failed for batch shape {shape}")
        slot["done"] = self.stream.record()
        return {spec.name: slot[spec.name] for spec in self.manifest.outputs}, slot["done"]

    def infer(self, batch) -> dict:
        """:meth:`infer_async`, waiting for the outputs."""
        outputs, done = self.infer_async(batch)
        done.synchronize()
        if self._runtime_cache_path is not None and not self._runtime_cache_saved:
            # TensorRT-RTX compiled its kernels for the first batch just now: keep them for the next process
            # whether or not close() is called (Model and the plate runner never call it).
            self._save_runtime_cache()
        return outputs

    def _save_runtime_cache(self) -> None:
        with atomic_path(self._runtime_cache_path) as tmp:
            tmp.write_bytes(memoryview(self._runtime_cache.serialize()))
        self._runtime_cache_saved = True

    def close(self) -> None:
        """Save TensorRT-RTX's runtime cache (kernels compiled since the first batch included)."""
        if self._runtime_cache_path is not None:
            self._save_runtime_cache()
