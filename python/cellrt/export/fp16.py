"""Mixed-precision ONNX: FP16 weights and activations, FP32 where FP16 overflows.

TensorRT-RTX builds strongly typed networks (precision comes from the ONNX
graph, there is no FP16 builder flag), so the FP16 model is an artefact of
its own, made here once with onnxconverter-common, checked against the FP32
model with ONNX Runtime on the CPU, and built by either TensorRT flavour.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# Ops whose FP16 evaluation overflows or loses too much: normalisations
# (variance sums), exponentials, reductions over whole tiles (the embedding's
# spatial mean of 16k+ values), divisions and powers.
FP16_BLOCKED_OPS = (
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Div", "Erf",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "GlobalAveragePool",
)


def convert_to_fp16(fp32_path: Path, fp16_path: Path, blocked_ops=FP16_BLOCKED_OPS) -> None:
    """Write the mixed-precision copy of ``fp32_path`` (FP32 inputs and outputs kept)."""
    import onnx  # noqa: PLC0415
    from onnxconverter_common import float16  # noqa: PLC0415

    from .._atomic import atomic_path  # noqa: PLC0415

    model = onnx.load(str(fp32_path))
    float_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    with warnings.catch_warnings():
        # Weights below FP16's range are flushed (reported per value); the accuracy gate measures the effect.
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(blocked_ops))
    _restore_float_outputs(converted, float_outputs)
    onnx.checker.check_model(converted)
    with atomic_path(fp16_path) as tmp:
        onnx.save(converted, str(tmp))


def _restore_float_outputs(model, names: set[str]) -> None:
    """Make every output that was FP32 FP32 again.

    onnxconverter-common 1.16 leaves an output produced by a blocked op (the
    embedding's ReduceMean) as FLOAT16 despite ``keep_io_types``: it casts
    the FP32 result down to FP16 as the last step. Retarget that cast (or add
    one) so the output is the FP32 value.
    """
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    producers = {out: node for node in model.graph.node for out in node.output}
    for output in model.graph.output:
        tensor_type = output.type.tensor_type
        if output.name not in names or tensor_type.elem_type == TensorProto.FLOAT:
            continue
        node = producers.get(output.name)
        if node is not None and node.op_type == "Cast":
            for attribute in node.attribute:
                if attribute.name == "to":
                    attribute.i = TensorProto.FLOAT
        else:
            half_name = output.name + "_fp16"
            if node is not None:
                node.output[list(node.output).index(output.name)] = half_name
            model.graph.node.append(helper.make_node("Cast", [half_name], [output.name], to=TensorProto.FLOAT,
                                                     name=output.name + "_to_fp32"))
        tensor_type.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(model)


def fp16_error(fp32_path: Path, fp16_path: Path, tiles: np.ndarray, input_name: str) -> dict[str, float]:
    """Per output: max |fp16 - fp32| over ``tiles`` divided by max |fp32| (the
    output's range), both run by ONNX Runtime on the CPU."""
    import onnxruntime as ort  # noqa: PLC0415

    reference = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    half = ort.InferenceSession(str(fp16_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    errors = {}
    for name, a, b in zip(names, reference.run(names, {input_name: tiles}), half.run(names, {input_name: tiles})):
        scale = float(np.max(np.abs(a))) or 1.0
        errors[name] = float(np.max(np.abs(a.astype(np.float64) - b))) / scale
    return errors
