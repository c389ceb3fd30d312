#!/usr/bin/env python3
"""Inference backends side by side: tiles/s and batch latency (p50/p99) per
batch size, cellrt's backend vs ONNX Runtime's raw ``run()`` on the same
session settings (the engine's overhead), and achieved FLOP/s against the
machine's peak (FLOPs counted from the ONNX graph).

    python benchmarks/bench_infer.py [--model nuclei] [--batches 1 4 8 16] [--repeats 20] [--threads 2]

On a machine with a GPU, TensorRT (or TensorRT-RTX) engines are measured too.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _timed, machine, markdown_table, note, set_threads, write_record  # noqa: E402


def measured_matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> tuple[float, str]:
    """FP32 FLOP/s of the faster of two large ``n``² matmuls on ``threads``
    threads - numpy's BLAS and ONNX Runtime's own MatMul (MLAS, the GEMM
    its convolutions run on) - and which one: the practical compute peak of
    this CPU. (numpy's OpenBLAS may not know the CPU: on a Zen core it runs
    its AVX2 kernel, at ~60% of MLAS's AVX-512 one.)"""
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    with threadpool_limits(threads):
        a @ b
        blas = min(_timed(lambda: a @ b) for _ in range(repeats))
    square = [n, n]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, square),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, square)],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, square)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    session.run(None, {"a": a, "b": b})
    mlas = min(_timed(lambda: session.run(None, {"a": a, "b": b})) for _ in range(repeats))
    best, how = min((blas, "numpy BLAS"), (mlas, "ONNX Runtime MatMul"))
    return 2 * n ** 3 / best, f"{n}x{n} SGEMM, {how}"


def nominal_peak(threads: int) -> tuple[float | None, str]:
    """FP32 FLOP/s from the CPU's vector width and clock (FMA: 2 FLOPs per lane,
    2 FMA pipes per core), or None if /proc/cpuinfo does not tell."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "unknown"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        return None, "unknown"
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    per_cycle = 2 * 2 * lanes
    return threads * per_cycle * max(mhz) * 1e6, (f"{threads} cores x {max(mhz):.0f} MHz x {per_cycle} FLOP/cycle; "
                                                  "the clock /proc/cpuinfo reports, which turbo exceeds")


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def time_pair(contenders: dict, repeats: int) -> dict:
    """Interleaved: one warm call each, then round-robin timed calls."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(_timed(fn))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei", help="bundled model name or model folder")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)

    import onnxruntime as ort  # noqa: PLC0415

    import cellrt  # noqa: PLC0415
    from cellrt.export.flops import count_flops  # noqa: PLC0415
    from cellrt.runtime import OrtBackend  # noqa: PLC0415

    model = cellrt.load_model(args.model, backend="ort", threads=args.threads)
    manifest = model.manifest
    tile = manifest.tile_size
    channels = len(manifest.input_channels)
    flops_per_tile = count_flops(manifest.onnx_path, (1, channels, tile, tile))["matrix"]
    peak, peak_how = measured_matmul_peak(args.threads)
    nominal, nominal_how = nominal_peak(args.threads)
    note(f"{manifest.name}: {flops_per_tile / 1e9:.2f} GFLOP per {tile}x{tile} tile; matmul peak "
         f"{peak / 1e9:.0f} GFLOP/s ({peak_how}), "
         f"nominal {nominal / 1e9 if nominal else float('nan'):.0f} GFLOP/s ({nominal_how})")

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # as OrtBackend sets it
    raw = ort.InferenceSession(str(manifest.onnx_path), options, providers=["CPUExecutionProvider"])
    backend = OrtBackend(manifest.onnx_path, manifest, threads=args.threads)
    rng = np.random.default_rng(0)

    rows, records = [], []
    for batch_size in args.batches:
        batch = rng.lognormal(-1.0, 0.8, size=(batch_size, channels, tile, tile)).astype(np.float32)
        repeats = max(5, args.repeats * 4 // max(4, batch_size))
        times = time_pair({"cellrt ort (IOBinding)": lambda: backend.infer(batch),
                           "onnxruntime run()": lambda: raw.run(None, {manifest.input_name: batch})}, repeats)
        ours, peer = times["cellrt ort (IOBinding)"], times["onnxruntime run()"]
        expected = raw.run(None, {manifest.input_name: batch})
        got = backend.infer(batch)
        same = all(np.array_equal(got[o.name], e) for o, e in zip(raw.get_outputs(), expected))
        overhead = statistics.median(ours) / statistics.median(peer) - 1
        achieved = batch_size * flops_per_tile / statistics.median(ours)
        record = {"backend": "ort-cpu", "batch": batch_size, "repeats": repeats,
                  "tiles_per_s": batch_size / statistics.median(ours), "p50_ms": 1e3 * statistics.median(ours),
                  "p99_ms": 1e3 * percentile(ours, 99), "raw_run_p50_ms": 1e3 * statistics.median(peer),
                  "overhead_vs_raw_run": overhead, "identical_outputs": same,
                  "gflops_per_s": achieved / 1e9, "fraction_of_matmul_peak": achieved / peak,
                  "fraction_of_nominal_peak": achieved / nominal if nominal else None}
        records.append(record)
        rows.append(["ort-cpu", batch_size, record["tiles_per_s"], record["p50_ms"], record["p99_ms"],
                     record["raw_run_p50_ms"], f"{100 * overhead:+.1f}%", record["gflops_per_s"],
                     f"{100 * achieved / peak:.0f}%"])
        note(f"batch {batch_size}: {record['tiles_per_s']:.1f} tiles/s, overhead {100 * overhead:+.1f}%")

    records += _tensorrt_rows(manifest, args.batches, args.repeats, flops_per_tile, rows)
    table = markdown_table(["backend", "batch", "tiles/s", "p50 ms", "p99 ms", "raw run() p50 ms",
                            "overhead vs raw", "GFLOP/s", "of matmul peak"], rows)
    print(table)
    pass_records, pass_table = graph_pass_rows(manifest, args.threads, args.repeats)
    if pass_table:
        print(pass_table)
    write_record("bench_infer", {"machine": machine(), "model": manifest.name, "tile": tile,
                                 "flops_per_tile": flops_per_tile, "matmul_peak_flops": peak,
                                 "matmul_peak_basis": peak_how,
                                 "nominal_peak_flops": nominal, "nominal_peak_basis": nominal_how,
                                 "threads": args.threads, "results": records, "table": table,
                                 "graph_passes": pass_records, "graph_pass_table": pass_table})
    return 0


def rejoin_split_convs(model) -> int:
    """Undo ``cellrt.export.graph_passes.split_concat_convs`` in place: the
    graph as torch's exporter wrote it (Concat -> one Conv). Returns how many
    joins were rebuilt."""
    from onnx import helper, numpy_helper  # noqa: PLC0415

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    parts: dict[str, dict[int, object]] = {}
    sums: dict[str, list] = {}
    for node in graph.node:
        label, _, tail = node.name.rpartition("/concat_")
        if node.op_type == "Conv" and tail.startswith("part"):
            parts.setdefault(label, {})[int(tail[4:])] = node
        elif node.op_type == "Add" and tail.startswith("sum"):
            sums.setdefault(label, []).append(node)
    replaced, drop = {}, set()
    for label, pieces in parts.items():
        ordered = [pieces[i] for i in sorted(pieces)]
        weights = [numpy_helper.to_array(inits[p.input[1]]) for p in ordered]
        whole = ordered[0].input[1].rsplit(".concat_part", 1)[0]
        graph.initializer.append(numpy_helper.from_array(np.concatenate(weights, axis=1), whole))
        last = max(sums[label], key=lambda n: int(n.name.rpartition("/concat_sum")[2]))
        merged = f"{label}/rejoined"
        concat = helper.make_node("Concat", [p.input[0] for p in ordered], [merged], axis=1, name=merged)
        attrs = {a.name: helper.get_attribute_value(a) for a in ordered[0].attribute}
        conv = helper.make_node("Conv", [merged, whole, *ordered[0].input[2:]], [last.output[0]], name=label, **attrs)
        replaced[id(ordered[0])] = [concat, conv]
        drop |= {id(n) for n in ordered[1:]} | {id(n) for n in sums[label]}
    nodes = []
    for node in graph.node:
        if id(node) not in drop:
            nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return len(parts)


def graph_pass_rows(manifest, threads: int, repeats: int):
    """The shipped graph (export passes applied) against the same weights as
    torch's exporter wrote them, with ONNX Runtime's run(), interleaved; for
    INT8 the exporter's graph is quantised the same way (same calibration
    tiles) so both sides are what `cellrt quantize` would make."""
    try:
        import onnx  # noqa: PLC0415
    except ImportError:
        note("onnx not installed: graph pass comparison left out")
        return [], ""
    import tempfile  # noqa: PLC0415

    import onnxruntime as ort  # noqa: PLC0415

    exporter = onnx.load(str(manifest.onnx_path))
    if rejoin_split_convs(exporter) == 0:
        note(f"{manifest.name}: no graph pass rewrites in the shipped graph; comparison left out")
        return [], ""
    onnx.checker.check_model(exporter)
    channels = len(manifest.input_channels)
    rng = np.random.default_rng(1)
    tmp = Path(tempfile.mkdtemp(prefix="cellrt-bench-passes-"))
    files = {("fp32", "shipped"): manifest.onnx_path, ("fp32", "as exported"): tmp / "exported.onnx"}
    onnx.save(exporter, str(files[("fp32", "as exported")]))
    if manifest.int8:
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,  # noqa: PLC0415
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

        calibration = [rng.lognormal(-1.0, 0.8, (1, channels, manifest.tile_size, manifest.tile_size))
                       .astype(np.float32) for _ in range(8)]

        class Tiles(CalibrationDataReader):
            def __init__(self):
                self._it = iter(calibration)

            def get_next(self):
                tile = next(self._it, None)
                return None if tile is None else {manifest.input_name: tile}

        for kind in ("shipped", "as exported"):
            prepared, quantised = tmp / f"{kind}.prep.onnx", tmp / f"{kind}.int8.onnx".replace(" ", "_")
            quant_pre_process(str(files[("fp32", kind)]), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantised), Tiles(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            files[("int8", kind)] = quantised
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Four sessions take turns: a pool left spinning after its run would steal the cores of the next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {key: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for key, path in files.items()}
    side = 536 if manifest.tile_size == 256 else manifest.tile_size   # the plate's auto tile for a 1024^2 field
    records, rows = [], []
    for batch_size, size in ((1, side), (4, side)):
        batch = rng.lognormal(-1.0, 0.8, (batch_size, channels, size, size)).astype(np.float32)
        for precision in ("fp32", "int8"):
            if (precision, "shipped") not in sessions:
                continue
            pair = {kind: (lambda s=sessions[(precision, kind)]: s.run(None, {manifest.input_name: batch}))
                    for kind in ("shipped", "as exported")}
            times = time_pair(pair, max(5, repeats // 2))
            change = None
            if precision == "fp32":   # two INT8 files are two calibrations: their outputs differ by design
                a, b = (sessions[(precision, k)].run(None, {manifest.input_name: batch})[0] for k in pair)
                change = float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0))
            ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            record = {"precision": precision, "batch": batch_size, "tile": size, "shipped_ms": ms["shipped"],
                      "as_exported_ms": ms["as exported"], "speedup": ms["as exported"] / ms["shipped"],
                      "max_relative_change_first_output": change}
            records.append(record)
            rows.append([precision, f"{batch_size} x {size}^2", ms["as exported"], ms["shipped"],
                         f"{record['speedup']:.2f}x", "-" if change is None else f"{change:.1e}"])
    table = markdown_table(["precision", "batch", "as exported ms", "with graph passes ms", "speed-up",
                            "max change (rel.)"], rows)
    return records, table


def _tensorrt_rows(manifest, batches, repeats, flops_per_tile, rows) -> list:
    """TensorRT engine vs a bare execute on the same context; GPU machines only."""
    from cellrt.runtime import tensorrt as trt_runtime  # noqa: PLC0415

    if trt_runtime.current_compute_capability() is None:
        note("TensorRT: no GPU here, skipped")
        return []
    try:
        trt_runtime.import_tensorrt()
    except trt_runtime.EngineError as error:
        note(f"TensorRT: {error}")
        return []
    import cupy as cp  # noqa: PLC0415

    records = []
    for precision in ("fp16", "fp32"):
        artifact = trt_runtime.build_engine(manifest, precision=precision, profile=trt_runtime.Profile(
            1, max(batches), max(batches), manifest.tile_size))
        backend = trt_runtime.TensorRTBackend(manifest, artifact)
        for batch_size in batches:
            batch = cp.asarray(np.random.default_rng(0).lognormal(-1.0, 0.8, size=(
                batch_size, len(manifest.input_channels), manifest.tile_size, manifest.tile_size)).astype(np.float32))
            backend.infer(batch)

            def bare():  # the same enqueue without cellrt's bookkeeping
                backend.context.execute_async_v3(backend.stream.ptr)
                backend.stream.synchronize()

            times = time_pair({"cellrt": lambda: backend.infer(batch), "bare": bare}, max(10, repeats))
            ours, peer = times["cellrt"], times["bare"]
            achieved = batch_size * flops_per_tile / statistics.median(ours)
            record = {"backend": f"tensorrt-{precision}", "batch": batch_size,
                      "tiles_per_s": batch_size / statistics.median(ours),
                      "p50_ms": 1e3 * statistics.median(ours), "p99_ms": 1e3 * percentile(ours, 99),
                      "raw_run_p50_ms": 1e3 * statistics.median(peer),
                      "overhead_vs_raw_run": statistics.median(ours) / statistics.median(peer) - 1,
                      "gflops_per_s": achieved / 1e9}
            records.append(record)
            rows.append([record["backend"], batch_size, record["tiles_per_s"], record["p50_ms"], record["p99_ms"],
                         record["raw_run_p50_ms"], f"{100 * record['overhead_vs_raw_run']:+.1f}%",
                         record["gflops_per_s"], "-"])
        backend.close()
    return records


if __name__ == "__main__":
    sys.exit(main())
