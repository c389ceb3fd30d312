"""The README's first command: `cellrt demo` on the bundled real field."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
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
