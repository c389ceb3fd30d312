"""The models bundled with cellrt, on the held-out real data they were never trained on."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

import cellrt
from cellrt.kernels import instances_from_mask, match_instances, threshold
from cellrt.runtime import load_manifest
from cellrt.training import data as training_data

BUNDLED = ("isl-dapi", "nuclei")
# Measured when the models were trained (see their manifests), less a margin for
# numeric differences across machines: on these 25 held-out images the nuclei model
# scored 0.873 and Otsu + label 0.753; isl-dapi reached r = 0.643 on its held-out region.
NUCLEI_MIN_F1 = 0.84
ISL_MIN_PEARSON = 0.60


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cellrt", *args], capture_output=True, text=True)


def test_bundled_models_are_listed_and_their_manifests_verify():
    assert tuple(cellrt.available_models()) == BUNDLED
    for name in BUNDLED:
        model = cellrt.load_model(name, backend="ort")
        manifest = model.manifest
        assert manifest.name == name
        training = manifest.training
        assert training["command"].startswith("python tools/train_models.py " + name)
        assert isinstance(training["seed"], int) and training["metrics"]
        assert manifest.fp16 and manifest.fp16_path.stat().st_size < manifest.onnx_path.stat().st_size
        assert manifest.output("embedding") is not None


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.int8)])
def test_nuclei_model_beats_otsu_on_held_out_dsb2018(dsb_dir, precision):
    """F1 at IoU 0.5 over 25 held-out images (never seen in training), pooled; the INT8 model too."""
    model = cellrt.load_model("nuclei", backend="ort", precision=precision)
    assert model.precision == precision
    totals = {"model": np.zeros(3), "otsu": np.zeros(3)}
    for image_id in training_data.dsb_ids(dsb_dir, held_out=True)[:25]:
        image = tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")
        truth = tifffile.imread(dsb_dir / "labels" / f"{image_id}.tif")
        otsu, _ = instances_from_mask(image > threshold(image, "otsu"), fill=True)
        for name, labels in (("model", model.run(image).labels), ("otsu", otsu)):
            m = match_instances(labels, truth)
            totals[name] += (m["tp"], m["fp"], m["fn"])
    f1 = {name: 2 * tp / (2 * tp + fp + fn) for name, (tp, fp, fn) in totals.items()}
    assert f1["model"] >= NUCLEI_MIN_F1, f1
    assert f1["model"] > f1["otsu"] + 0.05, f1


def test_isl_dapi_model_predicts_dapi_on_the_held_out_region(isl_dir):
    model = cellrt.load_model("isl-dapi", backend="ort")
    holdout = np.s_[:, 768:]
    phase = np.stack([tifffile.imread(isl_dir / f"{p}.tif")[holdout] for p in training_data.ISL_PHASE_PLANES])
    dapi = tifffile.imread(isl_dir / "dapi.tif")[holdout].astype(np.float32)
    result = model.run(phase)
    r = float(np.corrcoef(result.prediction[0].ravel(), dapi.ravel())[0, 1])
    assert r >= ISL_MIN_PEARSON, r
    assert "Intensity_MeanIntensity_DAPI_predicted" in result.objects
    assert result.count > 0


@pytest.mark.parametrize("name", BUNDLED)
def test_each_bundled_model_builds_a_tensorrt_rtx_engine(name, tmp_path):
    from cellrt.runtime import tensorrt as trt_runtime  # noqa: PLC0415

    try:
        trt_runtime.import_tensorrt("tensorrt_rtx")
    except trt_runtime.EngineError as error:
        pytest.skip(f"tensorrt_rtx not available: {error}")
    result = run_cli("build", name, "--flavour", "tensorrt_rtx", "--compute-capability", "86", "89",
                     "--batch", "1", "4", "8", "--cache", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    engines = list(tmp_path.glob(f"{name}-fp16-*.engine"))
    assert len(engines) == 1 and engines[0].stat().st_size > 100_000
    key = json.loads(engines[0].with_suffix(".json").read_text())["key"]
    assert key["compute_capabilities"] == ["86", "89"] and key["profile"]["max_batch"] == 8
    assert key["onnx_sha256"] == load_manifest(cellrt.load_model(name, backend="ort").manifest.folder).fp16["sha256"]
    again = run_cli("build", name, "--flavour", "tensorrt_rtx", "--compute-capability", "86", "89",
                    "--batch", "1", "4", "8", "--cache", str(tmp_path))
    assert again.returncode == 0 and "reused cached" in again.stdout


def test_cli_models_and_predict(tmp_path, dsb_dir):
    listing = json.loads(run_cli("models", "--json").stdout)
    assert [row["name"] for row in listing] == list(BUNDLED)
    assert {row["name"]: row["drift_references"] for row in listing} == {"isl-dapi": [], "nuclei": ["fp32", "int8"]}
    assert "drift references: fp32, int8" in run_cli("models").stdout
    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[0]
    result = run_cli("predict", "nuclei", str(dsb_dir / "images" / f"{image_id}.tif"), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    labels = tifffile.imread(tmp_path / "labels.tif")
    rows = (tmp_path / "objects.csv").read_text().splitlines()
    assert len(rows) - 1 == labels.max() > 0
    assert rows[0].split(",")[:2] == ["ObjectNumber", "AreaShape_Area"]
    wrong = run_cli("predict", "isl-dapi", str(dsb_dir / "images" / f"{image_id}.tif"), "--out", str(tmp_path))
    assert wrong.returncode != 0 and "takes 3 channels" in wrong.stderr


@pytest.mark.int8
def test_cli_quantize_calibrates_a_copy_and_predict_runs_it(tmp_path, dsb_dir):
    images = [str(dsb_dir / "images" / f"{i}.tif") for i in training_data.dsb_ids(dsb_dir, held_out=False)[:6]]
    refused = run_cli("quantize", "nuclei", images[0])
    assert refused.returncode == 2 and "pass --out DIR" in refused.stderr
    out = tmp_path / "nuclei-int8"
    result = run_cli("quantize", "nuclei", *images, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "model.int8.onnx: INT8 model" in result.stdout
    assert load_manifest(out).int8["calibration_images"] == [p.split("/")[-1] for p in images]
    held_out = dsb_dir / "images" / f"{training_data.dsb_ids(dsb_dir, held_out=True)[0]}.tif"
    predicted = run_cli("predict", str(out), str(held_out), "--precision", "int8", "--out", str(tmp_path / "p"))
    assert predicted.returncode == 0, predicted.stderr
    assert tifffile.imread(tmp_path / "p" / "labels.tif").max() > 0
    # The gate's refusal reaches the shell as an error, and nothing is written.
    strict = run_cli("quantize", str(out), images[0], "--tolerance", "1e-9")
    assert strict.returncode == 1 and "above the tolerance" in strict.stderr


@pytest.mark.parametrize("name", BUNDLED)
def test_torch_module_rebuilt_from_the_onnx_weights_matches_onnx_runtime(name, dsb_dir):
    """What the plate benchmark's naive torch stack runs is the bundled model itself."""
    torch = pytest.importorskip("torch", reason="torch not available (install the export extra)")
    from cellrt.runtime import OrtBackend  # noqa: PLC0415
    from cellrt.training.from_onnx import unet_from_onnx  # noqa: PLC0415

    manifest = cellrt.load_model(name, backend="ort").manifest
    module = unet_from_onnx(manifest.onnx_path)
    channels = len(manifest.input_channels)
    image = tifffile.imread(sorted((dsb_dir / "images").glob("*.tif"))[0])[:256, :256].astype(np.float32) / 255
    tiles = np.ascontiguousarray(np.repeat(image[None, None], channels, axis=1))
    expected = OrtBackend(manifest.onnx_path, manifest).infer(tiles)
    with torch.no_grad():
        got = module(torch.from_numpy(tiles))
    for spec, value in zip(manifest.outputs, got):
        np.testing.assert_allclose(value.numpy(), expected[spec.name], atol=1e-4, rtol=1e-4)


@pytest.mark.int8
def test_cli_pack_writes_one_file_that_predict_runs(tmp_path, dsb_dir):
    import os

    env = {**os.environ, "CELLRT_CACHE": str(tmp_path / "cache")}
    archive = tmp_path / "nuclei.zip"
    packed = subprocess.run([sys.executable, "-m", "cellrt", "pack", "nuclei", str(archive)], capture_output=True,
                            text=True, env=env)
    assert packed.returncode == 0 and archive.is_file(), packed.stderr
    image = str(dsb_dir / "images" / f"{training_data.dsb_ids(dsb_dir, held_out=True)[0]}.tif")
    for model in ("nuclei", str(archive)):
        out = tmp_path / ("folder" if model == "nuclei" else "archive")
        result = subprocess.run([sys.executable, "-m", "cellrt", "predict", model, image, "--out", str(out),
                                 "--precision", "int8"], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "archive" / "labels.tif"),
                                  tifffile.imread(tmp_path / "folder" / "labels.tif"))
    bad = subprocess.run([sys.executable, "-m", "cellrt", "pack", "nuclei", str(tmp_path / "x.tar")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "should end in .zip" in bad.stderr


def test_semantic_post_processing_with_one_and_with_two_object_classes(dsb_dir):
    """The semantic step passes a (background, object, boundary) output straight on (no copy of the field's
    probabilities) and sums the object classes of any other layout: the same objects either way, and with two
    object classes (a co-culture) each object takes the class of larger mean probability over it."""
    import dataclasses

    from cellrt.kernels import instances_from_probability, measure
    from cellrt.pipeline.postprocess import POSTPROCESSORS
    from cellrt.training import data as training_data

    model = cellrt.load_model("nuclei", backend="ort", threads=2)
    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[0]
    prediction = model.run(tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")).prediction
    manifest = model.manifest
    assert list(manifest.dense_output.channels) == ["background", "nucleus", "boundary"]
    params = dict(manifest.postprocess.get("params", {}))
    labels, count, columns = POSTPROCESSORS["semantic"](manifest, None, prediction, params)
    expected, expected_count = instances_from_probability(np.stack(list(prediction)), **params)
    np.testing.assert_array_equal(labels, expected)
    assert count == expected_count > 3 and not columns["Classify_ClassIndex"].any()

    # A co-culture layout: the nucleus probability shared between two cell types, left and right of the middle.
    left = np.zeros(prediction.shape[1:], np.float32)
    left[:, : prediction.shape[2] // 2] = 1.0
    four = np.stack([prediction[0], prediction[1] * left, prediction[1] * (1 - left), prediction[2]])
    spec = dataclasses.replace(manifest.dense_output, channels=("background", "type_a", "type_b", "boundary"))
    coculture = dataclasses.replace(manifest, object_classes=("type_a", "type_b"),
                                    outputs=tuple(spec if o is manifest.dense_output else o for o in manifest.outputs))
    labels2, count2, columns2 = POSTPROCESSORS["semantic"](coculture, None, four, params)
    np.testing.assert_array_equal(labels2, expected)
    table = measure(labels2, np.ascontiguousarray(four[1:3]), channel_names=["type_a", "type_b"], num_objects=count2)
    np.testing.assert_array_equal(columns2["Classify_ClassIndex"],
                                  (table["Intensity_MeanIntensity_type_b"] > table["Intensity_MeanIntensity_type_a"]))
    assert 0 < int(columns2["Classify_ClassIndex"].sum()) < count2
