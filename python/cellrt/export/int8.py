"""INT8 ONNX for CPUs: static quantisation with ONNX Runtime's own tools.

Convolutions run as 8-bit integer arithmetic (VNNI / AVX-512 on current
x86 servers): the bundled ``nuclei`` UNet goes from 0.41 to 0.27 s per
megapixel on 2 threads here. The quantised model is an artefact beside the
FP32 one (``model.int8.onnx``, QDQ format: per-channel signed weights,
unsigned activations with ranges calibrated on real tiles), recorded in the
manifest's ``int8`` section with its SHA-256 and measured error, and used
only when asked for (``precision="int8"``).

The gate compares INT8 with FP32 on check tiles with ONNX Runtime and
refuses the model when, for any output, the error is above its tolerance:
for class logits the fraction of pixels whose most likely class changes,
for images and embeddings the RMS error relative to the output's spread.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np

INT8_FILE = "model.int8.onnx"
DEFAULT_TOLERANCE = 0.05
DEFAULT_EMBEDDING_TOLERANCE = 0.15


class QuantizationError(RuntimeError):
    """The INT8 model is further from FP32 than the tolerance allows; nothing was written."""


def int8_error(manifest, int8_path: Path, tiles: np.ndarray) -> dict[str, float]:
    """Per output: argmax disagreement (class logits) or relative RMS error (images, embeddings)."""
    import onnxruntime as ort  # noqa: PLC0415

    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    reference = ort.InferenceSession(str(manifest.onnx_path), providers=["CPUExecutionProvider"])
    quantised = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in manifest.outputs]
    feed = {manifest.input_name: tiles}
    errors = {}
    for spec, a, b in zip(manifest.outputs, reference.run(names, feed), quantised.run(names, feed)):
        if spec.role == "class_logits" and a.shape[1] > 1:
            errors[spec.name] = float(np.mean(np.argmax(a, axis=1) != np.argmax(b, axis=1)))
        else:
            a = a.astype(np.float64)
            spread = float(np.std(a)) or 1.0
            errors[spec.name] = float(np.sqrt(np.mean((b - a) ** 2))) / spread
    return errors


def quantize_int8(folder, calibration: np.ndarray, *, check: np.ndarray | None = None,
                  tolerance: float = DEFAULT_TOLERANCE, embedding_tolerance: float = DEFAULT_EMBEDDING_TOLERANCE,
                  record: dict | None = None, graph_passes: bool = True, weight_bits: int = 8) -> dict:
    """Write ``model.int8.onnx`` for the model folder and add it to the manifest.

    Parameters
    ----------
    folder : a cellrt model folder (its FP32 ONNX is quantised).
    calibration : (N, C, H, W) float32 tiles, normalised as the model sees
        them (e.g. ``Model.prepare(image).tiles``): real images, not noise;
        activation ranges come from them.
    check : tiles for the FP32-vs-INT8 gate (default: the calibration tiles).
    tolerance : largest error allowed for dense outputs (see :func:`int8_error`).
    embedding_tolerance : largest relative RMS error of embedding outputs.
        8-bit activations through the whole encoder move the pooled
        bottleneck by ~7% of its spread (nuclei UNet; keeping the last
        layers in FP32 does not help: the error is made all the way down),
        so a drift reference must be computed at the precision it is
        compared with (the plate run's fingerprint includes the precision).
    record : extra facts for the manifest's ``int8`` section (e.g. where
        the calibration tiles came from, held-out metrics).
    weight_bits : 8 (int8 weights), or 7: weights in [-64, 64], so that on x86 CPUs without VNNI, where
        ONNX Runtime adds pairs of u8 x s8 products in 16-bit lanes with saturation, no sum can
        saturate (2 x 255 x 64 = 32640 <= 32767) - an INT8 file exact on every CPU, a little less accurate (bundled nuclei: held-out
        F1 0.8425 with 7 bits, 0.845 with 8, 0.846 in FP32). Recorded in the manifest.
    graph_passes : first apply ``cellrt.export.graph_passes`` (what an export
        does) to the FP32 graph, so a graph exported without them quantises
        without the channel concatenations ONNX Runtime transposes around;
        each partial convolution is then quantised on its own.

    Returns the manifest's new ``int8`` section. Raises
    :class:`QuantizationError` (and leaves the folder as it was) when the
    gate fails.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    from ..runtime.ort import int8_file_exact  # noqa: PLC0415

    if weight_bits not in (7, 8):
        raise ValueError(f"quantize_int8: weight_bits should be 7 or 8, got {weight_bits!r}")
    exact, cpu = int8_file_exact(weight_bits)
    if not exact:   # the gate would measure saturated 16-bit sums, not the model
        raise QuantizationError(f"quantize_int8: the FP32-vs-INT8 gate needs a CPU whose 8-bit convolutions are "
                                f"exact in ONNX Runtime (x86 with VNNI: avx512_vnni or avx_vnni); this one is {cpu}; "
                                f"nothing written. 7-bit weights (weight_bits=7, `cellrt quantize --weight-bits 7`) "
                                f"are exact on every CPU")

    from .._atomic import atomic_path  # noqa: PLC0415
    from ..runtime.manifest import load_manifest, sha256_file, write_manifest  # noqa: PLC0415
    from .graph_passes import optimize_file  # noqa: PLC0415

    folder = Path(folder)
    manifest = load_manifest(folder)
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    expected_channels = len(manifest.input_channels)
    if calibration.ndim != 4 or calibration.shape[1] != expected_channels or len(calibration) == 0:
        raise ValueError(f"quantize_int8: calibration should be (N, {expected_channels}, H, W) tiles with N >= 1, "
                         f"got shape {calibration.shape}")
    for name, value in (("tolerance", tolerance), ("embedding_tolerance", embedding_tolerance)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"quantize_int8: {name} should be in (0, 1), got {value!r}")

    class Tiles(CalibrationDataReader):
        def __init__(self):
            self._tiles = iter(calibration)

        def get_next(self):
            tile = next(self._tiles, None)
            return None if tile is None else {manifest.input_name: tile[None]}

    with tempfile.TemporaryDirectory(prefix="cellrt-int8-") as tmp:
        prepared, quantised = Path(tmp) / "prepared.onnx", Path(tmp) / INT8_FILE
        # Symbolic shape inference cannot follow the dynamic height/width expressions; the
        # graph optimisations and ONNX shape inference it also does are what matter here.
        source = manifest.onnx_path
        if graph_passes:   # the export's exact rewrites, for graphs exported before them or elsewhere
            source = Path(tmp) / "optimized.onnx"
            optimize_file(manifest.onnx_path, source)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantised), Tiles(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        reduce_range=weight_bits == 7)
        errors = int8_error(manifest, quantised, calibration if check is None else check)
        limits = {spec.name: embedding_tolerance if spec.role == "embedding" else tolerance
                  for spec in manifest.outputs}
        bad = {name: value for name, value in errors.items() if not value <= limits[name]}
        if bad:
            raise QuantizationError(f"{folder}: INT8 outputs differ from FP32 by {bad} (argmax disagreement for "
                                    f"class logits, relative RMS error otherwise), above the tolerance "
                                    f"{ {name: limits[name] for name in bad} }; nothing written")
        with atomic_path(folder / INT8_FILE) as target:
            shutil.copyfile(quantised, target)
    section = {"file": INT8_FILE, "sha256": sha256_file(folder / INT8_FILE), "tolerance": tolerance,
               "embedding_tolerance": embedding_tolerance,
               "error": {k: round(v, 6) for k, v in errors.items()},
               "calibration_tiles": int(len(calibration)), "weight_bits": weight_bits, **(record or {})}
    write_manifest(folder, dataclasses.replace(manifest, int8=section))   # last: the folder names the INT8 model only once it is there and checked
    return section

