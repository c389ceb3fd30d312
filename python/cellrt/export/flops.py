"""Floating-point operations of an ONNX graph for one input shape (needs ``onnx``).

Counts the multiply-adds of Conv, ConvTranspose, Gemm and MatMul as 2 FLOPs
each (what dominates a CNN); elementwise ops, pooling and reductions are
reported separately as one FLOP per output element, so the fraction of peak
a backend reaches is computed from the work that could run at peak.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

_MATRIX_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _attribute(node, name: str, default=None):
    import onnx  # noqa: PLC0415
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def count_flops(onnx_path: Path, input_shape) -> dict:
    """``{"matrix": FLOPs in Conv/ConvTranspose/Gemm/MatMul, "other": ...,
    "by_op": {op: FLOPs}}`` for an input of ``input_shape`` (concrete dims)."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper, shape_inference  # noqa: PLC0415

    model = onnx.load(str(onnx_path))
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{onnx_path}: input has rank {len(dims)}, input_shape {tuple(input_shape)}")
    for dim, value in zip(dims, input_shape):
        dim.ClearField("dim_param")
        dim.dim_value = int(value)
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        shape = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = shape
    for init in model.graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape) if init.dims else []
    by_op: Counter = Counter()
    unknown = []
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if not out or any(d is None for d in out):
            if node.op_type in _MATRIX_OPS:
                unknown.append(node.name or node.op_type)
            continue
        out_elements = int(np.prod(out, dtype=np.int64))
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]  # (Cout, Cin/g, kh, kw)
            by_op["Conv"] += 2 * out_elements * int(np.prod(weight[1:]))
        elif node.op_type == "ConvTranspose":
            weight = shapes[node.input[1]]  # (Cin, Cout/g, kh, kw)
            inp = shapes[node.input[0]]
            by_op["ConvTranspose"] += 2 * int(np.prod(inp)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes[node.input[0]]
            by_op[node.op_type] += 2 * out_elements * int(a[-1])
        elif node.op_type not in ("Shape", "Reshape", "Constant", "Cast", "Concat", "Identity", "Unsqueeze",
                                  "Squeeze", "Gather", "Slice"):
            by_op[node.op_type] += out_elements
    if unknown:
        raise ValueError(f"{onnx_path}: shapes of {unknown[:5]} could not be inferred for input {tuple(input_shape)}")
    matrix = sum(v for k, v in by_op.items() if k in _MATRIX_OPS)
    return {"matrix": matrix, "other": sum(by_op.values()) - matrix, "by_op": dict(by_op)}
