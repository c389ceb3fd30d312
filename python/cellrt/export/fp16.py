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
    _restore_resize_scales(converted)
    onnx.checker.check_model(converted)
    with atomic_path(fp16_path) as tmp:
        onnx.save(converted, str(tmp))


def _restore_resize_scales(model) -> None:
    """Give every Resize its ``scales`` in FP32 again.

    ONNX types Resize's ``scales`` as tensor(float) only, but the converter
    casts every float initializer to FP16 once Resize is not in its block
    list (keeping Resize in FP16 keeps the decoder's upsampling in FP16 for
    TensorRT). A constant ``scales`` is stored back as FP32; a computed one
    gets a Cast.
    """
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    resizes = [node for node in model.graph.node if node.op_type == "Resize" and len(node.input) > 2 and node.input[2]]
    as_scales = {node.input[2] for node in resizes}
    other_readers = {name for node in model.graph.node for i, name in enumerate(node.input)
                     if name in as_scales and not (node.op_type == "Resize" and i == 2)}
    casts = {}
    for node in resizes:
        scales = node.input[2]
        tensor = initializers.get(scales)
        if tensor is None:
            node.input[2] = scales + "_fp32"
            casts.setdefault(node.input[2], helper.make_node("Cast", [scales], [node.input[2]], to=TensorProto.FLOAT,
                                                             name=node.input[2] + "_cast"))
            continue
        if tensor.data_type == TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor).astype("float32")
        if scales not in other_readers:   # read only as scales: retype in place
            tensor.CopyFrom(numpy_helper.from_array(values, scales))
            continue
        copy = scales + "_fp32"
        if copy not in initializers:
            initializers[copy] = numpy_helper.from_array(values, copy)
            model.graph.initializer.append(initializers[copy])
        node.input[2] = copy
    if casts:   # nodes stay in topological order: each cast goes right before the first Resize reading it
        order = []
        pending = dict(casts)
        for node in model.graph.node:
            if node.op_type == "Resize" and len(node.input) > 2 and node.input[2] in pending:
                order.append(pending.pop(node.input[2]))
            order.append(node)
        del model.graph.node[:]
        model.graph.node.extend(order)
    onnx.checker.check_model(model)


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
