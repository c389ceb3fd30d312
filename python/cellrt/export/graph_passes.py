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
point summation in FP32 (2.6e-7 of the logits' range on the bundled
nuclei UNet). In FP16 each partial sum is rounded once more, and an INT8
graph quantised after the pass quantises each partial convolution's
output on its own: the bundled nuclei INT8 model's argmax disagreement
with FP32 went from 0.31 % to 0.35 % of pixels (held-out F1 0.8472 ->
0.8471). ``quantize_int8(graph_passes=False)`` quantises the graph as
exported.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

#: metadata_props key recording which passes made a graph
PASSES_KEY = "cellrt.graph_passes"


def _attributes(node) -> dict:
    from onnx import helper  # noqa: PLC0415

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _shapes(model) -> dict:
    """name -> ValueInfoProto for every tensor whose type the graph states, or
    ONNX shape inference finds (on a copy: the model is not annotated unless
    it is rewritten)."""
    import onnx  # noqa: PLC0415

    graph = model.graph
    infos = list(graph.value_info) + list(graph.input) + list(graph.output)
    if not graph.value_info:
        infos += list(onnx.shape_inference.infer_shapes(model).graph.value_info)
    return {info.name: info for info in infos if info.type.tensor_type.HasField("shape")}


def _channel_counts(shapes: dict, names: list[str]) -> list[int] | None:
    """Static channel dimension (axis 1) of each named tensor, or None when any is unknown."""
    counts = []
    for name in names:
        dims = shapes[name].type.tensor_type.shape.dim if name in shapes else []
        if len(dims) < 2 or not dims[1].HasField("dim_value"):
            return None
        counts.append(dims[1].dim_value)
    return counts


def _subgraph_references(graph) -> set[str]:
    """Every tensor name read inside the subgraphs (If/Loop/Scan bodies) of ``graph``'s nodes."""
    names: set[str] = set()

    def walk(body):
        for node in body.node:
            names.update(node.input)
            for attribute in node.attribute:
                for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                    walk(sub)

    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                walk(sub)
    return names


def _renamed(info, name: str) -> list:
    """[a copy of ``info`` for tensor ``name``], or [] when the shape is unknown."""
    if info is None:
        return []
    out = copy.deepcopy(info)
    out.name = name
    return [out]


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
    ``Conv`` with ``group=1`` whose weight (and bias) are initializers that
    are not also graph inputs (overridable defaults) - is not a graph output
    and is not read inside a subgraph, and every operand's channel count is
    known statically and adds up to the weight's input channels. The bias
    goes to the first partial convolution only. Anything else is left as it
    was; a graph with nothing to rewrite is not touched at all.
    """
    from onnx import helper, numpy_helper  # noqa: PLC0415

    graph = model.graph
    shapes = _shapes(model)
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_inputs = {info.name for info in graph.input}
    graph_outputs = {info.name for info in graph.output}
    in_subgraphs = _subgraph_references(graph)
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | set(initializers)
    taken |= {node.name for node in graph.node} | set(shapes)

    def constant(name: str) -> bool:
        return name in initializers and name not in graph_inputs

    rewrites = {}   # id(conv) -> the nodes replacing it; its concatenation is dropped
    dropped, replaced_weights, new_infos = set(), set(), []
    for concat in graph.node:
        if concat.op_type != "Concat" or concat.domain not in ("", "ai.onnx") or len(concat.input) < 2:
            continue
        merged = concat.output[0]
        users = consumers.get(merged, [])
        if merged in graph_outputs or merged in in_subgraphs or len(users) != 1:
            continue
        conv = users[0]
        if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or list(conv.input).index(merged) != 0:
            continue
        info = shapes.get(merged) or shapes.get(concat.input[0])
        rank = len(info.type.tensor_type.shape.dim) if info is not None else None
        axis = _attributes(concat).get("axis")
        if not rank or axis is None or axis % rank != 1:
            continue
        attributes = _attributes(conv)
        bias = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        if attributes.get("group", 1) != 1 or not constant(conv.input[1]) or (bias and not constant(bias)):
            continue
        counts = _channel_counts(shapes, list(concat.input))
        weight = numpy_helper.to_array(initializers[conv.input[1]])
        if counts is None or sum(counts) != weight.shape[1]:
            continue

        label = conv.name or conv.output[0]
        whole = shapes.get(conv.output[0])   # the partial sums have its shape: lets ORT fuse the Add
        if whole is not None and len(whole.type.tensor_type.shape.dim) != rank:
            whole = None
        partials, start = [], 0
        for index, (operand, count) in enumerate(zip(concat.input, counts)):
            weight_name = _unique(f"{conv.input[1]}.concat_part{index}", taken)
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(weight[:, start:start + count]), weight_name))
            start += count
            inputs = [operand, weight_name] + ([bias] if index == 0 and bias else [])
            output = _unique(f"{conv.output[0]}.concat_part{index}", taken)
            partials.append(helper.make_node("Conv", inputs, [output], name=_unique(f"{label}/concat_part{index}", taken),
                                             **attributes))
            new_infos += _renamed(whole, output)
        nodes, total = list(partials), partials[0].output[0]
        for index, partial in enumerate(partials[1:], start=1):
            last = index == len(partials) - 1
            output = conv.output[0] if last else _unique(f"{conv.output[0]}.concat_sum{index}", taken)
            nodes.append(helper.make_node("Add", [total, partial.output[0]], [output],
                                          name=_unique(f"{label}/concat_sum{index}", taken)))
            total = output
            if not last:
                new_infos += _renamed(whole, output)
        rewrites[id(conv)] = nodes
        dropped.add(id(concat))
        replaced_weights.add(conv.input[1])

    if not rewrites:
        return 0
    new_nodes = []
    dropped_outputs = set()
    for node in graph.node:
        if id(node) in dropped:
            dropped_outputs.update(node.output)
            continue
        new_nodes.extend(rewrites.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)
    still_used = {name for node in graph.node for name in node.input} | in_subgraphs | graph_outputs
    for init in [init for init in graph.initializer if init.name in replaced_weights - still_used]:
        graph.initializer.remove(init)
    for info in [info for info in graph.value_info if info.name in dropped_outputs]:
        graph.value_info.remove(info)
    graph.value_info.extend(new_infos)
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


def optimize_file(path, destination=None) -> dict[str, int]:
    """:func:`optimize_for_inference` on an ONNX file, written to
    ``destination`` (default: ``path`` itself, rewritten atomically when any
    pass changed the graph; a separate destination is always written).
    Weights stored as external data are read from beside ``path``; a model
    too large for one protobuf is written with its weights beside
    ``destination``."""
    import onnx  # noqa: PLC0415

    from .._atomic import atomic_path  # noqa: PLC0415

    model = onnx.load(str(path))
    done = optimize_for_inference(model)
    if destination is None and not any(done.values()):
        return done
    target = Path(destination if destination is not None else path)
    large = model.ByteSize() > (1 << 31) - (1 << 26)
    if large:   # protobuf's 2 GiB limit: the checker and the file take the weights from beside it
        onnx.save(model, str(target), save_as_external_data=True, location=target.name + ".data")
        onnx.checker.check_model(str(target))
        return done
    onnx.checker.check_model(model)
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))
    return done
