"""The README's first command: `cellrt demo` on the bundled real field."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert "argument --repeats: should be an int >= 1, got '0'" in result.stderr


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


def test_doctor_prints_a_readable_report():
    result = run_cli("doctor")
    assert result.returncode == 0
    assert "kernel backends" in result.stdout and "cpu" in result.stdout


def test_doctor_survives_a_module_that_crashes_at_import(tmp_path, monkeypatch):
    """A native library that segfaults when imported (one GPU image's onnxruntime did) is a finding in the
    report, not the end of the doctor: modules are probed in a child interpreter."""
    from cellrt.cli import doctor

    (tmp_path / "segfaults_at_import.py").write_text("import ctypes\nctypes.string_at(0)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    found = doctor._module_version("segfaults_at_import")
    assert not found["importable"]
    assert "importing segfaults_at_import crashed the interpreter (killed by signal SIGSEGV)" in found["error"]
    assert doctor._module_version("numpy") == {"importable": True, "version": np.__version__}
    missing = doctor._module_version("no_such_module_here")
    assert missing == {"importable": False, "error": "ModuleNotFoundError: No module named 'no_such_module_here'"}


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
    elif how == "corrupt ONNX":   # truncated, with the manifest's hash updated: only ONNX Runtime can tell
        onnx = folder / "model.onnx"
        onnx.write_bytes(onnx.read_bytes()[:1000])
        manifest = json.loads((folder / "cellrt.json").read_text())
        manifest["onnx"]["sha256"] = hashlib.sha256(onnx.read_bytes()).hexdigest()
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
