"""The export's graph passes: exact, applied only where exact, and what ONNX Runtime makes of them."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="graph passes are part of the export extra")
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cellrt.export.graph_passes import PASSES_KEY, optimize_for_inference, split_concat_convs  # noqa: E402

RNG = np.random.default_rng(7)


def _weight(name, shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _skip_graph(channels=(3, 5), *, axis=1, group=1, bias=True, extra_concat_user=False, concat_is_output=False,
                weight_is_input=False, symbolic_channels=False, kernel=3):
    """x -> one 1x1 conv per operand (channels each) -> Concat -> Conv(kernel) -> y: a decoder's skip join."""
    total = sum(channels)
    nodes, inits = [], []
    operands = []
    for index, count in enumerate(channels):
        inits.append(_weight(f"w{index}", (count, 2, 1, 1)))
        nodes.append(helper.make_node("Conv", ["x", f"w{index}"], [f"a{index}"], name=f"branch{index}"))
        operands.append(f"a{index}")
    nodes.append(helper.make_node("Concat", operands, ["cat"], axis=axis, name="join"))
    out_channels = 4
    groups_in = total // group
    conv_inputs = ["cat", "W"] + (["B"] if bias else [])
    if not weight_is_input:
        inits.append(_weight("W", (out_channels, groups_in, kernel, kernel)))
    if bias:
        inits.append(_weight("B", (out_channels,)))
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], kernel_shape=[kernel, kernel],
                                  pads=[kernel // 2] * 4, group=group, name="fuse"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, "h", "w"])]
    if weight_is_input:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [out_channels, groups_in, kernel, kernel]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", out_channels, "h", "w"])]
    if extra_concat_user:
        nodes.append(helper.make_node("Relu", ["cat"], ["side"]))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    if concat_is_output:
        outputs.append(helper.make_tensor_value_info("cat", TensorProto.FLOAT, None))
    value_info = [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                ["n", f"c{i}" if symbolic_channels else count, "h", "w"])
                  for i, (name, count) in enumerate(zip(operands, channels))]
    value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", out_channels, "h", "w"]))
    graph = helper.make_graph(nodes, "skip", inputs, outputs, inits, value_info=value_info)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _rewritten_matches(model, feeds, count=1):
    expected = _run(model, feeds)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert split_concat_convs(rewritten) == count
    onnx.checker.check_model(rewritten)   # (and ONNX Runtime loads and runs it below)
    for got, want in zip(_run(rewritten, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    return rewritten


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("channels", [(3, 5), (16, 16), (1, 2, 6)])
@pytest.mark.parametrize("bias", [True, False])
def test_concatenation_into_a_convolution_becomes_an_exact_sum_of_convolutions(channels, bias):
    model = _skip_graph(channels, bias=bias)
    x = RNG.standard_normal((2, 2, 19, 23)).astype(np.float32)
    (expected,) = _run(model, {"x": x})
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert split_concat_convs(rewritten) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Concat" not in ops
    assert ops.count("Conv") == len(channels) + len(channels) and ops.count("Add") == len(channels) - 1
    (got,) = _run(rewritten, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    # The bias is added once, and the pass says what it did.
    convs = [n for n in rewritten.graph.node if n.op_type == "Conv" and "concat_part" in n.name]
    assert sum(len(n.input) == 3 for n in convs) == (1 if bias else 0)
    assert {p.key: p.value for p in rewritten.metadata_props}[PASSES_KEY] == "split_concat_convs:1"
    assert optimize_for_inference(rewritten) == {"split_concat_convs": 0}   # idempotent


@pytest.mark.parametrize("case", ["concat_has_two_users", "concat_is_a_graph_output", "concat_over_height",
                                  "grouped_convolution", "weight_is_not_a_constant", "channel_counts_unknown"])
def test_joins_the_rewrite_cannot_keep_exact_are_left_alone(case):
    options = {"concat_has_two_users": {"extra_concat_user": True},
               "concat_is_a_graph_output": {"concat_is_output": True},
               "concat_over_height": {"axis": 2, "channels": (4, 4)},
               "grouped_convolution": {"group": 2, "channels": (4, 4)},
               "weight_is_not_a_constant": {"weight_is_input": True},
               "channel_counts_unknown": {"symbolic_channels": True}}[case]
    model = _skip_graph(**options)
    before = model.SerializeToString()
    assert split_concat_convs(model) == 0
    assert model.SerializeToString() == before


def test_onnx_runtime_fuses_the_partial_sums_into_the_bundled_models_convolutions(tmp_path):
    """The shape annotation the pass copies is what lets ONNX Runtime fold each Add (and the
    ReLU after it) into a convolution; without it the sum is a separate pass over the tensor."""
    import cellrt  # noqa: PLC0415

    manifest = cellrt.load_model("nuclei", backend="ort").manifest
    graph = onnx.load(str(manifest.onnx_path))
    assert {p.key: p.value for p in graph.metadata_props}.get(PASSES_KEY) == "split_concat_convs:3"
    assert "Concat" not in {n.op_type for n in graph.graph.node}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(manifest.onnx_path), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    domains = {n.domain for n in optimized.graph.node}
    if "com.microsoft.nchwc" not in domains:
        pytest.skip("this CPU gets no NCHWc kernels from ONNX Runtime (the fusion is theirs)")
    assert [n.op_type for n in optimized.graph.node if n.op_type in ("Add", "Sum", "Concat")] == []


@pytest.mark.int8
def test_bundled_int8_model_was_quantised_without_concatenations():
    import cellrt  # noqa: PLC0415

    manifest = cellrt.load_model("nuclei", backend="ort", precision="int8").manifest
    ops = {n.op_type for n in onnx.load(str(manifest.folder / manifest.int8["file"])).graph.node}
    assert "Concat" not in ops and "Add" in ops and "QuantizeLinear" in ops


def test_negative_axis_and_auto_pad_are_rewritten_exactly():
    model = _skip_graph((3, 5))
    join = next(n for n in model.graph.node if n.op_type == "Concat")
    join.attribute[0].i = -3
    fuse = next(n for n in model.graph.node if n.name == "fuse")
    del fuse.attribute[:]
    fuse.attribute.extend([helper.make_attribute("kernel_shape", [3, 3]), helper.make_attribute("strides", [2, 2]),
                           helper.make_attribute("auto_pad", "SAME_UPPER")])
    model.graph.output[0].CopyFrom(   # stride 2: another output size
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "out_h", "out_w"]))
    del model.graph.value_info[-1]
    _rewritten_matches(model, {"x": RNG.standard_normal((1, 2, 17, 12)).astype(np.float32)})


def test_a_weight_shared_by_two_joins_is_split_for_each_and_kept_nowhere_else():
    """Two decoder joins reading the same weight: each gets its own split copies, and the
    original goes once neither uses it."""
    model = _skip_graph((3, 5))
    graph = model.graph
    graph.node.append(helper.make_node("Concat", ["a1", "a0"], ["cat2"], axis=1, name="join2"))
    graph.node.append(helper.make_node("Conv", ["cat2", "W", "B"], ["y2"], kernel_shape=[3, 3], pads=[1] * 4,
                                       name="fuse2"))
    graph.output.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["n", 4, "h", "w"]))
    rewritten = _rewritten_matches(model, {"x": RNG.standard_normal((1, 2, 9, 9)).astype(np.float32)}, count=2)
    assert "W" not in {i.name for i in rewritten.graph.initializer}


def test_weights_that_are_also_graph_inputs_stay_overridable():
    """Older (IR < 4) exports list initializers as inputs too: a caller may feed other weights,
    so baking a split of the default in would change the model."""
    model = _skip_graph((3, 5))
    for init in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(init.name, TensorProto.FLOAT, list(init.dims)))
    before = model.SerializeToString()
    assert split_concat_convs(model) == 0
    assert model.SerializeToString() == before


def test_tensors_read_inside_subgraphs_are_kept():
    """An If branch reading the joined tensor keeps the join; one reading an outer
    initializer keeps that initializer while the join itself is rewritten."""
    for read in ("cat", "k"):
        model = _skip_graph((3, 5))
        graph = model.graph
        graph.initializer.append(numpy_helper.from_array(np.float32(2.0), "k"))
        graph.initializer.append(numpy_helper.from_array(np.array(True), "flag"))
        branch = helper.make_graph([helper.make_node("ReduceSum", [read], ["s"], keepdims=0)], "then", [],
                                   [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])])
        other = helper.make_graph([helper.make_node("Identity", ["k"], ["t"])], "else", [],
                                  [helper.make_tensor_value_info("t", TensorProto.FLOAT, [])])
        graph.node.append(helper.make_node("If", ["flag"], ["branch_out"], then_branch=branch, else_branch=other))
        graph.output.append(helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, []))
        feeds = {"x": RNG.standard_normal((1, 2, 8, 8)).astype(np.float32)}
        if read == "cat":
            before = model.SerializeToString()
            assert split_concat_convs(model) == 0
            assert model.SerializeToString() == before
        else:
            rewritten = _rewritten_matches(model, feeds)
            assert "k" in {i.name for i in rewritten.graph.initializer}


def test_a_graph_without_shape_annotations_is_only_annotated_when_rewritten():
    model = _skip_graph((3, 5))
    del model.graph.value_info[:]
    rewritten = _rewritten_matches(model, {"x": RNG.standard_normal((1, 2, 8, 8)).astype(np.float32)})
    assert any(".concat_part" in info.name for info in rewritten.graph.value_info)
    untouched = _skip_graph((3, 5), extra_concat_user=True)
    del untouched.graph.value_info[:]
    assert split_concat_convs(untouched) == 0 and not untouched.graph.value_info
