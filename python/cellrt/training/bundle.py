"""Export a trained bundled model and evaluate it through the engine's own inference path."""
from __future__ import annotations

import json
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile

from ..runtime.manifest import OutputSpec, load_manifest, write_manifest
from . import data
from .train import load_checkpoint

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "models"

NUCLEI_POSTPROCESS = {"method": "instances_from_probability",
                      "params": {"foreground": 0.5, "seed": 0.5, "grow_steps": 8, "min_area": 15}}
ISL_POSTPROCESS = {"method": "segment", "params": {"min_area": 20}}


def _versions() -> dict:
    import onnx  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415
    import torch  # noqa: PLC0415
    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _calibration_tiles(images: list[np.ndarray], size: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = [data.Sample(image, np.zeros(image.shape[-2:], np.uint8)) for image in images]
    tiles, _ = data.random_crops(rng, samples, count, size)
    return tiles


def verify_tiles(name: str, data_dir: Path) -> np.ndarray:
    """The real tiles an export checks ONNX against torch and FP16 against FP32 on
    (nuclei: 8 crops of 16 held-out dsb2018 images; isl-dapi: 8 crops of the field)."""
    if name == "nuclei":
        held_out = data.dsb_ids(data_dir / "dsb2018_fluo", held_out=True)
        images = [s.image for s in data.load_dsb(data_dir / "dsb2018_fluo", held_out[:16])]
    else:
        images = [data.load_isl(data_dir / "isl_phase_fluo")[0]]
    return _calibration_tiles(images, 256, 8, seed=1)


def export_nuclei(checkpoint: Path, data_dir: Path, out: Path, training: dict):
    from ..export import to_onnx  # noqa: PLC0415

    model, info = load_checkpoint(checkpoint)
    calibration = verify_tiles("nuclei", data_dir)
    root = data_dir / "dsb2018_fluo"
    # train_nuclei trains on the first training_images of the training split (all of it unless limited)
    scale = data.object_scale(root, data.dsb_ids(root, held_out=False)[:info.get("training_images")])
    report = to_onnx(
        model, out, name="nuclei", kind="semantic", input_channels=["DNA"],
        outputs=[OutputSpec("logits", "class_logits", data.NUCLEI_CLASSES, activation="softmax"),
                 OutputSpec("embedding", "embedding", size=model.embedding_size)],
        tile_size=256, overlap=48, size_multiple=model.size_multiple, receptive_field=model.receptive_field,
        normalization={"mode": "percentile", "percentiles": list(data.PERCENTILES)},
        object_classes=["nucleus"], boundary_class="boundary", postprocess=NUCLEI_POSTPROCESS,
        description="Nuclei in fluorescence images (DNA stain): background / nucleus interior / boundary, "
                    "a UNet trained on the dsb2018 stage-1 fluorescence images (BBBC038, CC0).",
        training={**training, **info, "architecture": model.config}, verify_tiles=calibration)
    # The object scale the model was trained at, which the engine rescales fields to.
    write_manifest(out, replace(load_manifest(out), scale=scale))
    return report


def export_isl(checkpoint: Path, data_dir: Path, out: Path, training: dict):
    from ..export import to_onnx  # noqa: PLC0415

    model, info = load_checkpoint(checkpoint)
    calibration = verify_tiles("isl-dapi", data_dir)
    return to_onnx(
        model, out, name="isl-dapi", kind="image2image", input_channels=list(data.ISL_PHASE_PLANES),
        outputs=[OutputSpec("prediction", "image", ("DAPI",)),
                 OutputSpec("embedding", "embedding", size=model.embedding_size)],
        tile_size=256, overlap=48, size_multiple=model.size_multiple, receptive_field=model.receptive_field,
        normalization={"mode": "percentile", "percentiles": list(data.PERCENTILES)},
        postprocess=ISL_POSTPROCESS,
        description="In-silico labeling: DAPI (nuclei) predicted from three phase-contrast planes (z03, z06, z09) "
                    "of a z-stack; UNet with ELU trained with the Pearson-correlation loss on the "
                    "in-silico-labeling data of Christiansen et al. 2018 (Apache-2.0).",
        training={**training, **info, "architecture": model.config}, verify_tiles=calibration)


def evaluate_nuclei(folder: Path, data_dir: Path, max_images: int | None = None, precision: str = "auto") -> dict:
    """F1 at IoU 0.5 on the held-out dsb2018 images, against Otsu + label on the same images."""
    from ..kernels.objects import instances_from_mask, match_instances  # noqa: PLC0415
    from ..kernels.threshold import threshold  # noqa: PLC0415
    from ..pipeline import load_model  # noqa: PLC0415

    model = load_model(folder, backend="ort", precision=precision)
    root = data_dir / "dsb2018_fluo"
    ids = data.dsb_ids(root, held_out=True)[:max_images]
    totals = {"model": np.zeros(3), "otsu": np.zeros(3)}
    for image_id in ids:
        image = tifffile.imread(root / "images" / f"{image_id}.tif")
        truth = tifffile.imread(root / "labels" / f"{image_id}.tif")
        predicted = model.run(image, object_diameter=None).labels   # as imaged (the model's own F1)
        otsu, _ = instances_from_mask(image > threshold(image, "otsu"), fill=True)
        for name, labels in (("model", predicted), ("otsu", otsu)):
            m = match_instances(labels, truth)
            totals[name] += (m["tp"], m["fp"], m["fn"])
    f1 = {name: float(2 * tp / (2 * tp + fp + fn)) for name, (tp, fp, fn) in totals.items()}
    return {"held_out_images": len(ids), "f1_iou50": round(f1["model"], 4),
            "otsu_label_f1_iou50": round(f1["otsu"], 4)}


def evaluate_isl(folder: Path, data_dir: Path, holdout_x: int = 768, precision: str = "auto") -> dict:
    """Pearson r on the held-out region and the downstream nuclei agreement."""
    from ..kernels.labeling import measure  # noqa: PLC0415
    from ..kernels.objects import match_instances, segment  # noqa: PLC0415
    from ..pipeline import load_model  # noqa: PLC0415

    model = load_model(folder, backend="ort", precision=precision)
    root = data_dir / "isl_phase_fluo"
    phase = np.stack([tifffile.imread(root / f"{p}.tif") for p in data.ISL_PHASE_PLANES])
    dapi = tifffile.imread(root / "dapi.tif").astype(np.float32)
    region = np.s_[:, holdout_x:]
    result = model.run(np.ascontiguousarray(phase[(slice(None),) + region]))
    predicted = result.prediction[0]
    real = dapi[region]
    r = float(np.corrcoef(predicted.ravel(), real.ravel())[0, 1])
    params = ISL_POSTPROCESS["params"]
    real_labels, real_count = segment(real, **params)
    pred_labels, pred_count = segment(predicted, **params)
    # Per nucleus, matched at IoU >= 0.5: area and intensity of the predicted vs the real stain, both
    # normalised the way the model sees its target so totals are comparable.
    real_norm = data.normalize(real[None])[0]
    match = match_instances(pred_labels, real_labels)
    pairs = _matched_pairs(pred_labels, real_labels)
    out = {"holdout_region": f"x >= {holdout_x}", "pearson_r": round(r, 4), "nuclei_real": real_count,
           "nuclei_predicted": pred_count, "nuclei_f1_iou50": round(match["f1"], 4), "matched_nuclei": len(pairs)}
    if len(pairs) >= 3:
        real_table = measure(real_labels, real_norm, channel_names=["DAPI"], num_objects=real_count)
        pred_table = measure(pred_labels, predicted, channel_names=["DAPI"], num_objects=pred_count)
        p_idx, r_idx = np.array(pairs).T - 1
        for column, key in (("AreaShape_Area", "area_r"), ("Intensity_IntegratedIntensity_DAPI", "total_intensity_r"),
                            ("Intensity_MeanIntensity_DAPI", "mean_intensity_r")):
            out[key] = round(float(np.corrcoef(pred_table[column][p_idx], real_table[column][r_idx])[0, 1]), 4)
    return out


def _matched_pairs(predicted: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> list[tuple[int, int]]:
    both = (predicted > 0) & (truth > 0)
    pairs, counts = np.unique(np.stack([predicted[both], truth[both]]), axis=1, return_counts=True)
    area_p = np.bincount(predicted.ravel())
    area_t = np.bincount(truth.ravel())
    out = []
    for (p, t), inter in zip(pairs.T, counts):
        if inter / (area_p[p] + area_t[t] - inter) >= iou:
            out.append((int(p), int(t)))
    return out


def export_and_evaluate(name: str, checkpoint: Path, data_dir: Path, out: Path | None, *, command: str, seed: int,
                        steps: int, threads: int, max_eval: int | None = None) -> dict:
    folder = Path(out) if out is not None else BUNDLED / name
    training = {"command": command, "seed": seed, "steps": steps, "torch_threads": threads, "versions": _versions()}
    if name == "nuclei":
        report = export_nuclei(checkpoint, data_dir, folder, training)
        metrics = evaluate_nuclei(folder, data_dir, max_eval)
    else:
        report = export_isl(checkpoint, data_dir, folder, training)
        metrics = evaluate_isl(folder, data_dir)
    manifest = load_manifest(folder)
    metrics["onnx_vs_torch_relative_error"] = {k: float(f"{v:.3g}") for k, v in report.max_abs_error.items()}
    doc_training = dict(manifest.training or {})
    doc_training["metrics"] = metrics
    write_manifest(folder, replace(manifest, training=doc_training))
    return {"folder": str(folder), "metrics": metrics}


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2)
