"""Exact rewrites of exported ONNX graphs that make them cheaper for CPU inference.

ONNX Runtime's CPU execution provider copies every channel concatenation
into a new buffer, and in a QDQ (INT8) graph it also transposes each operand
between its NHWC convolutions and the NCHW ``Concat`` - the skip connections
of a UNet decoder cost as much as a fifth of an INT8 forward pass. A
convolution is linear in its input channels, so

    Conv(Concat(a, b), W, bias) == Conv(a, W[:, :Ca], bias) + Conv(b, W[:, Ca:])

needs no concatenation at all; ONNX Runtime fuses the ``Add`` (and a
following activation) into the second convolution (``Sum`` of its NCHWc
kernels) when it can tell that both operands have the same shape, which is
why the pass copies the shape annotation of the convolution's output onto
each partial sum. INT8 graphs quantised after the pass run the ``Add`` as
``QLinearAdd`` in NHWC, with no transposes around it.

The results differ from the original graph only by the order of floating
point summation (measured: 2e-6 of the logits' range on the bundled
nuclei UNet). TensorRT fuses concatenations itself; the rewritten graph
costs it nothing either.
"""
from __future__ import annotations

import copy

import numpy as np

#: metadata_props key recording which passes made a graph
PASSES_KEY = "cellrt.graph_passes"


def _attributes(node) -> dict:
    from onnx import helper  # noqa: PLC0415

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _channel_counts(model, names: list[str]) -> list[int] | None:
    """Static channel dimension (axis 1) of each named tensor, or None when any is unknown."""
    shapes = {}
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value"):
            shapes[info.name] = (len(dims), dims[1].dim_value)
    if not all(name in shapes for name in names):
        return None
    return [shapes[name][1] for name in names]


def _rank(model, name: str) -> int | None:
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if info.name == name and info.type.tensor_type.HasField("shape"):
            return len(info.type.tensor_type.shape.dim)
    return None


def _unique(name: str, taken: set[str]) -> str:
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{name}_{index}", index + 1
    taken.add(candidate)
    return candidate


def split_concat_convs(model) -> int:
    """Rewrite every ``Conv(Concat(x_1, ..., x_k))`` over channels as a sum of
    k convolutions, in place. Returns how many were rewritten.

    Applies only where the rewrite is exact and self-contained: the
    concatenation is along channels (axis 1), feeds exactly one node - a
    ``Conv`` with ``group=1`` whose weight (and bias) are initializers - and
    is not a graph output, and every operand's channel count is known
    statically and adds up to the weight's input channels. The bias goes to
    the first partial convolution only. Anything else is left as it was.
    """
    import onnx  # noqa: PLC0415
    from onnx import helper, numpy_helper  # noqa: PLC0415

    if not model.graph.value_info:
        inferred = onnx.shape_inference.infer_shapes(model)
        model.graph.value_info.extend(inferred.graph.value_info)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {out.name for out in graph.output}
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | set(initializers)
    taken |= {node.name for node in graph.node}
    value_info = {info.name: info for info in graph.value_info}

    rewrites = {}   # id(conv) -> the nodes replacing it; its concatenation is dropped
    dropped = set()
    for concat in graph.node:
        if concat.op_type != "Concat" or concat.domain not in ("", "ai.onnx") or len(concat.input) < 2:
            continue
        merged = concat.output[0]
        users = consumers.get(merged, [])
        if merged in graph_outputs or len(users) != 1:
            continue
        conv = users[0]
        if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or list(conv.input).index(merged) != 0:
            continue
        rank = _rank(model, merged) or _rank(model, concat.input[0])
        axis = _attributes(concat).get("axis")
        if rank is None or axis is None or axis % rank != 1:
            continue
        attributes = _attributes(conv)
        if attributes.get("group", 1) != 1 or conv.input[1] not in initializers:
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in initializers:
            continue
        counts = _channel_counts(model, list(concat.input))
        weight = numpy_helper.to_array(initializers[conv.input[1]])
        if counts is None or sum(counts) != weight.shape[1]:
            continue

        label = conv.name or conv.output[0]
        partials, start = [], 0
        for index, (operand, count) in enumerate(zip(concat.input, counts)):
            weight_name = _unique(f"{conv.input[1]}.concat_part{index}", taken)
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(weight[:, start:start + count]), weight_name))
            start += count
            inputs = [operand, weight_name]
            if index == 0 and len(conv.input) > 2 and conv.input[2]:
                inputs.append(conv.input[2])
            output = _unique(f"{conv.output[0]}.concat_part{index}", taken)
            partials.append(helper.make_node("Conv", inputs, [output], name=_unique(f"{label}/concat_part{index}", taken),
                                             **attributes))
            if conv.output[0] in value_info:   # same shape as the whole convolution: lets ORT fuse the sum
                info = copy.deepcopy(value_info[conv.output[0]])
                info.name = output
                graph.value_info.append(info)
        nodes, total = list(partials), partials[0].output[0]
        for index, partial in enumerate(partials[1:], start=1):
            last = index == len(partials) - 1
            output = conv.output[0] if last else _unique(f"{conv.output[0]}.concat_sum{index}", taken)
            nodes.append(helper.make_node("Add", [total, partial.output[0]], [output],
                                          name=_unique(f"{label}/concat_sum{index}", taken)))
            total = output
            if not last and conv.output[0] in value_info:
                info = copy.deepcopy(value_info[conv.output[0]])
                info.name = output
                graph.value_info.append(info)
        rewrites[id(conv)] = nodes
        dropped.add(id(concat))

    if not rewrites:
        return 0
    new_nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        new_nodes.extend(rewrites.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)
    still_used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in still_used]
    for init in unused:
        graph.initializer.remove(init)
    produced = {name for node in graph.node for name in node.output}
    for info in [info for info in graph.value_info if info.name not in produced]:
        graph.value_info.remove(info)   # the dropped concatenations' outputs
    _record(model, f"split_concat_convs:{len(rewrites)}")
    return len(rewrites)


def _record(model, entry: str) -> None:
    for prop in model.metadata_props:
        if prop.key == PASSES_KEY:
            prop.value = ",".join([*prop.value.split(","), entry]) if prop.value else entry
            return
    model.metadata_props.add(key=PASSES_KEY, value=entry)


def optimize_for_inference(model) -> dict[str, int]:
    """Every exact pass of this module, in place; returns what each rewrote."""
    return {"split_concat_convs": split_concat_convs(model)}


def optimize_file(path) -> dict[str, int]:
    """:func:`optimize_for_inference` on an ONNX file, rewritten in place
    (atomically) when any pass changed the graph."""
    import onnx  # noqa: PLC0415

    from .._atomic import atomic_path  # noqa: PLC0415

    model = onnx.load(str(path))
    done = optimize_for_inference(model)
    if any(done.values()):
        onnx.checker.check_model(model)
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
    return done
