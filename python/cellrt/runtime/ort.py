"""ONNX Runtime backend: CPU here; CUDA and TensorRT execution providers where present.

Inputs and outputs go through ``IOBinding`` straight into caller-owned (or
reused) numpy buffers, so a steady stream of same-shaped batches allocates
nothing per call.
"""
from __future__ import annotations

import numpy as np

from .._text import one_line
from .manifest import Manifest, ManifestError


class InferenceError(RuntimeError):
    """ONNX Runtime could not run a batch (out of memory, an execution provider that failed, shapes the
    graph refuses); the message names the model file, the batch shape and the providers."""


def _run_session(backend, call, batch_shape):
    """call() - one ONNX Runtime run - with the errors of running (its pybind exception classes, which
    derive from Exception alone, and the RuntimeError its I/O-binding run raises) turned into an
    InferenceError on one line; anything else (ValueErrors of misuse) is left alone."""
    try:
        return call()
    except Exception as error:
        if not (isinstance(error, RuntimeError)
                or type(error).__module__ == "onnxruntime.capi.onnxruntime_pybind11_state"):
            raise
        raise InferenceError(f"{backend.onnx_path}: ONNX Runtime could not run a batch of shape {tuple(batch_shape)} "
                             f"on {', '.join(backend.providers)}: {one_line(error)}") from error

_PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                     "tensorrt": "TensorrtExecutionProvider"}


def int8_dot_product(cpuinfo: str | None = None, machine: str | None = None) -> tuple[bool | None, str]:
    """Whether ONNX Runtime's 8-bit convolutions are exact on this CPU, and why.

    On x86 without VNNI its u8 x s8 kernels add pairs of products in 16-bit registers with saturation
    (vpmaddubsw): a model quantised with full 8-bit weights, as the bundled ones are, can then compute
    wrong values that the INT8 gate, run on a VNNI CPU, never saw (ONNX Runtime and OpenVINO document
    it). VNNI (avx512_vnni, avx_vnni) accumulates in 32 bits. Other architectures widen first. Returns
    (True, ...), (False, ...) or (None, ...) when it cannot be told (INT8 is then refused too)."""
    import platform  # noqa: PLC0415

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True, f"{machine}: no 16-bit saturating 8-bit path"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            cpuinfo = None
    flags = set()
    for line in (cpuinfo or "").splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if flags:
        vnni = sorted(flags & {"avx512_vnni", "avx_vnni"})
        return (True, f"x86 with {' and '.join(vnni)}") if vnni else (False, "x86 without VNNI")
    # No /proc/cpuinfo (Windows, macOS): the CPU features numpy detected at import.
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # noqa: PLC0415
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features  # noqa: PLC0415 - numpy 1.x
        except ImportError:
            return None, "x86, CPU features unreadable"
    vnni = sorted(name for name in ("AVX512VNNI", "AVX_VNNI", "AVXVNNI") if features.get(name))
    return (True, f"x86 with {' and '.join(vnni)}") if vnni else (
        None, "x86, no VNNI among the CPU features numpy reports (it may not report AVX-VNNI)")


def int8_file_exact(weight_bits: int = 8) -> tuple[bool, str]:
    """Whether an INT8 file with weights of ``weight_bits`` bits computes exactly in ONNX Runtime on this
    CPU, and why: 7-bit weights cannot saturate the 16-bit pair sums (2 x 255 x 63 < 32767) anywhere;
    8-bit ones need what :func:`int8_dot_product` says."""
    if weight_bits == 7:
        return True, "7-bit weights: no 16-bit pair sum can saturate"
    exact, cpu = int8_dot_product()
    return exact is True, cpu


# Execution providers that take a QDQ INT8 graph's convolutions off ONNX Runtime's CPU kernels: CUDA has no
# integer convolution and runs Dequantize -> Conv -> Quantize in float (the fusion into the CPU's u8 x s8
# QLinearConv is made only for nodes placed on the CPU); TensorRT uses its own INT8 kernels.
_OFF_CPU_INT8 = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def int8_runs_on_cpu(session_providers) -> bool:
    """Whether a session whose providers are ``session_providers`` (``session.get_providers()``, in priority
    order; short names such as 'cuda' too) runs an INT8 file's convolutions on ONNX Runtime's CPU kernels,
    where :func:`int8_file_exact` decides whether they are exact.

    Asked for CUDA, ONNX Runtime falls back to the CPU with no more than a warning when it cannot use it
    (no GPU, a CUDA or cuDNN library missing, a CPU-only build); the session then reports the CPU provider
    alone. So the providers asked for do not tell, those of the created session do. The first one takes
    every node it can: a CPU listed first runs them all."""
    providers = [_PROVIDER_ALIASES.get(p, p) for p in session_providers]
    return not providers or providers[0] not in _OFF_CPU_INT8


def _load_errors() -> tuple[type[BaseException], ...]:
    """What ONNX Runtime raises when a file is not a model it can load and run (a truncated or damaged copy,
    not ONNX at all, an opset or operator this version lacks). They derive from Exception only, so they are
    named here; failures of an execution provider (EPFail) are not the file's and are left alone."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # noqa: PLC0415

    names = ("InvalidProtobuf", "InvalidGraph", "InvalidArgument", "NoSuchFile", "NoModel", "NotImplemented", "Fail")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


def _load_error_message(onnx_path: str, version: str, error: BaseException) -> str:
    text = str(error)
    # '[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from PATH failed:Protobuf parsing failed.': the
    # reason alone, the path is named at the front of the message.
    reason = text.split(" failed:", 1)[1] if " failed:" in text else text.rsplit(" : ", 1)[-1]
    return (f"{onnx_path}: ONNX Runtime {version} cannot load it ({reason.strip().rstrip('.')}); expected an "
            f"ONNX model it can run - is the file complete (not a truncated or damaged copy), and this ONNX "
            f"Runtime as new as the exporter that wrote it?")


def load_session(onnx_path, options=None, providers=("CPUExecutionProvider",)):
    """An ONNX Runtime session for ``onnx_path``; a file it cannot load raises :class:`ManifestError` naming the
    file, the reason and what was expected (ONNX Runtime's own errors derive from Exception only)."""
    import onnxruntime as ort  # noqa: PLC0415

    try:
        return ort.InferenceSession(str(onnx_path), options, providers=list(providers))
    except _load_errors() as error:
        raise ManifestError(_load_error_message(str(onnx_path), ort.__version__, error)) from error


def _symbolic(dim) -> bool:
    return not isinstance(dim, int)


class OrtBackend:
    """``infer(batch) -> {output name: array}`` on an ONNX Runtime session.

    Parameters
    ----------
    onnx_path : path of the ONNX file
    manifest : Manifest, optional
        When given, the session's inputs and outputs are checked against it
        (names, rank, channel counts, embedding size); a mismatch raises
        :class:`ManifestError` naming it.
    providers : sequence of str, optional
        'cpu', 'cuda', 'tensorrt' or full ONNX Runtime provider names
        (default: CPU). A provider that is not available raises ValueError.
    threads : int
        Intra-op threads (0: ONNX Runtime's default, one per core).
    spin : bool, default False
        Let ONNX Runtime's worker threads spin while waiting for work (its
        default) instead of sleeping. Off here: in the plate pipeline the
        reader, stitch and post-processing threads share the cores with
        inference, and spinning threads took their time (bench_plate, 2
        vCPUs: +3% fields/s FP32, +8% INT8 with spinning off); one session
        alone measured the same either way.
    """

    name = "ort"

    def __init__(self, onnx_path, manifest: Manifest | None = None, *, providers=None, threads: int = 0,
                 spin: bool = False):
        import onnxruntime as ort  # noqa: PLC0415

        wanted = [_PROVIDER_ALIASES.get(p, p) for p in (providers or ["cpu"])]
        available = ort.get_available_providers()
        missing = [p for p in wanted if p not in available]
        if missing:
            raise ValueError(f"OrtBackend: providers {missing} are not available in this onnxruntime "
                             f"(available: {available})")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"OrtBackend: threads should be a non-negative int, got {threads!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.onnx_path = str(onnx_path)
        self.session = load_session(self.onnx_path, options, providers=wanted)
        self.providers = self.session.get_providers()
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        if len(self.inputs) != 1:
            raise ManifestError(f"{onnx_path}: expected one input, the graph has "
                                f"{[i.name for i in self.inputs]}")
        self.input_name = self.inputs[0].name
        # Tiles of any size go through a graph whose height and width are not fixed.
        self.any_tile_size = all(_symbolic(d) for d in self.inputs[0].shape[2:4])
        self.output_names = [o.name for o in self.outputs]
        self._manifest = manifest
        if manifest is not None:
            check_graph_against_manifest(self.session, manifest, self.onnx_path)
        self._buffers: dict[tuple, dict[str, np.ndarray]] = {}

    def output_shapes(self, batch_shape) -> dict[str, tuple[int, ...]]:
        """Output shapes for an input of ``batch_shape`` (N, C, H, W), from the manifest."""
        if self._manifest is None:
            raise ValueError("OrtBackend.output_shapes needs the manifest")
        n, _, h, w = batch_shape
        shapes = {}
        for spec in self._manifest.outputs:
            shapes[spec.name] = (n, spec.size) if spec.role == "embedding" else (n, len(spec.channels), h, w)
        return shapes

    def infer(self, batch: np.ndarray, out: dict | None = None) -> dict[str, np.ndarray]:
        """Run one batch ``[N, C, H, W]`` float32.

        ``out`` maps output names to C-contiguous float32 arrays of the right
        shapes to write into. Without it, outputs go into buffers reused for
        every batch of the same shape: they are overwritten by the next call
        with that shape (copy what must outlive it).
        """
        batch = np.asarray(batch)
        if batch.dtype != np.float32 or batch.ndim != 4 or not batch.flags.c_contiguous:
            raise ValueError(f"{self.onnx_path}: batch should be a C-contiguous float32 [N, C, H, W] array, got "
                             f"{batch.dtype} with shape {batch.shape}")
        if self._manifest is None:  # shapes unknown in advance: let ONNX Runtime allocate
            results = _run_session(self, lambda: self.session.run(self.output_names, {self.input_name: batch}),
                                   batch.shape)
            return dict(zip(self.output_names, results))
        shapes = self.output_shapes(batch.shape)
        if out is None:
            key = tuple(batch.shape)
            out = self._buffers.get(key)
            if out is None:
                out = {name: np.empty(shape, np.float32) for name, shape in shapes.items()}
                self._buffers[key] = out
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        for name, shape in shapes.items():
            array = out.get(name)
            if array is None or array.shape != shape or array.dtype != np.float32 or not array.flags.c_contiguous:
                got = None if array is None else (array.dtype, array.shape)
                raise ValueError(f"{self.onnx_path}: out['{name}'] should be a C-contiguous float32 array of "
                                 f"shape {shape}, got {got}")
            binding.bind_output(name, "cpu", 0, np.float32, list(shape), array.ctypes.data)
        _run_session(self, lambda: self.session.run_with_iobinding(binding), batch.shape)
        return {name: out[name] for name in shapes}


def check_graph_against_manifest(session, manifest: Manifest, source: str) -> None:
    """Refuse a graph whose inputs/outputs disagree with the manifest."""
    inputs = session.get_inputs()
    graph_input = inputs[0]
    if graph_input.name != manifest.input_name:
        raise ManifestError(f"{source}: graph input is '{graph_input.name}', the manifest's input.name says "
                            f"'{manifest.input_name}'")
    shape = graph_input.shape
    if len(shape) != 4:
        raise ManifestError(f"{source}: graph input '{graph_input.name}' has rank {len(shape)}, expected 4 "
                            f"(N, C, H, W)")
    if not _symbolic(shape[1]) and shape[1] != len(manifest.input_channels):
        raise ManifestError(f"{source}: graph input has {shape[1]} channels, the manifest names "
                            f"{len(manifest.input_channels)} ({list(manifest.input_channels)})")
    for axis, label in ((2, "height"), (3, "width")):
        if not _symbolic(shape[axis]) and shape[axis] != manifest.tile_size:
            raise ManifestError(f"{source}: graph input {label} is fixed at {shape[axis]}, the manifest's "
                                f"tile.size is {manifest.tile_size}")
    if "float" not in graph_input.type or "16" in graph_input.type:
        raise ManifestError(f"{source}: graph input type is {graph_input.type}, expected tensor(float)")
    graph_outputs = {o.name: o for o in session.get_outputs()}
    for spec in manifest.outputs:
        found = graph_outputs.get(spec.name)
        if found is None:
            raise ManifestError(f"{source}: the manifest's output '{spec.name}' is not a graph output "
                                f"(graph outputs: {sorted(graph_outputs)})")
        if found.type != "tensor(float)":
            raise ManifestError(f"{source}: output '{spec.name}' has type {found.type}, expected tensor(float)")
        dims = found.shape
        if spec.role == "embedding":
            if len(dims) != 2 or (not _symbolic(dims[1]) and dims[1] != spec.size):
                raise ManifestError(f"{source}: output '{spec.name}' has shape {dims}, the manifest says an "
                                    f"embedding of size {spec.size} ([N, {spec.size}])")
        else:
            if len(dims) != 4 or (not _symbolic(dims[1]) and dims[1] != len(spec.channels)):
                raise ManifestError(f"{source}: output '{spec.name}' has shape {dims}, the manifest names "
                                    f"{len(spec.channels)} channels {list(spec.channels)} ([N, "
                                    f"{len(spec.channels)}, H, W])")
