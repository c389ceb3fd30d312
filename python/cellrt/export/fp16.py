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

from .graph_passes import _subgraph_references, _unique

# Ops whose FP16 evaluation overflows or loses too much: normalisations
# (variance sums), exponentials, reductions over whole tiles (the embedding's
# spatial mean of 16k+ values), divisions and powers. Resize/Upsample (as in
# onnxconverter-common's own default list, which this one replaces): their
# ``scales`` input is float-only in ONNX, and converting it would also round
# a scale like 4/3 and change the output size.
FP16_BLOCKED_OPS = (
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Div", "Erf",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "GlobalAveragePool",
    "Resize", "Upsample",
)


def convert_to_fp16(fp32_path: Path, fp16_path: Path, blocked_ops=FP16_BLOCKED_OPS) -> None:
    """Write the mixed-precision copy of ``fp32_path`` (FP32 inputs and outputs kept)."""
    import onnx  # noqa: PLC0415
    from onnxconverter_common import float16  # noqa: PLC0415

    from .._atomic import atomic_path  # noqa: PLC0415

    model = onnx.load(str(fp32_path))
    float_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    _own_resize_parameters(model)
    with warnings.catch_warnings():
        # Weights below FP16's range are flushed (reported per value); the accuracy gate measures the effect.
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(blocked_ops),
                                                     node_block_list=_resize_parameter_producers(model))
    _restore_float_outputs(converted, float_outputs)
    _drop_fp16_round_trips(converted)
    onnx.checker.check_model(converted, full_check=True)   # full: types too, which the plain check skips
    with atomic_path(fp16_path) as tmp:
        onnx.save(converted, str(tmp))


_RESIZE_OPS = ("Resize", "Upsample")


def _own_resize_parameters(model) -> None:
    """Give each Resize its own copy of its float initializer parameters (roi, scales).

    onnxconverter-common converts an initializer that several nodes read to
    FP16 even when all of them are blocked (casting it back for them: a scale
    of 4/3 then gives 399 pixels instead of 400), and leaves it FP32 where a
    blocked op shares it with a converted one (an invalid graph). An
    initializer read by one blocked op only stays FP32.
    """
    from onnx import TensorProto, numpy_helper  # noqa: PLC0415

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    taken = set(initializers) | {v.name for v in model.graph.input} | {o for n in model.graph.node for o in n.output}
    replaced = set()
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _RESIZE_OPS:
            continue
        for slot in range(1, len(node.input)):
            tensor = initializers.get(node.input[slot])
            if tensor is None or tensor.data_type != TensorProto.FLOAT:
                continue
            name = _unique(f"{node.input[slot]}__{node.name or index}_{slot}_fp32", taken)
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(tensor), name))
            replaced.add(node.input[slot])
            node.input[slot] = name
    still_read = _names_read(model.graph) | {output.name for output in model.graph.output}
    for name in replaced - still_read:
        model.graph.initializer.remove(initializers[name])


def _resize_parameter_producers(model) -> list[str]:
    """The nodes that compute Resize parameters (e.g. scales from a Constant): kept in FP32, so the
    values are not rounded on their way to the (FP32) Resize. Unnamed ones get a name to be listed by."""
    producers = {}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
        for out in node.output:
            producers[out] = node
    names: set[str] = set()
    pending = [name for node in model.graph.node if node.op_type in _RESIZE_OPS for name in node.input[1:] if name]
    while pending:
        node = producers.get(pending.pop())
        if node is not None and node.name not in names:
            names.add(node.name)
            if node.op_type not in ("Shape", "Size"):   # these read only the metadata of the image data
                pending.extend(name for name in node.input if name)
    return sorted(names)


def _drop_fp16_round_trips(model) -> None:
    """Read x where the converter wrote Cast(Cast(x, FLOAT16), FLOAT) for an FP32 x.

    It brackets every blocked node with casts, also between two blocked
    nodes (e.g. a Constant kept in FP32 feeding a Resize's scales), which
    rounds the value for nothing.
    """
    import onnx  # noqa: PLC0415
    from onnx import TensorProto  # noqa: PLC0415

    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    types.update({v.name: v.type.tensor_type.elem_type for v in model.graph.input})
    producers = {out: node for node in model.graph.node for out in node.output}

    def cast_to(node, elem_type) -> bool:
        return node is not None and node.op_type == "Cast" and any(
            a.name == "to" and a.i == elem_type for a in node.attribute)

    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            up = producers.get(name)
            if not cast_to(up, TensorProto.FLOAT):
                continue
            down = producers.get(up.input[0])
            if cast_to(down, TensorProto.FLOAT16) and types.get(down.input[0]) == TensorProto.FLOAT:
                node.input[slot] = down.input[0]
    while True:   # casts nobody reads any more (subgraphs' reads of outer names count)
        read = _names_read(model.graph) | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type == "Cast" and not any(out in read for out in n.output)]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)


def _names_read(graph) -> set[str]:
    return {name for node in graph.node for name in node.input} | _subgraph_references(graph)


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
    output's range), both run by ONNX Runtime on the CPU. A file it cannot load raises ManifestError naming it
    (the TensorRT build's FP16 gate reads a model folder's files here before TensorRT does)."""
    from ..runtime.ort import load_session  # noqa: PLC0415

    reference = load_session(fp32_path)
    half = load_session(fp16_path)
    names = [o.name for o in reference.get_outputs()]
    errors = {}
    for name, a, b in zip(names, reference.run(names, {input_name: tiles}), half.run(names, {input_name: tiles})):
        scale = float(np.max(np.abs(a))) or 1.0
        errors[name] = float(np.max(np.abs(a.astype(np.float64) - b))) / scale
    return errors
