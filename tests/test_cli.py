"""The README's first command: `cellrt demo` on the bundled real field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cellrt", *args], capture_output=True, text=True)


def test_demo_round_trips_the_bundled_field_and_writes_its_outputs(tmp_path):
    result = run_cli("stitch-demo", "--out", str(tmp_path), "--repeats", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "round trip OK" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and summary["shape"] == [1024, 1024]
    blends = {r["blend"] for r in summary["results"]}
    assert blends == {"constant", "linear", "cosine", "gaussian", "crop"}
    assert all(r["max_abs_error"] <= summary["float16_bound"] for r in summary["results"])
    field = tifffile.imread(tmp_path / "stitched_gaussian.tif")
    assert field.shape == (1024, 1024) and field.dtype == np.float32
    assert not list(tmp_path.glob("*.partial"))  # atomic writes leave no temporaries


def test_demo_names_a_missing_image(tmp_path):
    result = run_cli("stitch-demo", "--out", str(tmp_path), "--image", str(tmp_path / "nope.tif"))
    assert result.returncode != 0
    assert f"--image {tmp_path / 'nope.tif'}: no such file" in result.stderr


def test_demo_rejects_a_file_that_is_not_a_tiff(tmp_path):
    bogus = tmp_path / "field.tif"
    bogus.write_bytes(b"not a tiff at all")
    result = run_cli("stitch-demo", "--out", str(tmp_path), "--image", str(bogus))
    assert result.returncode != 0 and f"--image {bogus}: not a readable TIFF" in result.stderr


def test_demo_takes_at_least_one_repeat(tmp_path):
    """--repeats 0 used to end in statistics.StatisticsError (the median of no timings)."""
    result = run_cli("stitch-demo", "--out", str(tmp_path), "--repeats", "0")
    assert result.returncode == 2
    assert "argument --repeats: expected an integer >= 1, got 0" in result.stderr


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--batch", "0", "an integer >= 1"), ("--workers", "-1", "an integer >= 1"),
    ("--readers", "0", "an integer >= 1"), ("--threads", "-2", "an integer >= 0 (0: all cores)"),
    ("--z", "0", "an integer >= 1"), ("--timepoint", "x", "an integer >= 1")])
def test_run_names_the_option_given_a_count_out_of_range(tmp_path, capsys, option, value, expected):
    """--batch 0 said 'load_model: batch_size should be a positive int', --workers -1 'PlateOptions.workers',
    --threads -2 'OrtBackend: threads': the names of the Python API, not of the option typed."""
    from cellrt.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tmp_path), "--model", "nuclei", "--out", str(tmp_path / "out"), option, value])
    assert exit_.value.code == 2
    got = int(value) if value.lstrip("-").isdigit() else repr(value)
    assert f"argument {option}: expected {expected}, got {got}" in capsys.readouterr().err


def test_doctor_says_when_the_sdk_is_not_installed(tmp_path, monkeypatch, capsys):
    """An in-tree checkout (PYTHONPATH) has no SDK beside _core; the doctor printed its path as if it
    were there. The SDK folder is pointed at a temporary one so both layouts are checked anywhere."""
    import cellrt._build
    from cellrt.cli import doctor

    monkeypatch.setattr(doctor, "_module_version", lambda name: {"importable": False, "error": "not probed"})
    monkeypatch.setattr(cellrt._build, "_SDK", tmp_path / "sdk")
    cmake_dir = tmp_path / "sdk" / "lib" / "cmake" / "cellrt"
    doctor.run_doctor()
    assert (f"C/C++ SDK (find_package)  not installed: {cmake_dir} does not exist (an in-tree checkout"
            in capsys.readouterr().out)
    assert doctor.collect()["build"]["sdk_installed"] is False
    cmake_dir.mkdir(parents=True)
    doctor.run_doctor()
    assert f"C/C++ SDK (find_package)  -Dcellrt_DIR={cmake_dir}\n" in capsys.readouterr().out
    header = tmp_path / "sdk" / "include" / "cellrt" / "c_api.h"
    header.parent.mkdir(parents=True)
    header.write_text((Path(__file__).parents[1] / "csrc/include/cellrt/c_api.h").read_text())
    doctor.run_doctor()
    assert f"-Dcellrt_DIR={cmake_dir}  (C ABI version 9)\n" in capsys.readouterr().out
    assert doctor.collect()["build"]["sdk_c_api_version"] == 9


def test_doctor_prints_a_readable_report():
    result = run_cli("doctor")
    assert result.returncode == 0
    assert "kernel backends" in result.stdout and "cpu" in result.stdout
    # Whether a TensorRT engine can run on this GPU, and if not why (no GPU, no module, a GPU tensorrt_rtx
    # does not target): asked of cellrt.runtime.tensorrt in a child interpreter.
    from cellrt.runtime.tensorrt import unusable_here

    reason = unusable_here()
    assert ("  TensorRT engines here     " + ("yes" if reason is None else f"no ({reason})")) in result.stdout


def test_doctor_survives_a_module_that_crashes_at_import(tmp_path, monkeypatch):
    """A native library that segfaults when imported (one GPU image's onnxruntime did) is a finding in the
    report, not the end of the doctor: modules are probed in a child interpreter."""
    from cellrt.cli import doctor

    pythonpath = os.environ.get("PYTHONPATH")   # where the child finds cellrt in an in-tree checkout
    (tmp_path / "segfaults_at_import.py").write_text("import ctypes\nctypes.string_at(0)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    found = doctor._module_version("segfaults_at_import")
    assert not found["importable"]
    assert "importing segfaults_at_import crashed the interpreter (killed by signal SIGSEGV)" in found["error"]
    assert doctor._module_version("numpy") == {"importable": True, "version": np.__version__}
    missing = doctor._module_version("no_such_module_here")
    assert missing == {"importable": False, "error": "ModuleNotFoundError: No module named 'no_such_module_here'"}
    # the TensorRT line's probe likewise: a GPU library that kills the interpreter (here cupy) is its reason
    (tmp_path / "cupy.py").write_text("import ctypes\nctypes.string_at(0)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), pythonpath])))
    here = doctor._tensorrt_here()
    assert here["usable"] is False
    assert here["reason"].startswith("asking TensorRT about this GPU crashed the interpreter (killed by signal "
                                     "SIGSEGV)"), here


def _broken_model(folder, how):
    """A copy of the bundled nuclei model folder, broken one way."""
    import hashlib
    import shutil

    from cellrt.pipeline.model import model_folder

    shutil.copytree(model_folder("nuclei"), folder)
    if how == "missing ONNX":
        (folder / "model.onnx").unlink()
    elif how == "bad manifest":
        (folder / "cellrt.json").write_text("{not json")
    elif how in ("corrupt ONNX", "corrupt FP16 ONNX"):   # truncated, the manifest's hash updated: only a parser tells
        section = "onnx" if how == "corrupt ONNX" else "fp16"
        manifest = json.loads((folder / "cellrt.json").read_text())
        onnx = folder / manifest[section]["file"]
        onnx.write_bytes(onnx.read_bytes()[:1000])
        manifest[section]["sha256"] = hashlib.sha256(onnx.read_bytes()).hexdigest()
        (folder / "cellrt.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("how, expected", [
    ("missing ONNX", "cellrt.json: 'onnx.file' names {folder}/model.onnx, which does not exist"),
    ("bad manifest", "cellrt.json: unreadable manifest: "),
    ("corrupt ONNX", "model.onnx: ONNX Runtime {ort} cannot load it (Protobuf parsing failed); expected an ONNX "
                     "model it can run"),
    ("no folder", "load_model: '{folder}' is neither a bundled model ("),
])
def test_predict_names_a_model_that_cannot_be_loaded_in_one_line(tmp_path, how, expected):
    import onnxruntime

    folder = tmp_path / "model"
    if how != "no folder":
        _broken_model(folder, how)
    field = tmp_path / "field.tif"
    tifffile.imwrite(field, np.zeros((64, 64), np.uint8))
    result = run_cli("predict", str(folder), str(field), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("cellrt predict: ") and str(folder) in result.stderr
    assert expected.format(folder=folder, ort=onnxruntime.__version__) in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_names_a_corrupt_onnx_file_in_one_line(tmp_path):
    """`cellrt run` and `cellrt predict` share their error handling; a corrupt ONNX stopped both with a
    traceback from ONNX Runtime."""
    folder = _broken_model(tmp_path / "model", "corrupt ONNX")
    plate = tmp_path / "plate"
    plate.mkdir()
    tifffile.imwrite(plate / "P_A01_s1_w1.tif", np.zeros((64, 64), np.uint8))
    result = run_cli("run", str(plate), "--model", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cellrt run: {folder / 'model.onnx'}: ONNX Runtime" in result.stderr


@pytest.mark.parametrize("how, expected", [
    ("bad manifest", "cellrt.json: unreadable manifest: "),
    ("corrupt ONNX", "model.onnx: ONNX Runtime {ort} cannot load it (Protobuf parsing failed)"),
])
def test_quantize_names_a_broken_model_in_one_line_and_leaves_no_copy(tmp_path, how, expected):
    """It printed a traceback and left its --out copy of the broken folder behind."""
    import onnxruntime

    folder = _broken_model(tmp_path / "model", how)
    field = tmp_path / "field.tif"
    tifffile.imwrite(field, np.zeros((64, 64), np.uint8))
    out = tmp_path / "int8"
    result = run_cli("quantize", str(folder), str(field), "--out", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"cellrt quantize: {folder}") and \
        expected.format(ort=onnxruntime.__version__) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.tif", "model"]


def test_a_quantize_refused_by_its_gate_leaves_no_output_folder(tmp_path, dsb_dir):
    """The copy is quantised under a temporary name and renamed to --out only when complete: a refusal (a
    tolerance nothing meets; on a CPU without VNNI the gate's own refusal) leaves neither."""
    image = sorted((dsb_dir / "images").glob("*.tif"))[0]
    out = tmp_path / "models" / "int8"
    result = run_cli("quantize", "nuclei", str(image), "--out", str(out), "--tolerance", "1e-9",
                     "--tiles-per-image", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "nothing written" in result.stderr and ".partial" not in result.stderr
    assert not out.exists() and list((tmp_path / "models").iterdir()) == []
    unreadable = run_cli("quantize", "nuclei", str(tmp_path / "nope.tif"), "--out", str(out))
    assert unreadable.returncode == 1 and "Traceback" not in unreadable.stderr
    assert f"cellrt quantize: cannot read {tmp_path / 'nope.tif'}: " in unreadable.stderr and not out.exists()


def _tensorrt_rtx_or_skip():
    """TensorRT-RTX parses ONNX and builds engines ahead of time without a GPU, so it checks the TensorRT build's
    errors here; the data-centre tensorrt needs one."""
    import importlib

    try:
        importlib.import_module("tensorrt_rtx")
    except ImportError as error:   # not installed, or its libraries missing (no libtensorrt_rtx on this platform)
        pytest.skip(f"tensorrt_rtx cannot be imported ({error}); it is the TensorRT that builds without a GPU")


@pytest.mark.parametrize("how, precision, expected", [
    ("corrupt ONNX", "fp32", "model.onnx: tensorrt_rtx {trt} cannot parse it (MODEL_DESERIALIZE_FAILED: Failed to "
                             "parse the ONNX model); expected an ONNX model its parser can read - is the file "
                             "complete (not a truncated or damaged copy)"),
    # the FP16 build first compares the FP16 file with FP32 in ONNX Runtime, which reads the damaged file first
    ("corrupt FP16 ONNX", "fp16", "model.fp16.onnx: ONNX Runtime {ort} cannot load it (Protobuf parsing failed)"),
])
def test_a_tensorrt_build_of_a_corrupt_onnx_ends_in_one_line_naming_the_file(tmp_path, how, precision, expected):
    """The ONNX parser's refusal was an EngineError, which the commands do not report in one line (it is not
    about what the user gave); a damaged file is, as ONNX Runtime's refusal of it is: a ManifestError."""
    _tensorrt_rtx_or_skip()
    import onnxruntime
    import tensorrt_rtx

    from cellrt.runtime import ManifestError
    from cellrt.runtime import tensorrt as trt_runtime

    folder = _broken_model(tmp_path / "model", how)
    message = expected.format(trt=tensorrt_rtx.__version__, ort=onnxruntime.__version__)
    with pytest.raises(ManifestError) as raised:
        trt_runtime.build_engine(folder, precision=precision, flavour="tensorrt_rtx", compute_capabilities=["89"],
                                 cache=tmp_path / "engines")
    assert message in str(raised.value) and "\n" not in str(raised.value)
    result = run_cli("build", str(folder), "--precision", precision, "--flavour", "tensorrt_rtx",
                     "--compute-capability", "89", "--cache", str(tmp_path / "engines"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()   # no TensorRT log lines repeating the parser's errors either
    assert len(lines) == 1 and lines[0].startswith(f"cellrt build: {folder}/{message}"), result.stderr
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


def _one_field_plate(folder):
    folder.mkdir()
    tifffile.imwrite(folder / "P_A01_s1_w1.tif", np.zeros((64, 64), np.uint8))
    return folder


def test_run_and_predict_on_tensorrt_without_it_here_name_the_model_and_what_is_missing(tmp_path):
    """The refusal was one line, but named neither the model nor which of GPU, cupy and TensorRT is missing."""
    from cellrt.runtime import tensorrt as trt_runtime

    if trt_runtime.current_compute_capability() is not None:
        pytest.skip("a GPU is present; the refusal is for machines without one")
    plate = _one_field_plate(tmp_path / "plate")
    for command in (["run", str(plate), "--model", "nuclei", "--out", str(tmp_path / "out")],
                    ["predict", "nuclei", str(plate / "P_A01_s1_w1.tif"), "--out", str(tmp_path / "out")]):
        result = run_cli(*command, "--backend", "tensorrt")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"cellrt {command[0]}: load_model: backend 'tensorrt' needs"), \
            result.stderr
        assert "model 'nuclei' cannot run on it here: " in lines[0]
        assert ("cupy is not installed" in lines[0] or "cupy finds no usable CUDA GPU" in lines[0]), lines[0]
        assert not (tmp_path / "out").exists()


def test_an_fp16_gate_refusal_ends_run_and_predict_in_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """On a GPU, `run` and `predict` build the model's TensorRT engine first; an EngineError from that (here the
    FP16 gate: a tolerance no FP16 file meets) ended both in a traceback. There is no GPU here: the GPU check is
    told sm_86, which TensorRT-RTX builds for ahead of time; the gate itself is the real one (ONNX Runtime
    comparing the model's FP16 and FP32 files), and it refuses before any engine is built or loaded."""
    _tensorrt_rtx_or_skip()
    import shutil

    from cellrt.cli import main
    from cellrt.pipeline.model import model_folder
    from cellrt.runtime import tensorrt as trt_runtime

    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "86")
    monkeypatch.setenv("CELLRT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(model_folder("nuclei"), folder)
    manifest = json.loads((folder / "cellrt.json").read_text())
    manifest["fp16"]["tolerance"] = 1e-9
    (folder / "cellrt.json").write_text(json.dumps(manifest))
    plate = _one_field_plate(tmp_path / "plate")
    for command in (["run", str(plate), "--model", str(folder), "--out", str(tmp_path / "out")],
                    ["predict", str(folder), str(plate / "P_A01_s1_w1.tif"), "--out", str(tmp_path / "out")]):
        assert main([*command, "--backend", "tensorrt"]) == 1
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"cellrt {command[0]}: {folder / 'model.fp16.onnx'}: FP16 outputs differ from "
                                   f"FP32 by "), err
        assert "above the manifest's fp16.tolerance 1e-09; engine not built" in lines[0]
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob("cache/engines/*.engine"))


def test_run_progress_goes_to_the_stderr_of_the_time_it_runs(monkeypatch):
    """Progress bound sys.stderr at import as a default argument; `cellrt run` called in a process that
    replaced stderr since (output captured and closed) ended 'cellrt run: I/O operation on closed file.'"""
    import io

    from cellrt.cli.run import Progress

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    Progress(2, 1)(2, 2, "A01")
    assert sys.stderr.getvalue().startswith("fields 2/2  wells 1/1  ")


def test_the_start_line_of_a_run_counts_fields_rejected_when_scanned(tmp_path, capsys):
    """A plate whose every field was rejected (two files for one channel) started with '0 fields to run in 0
    wells', an empty plate, and ended with 'no field was processed in this run'; both now say why."""
    from cellrt.cli import main

    plate = tmp_path / "plate"
    plate.mkdir()
    for well in ("A01", "A02"):
        tifffile.imwrite(plate / f"P_{well}_s1_w1.tif", np.zeros((64, 64), np.uint8))
        tifffile.imwrite(plate / f"P_{well}_s1_w1.tiff", np.zeros((64, 64), np.uint8))
    # Exit status 1: a plate of which no field gave a result is not a finished plate.
    assert main(["run", str(plate), "--model", "nuclei", "--out", str(tmp_path / "all"), "--skip-bad"]) == 1
    captured = capsys.readouterr()
    start, rejected = captured.err.strip().splitlines()[:2]
    assert start.startswith("plate P: no field to run: all 2 fields in 2 wells were rejected when scanned, "), start
    assert rejected.startswith("plate P: 2 field(s) rejected when scanned (--skip-bad), in wells A01, A02; "), rejected
    assert captured.out.startswith("no field was processed: all 2 were rejected when the plate was scanned "
                                   "(errors.csv)"), captured.out
    tifffile.imwrite(plate / "P_B01_s1_w1.tif", np.zeros((64, 64), np.uint8))
    assert main(["run", str(plate), "--model", "nuclei", "--out", str(tmp_path / "some"), "--skip-bad"]) == 0
    start = capsys.readouterr().err.strip().splitlines()[0]
    assert start.startswith("plate P: 1 field to run in 1 well (of 3 fields in 3 wells; 2 rejected when scanned), "
                            "channels ['1']"), start


@pytest.mark.parametrize("providers, shown", [
    (["CPUExecutionProvider"], True),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], False),
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], False),
])
@pytest.mark.parametrize("fields_with_results", [4, 0])
def test_the_int8_tip_follows_the_providers_the_fp32_session_ran_on(monkeypatch, providers, shown,
                                                                     fields_with_results):
    """The 'try --precision int8' tip is for runs on the CPU; it was shown for FP32 runs of ONNX Runtime on CUDA,
    where an INT8 file runs its convolutions in float. There is no GPU here, so the decision is checked on the
    provider lists a session reports (a CUDA session that fell back to the CPU reports the CPU alone)."""
    from types import SimpleNamespace

    from cellrt.cli.run import _int8_hint
    from cellrt.pipeline.model import model_folder
    from cellrt.runtime import load_manifest
    from cellrt.runtime import ort as ort_runtime

    # The CPU's VNNI is another question (tested in test_runtime); fixed here so the providers alone decide, on
    # CI machines without VNNI too.
    monkeypatch.setattr(ort_runtime, "int8_file_exact", lambda weight_bits=8: (True, "a CPU with VNNI"))
    manifest = load_manifest(model_folder("nuclei"))
    assert manifest.int8, "the bundled nuclei model ships a gated INT8 file"
    backend = SimpleNamespace(name="ort", providers=providers)
    model = SimpleNamespace(manifest=manifest, precision="fp32", backend=backend)
    hint = _int8_hint(model, {"fields_with_results": fields_with_results})
    assert (hint is not None) == (shown and fields_with_results > 0), hint   # none after a run where nothing ran
    if hint is not None:
        assert hint.startswith("tip: nuclei also ships an INT8 network") and "--precision int8" in hint


def test_quantize_refuses_zero_calibration_tiles_per_image_before_reading_anything(capsys):
    from cellrt.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["quantize", "nuclei", "missing.tif", "--out", "unused", "--tiles-per-image", "0"])
    assert stop.value.code == 2
    assert "argument --tiles-per-image: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_a_run_where_no_field_gave_an_embedding_says_nothing_was_monitored():
    from cellrt.report.plate_report import _drift_fact

    nothing = _drift_fact({"monitored": True, "alarms": 0, "fields": 0, "note": "the model's reference"})
    assert nothing.startswith("no field was monitored") and "no alarm" not in nothing
    assert _drift_fact({"monitored": True, "alarms": 0, "fields": 48, "note": "r"}).startswith("no alarm over 48")


@pytest.mark.parametrize("option, expected", [(["--tile", "0"], "tile_size"), (["--overlap", "1.5"], "overlap")])
def test_stitch_demo_names_a_bad_tile_or_overlap_in_one_line(tmp_path, capsys, option, expected):
    from cellrt.cli import main

    assert main(["stitch-demo", "--out", str(tmp_path / "demo"), "--repeats", "1", *option]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellrt stitch-demo: ") and expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cellrt_traceback_shows_where_a_one_line_error_came_from(tmp_path, capsys, monkeypatch):
    """A bug that raises ValueError ends a command in one line like a mistake in the input does; with
    CELLRT_TRACEBACK=1 the traceback comes first, for a bug report."""
    from cellrt.cli import main

    args = ["stitch-demo", "--out", str(tmp_path / "demo"), "--repeats", "1", "--tile", "0"]
    monkeypatch.setenv("CELLRT_TRACEBACK", "1")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "tile_size" in err
    assert err.strip().splitlines()[-1].startswith("cellrt stitch-demo: ")
    monkeypatch.setenv("CELLRT_TRACEBACK", "0")
    assert main(args) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_run_exits_1_when_no_field_gave_a_result_and_0_when_resumed_with_nothing_left(tmp_path, capsys):
    """--skip-bad carries on past bad fields; a plate where every field failed still writes its outputs
    (errors.csv, report) but exits 1, so automation does not file it as done. One good field: 0. A resumed
    run whose wells are all complete: 0."""
    from cellrt.cli import main

    plate = tmp_path / "plate"
    plate.mkdir()
    for well in ("A01", "A02"):
        (plate / f"P_{well}_s1_w1.tif").write_bytes(b"II*\x00 not a tiff")   # fails when read, not when scanned
    out = tmp_path / "failed"
    assert main(["run", str(plate), "--model", "nuclei", "--out", str(out), "--skip-bad"]) == 1
    assert "no field gave a result: all 2 failed" in capsys.readouterr().out
    assert (out / "errors.csv").is_file() and (out / "report" / "index.html").is_file()
    tifffile.imwrite(plate / "P_B01_s1_w1.tif", np.full((64, 64), 100, np.uint16))
    out = tmp_path / "partial"
    assert main(["run", str(plate), "--model", "nuclei", "--out", str(out), "--skip-bad"]) == 0
    for name in ("P_A01_s1_w1.tif", "P_A02_s1_w1.tif"):
        (plate / name).unlink()
    out = tmp_path / "whole"
    assert main(["run", str(plate), "--model", "nuclei", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(plate), "--model", "nuclei", "--out", str(out), "--resume"]) == 0
