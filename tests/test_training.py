"""The bundled nuclei model's training data: split, augmentation, object scale in the manifest."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellrt.pipeline.scale import equivalent_diameters  # noqa: E402
from cellrt.training import data  # noqa: E402


def test_split_is_the_hash_split_topped_up_per_group(dsb_dir):
    split = data.dsb_split(dsb_dir)
    hashed = set(data.dsb_ids(dsb_dir, held_out=True, split="hash"))
    held = set(data.dsb_ids(dsb_dir, held_out=True))
    train = set(data.dsb_ids(dsb_dir, held_out=False))
    assert hashed <= held and not held & train and held | train == set(split)
    groups = {}
    for image_id, (group, is_held) in split.items():
        groups.setdefault(group, []).append((image_id, is_held))
    for group, rows in groups.items():
        chosen = [i for i, h in rows if h]
        assert len(chosen) == max(math.ceil(0.2 * len(rows)), sum(i in hashed for i, _ in rows)), group
        # the added ones have the lowest hashes of the rest
        added = [i for i in chosen if i not in hashed]
        rest = [i for i, h in rows if not h]
        if added and rest:
            assert max(map(data.id_hash, added)) < min(map(data.id_hash, rest)), group
    with pytest.raises(ValueError, match="split should be"):
        data.dsb_ids(dsb_dir, held_out=True, split="random")


def test_demo_plate_and_its_fields_stay_held_out(dsb_dir):
    from pathlib import Path  # noqa: PLC0415

    sources = Path(data.__file__).parents[1] / "data" / "demo" / "plate" / "SOURCES.tsv"
    on_plate = {line.split("\t")[1] for line in sources.read_text().splitlines()[1:]}
    assert on_plate and on_plate <= set(data.dsb_ids(dsb_dir, held_out=True))


def _fields(dsb_dir, count=6):
    return data.load_dsb_fields(dsb_dir, data.dsb_ids(dsb_dir, held_out=False)[:count])


def test_augmented_crops_are_deterministic_and_shaped(dsb_dir):
    fields = _fields(dsb_dir)
    a = data.augmented_crops(np.random.default_rng(5), fields, 6, 64)
    b = data.augmented_crops(np.random.default_rng(5), fields, 6, 64)
    c = data.augmented_crops(np.random.default_rng(6), fields, 6, 64)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    images, targets = a
    assert images.shape == (6, 1, 64, 64) and images.dtype == np.float32 and np.isfinite(images).all()
    assert targets.shape == (6, 64, 64) and targets.dtype == np.uint8 and targets.max() <= 2


def test_unaugmented_crops_are_the_engines_normalisation(dsb_dir):
    """At native scale with no intensity change a crop is the field normalised as the engine does it."""
    fields = _fields(dsb_dir, 2)
    plain = data.Augmentation(scale=(1.0, 1.0), native_p=1.0, intensity_p=0.0)
    images, targets = data.augmented_crops(np.random.default_rng(0), fields[:1], 3, 128, plain)
    field = fields[0]
    whole = data.normalize(field.image[None])[0]
    classes = data.class_targets(field.labels)
    for image, target in zip(images[:, 0], targets):
        assert _locate(whole, classes, image, target)


def _locate(whole, classes, image, target) -> bool:
    """Whether (image, target) is a crop of (whole, classes) under one of the 8 rotations and flips."""
    size = image.shape[0]
    for k in range(4):
        for flip in (False, True):
            im, tg = (image[:, ::-1], target[:, ::-1]) if flip else (image, target)   # flipped last
            im, tg = np.rot90(im, -k), np.rot90(tg, -k)
            for y, x in np.argwhere(np.abs(whole - im[0, 0]) < 1e-6):
                if y + size > whole.shape[0] or x + size > whole.shape[1]:
                    continue
                if (np.allclose(whole[y, x:x + size], im[0], atol=1e-5)
                        and np.allclose(whole[y:y + size, x:x + size], im, atol=1e-5)
                        and np.array_equal(classes[y:y + size, x:x + size], tg)):
                    return True
    return False


def test_scaled_crops_keep_one_pixel_boundaries(dsb_dir):
    """Class targets are computed after the labels are resampled: at 3x an object's boundary is still
    one pixel wide, so boundaries are a third as large a share of the objects as at native scale (the
    targets of a 1x crop upscaled would have 3-pixel boundaries, the same share)."""
    fields = _fields(dsb_dir, 6)
    share = {}
    for s in (1.0, 3.0):
        aug = data.Augmentation(scale=(s, s), native_p=0.0, intensity_p=0.0)
        _, targets = data.augmented_crops(np.random.default_rng(1), fields, 48, 96, aug)
        share[s] = (targets == 2).sum() / (targets > 0).sum()
        inner, target = targets[:, 1:-1, 1:-1], targets
        neighbours = np.stack([target[:, :-2, 1:-1], target[:, 2:, 1:-1], target[:, 1:-1, :-2], target[:, 1:-1, 2:]])
        assert not ((inner == 1) & (neighbours == 0).any(axis=0)).any()   # interior never touches background
    assert 0.2 < share[3.0] / share[1.0] < 0.5, share


def test_intensity_augmentation_moves_the_normalised_statistics(dsb_dir):
    """Gamma, background, gain, noise: crops are normalised by the augmented field's percentiles, so the
    normalised background and contrast vary from crop to crop, as real fields do."""
    fields = _fields(dsb_dir, 6)
    plain = data.Augmentation(scale=(1.0, 1.0), native_p=1.0, intensity_p=0.0)
    varied = data.Augmentation(scale=(1.0, 1.0), native_p=1.0, intensity_p=1.0, background_p=1.0, noise_p=1.0)
    a, _ = data.augmented_crops(np.random.default_rng(2), fields, 32, 128, plain)
    b, _ = data.augmented_crops(np.random.default_rng(2), fields, 32, 128, varied)
    assert np.std([np.median(x) for x in b]) > np.std([np.median(x) for x in a])
    assert not np.allclose(a, b)


def test_object_scale(dsb_dir):
    ids = data.dsb_ids(dsb_dir, held_out=False)[:20]
    scale = data.object_scale(dsb_dir, ids)
    assert set(scale) == {"object_diameter_px", "diameter_range_px", "measured_from"}
    low, high = scale["diameter_range_px"]
    assert 3 < low <= scale["object_diameter_px"] <= high < 200
    labels = np.zeros((20, 20), np.uint16)
    labels[:4, :4], labels[10:13, 10:13] = 1, 3
    assert np.allclose(equivalent_diameters(labels), 2 * np.sqrt(np.array([16, 9]) / np.pi))


def test_the_scale_section_survives_a_manifest_rewrite(tmp_path):
    import shutil  # noqa: PLC0415
    from dataclasses import replace  # noqa: PLC0415

    import cellrt  # noqa: PLC0415
    from cellrt.runtime.manifest import load_manifest, write_manifest  # noqa: PLC0415

    folder = tmp_path / "nuclei"
    shutil.copytree(cellrt.load_model("nuclei", backend="ort").manifest.folder, folder)
    manifest = load_manifest(folder)
    write_manifest(folder, replace(manifest, training={**manifest.training, "note": "rewritten"}))
    assert load_manifest(folder).scale == manifest.scale is not None


def test_bundled_nuclei_manifest_records_its_scale():
    import cellrt  # noqa: PLC0415

    folder = cellrt.load_model("nuclei", backend="ort").manifest.folder
    scale = json.loads((folder / "cellrt.json").read_text())["scale"]
    low, high = scale["diameter_range_px"]
    assert low < scale["object_diameter_px"] < high and "median" in scale["measured_from"]
