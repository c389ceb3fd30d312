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
