"""Model manifests, ONNX export, ONNX Runtime and TensorRT backends, load_model.

A tiny UNet exported once per session stands in for a model where the
bundled ones would be slow; the bundled models are tested on real data below.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch", reason="torch not available (install the export extra)")

import cellrt  # noqa: E402
from cellrt.export import to_onnx  # noqa: E402
from cellrt.runtime import (Manifest, ManifestError, OrtBackend, OutputSpec, load_manifest,  # noqa: E402
                            write_manifest)
from cellrt.runtime import tensorrt as trt_runtime  # noqa: E402
from cellrt.training import data as training_data  # noqa: E402
from cellrt.training.unet import UNet, receptive_field  # noqa: E402

from .conftest import needs_cuda  # noqa: E402

CLASSES = ("background", "nucleus", "boundary")


def _tiny_unet(seed: int = 0, upsampling: str = "transpose") -> UNet:
    torch.manual_seed(seed)
    model = UNet(1, 3, base=4, depth=2, upsampling=upsampling)
    # Non-trivial BatchNorm statistics, as a trained model has.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _dsb_tiles(dsb_dir: Path, count: int = 4, size: int = 64) -> np.ndarray:
    ids = training_data.dsb_ids(dsb_dir, held_out=True)[:count]
    samples = training_data.load_dsb(dsb_dir, ids)
    tiles, _ = training_data.random_crops(np.random.default_rng(0), samples, count, size)
    return tiles


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, dsb_dir):
    folder = tmp_path_factory.mktemp("tiny") / "model"
    module = _tiny_unet()
    report = to_onnx(module, folder, name="tiny", kind="semantic", input_channels=["DNA"],
                     outputs=[OutputSpec("logits", "class_logits", CLASSES, activation="softmax"),
                              OutputSpec("embedding", "embedding", size=module.embedding_size)],
                     tile_size=64, overlap=16, size_multiple=module.size_multiple,
                     receptive_field=module.receptive_field,
                     normalization={"mode": "percentile", "percentiles": [1.0, 99.8]},
                     boundary_class="boundary", verify_tiles=_dsb_tiles(dsb_dir))
    return folder, module, report


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "cellrt.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


# -- export -------------------------------------------------------------------------------------------------------

def test_export_round_trip_matches_torch_on_real_tiles(tiny_model, dsb_dir):
    folder, module, report = tiny_model
    assert max(report.max_abs_error.values()) < 1e-5
    manifest = load_manifest(folder)
    backend = OrtBackend(manifest.onnx_path, manifest)
    for size in (64, 96):  # dynamic height and width, any multiple of 2**depth
        tiles = _dsb_tiles(dsb_dir, count=3, size=size)
        got = backend.infer(tiles)
        with torch.no_grad():
            logits, embedding = module(torch.from_numpy(tiles))
        np.testing.assert_allclose(got["logits"], logits.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["embedding"], embedding.numpy(), rtol=1e-4, atol=1e-5)


def _export_cli_files(tmp_path: Path) -> tuple[Path, Path]:
    """A factory module and a spec for `cellrt export`, as a user writes them."""
    (tmp_path / "my_nets.py").write_text(
        "from cellrt.training.unet import UNet\n\n\ndef tiny(base=4):\n    return UNet(1, 3, base=base, depth=2).eval()\n")
    spec = {"name": "cli", "kind": "semantic", "input_channels": ["DNA"], "tile_size": 64, "overlap": 16,
            "size_multiple": 4, "boundary_class": "boundary", "factory_kwargs": {"base": 4},
            "outputs": [{"name": "logits", "role": "class_logits", "channels": list(CLASSES), "activation": "softmax"},
                        {"name": "embedding", "role": "embedding", "size": 16}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path / "spec.json", tmp_path / "weights.pt"


def test_export_cli_exports_and_names_what_it_cannot_use_in_one_line(tmp_path, monkeypatch, capsys):
    """`cellrt export` on a user's factory, spec and weights; each of them unusable ends the command in one
    line naming it (an import error, a missing attribute, a spec that is not JSON, lacks outputs, has an
    unknown or lacks a required field, weights that are missing or do not fit the module)."""
    from cellrt.cli import main
    from cellrt.training.unet import UNet

    spec, weights = _export_cli_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(UNet(1, 3, base=4, depth=2).state_dict(), weights)
    out = tmp_path / "model"
    assert main(["export", "my_nets:tiny", "--spec", str(spec), "--weights", str(weights), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"exported {out}")
    assert load_manifest(out).name == "cli"

    def fails(args, expected):
        assert main(["export", *args, "--out", str(tmp_path / "unused")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("cellrt export: ") and expected in err and len(err.strip().splitlines()) == 1, err

    fails(["no_such_module:tiny", "--spec", str(spec)], "FACTORY no_such_module:tiny: cannot import 'no_such_module'")
    fails(["my_nets:huge", "--spec", str(spec)], "module 'my_nets' has no 'huge'")
    fails(["my_nets", "--spec", str(spec)], "FACTORY should be 'package.module:callable'")
    fails(["my_nets:tiny", "--spec", str(tmp_path / "none.json")], f"--spec {tmp_path / 'none.json'}: ")
    bad = tmp_path / "bad.json"
    for text, expected in (("{not json", "Expecting property name"), ('{"name": "x"}', "should be a JSON object with 'outputs'"),
                           (json.dumps({**json.loads(spec.read_text()), "tile": 64}), "unknown field(s) ['tile']"),
                           (json.dumps({k: v for k, v in json.loads(spec.read_text()).items() if k != "kind"}),
                            "missing field(s) ['kind']")):
        bad.write_text(text)
        fails(["my_nets:tiny", "--spec", str(bad)], expected)
    fails(["my_nets:tiny", "--spec", str(spec), "--weights", str(tmp_path / "none.pt")], f"--weights {tmp_path / 'none.pt'}")
    torch.save(UNet(1, 3, base=8, depth=2).state_dict(), weights)     # another width: does not fit
    fails(["my_nets:tiny", "--spec", str(spec), "--weights", str(weights)], "size mismatch")
    assert not (tmp_path / "unused").exists()


def test_export_writes_a_valid_manifest_and_fp16_model(tiny_model):
    folder, module, report = tiny_model
    manifest = load_manifest(folder)
    assert manifest.kind == "semantic" and manifest.object_classes == ("nucleus",)
    assert manifest.fp16 is not None and manifest.fp16_path.is_file()
    # The FP16 model keeps FP32 inputs and outputs (onnxconverter-common leaves the embedding FP16 otherwise).
    half = OrtBackend(manifest.fp16_path, manifest)
    assert all(o.type == "tensor(float)" for o in half.outputs)
    assert max(report.fp16_error.values()) < manifest.fp16["tolerance"]
    assert (folder / "cellrt.json").stat().st_mode & 0o044 == 0o044  # readable by others, like any export
    # The decoder's skip joins were rewritten as sums of convolutions (cellrt.export.graph_passes), in both files.
    import onnx  # noqa: PLC0415
    for path in (manifest.onnx_path, manifest.fp16_path):
        graph = onnx.load(str(path))
        assert "Concat" not in {n.op_type for n in graph.graph.node}, path
    passes = {p.key: p.value for p in onnx.load(str(manifest.onnx_path)).metadata_props}["cellrt.graph_passes"]
    assert passes == f"split_concat_convs:{module.config['depth']}"


def test_export_refuses_a_module_whose_outputs_disagree_with_the_manifest(tmp_path):
    module = _tiny_unet()
    with pytest.raises(ManifestError, match="4 channels"):
        to_onnx(module, tmp_path / "bad", name="bad", kind="semantic", input_channels=["DNA"],
                outputs=[OutputSpec("logits", "class_logits", ("bg", "a", "b", "c"), activation="softmax"),
                         OutputSpec("embedding", "embedding", size=module.embedding_size)],
                tile_size=64, overlap=16, size_multiple=4, fp16=False)
    assert not (tmp_path / "bad" / "cellrt.json").exists()


# -- manifest validation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other/1"), "'format' should be"),
    (lambda d: d.update(kind="detector"), "'kind' should be one of"),
    (lambda d: d["input"].update(channels=[]), "at least one channel"),
    (lambda d: d["input"].update(channels=["DNA", "DNA"]), "duplicate"),
    (lambda d: d["tile"].update(overlap=64), r"'tile.overlap' should be in \[0, tile.size=64\)"),
    (lambda d: d["tile"].update(size=62), "multiple of input.size_multiple"),
    (lambda d: d["normalization"].update(percentiles=[99, 1]), "low < high"),
    (lambda d: d["outputs"][0].update(activation="relu"), "activation"),
    (lambda d: d["outputs"][1].update(size=0), "embedding length"),
    (lambda d: d.update(object_classes=["cytoplasm"]), r"\['cytoplasm'\] are not among"),
    (lambda d: d["onnx"].update(sha256="xyz"), "64 lowercase hex"),
    (lambda d: d.pop("tile"), "missing 'tile'"),
])
def test_malformed_manifests_are_refused_with_the_field_named(tiny_model, tmp_path, edit, message):
    folder = _copy(tiny_model[0], tmp_path)
    _edit_manifest(folder, edit)
    with pytest.raises(ManifestError, match=message):
        load_manifest(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["input"].update(name="pixels"), "graph input is 'image'"),
    (lambda d: d["input"].update(channels=["DNA", "actin"]), "graph input has 1 channels"),
    (lambda d: d["outputs"][0].update(name="scores"), "'scores' is not a graph output"),
    (lambda d: d["outputs"][0].update(channels=["bg", "nucleus", "boundary", "mitotic"]), "names 4 channels"),
    (lambda d: d["outputs"][1].update(size=64), "embedding of size 64"),
])
def test_manifest_that_disagrees_with_its_graph_is_refused(tiny_model, tmp_path, edit, message):
    folder = _copy(tiny_model[0], tmp_path)
    _edit_manifest(folder, edit)
    with pytest.raises(ManifestError, match=message):
        cellrt.load_model(folder, backend="ort")


def test_changed_onnx_file_is_refused_by_hash(tiny_model, tmp_path):
    folder = _copy(tiny_model[0], tmp_path)
    with open(folder / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="SHA-256 .* the file was changed"):
        load_manifest(folder)


def test_manifest_json_round_trip(tiny_model, tmp_path):
    manifest = load_manifest(tiny_model[0])
    folder = _copy(tiny_model[0], tmp_path)
    write_manifest(folder, replace(manifest, description="edited"))
    again = load_manifest(folder)
    assert again.description == "edited"
    assert replace(again, folder=None, description="") == replace(manifest, folder=None, description="")


# -- ONNX Runtime backend -----------------------------------------------------------------------------------------

def test_ort_backend_binds_outputs_into_caller_buffers_and_reuses_its_own(tiny_model, dsb_dir):
    manifest = load_manifest(tiny_model[0])
    backend = OrtBackend(manifest.onnx_path, manifest, threads=1)
    tiles = _dsb_tiles(dsb_dir, count=2)
    first = backend.infer(tiles)
    again = backend.infer(tiles)
    assert first["logits"] is again["logits"]  # one buffer per batch shape, no allocation per call
    expected = {name: array.copy() for name, array in first.items()}
    # NaN-filled so an output left unwritten (or written elsewhere) shows; every output, not just the first.
    out = {"logits": np.full((2, 3, 64, 64), np.nan, np.float32), "embedding": np.full((2, 8 * 2), np.nan, np.float32)}
    returned = backend.infer(tiles, out=out)
    assert set(returned) == set(out) == set(expected)
    for name in out:
        assert returned[name] is out[name], name
        np.testing.assert_array_equal(out[name], expected[name], err_msg=name)
    with pytest.raises(ValueError, match=r"out\['logits'\] should be a C-contiguous float32 array of shape"):
        backend.infer(tiles, out={"logits": np.empty((2, 3, 32, 32), np.float32), "embedding": out["embedding"]})
    with pytest.raises(ValueError, match="C-contiguous float32"):
        backend.infer(tiles.astype(np.float64))
    with pytest.raises(ValueError, match="not available"):
        OrtBackend(manifest.onnx_path, manifest, providers=["NoSuchExecutionProvider"])
    # Worker threads sleep between parallel sections unless asked to spin (the pipeline's other threads need the cores).
    spinning = "session.intra_op.allow_spinning"
    assert backend.session.get_session_options().get_session_config_entry(spinning) == "0"
    spinner = OrtBackend(manifest.onnx_path, manifest, threads=1, spin=True)
    assert spinner.session.get_session_options().get_session_config_entry(spinning) == "1"


def test_a_batch_onnx_runtime_cannot_run_is_an_inference_error_naming_file_shape_and_providers(tiny_model, dsb_dir):
    """ONNX Runtime's own exceptions derive from Exception alone and span lines; a batch it refuses (here
    two channels for a one-channel graph; out of memory is the usual one) is an InferenceError on one line,
    which `cellrt predict` and `run` end with instead of a traceback."""
    from cellrt.cli.run import input_errors
    from cellrt.runtime.ort import InferenceError

    manifest = load_manifest(tiny_model[0])
    backend = OrtBackend(manifest.onnx_path, manifest, threads=1)
    tiles = _dsb_tiles(dsb_dir, count=2)
    wrong = np.ascontiguousarray(np.concatenate([tiles, tiles], axis=1))
    for out in (None, "allocated by ONNX Runtime"):
        if out:
            backend._manifest = None     # the path without bound outputs
        with pytest.raises(InferenceError) as caught:
            backend.infer(wrong)
        message = str(caught.value)
        assert message.startswith(f"{manifest.onnx_path}: ONNX Runtime could not run a batch of shape (2, 2, 64, 64) "
                                  f"on CPUExecutionProvider: ") and "\n" not in message
        assert "index: 1 Got: 2 Expected: 1" in message
    assert InferenceError in input_errors()


# -- TensorRT: engine keys and the TensorRT-RTX build path ------------------------------------------------------

def test_engine_key_changes_when_any_input_changes():
    base = dict(onnx_sha256="a" * 64, flavour="tensorrt_rtx", version="1.7.1", compute_capabilities=["86"],
                precision="fp16", profile=trt_runtime.Profile())
    key = trt_runtime.engine_key(**base)["id"]
    variants = [dict(onnx_sha256="b" * 64), dict(flavour="tensorrt"), dict(version="1.7.2"),
                dict(compute_capabilities=["89"]), dict(compute_capabilities=["86", "89"]), dict(precision="fp32"),
                dict(profile=trt_runtime.Profile(max_batch=32)), dict(profile=trt_runtime.Profile(tile_size=512)),
                # TensorRT tunes an engine on the GPU model it builds on: an H100's is not an H200's (both sm_90)
                dict(flavour="tensorrt", gpu="NVIDIA H100 80GB HBM3"), dict(flavour="tensorrt", gpu="NVIDIA H200")]
    ids = {trt_runtime.engine_key(**{**base, **change})["id"] for change in variants}
    assert key not in ids and len(ids) == len(variants)
    assert trt_runtime.engine_key(**base)["id"] == key  # deterministic
    assert "gpu" not in trt_runtime.engine_key(**base)   # TensorRT-RTX keys as before: cached engines stay valid


def _stand_in_tensorrt_for_builds():
    """A `tensorrt` module with what build_engine calls: each build's engine is 'engine <n>', and the timing
    cache it saves is the one it was given plus '+timed'."""
    import types  # noqa: PLC0415

    trt = types.ModuleType("stand_in_tensorrt")
    trt.__version__ = "10.9"

    class ILogger:
        ERROR, WARNING = 1, 2

        def __init__(self):
            pass

    class TimingCache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+timed"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            pass

        def add_optimization_profile(self, profile):
            pass

        def create_timing_cache(self, blob):
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing = cache

        def get_timing_cache(self):
            return self.timing

        def set_compute_capability(self, capability, index):
            pass

    class Builder:
        builds = 0

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *shapes: None)

        def build_serialized_network(self, network, config):
            Builder.builds += 1
            return f"engine {Builder.builds}".encode()

    trt.ILogger, trt.Builder = ILogger, Builder
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.ComputeCapability = types.SimpleNamespace(SM86=86)
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(parse_from_file=lambda path: True)
    return trt


def test_tensorrt_engines_and_timing_caches_are_kept_per_gpu_model(tiny_model, tmp_path, monkeypatch):
    """H100 and H200 are both sm_90: a cache folder shared between them handed one's engine (its tactics timed
    there) and timing cache to the other. Each GPU model builds its own, and reuses it."""
    trt = _stand_in_tensorrt_for_builds()
    monkeypatch.setattr(trt_runtime, "_LOGGERS", {})
    monkeypatch.setattr(trt_runtime, "import_tensorrt", lambda flavour="auto": (trt, "tensorrt"))
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "90")
    artifacts = []
    for gpu in ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA H100 80GB HBM3"):
        monkeypatch.setattr(trt_runtime, "current_gpu_name", lambda gpu=gpu: gpu)
        artifacts.append(trt_runtime.build_engine(tiny_model[0], precision="fp32", cache=tmp_path))
        assert artifacts[-1].key["gpu"] == gpu
    h100, h200, again = artifacts
    assert (h100.reused, h200.reused, again.reused) == (False, False, True)
    assert again.path == h100.path != h200.path
    assert (h100.path.read_bytes(), h200.path.read_bytes()) == (b"engine 1", b"engine 2")
    timing = {path.name: path.read_bytes() for path in tmp_path.glob("timing-*")}
    assert timing == {"timing-tensorrt-10.9-sm90-NVIDIA_H100_80GB_HBM3.cache": b"+timed",
                      "timing-tensorrt-10.9-sm90-NVIDIA_H200.cache": b"+timed"}
    # TensorRT-RTX engines depend on the compute capabilities only: their keys name no GPU, as before
    monkeypatch.setattr(trt_runtime, "import_tensorrt", lambda flavour="auto": (trt, "tensorrt_rtx"))
    rtx = trt_runtime.build_engine(tiny_model[0], precision="fp32", cache=tmp_path, compute_capabilities=["86"])
    assert not rtx.reused and "gpu" not in rtx.key


def test_unusable_here_says_why_no_tensorrt_engine_runs_on_this_gpu(monkeypatch):
    """The doctor's and load_model('auto')'s answer: no GPU, no module, or only TensorRT-RTX on a GPU it does not
    target (sm_90: H100/H200) say why; TensorRT-RTX on a GPU it targets, or TensorRT, can run."""
    import types  # noqa: PLC0415

    rtx = types.SimpleNamespace(__version__="1.7", ComputeCapability=type("ComputeCapability", (), {
        "SM75": 0, "SM86": 1, "SM120": 2}))
    found, asked = {"module": (rtx, "tensorrt_rtx")}, []

    def import_tensorrt(flavour="auto"):
        asked.append(flavour)
        if isinstance(found["module"], Exception):
            raise found["module"]
        return found["module"]

    monkeypatch.setattr(trt_runtime, "import_tensorrt", import_tensorrt)
    capability = {"now": None}
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: capability["now"])
    assert trt_runtime.unusable_here() == "no usable CUDA GPU (or no cupy)"
    capability["now"] = "90"
    assert trt_runtime.unusable_here("tensorrt_rtx") == ("tensorrt_rtx 1.7 runs on sm_['75', '86', '120'], not on "
                                                         "this GPU (sm_90); install `tensorrt` for it")
    assert asked[-1] == "tensorrt_rtx"
    capability["now"] = "86"
    assert trt_runtime.unusable_here() is None
    capability["now"] = "90"
    found["module"] = (types.SimpleNamespace(__version__="10.9"), "tensorrt")
    assert trt_runtime.unusable_here() is None
    found["module"] = trt_runtime.EngineError("TensorRT is not available (tensorrt: no module)")
    assert trt_runtime.unusable_here() == "TensorRT is not available (tensorrt: no module)"


def _tensorrt_or_skip(flavour: str):
    try:
        return trt_runtime.import_tensorrt(flavour)[0]
    except trt_runtime.EngineError as error:
        pytest.skip(f"{flavour} TensorRT not available: {error}")


def _rtx():
    return _tensorrt_or_skip("tensorrt_rtx")


def _tensorrt_here_or_skip():
    """A TensorRT that runs on this GPU (only tensorrt_rtx on an H100/H200 does not: it cannot target sm_90)."""
    reason = trt_runtime.unusable_here("auto")
    if reason is not None:
        pytest.skip(f"TensorRT cannot run on this GPU: {reason}")


def test_tensorrt_rtx_builds_caches_and_rebuilds_stale_engines(tiny_model, tmp_path):
    _rtx()
    folder = tiny_model[0]
    options = dict(flavour="tensorrt_rtx", compute_capabilities=["86"], cache=tmp_path,
                   profile=trt_runtime.Profile(1, 4, 8, 64))
    built = trt_runtime.build_engine(folder, **options)
    assert not built.reused and built.path.stat().st_size > 10_000
    assert built.key["precision"] == "fp16" and built.fp16_error is not None
    assert json.loads(built.path.with_suffix(".json").read_text())["key"] == built.key
    again = trt_runtime.build_engine(folder, **options)
    assert again.reused and again.path == built.path
    other = trt_runtime.build_engine(folder, **{**options, "profile": trt_runtime.Profile(1, 8, 16, 64)})
    assert other.path != built.path and not other.reused
    # A sidecar that does not match (another build wrote it, or it was edited) means rebuild, never load.
    sidecar = built.path.with_suffix(".json")
    recorded = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**recorded, "key": {**built.key, "version": "0.0"}}))
    assert not trt_runtime.build_engine(folder, **options).reused
    # So does an engine file whose bytes are not the ones the build wrote.
    with open(built.path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff\xff")
    rebuilt = trt_runtime.build_engine(folder, **options)
    assert not rebuilt.reused
    fp32 = trt_runtime.build_engine(folder, precision="fp32", **options)
    assert fp32.key["onnx_sha256"] == load_manifest(folder).onnx_sha256 != built.key["onnx_sha256"]


def test_a_corrupt_engine_is_an_error_not_a_null_engine(tiny_model, tmp_path):
    _rtx()
    artifact = trt_runtime.build_engine(tiny_model[0], flavour="tensorrt_rtx", compute_capabilities=["86"],
                                        cache=tmp_path)
    artifact.path.write_bytes(b"not an engine" * 100)
    with pytest.raises(trt_runtime.EngineError, match=f"{artifact.path.name}: .* could not deserialize"):
        trt_runtime.load_engine(artifact)


def test_an_engine_that_does_not_deserialize_says_what_tensorrt_logged_and_prints_nothing(tmp_path, capfd):
    """load_engine gave TensorRT a logger of its own, so TensorRT's reason went to stderr as log lines and the
    EngineError said only 'corrupt, another version, or no GPU'; the module's logger holds it for the message."""
    trt = _rtx()
    path = tmp_path / "garbage.engine"
    path.write_bytes(b"not an engine" * 100)
    artifact = trt_runtime.EngineArtifact(path, {"flavour": "tensorrt_rtx"}, reused=False, build_seconds=0.0,
                                          fp16_error=None)
    with pytest.raises(trt_runtime.EngineError) as raised:
        trt_runtime.load_engine(artifact)
    message = str(raised.value)
    assert message.startswith(f"{path}: tensorrt_rtx {trt.__version__} could not deserialize the engine ("), message
    assert "Error Code" in message and "\n" not in message, message   # TensorRT's 'Error Code N: Kind (...)'
    assert "/_src/" not in message and "cellrt build --rebuild" in message, message
    assert "[TRT]" not in capfd.readouterr().err


def test_tensorrt_fp16_gate_fails_the_build_when_error_exceeds_tolerance(tiny_model, tmp_path):
    _rtx()
    folder = _copy(tiny_model[0], tmp_path)
    _edit_manifest(folder, lambda d: d["fp16"].update(tolerance=1e-9))
    with pytest.raises(trt_runtime.EngineError, match="above the manifest's fp16.tolerance"):
        trt_runtime.build_engine(folder, flavour="tensorrt_rtx", compute_capabilities=["86"], cache=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.engine")) if (tmp_path / "c").exists() else True


def test_tensorrt_build_errors_are_clear(tiny_model, tmp_path):
    _rtx()
    with pytest.raises(trt_runtime.EngineError, match="cannot target sm_70"):
        trt_runtime.build_engine(tiny_model[0], flavour="tensorrt_rtx", compute_capabilities=["70"], cache=tmp_path)
    if trt_runtime.current_compute_capability() is None:
        with pytest.raises(trt_runtime.EngineError, match="no GPU here"):
            trt_runtime.build_engine(tiny_model[0], flavour="tensorrt_rtx", cache=tmp_path)
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        trt_runtime.Profile(4, 2, 8)


def test_load_model_refuses_tensorrt_without_a_gpu(tiny_model):
    if trt_runtime.current_compute_capability() is not None:
        pytest.skip("a GPU is present; the refusal is for machines without one")
    with pytest.raises(ValueError, match="backend 'tensorrt' needs a CUDA GPU"):
        cellrt.load_model(tiny_model[0], backend="tensorrt")


class _EngineOnly:
    """TensorRTBackend's stand-in where no GPU is: what the engine was built for, from its artifact."""
    name, any_tile_size = "tensorrt-stand-in", False

    def __init__(self, manifest, artifact, **_):
        self.artifact = artifact
        self.profile = trt_runtime.Profile(**artifact.key["profile"])
        self.tile_size, self.max_batch = self.profile.tile_size, self.profile.max_batch


def test_load_model_builds_an_engine_whose_profile_takes_its_batches_and_tiles(tiny_model, tmp_path, monkeypatch):
    """load_model(batch_size=32) built the default 1/8/16 profile: every full batch of 32 tiles failed
    set_input_shape; a profile of another tile size was built and then fed manifest-sized tiles."""
    _rtx()
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "86")
    monkeypatch.setattr(trt_runtime, "TensorRTBackend", _EngineOnly)
    options = {"flavour": "tensorrt_rtx", "cache": tmp_path}
    model = cellrt.load_model(tiny_model[0], backend="tensorrt", batch_size=32, engine_options=options)
    assert model.backend.artifact.key["profile"] == {"min_batch": 1, "opt_batch": 32, "max_batch": 32,
                                                     "tile_size": 64}
    assert model.tiles_per_batch((64, 64)) == 32
    default = cellrt.load_model(tiny_model[0], backend="tensorrt", engine_options=options)
    assert default.backend.artifact.key["profile"] == {"min_batch": 1, "opt_batch": 8, "max_batch": 16,
                                                       "tile_size": 64}   # the engine key of before: reused
    # A plate run's own batch size never exceeds what the engine takes.
    assert default.tiles_per_batch((64, 64), 64) == 16
    small = trt_runtime.Profile(1, 2, 4, 96)
    model = cellrt.load_model(tiny_model[0], backend="tensorrt", engine_options={**options, "profile": small})
    assert model.tile_shape((300, 500)) == (96, 96)
    assert model.tiles_per_batch((96, 96)) == 3 and model.tiles_per_batch((96, 96), 64) == 4
    with pytest.raises(ValueError, match="runs 96-pixel tiles"):
        cellrt.load_model(tiny_model[0], backend="tensorrt", tile_size=64,
                          engine_options={**options, "profile": small})
    # A profile from 2 tiles up failed the plate's last batch when it held one tile: refused at load.
    with pytest.raises(ValueError, match=r"profile should take batches from 1 tile \(min_batch 1\), got min_batch 2"):
        cellrt.load_model(tiny_model[0], backend="tensorrt",
                          engine_options={**options, "profile": trt_runtime.Profile(2, 4, 8, 64)})


def test_auto_runs_onnx_runtime_on_a_gpu_tensorrt_rtx_does_not_target(tiny_model, tmp_path, monkeypatch):
    """With only tensorrt_rtx installed, an H100/H200 (sm_90) made load_model('auto') fail to build an engine
    ('cannot target sm_90') instead of running ONNX Runtime; backend='tensorrt' says why it cannot run."""
    trt = _rtx()
    if trt_runtime.import_tensorrt("auto")[1] != "tensorrt_rtx":
        pytest.skip("tensorrt is installed: 'auto' picks it, not tensorrt_rtx")
    assert "90" not in trt_runtime.rtx_compute_capabilities(trt)
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "90")
    monkeypatch.setattr(trt_runtime, "TensorRTBackend", _EngineOnly)
    options = {"engine_options": {"cache": tmp_path}}
    assert cellrt.load_model(tiny_model[0], **options).backend.name == "ort"
    with pytest.raises(ValueError, match=r"tensorrt_rtx .* not on this GPU \(sm_90\); install `tensorrt`"):
        cellrt.load_model(tiny_model[0], backend="tensorrt", **options)
    assert not list(tmp_path.glob("*.engine"))
    monkeypatch.setattr(trt_runtime, "current_compute_capability", lambda: "86")
    assert cellrt.load_model(tiny_model[0], **options).backend.name == "tensorrt-stand-in"


@needs_cuda
def test_tensorrt_engine_matches_onnx_runtime_on_real_tiles(tiny_model, dsb_dir, tmp_path):
    _tensorrt_here_or_skip()
    manifest = load_manifest(tiny_model[0])
    tiles = _dsb_tiles(dsb_dir, count=4)
    reference = OrtBackend(manifest.onnx_path, manifest).infer(tiles)
    for precision, tolerance in (("fp32", 1e-3), ("fp16", 2e-2)):
        artifact = trt_runtime.build_engine(manifest, precision=precision, cache=tmp_path,
                                            profile=trt_runtime.Profile(1, 4, 8, 64))
        for graph in (False, True):
            backend = trt_runtime.TensorRTBackend(manifest, artifact, cuda_graph=graph)
            for _ in range(3):  # graph capture on the first call, replay after
                got = {k: v.get() for k, v in backend.infer(tiles).items()}
            for name, ref in reference.items():
                scale = float(np.abs(ref).max())
                assert float(np.abs(got[name] - ref).max()) / scale < tolerance, (precision, graph, name)
            backend.close()


# -- load_model and one field ------------------------------------------------------------------------------------

def test_load_model_errors_name_what_was_expected(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="neither a bundled model"):
        cellrt.load_model("no-such-model")
    with pytest.raises(ManifestError, match="no cellrt.json"):
        cellrt.load_model(tmp_path)
    with pytest.raises(ValueError, match="backend should be one of"):
        cellrt.load_model(tiny_model[0], backend="torch")
    model = cellrt.load_model(tiny_model[0], backend="ort")
    with pytest.raises(ValueError, match=r"C = 1 channels \['DNA'\], got shape \(2, 64, 64\)"):
        model.run(np.zeros((2, 64, 64), np.uint16))


@pytest.mark.parametrize("tile_size", ["model", "auto"])
def test_model_run_equals_the_kernels_called_by_hand(tiny_model, dsb_dir, tile_size):
    from cellrt.kernels import instances_from_probability, measure, stitch, tile  # noqa: PLC0415

    model = cellrt.load_model(tiny_model[0], backend="ort", batch_size=3, tile_size=tile_size)
    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[0]
    image = tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")
    result = model.run(image)
    manifest = model.manifest
    # 'auto' fits tiles of up to 8 manifest tiles' pixels: sides up to 180 px.
    shape = (64, 64) if tile_size == "model" else model.tile_shape(image.shape)
    assert tile_size == "model" or shape != (64, 64) and max(shape) <= 180
    batch = tile(image, shape, 16, normalize="percentile", percentiles=(1.0, 99.8))
    logits = OrtBackend(manifest.onnx_path, manifest).infer(batch.tiles)
    probabilities = stitch(logits["logits"], batch.origins, image.shape, overlap=16, activation="softmax")
    np.testing.assert_allclose(result.prediction, probabilities, atol=1e-5)
    labels, count = instances_from_probability(probabilities)
    np.testing.assert_array_equal(result.labels, labels)
    assert result.count == count == int(labels.max())
    table = measure(labels, image[None], channel_names=["DNA"], num_objects=count)
    for column, values in table.items():
        np.testing.assert_array_equal(result.objects[column], values)
    assert result.objects["Classify_ClassIndex"].shape == (count,)
    np.testing.assert_allclose(result.embedding, logits["embedding"].mean(axis=0), rtol=1e-5)
    assert set(result.timings) == {"tile", "infer", "stitch", "postprocess", "measure"}


def test_auto_tiles_cover_the_field_with_the_fewest_tiles_of_the_least_size(tiny_model):
    from cellrt.kernels.stitch import tile_origins  # noqa: PLC0415
    from cellrt.pipeline.model import _covering_side  # noqa: PLC0415

    for side in list(range(1, 400, 7)) + [1024, 2048, 2160, 2560]:
        for overlap, multiple, max_side in ((16, 4, 104), (48, 8, 720), (0, 1, 50)):
            length = _covering_side(side, overlap, multiple, max_side)
            assert length % multiple == 0 and length > 2 * overlap
            assert length <= max(max_side, -(-side // multiple) * multiple, -(-(2 * overlap + 1) // multiple) * multiple)
            count = len({int(o[0]) for o in tile_origins((side, 1), (length, 1), (overlap, 0))}) if side > length else 1
            fewest = 1 if side <= max_side else -(-(side - overlap) // (max_side - overlap))
            assert count == fewest, (side, overlap, length)
            if count > 1:   # one multiple less would need another tile
                assert (length - multiple - overlap) * count + overlap < side
    model = cellrt.load_model(tiny_model[0], backend="ort", batch_size=3)
    # 8 tiles of 64^2 is 32,768 px: sides up to 180; 1024 = 7 tiles of 160, 300 = 2 of 160.
    assert model.tile_shape((1024, 300)) == (160, 160)
    assert model.tiles_per_batch((160, 160)) == 1 and model.tiles_per_batch((32, 32)) == 12
    assert cellrt.load_model(tiny_model[0], backend="ort", batch_size=1).tile_shape((1024, 300)) == (160, 160)
    assert cellrt.load_model(tiny_model[0], backend="ort", tile_size=(96, 128)).tile_shape((500, 500)) == (96, 128)
    with pytest.raises(ValueError, match=r"tile_size \(30, 30\) should be multiples of 4 larger than twice the "
                                         r"overlap \(16 px\)"):
        cellrt.load_model(tiny_model[0], backend="ort", tile_size=30)
    with pytest.raises(ValueError, match=r"tile_size should be 'auto', 'model', an int or \(height, width\)"):
        cellrt.load_model(tiny_model[0], backend="ort", tile_size="big")


# -- FLOPs from the graph ----------------------------------------------------------------------------------------

def test_graph_flops_equal_the_modules_multiply_adds(tiny_model):
    from cellrt.export.flops import count_flops  # noqa: PLC0415

    folder, module, _ = tiny_model
    expected = 0

    def hook(layer, inputs, output):
        nonlocal expected
        if isinstance(layer, torch.nn.ConvTranspose2d):
            expected += 2 * inputs[0].numel() * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
        else:
            expected += 2 * output.numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        module(torch.zeros(2, 1, 64, 96))
    for handle in handles:
        handle.remove()
    assert count_flops(folder / "model.onnx", (2, 1, 64, 96))["matrix"] == expected


# -- the bilinear decoder (the bundled nuclei model's) ----------------------------------------------------------

@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
@pytest.mark.parametrize("depth", [2, 3])
def test_receptive_field_is_how_far_one_input_pixel_reaches(upsampling, depth):
    torch.manual_seed(depth)
    module = UNet(1, 2, base=4, depth=depth, upsampling=upsampling).double().eval()
    size, reach = 192, 0
    image = torch.rand(1, 1, size, size, dtype=torch.float64)
    with torch.no_grad():
        before = module(image)[0]
        for position in range(88, 88 + 2 ** depth):   # every alignment to the pooling grid
            poked = image.clone()
            poked[0, 0, position, position] += 1.0
            ys, xs = np.nonzero((module(poked)[0] != before).any(1)[0].numpy())
            reach = max(reach, int(np.abs(ys - position).max()), int(np.abs(xs - position).max()))
    assert module.receptive_field == receptive_field(depth, upsampling) == 2 * reach + 1


def test_unet_rebuilt_from_onnx_weights_with_a_transposed_decoder(tiny_model, dsb_dir):
    """The bundled models are bilinear now; models exported before keep the ConvTranspose decoder."""
    from cellrt.training.from_onnx import unet_from_onnx  # noqa: PLC0415

    folder, module, _ = tiny_model
    rebuilt = unet_from_onnx(folder / "model.onnx")
    assert isinstance(rebuilt.upsamplers[0], torch.nn.ConvTranspose2d)
    tiles = _dsb_tiles(dsb_dir, count=2, size=96)
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(torch.from_numpy(tiles))[0].numpy(),
                                   module(torch.from_numpy(tiles))[0].numpy(), rtol=1e-4, atol=1e-4)


def _fp16_round_trip(nodes, initializers, outputs, tmp_path):
    """Save the graph (input x: 1x2x30x4), convert it to FP16, run both on the same random x:
    (the FP16 graph, the FP32 outputs, the FP16 outputs)."""
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    from cellrt.export import convert_to_fp16  # noqa: PLC0415

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 30, 4])],
                              outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "fp32.onnx")
    convert_to_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    x = {"x": np.random.default_rng(0).random((1, 2, 30, 4), dtype=np.float32)}
    expected, got = (ort.InferenceSession(tmp_path / name, providers=["CPUExecutionProvider"]).run(None, x)
                     for name in ("fp32.onnx", "fp16.onnx"))
    return onnx.load(str(tmp_path / "fp16.onnx")).graph, expected, got


@pytest.mark.parametrize("scales_source", ["initializer", "shared initializer", "computed"])
def test_fp16_conversion_keeps_resize_in_fp32_with_its_exact_scales(scales_source, tmp_path):
    """ONNX types Resize's scales as float only; the FP16 copy must load, and a scale FP16 cannot hold
    (4/3) must still give the FP32 model's output size and values."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    scales = numpy_helper.from_array(np.array([1, 1, 4 / 3, 4 / 3], np.float32), "scales")
    nodes, initializers, outputs = [], [scales], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if scales_source == "computed":
        initializers = []
        nodes.append(helper.make_node("Constant", [], ["scales_const"], value=scales, name="const"))
        nodes.append(helper.make_node("Identity", ["scales_const"], ["scales"], name="identity"))
    # Named nodes, as exported graphs have (the converter names its casts after them).
    nodes.append(helper.make_node("Relu", ["x"], ["r"], name="relu"))   # an FP16 op before each Resize
    nodes.append(helper.make_node("Resize", ["r", "", "scales"], ["y"], mode="linear", name="linear"))
    nodes.append(helper.make_node("Resize", ["r", "", "scales"], ["y2"], mode="nearest", name="nearest"))
    outputs.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, None))
    if scales_source == "shared initializer":   # also read as data
        nodes.append(helper.make_node("Mul", ["x", "scales"], ["z"], name="mul"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    half, expected, got = _fp16_round_trip(nodes, initializers, outputs, tmp_path)
    assert {t.name for t in half.initializer} <= {name for node in half.node for name in node.input}   # none left over
    assert expected[0].shape == (1, 2, 40, 5)
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_fp16_conversion_keeps_scales_computed_from_the_data_shape_exact_and_the_data_in_fp16(tmp_path):
    """Scales = target size / Shape(feature map): the chain stays FP32, the convolution it measures does not."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    weight = numpy_helper.from_array(np.random.default_rng(1).random((2, 2, 3, 3), dtype=np.float32), "W")
    target = numpy_helper.from_array(np.array([1, 2, 40, 5], np.float32), "target")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Shape", ["c"], ["s"], name="shape"),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT, name="to_float"),
             helper.make_node("Div", ["target", "sf"], ["scales"], name="div"),
             helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="linear", name="resize")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    half, (expected,), (got,) = _fp16_round_trip(nodes, [weight, target], outputs, tmp_path)
    assert {t.name: t.data_type for t in half.initializer}["W"] == TensorProto.FLOAT16
    assert got.shape == expected.shape == (1, 2, 40, 5)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_bilinear_unet_exports_in_fp16_rebuilds_in_torch_and_quantises_to_8_bit_convolutions(tiny_model, dsb_dir,
                                                                                              tmp_path):
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    from cellrt.export.int8 import quantize_int8  # noqa: PLC0415
    from cellrt.training.from_onnx import unet_from_onnx  # noqa: PLC0415

    module = _tiny_unet(upsampling="bilinear")
    folder = tmp_path / "bilinear"
    report = to_onnx(module, folder, name="tiny-bilinear", kind="semantic", input_channels=["DNA"],
                     outputs=[OutputSpec("logits", "class_logits", CLASSES, activation="softmax"),
                              OutputSpec("embedding", "embedding", size=module.embedding_size)],
                     tile_size=64, overlap=16, size_multiple=module.size_multiple,
                     receptive_field=module.receptive_field,
                     normalization={"mode": "percentile", "percentiles": [1.0, 99.8]},
                     boundary_class="boundary", verify_tiles=_dsb_tiles(dsb_dir))
    assert max(report.max_abs_error.values()) < 1e-5 and max(report.fp16_error.values()) < 0.02
    manifest = load_manifest(folder)
    half = onnx.load(str(manifest.fp16_path))
    scales = {i.name: i.data_type for i in half.graph.initializer}
    resizes = [n for n in half.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2 and all(scales[n.input[2]] == onnx.TensorProto.FLOAT for n in resizes)
    OrtBackend(manifest.fp16_path, manifest)   # loads (FP16 scales did not)
    # The torch module rebuilt from the ONNX weights (the plate benchmark's naive stack) is the same network.
    tiles = _dsb_tiles(dsb_dir, count=2, size=96)
    expected = OrtBackend(manifest.onnx_path, manifest).infer(tiles)
    with torch.no_grad():
        rebuilt = unet_from_onnx(manifest.onnx_path)(torch.from_numpy(tiles))
    assert isinstance(unet_from_onnx(manifest.onnx_path).upsamplers[0][1], torch.nn.Upsample)
    np.testing.assert_allclose(rebuilt[0].numpy(), expected["logits"], rtol=1e-4, atol=1e-4)
    # INT8, as ONNX Runtime's CPU provider optimises it: every convolution 8-bit (the decoder's 1x1 ones
    # too; a ConvTranspose would stay FP32) and the layout NHWC throughout, bar the graph's own edges
    # (the transposed decoder adds a transpose pair around each upsampling).
    quantize_int8(folder, _training_tiles(dsb_dir), check=_dsb_tiles(dsb_dir))
    optimised = {}
    for name, model_folder in (("bilinear", folder), ("transpose", _copy(tiny_model[0], tmp_path / "t"))):
        if name == "transpose":
            quantize_int8(model_folder, _training_tiles(dsb_dir), check=_dsb_tiles(dsb_dir))
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}.optimised.onnx")
        ort.InferenceSession(str(load_manifest(model_folder).int8_path), options, providers=["CPUExecutionProvider"])
        optimised[name] = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    ops = optimised["bilinear"]
    assert ops.count("QLinearConv") == 4 + 2 + 2 * 3 + 2 + 1 and not {"Conv", "ConvTranspose"} & set(ops)
    assert ops.count("Transpose") < optimised["transpose"].count("Transpose")


# -- training and export of the bundled models, as CI can afford --------------------------------------------------

def test_smoke_training_exports_a_model_that_load_model_runs(tmp_path, dsb_dir):
    """A few steps of tools/train_models.py end to end: train, export (ONNX +
    FP16 + manifest), evaluate through load_model, record the command."""
    import importlib.util  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "tools" / "train_models.py"
    spec = importlib.util.spec_from_file_location("train_models", script)
    train_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_models)
    out = tmp_path / "nuclei"
    argv = ["nuclei", "--steps", "3", "--max-images", "4", "--max-eval", "2", "--work", str(tmp_path / "work"),
            "--out", str(out), "--data", str(dsb_dir.parent)]
    assert train_models.main(argv) == 0
    manifest = load_manifest(out)
    assert manifest.training["command"].endswith(" ".join(argv[:2]) + " " + " ".join(argv[2:]))
    assert manifest.training["seed"] == 0 and manifest.training["metrics"]["held_out_images"] == 2
    assert 0.0 <= manifest.training["metrics"]["f1_iou50"] <= 1.0
    result = cellrt.load_model(out).run(np.zeros((64, 80), np.uint8))
    assert result.labels.shape == (64, 80) and result.embedding.shape == (manifest.output("embedding").size,)


@needs_cuda
def test_load_model_on_tensorrt_matches_onnx_runtime(tiny_model, dsb_dir, tmp_path):
    """The GPU path: tiles, engine outputs and stitching stay on the device."""
    _tensorrt_here_or_skip()
    image_id = training_data.dsb_ids(dsb_dir, held_out=True)[1]
    image = tifffile.imread(dsb_dir / "images" / f"{image_id}.tif")
    reference = cellrt.load_model(tiny_model[0], backend="ort").run(image)
    gpu = cellrt.load_model(tiny_model[0], backend="tensorrt", precision="fp32",
                            engine_options={"cache": tmp_path}).run(image)
    np.testing.assert_allclose(gpu.prediction, reference.prediction, atol=1e-3)
    np.testing.assert_allclose(gpu.embedding, reference.embedding, rtol=1e-3, atol=1e-4)


# -- INT8 for CPUs ---------------------------------------------------------------------------------------------------

def _training_tiles(dsb_dir: Path, count: int = 16, size: int = 64) -> np.ndarray:
    ids = training_data.dsb_ids(dsb_dir, held_out=False)[:count]
    samples = training_data.load_dsb(dsb_dir, ids)
    tiles, _ = training_data.random_crops(np.random.default_rng(1), samples, count, size)
    return tiles


def test_int8_with_7_bit_weights_runs_on_any_cpu(tiny_model, dsb_dir, tmp_path, monkeypatch):
    """7-bit weights cannot saturate ONNX Runtime's 16-bit pair sums: such a file is made and run even
    where the CPU check says no VNNI (forced here: this machine has VNNI)."""
    from cellrt.export.int8 import quantize_int8  # noqa: PLC0415
    from cellrt.runtime import ort as ort_runtime  # noqa: PLC0415

    monkeypatch.setattr(ort_runtime, "int8_dot_product", lambda: (False, "x86 without VNNI"))
    folder = _copy(tiny_model[0], tmp_path)
    section = quantize_int8(folder, _training_tiles(dsb_dir), check=_dsb_tiles(dsb_dir), weight_bits=7)
    assert section["weight_bits"] == 7 and load_manifest(folder).int8["weight_bits"] == 7
    # The recorded 7 is what lets load_model run the file without VNNI: the weights themselves must be 7-bit.
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(folder / section["file"])).graph.initializer
               if t.data_type == onnx.TensorProto.INT8]
    # |w| <= 64 is the bound that keeps a u8 x s8 pair sum inside int16: 2 * 255 * 64 = 32640 <= 32767.
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    int8 = cellrt.load_model(folder, backend="ort", precision="int8")
    fp32 = cellrt.load_model(folder, backend="ort")
    image = tifffile.imread(dsb_dir / "images" / f"{training_data.dsb_ids(dsb_dir, held_out=True)[1]}.tif")
    a, b = fp32.run(image).prediction, int8.run(image).prediction
    assert np.mean(np.argmax(a, 0) != np.argmax(b, 0)) < 0.05 and 0 < np.max(np.abs(a - b)) < 0.5
    with pytest.raises(ValueError, match="weight_bits should be 7 or 8, got 6"):
        quantize_int8(folder, _training_tiles(dsb_dir), weight_bits=6)


@pytest.mark.int8
def test_int8_model_is_calibrated_gated_recorded_and_runs(tiny_model, dsb_dir, tmp_path):
    from cellrt.export.int8 import INT8_FILE, quantize_int8  # noqa: PLC0415

    folder = _copy(tiny_model[0], tmp_path)
    section = quantize_int8(folder, _training_tiles(dsb_dir), check=_dsb_tiles(dsb_dir),
                            record={"calibration": "16 training crops"})
    manifest = load_manifest(folder)   # verifies the INT8 file's SHA-256 too
    assert manifest.int8 == section and section["file"] == INT8_FILE
    assert section["calibration"] == "16 training crops" and section["error"]["logits"] <= 0.05
    assert section["weight_bits"] == 8
    fp32 = cellrt.load_model(folder, backend="ort")
    int8 = cellrt.load_model(folder, backend="ort", precision="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert int8.weights_sha256 == section["sha256"] != fp32.weights_sha256
    image = tifffile.imread(dsb_dir / "images" / f"{training_data.dsb_ids(dsb_dir, held_out=True)[1]}.tif")
    a, b = fp32.run(image).prediction, int8.run(image).prediction
    assert np.mean(np.argmax(a, 0) != np.argmax(b, 0)) < 0.05
    assert 0 < np.max(np.abs(a - b)) < 0.5   # really another model, and close to the FP32 one
    # The file is checked like the others.
    (folder / INT8_FILE).write_bytes((folder / INT8_FILE).read_bytes() + b"\0")
    with pytest.raises(ManifestError, match=r"model.int8.onnx: SHA-256 is .* manifest's 'int8.sha256'"):
        load_manifest(folder)


def test_int8_needs_a_cpu_whose_8_bit_dot_products_do_not_saturate(monkeypatch, tmp_path):
    """The bundled INT8 files are gated on a VNNI CPU; without VNNI ONNX Runtime's u8 x s8 kernels sum
    pairs in saturating 16-bit lanes, so INT8 is refused there. This machine has VNNI: the CPU's flags
    are given as text, and load_model's refusal is shown by replacing the flag check (a CPU without
    VNNI cannot exist here)."""
    from cellrt.runtime import ort as ort_runtime  # noqa: PLC0415

    haswell = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
    assert ort_runtime.int8_dot_product(haswell, "x86_64") == (False, "x86 without VNNI")
    assert ort_runtime.int8_dot_product(haswell + "flags : avx2 avx_vnni\n", "x86_64")[0] is True
    assert ort_runtime.int8_dot_product(haswell.replace("avx2", "avx2 avx512_vnni"), "AMD64") == (
        True, "x86 with avx512_vnni")
    assert ort_runtime.int8_dot_product("", "aarch64")[0] is True
    # No flags: numpy's view. It may miss AVX-VNNI (None, refused), but it does report AVX-512 VNNI, so on a CPU
    # whose /proc/cpuinfo has avx512_vnni the answer is known; 'True or None' alone let a fallback that never
    # finds VNNI pass.
    no_flags = ort_runtime.int8_dot_product("processor\t: 0\n", "x86_64")
    if "avx512_vnni" in ort_runtime.int8_dot_product()[1]:
        assert no_flags == (True, "x86 with AVX512VNNI")
    else:
        assert no_flags[0] in (True, None)
    for verdict in ((False, "x86 without VNNI"), (None, "x86, CPU features unreadable")):
        monkeypatch.setattr(ort_runtime, "int8_dot_product", lambda verdict=verdict: verdict)
        with pytest.raises(ValueError, match=r"precision 'int8' of model 'nuclei' needs a CPU with VNNI .* this one "
                                             rf"is {verdict[1]}.* Run precision 'fp32'"):
            cellrt.load_model("nuclei", backend="ort", precision="int8")
    # Nor is an INT8 file made there: the gate would measure the saturated arithmetic.
    from cellrt.export.int8 import QuantizationError, quantize_int8  # noqa: PLC0415
    with pytest.raises(QuantizationError, match=r"gate needs a CPU whose 8-bit convolutions are exact .* nothing "):
        quantize_int8(_copy(cellrt.load_model("nuclei", backend="ort").manifest.folder, tmp_path),
                      np.zeros((1, 1, 64, 64), np.float32))
    assert cellrt.load_model("nuclei", backend="ort").precision == "fp32"


def test_int8_cpu_check_follows_the_providers_the_session_runs_on():
    """Which sessions run an INT8 file's convolutions on ONNX Runtime's CPU kernels, decided from the providers
    a created session reports. Given as lists: a session really on CUDA needs a GPU and a CUDA build of
    onnxruntime, neither of which this test may assume (this machine's onnxruntime is CPU-only)."""
    from cellrt.runtime.ort import int8_runs_on_cpu  # noqa: PLC0415

    assert int8_runs_on_cpu(["CPUExecutionProvider"])                           # CUDA asked for, fell back
    assert int8_runs_on_cpu(["AzureExecutionProvider", "CPUExecutionProvider"])
    assert int8_runs_on_cpu(["CPUExecutionProvider", "CUDAExecutionProvider"])  # the CPU first takes every node
    assert int8_runs_on_cpu([])
    assert not int8_runs_on_cpu(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not int8_runs_on_cpu(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not int8_runs_on_cpu(["cuda", "cpu"])


def test_int8_is_refused_on_a_cpu_without_vnni_when_cuda_falls_back(monkeypatch):
    """CUDA listed as available makes load_model ask for it; this onnxruntime cannot run it, so the session falls
    back to the CPU with a warning - as a CUDA build does on a machine whose GPU or cuDNN it cannot use - and the
    8-bit file would run on CPU kernels that saturate without VNNI (forced: this CPU has VNNI)."""
    import onnxruntime  # noqa: PLC0415

    from cellrt.runtime import ort as ort_runtime  # noqa: PLC0415

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: a session asked for it may really use it, so no fallback is forced")
    available = onnxruntime.get_available_providers()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", *available])
    monkeypatch.setattr(ort_runtime, "int8_dot_product", lambda: (False, "x86 without VNNI"))
    with pytest.warns(UserWarning, match="Specified provider 'CUDAExecutionProvider' is not in available"), \
            pytest.raises(ValueError, match=r"precision 'int8' of model 'nuclei' needs a CPU with VNNI .* this one is "
                                            r"x86 without VNNI \(ONNX Runtime could not use CUDA and runs this "
                                            r"session on the CPU\)"):
        cellrt.load_model("nuclei", backend="ort", precision="int8")


def test_int8_gate_refuses_and_leaves_the_folder_as_it_was(tiny_model, dsb_dir, tmp_path):
    from cellrt.export.int8 import QuantizationError, quantize_int8  # noqa: PLC0415

    folder = _copy(tiny_model[0], tmp_path)
    before = (folder / "cellrt.json").read_text()
    with pytest.raises(QuantizationError, match=r"INT8 outputs differ from FP32 by \{.*'embedding': .*, above the "
                                                r"tolerance \{.*'embedding': 1e-09\}; nothing written"):
        quantize_int8(folder, _training_tiles(dsb_dir, count=4), tolerance=1e-9, embedding_tolerance=1e-9)
    assert (folder / "cellrt.json").read_text() == before and not (folder / "model.int8.onnx").exists()
    with pytest.raises(ValueError, match=r"calibration should be \(N, 1, H, W\) tiles"):
        quantize_int8(folder, np.zeros((2, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"load_model: model 'tiny' .* has no int8 ONNX .* `cellrt quantize`"):
        cellrt.load_model(folder, backend="ort", precision="int8")
    with pytest.raises(ValueError, match=r"precision 'int8' is the quantised ONNX for CPUs"):
        cellrt.load_model(folder, backend="tensorrt", precision="int8")
    with pytest.raises(ValueError, match=r"precision should be one of \('auto', 'fp32', 'fp16', 'int8'\)"):
        cellrt.load_model(folder, backend="ort", precision="bf16")


# -- a model as one archive ------------------------------------------------------------------------------------------

def test_model_archive_packs_loads_once_and_is_verified(tiny_model, dsb_dir, tmp_path, monkeypatch):
    import zipfile

    from cellrt.runtime.archive import pack_model, unpack_model

    monkeypatch.setenv("CELLRT_CACHE", str(tmp_path / "cache"))
    archive = pack_model(tiny_model[0], tmp_path / "tiny.zip")
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["cellrt.json", "model.fp16.onnx", "model.onnx"]
    image = tifffile.imread(dsb_dir / "images" / f"{training_data.dsb_ids(dsb_dir, held_out=True)[0]}.tif")
    from_folder = cellrt.load_model(tiny_model[0], backend="ort").run(image)
    from_archive = cellrt.load_model(archive, backend="ort").run(image)
    np.testing.assert_array_equal(from_archive.labels, from_folder.labels)
    folder = unpack_model(archive)
    assert folder.parent == tmp_path / "cache" / "models" and unpack_model(archive) == folder   # extracted once
    # A changed ONNX file inside the archive is caught by its hash, and the message names the file.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data + b"\0" if name == "model.onnx" else data)
    with pytest.raises(ManifestError, match=r"model.onnx: SHA-256 is .* the manifest's 'onnx.sha256' says"):
        cellrt.load_model(tampered, backend="ort")
    # Archives that are not model archives, or would write outside their folder, are refused.
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("cellrt.json", "{}")
        zf.writestr("../outside.onnx", b"x")
    with pytest.raises(ManifestError, match=r"evil.zip: member '../outside.onnx' would extract outside"):
        cellrt.load_model(evil, backend="ort")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ManifestError, match=r"junk.zip: not a readable zip archive"):
        cellrt.load_model(tmp_path / "junk.zip", backend="ort")
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(ManifestError, match=r"empty.zip: no cellrt.json at the top of the archive"):
        cellrt.load_model(empty, backend="ort")
