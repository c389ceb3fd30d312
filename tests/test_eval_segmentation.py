"""tools/eval_segmentation.py: its matching and metrics on hand-made cases, its resampling, its diameter
estimate, its bad-input messages, and (with the shared data) its agreement with the rows it printed before."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellrt.kernels import match_instances

TOOL = Path(__file__).resolve().parents[1] / "tools" / "eval_segmentation.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("eval_segmentation", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_tool()


def scores(pred, truth, thresholds=ev.THRESHOLDS):
    m = ev.match(pred, truth, thresholds)
    return m, ev.image_scores(m)


def box(shape, *boxes):
    """Labels 1..N, one per (y0, y1, x0, x1) box, later boxes over earlier ones."""
    out = np.zeros(shape, np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        out[y0:y1, x0:x1] = k
    return out


def disks(shape, centres, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    out = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = k
    return out


def test_identical_labels_score_one_at_every_threshold():
    truth = box((20, 30), (1, 6, 1, 6), (8, 15, 3, 9), (2, 12, 15, 28))
    m, s = scores(truth, truth)
    assert m["tp"] == [3] * 10 and (m["n_pred"], m["n_true"]) == (3, 3)
    assert s["f1"] == [1.0] * 10 and s["ap"] == 1.0 and s["count_error"] == 0.0


def test_a_shifted_object_matches_up_to_its_iou_and_the_dsb_ap_counts_the_thresholds():
    truth = box((12, 14), (0, 10, 0, 10))
    pred = box((12, 14), (0, 10, 2, 12))           # intersection 80, union 120: IoU 2/3
    m, s = scores(pred, truth)
    assert m["tp"] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]   # above 0.50, 0.55, 0.60, 0.65 only
    assert s["ap"] == pytest.approx(0.4)
    assert s["f1"][0] == 1.0 and s["f1"][_index(0.75)] == 0.0
    pi, ti, iou, n_pred, n_true = ev.overlap_pairs(pred, truth)
    assert list(pi) == [1] and list(ti) == [1] and iou[0] == pytest.approx(2 / 3)


def _index(value):
    return [round(v, 2) for v in ev.THRESHOLDS].index(value)


def test_an_iou_of_exactly_the_threshold_is_no_match_as_in_match_instances():
    truth = box((10, 10), (0, 10, 0, 10))
    pred = box((10, 10), (0, 5, 0, 10))            # IoU 50 / 100
    m, s = scores(pred, truth)
    assert m["tp"][0] == 0 and s["f1"][0] == 0.0 and s["ap"] == 0.0
    assert match_instances(pred, truth)["tp"] == 0


def test_split_and_merged_objects():
    # One true object predicted as two pieces of 60 % and 40 %: the larger matches at 0.5, the other is a FP.
    truth = box((10, 10), (0, 10, 0, 10))
    pred = box((10, 10), (0, 6, 0, 10), (6, 10, 0, 10))
    m, s = scores(pred, truth)
    assert m["tp"][:3] == [1, 1, 0] and (m["n_pred"], m["n_true"]) == (2, 1)
    assert s["f1"][0] == pytest.approx(2 / 3) and s["ap_terms"][0] == pytest.approx(0.5)
    assert s["count_error"] == 1.0
    # Two true objects predicted as one: it covers 70 % of the union with the larger.
    truth = box((10, 10), (0, 7, 0, 10), (7, 10, 0, 10))
    pred = np.ones((10, 10), np.int32)
    m, s = scores(pred, truth)
    assert m["tp"][:5] == [1, 1, 1, 1, 0]
    assert s["ap_terms"][0] == pytest.approx(0.5) and s["count_error"] == 0.5


def test_empty_images_are_scored_explicitly():
    empty = np.zeros((8, 8), np.int32)
    one = box((8, 8), (1, 5, 1, 5))
    m, s = scores(empty, empty)
    assert (m["n_pred"], m["n_true"]) == (0, 0) and s["f1"] == [1.0] * 10 and s["ap"] == 1.0
    assert s["count_error"] == 0.0
    m, s = scores(empty, one)     # nothing found
    assert s["f1"] == [0.0] * 10 and s["ap"] == 0.0 and s["count_error"] == 1.0
    m, s = scores(one, empty)     # objects where there are none
    assert s["f1"] == [0.0] * 10 and s["ap"] == 0.0 and s["count_error"] == math.inf
    summary = ev.aggregate([ev.match(empty, empty), ev.match(one, one)])
    assert summary["f1@0.5"] == 1.0 and summary["ap@0.5:0.95"] == 1.0 and summary["median_count_error"] == 0.0


def test_missing_ids_and_sparse_ids_count_the_objects_present():
    truth = box((10, 20), (0, 5, 0, 5), (5, 10, 10, 20))
    truth[truth == 2] = 70000                        # sparse id: renumbered, not a 70001-row table
    pred = box((10, 20), (0, 5, 0, 5), (5, 10, 10, 20)) * 3   # ids 3 and 6: 1, 2, 4, 5 absent
    m, s = scores(pred, truth)
    assert m["tp"] == [2] * 10 and (m["n_pred"], m["n_true"]) == (2, 2)


def test_thresholds_below_one_half_match_greedily_highest_iou_first():
    # One prediction over two true objects, IoU 0.2 with the first and 0.375 with the second: at every
    # threshold below 0.375 it matches the second only, leaving the first a false negative.
    truth = box((10, 30), (0, 10, 0, 8), (0, 10, 8, 14))
    pred = box((10, 30), (0, 10, 4, 20))
    pi, ti, iou, _, _ = ev.overlap_pairs(pred, truth)
    by_true = dict(zip(ti.tolist(), iou.tolist()))
    assert by_true[1] == pytest.approx(40 / (160 + 80 - 40)) and by_true[2] == pytest.approx(60 / 160)
    m = ev.match(pred, truth, thresholds=(0.1, 0.25, 0.35, 0.5))
    assert m["tp"] == [1, 1, 1, 0] and ev.image_scores(m)["ap_terms"][0] == pytest.approx(1 / 2)
    # Two predictions, each best with a different true object: both match.
    pred2 = box((10, 30), (0, 10, 0, 7), (0, 10, 7, 14))
    assert ev.match(pred2, truth, thresholds=(0.2, 0.5, 0.8))["tp"] == [2, 2, 2]
    with pytest.raises(ValueError, match=r"thresholds should be numbers in \[0, 1\)"):
        ev.match(pred, truth, thresholds=(0.5, 1.0))


def random_labels(rng, shape, count, size):
    out = np.zeros(shape, np.int32)
    for k in range(1, count + 1):
        h, w = rng.integers(2, size, 2)
        y, x = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
        out[y:y + h, x:x + w] = k
    return out


@pytest.mark.parametrize("table", ["bincount", "unique"])
def test_matching_agrees_with_match_instances_at_one_half(rng, monkeypatch, table):
    if table == "unique":
        monkeypatch.setattr(ev, "_BINCOUNT_CELLS", 0)
    for trial in range(40):
        truth = random_labels(rng, (48, 64), int(rng.integers(0, 25)), 14)
        # Predictions: the truth jittered (shifted, eroded, merged, missing) or independent boxes.
        if trial % 2:
            pred = np.roll(truth, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
            pred[rng.random(pred.shape) < 0.05] = 0
        else:
            pred = random_labels(rng, (48, 64), int(rng.integers(0, 25)), 14)
        reference = match_instances(pred, truth, 0.5)
        for value in (0.5, 0.75):
            ours = ev.match(pred, truth, (value,))
            ref = match_instances(pred, truth, value)
            assert ours["tp"] == [ref["tp"]]
            assert ours["n_pred"] - ours["tp"][0] == ref["fp"] and ours["n_true"] - ours["tp"][0] == ref["fn"]
        assert ev.image_scores(ev.match(pred, truth))["f1"][0] == pytest.approx(reference["f1"])


def test_aggregate_pools_objects_and_averages_images():
    # Image A: 1 of 1 found; image B: 1 of 3 found with 1 false positive.
    a = {"tp": [1] * 10, "n_pred": 1, "n_true": 1}
    b = {"tp": [1] * 10, "n_pred": 2, "n_true": 3}
    out = ev.aggregate([a, b])
    assert out["f1@0.5"] == pytest.approx(2 * 2 / (3 + 4))                  # pooled
    assert out["mean_f1@0.5"] == pytest.approx((1 + 2 / 5) / 2)              # per image
    assert out["ap@0.5:0.95"] == pytest.approx((1 + 1 / 4) / 2)
    assert out["median_count_error"] == pytest.approx((0 + 1 / 3) / 2)      # median of two values
    assert (out["tp@0.5"], out["fp@0.5"], out["fn@0.5"]) == (2, 1, 2)
    assert out["mean_precision@0.5"] == pytest.approx(0.75) and out["mean_recall@0.5"] == pytest.approx(2 / 3)


def test_rescale_pair_keeps_dtype_shape_and_label_ids():
    truth = disks((60, 80), [(20, 20), (40, 55)], 9).astype(np.uint16)
    image = np.where(truth > 0, 200, 10).astype(np.uint8)
    same = ev.rescale_pair(image, truth, 1)
    assert same[0] is image and same[1] is truth
    for factor in (0.5, 2, 3):
        scaled, scaled_truth = ev.rescale_pair(image, truth, factor)
        assert scaled.dtype == np.uint8 and scaled_truth.dtype == np.uint16
        assert scaled.shape == scaled_truth.shape == (round(60 * factor), round(80 * factor))
        assert set(np.unique(scaled_truth)) == {0, 1, 2}
        assert ev.true_diameter(scaled_truth) == pytest.approx(ev.true_diameter(truth) * factor, rel=0.08)
        assert 10 <= int(scaled.min()) and int(scaled.max()) <= 200


def noisy(rng, truth, fg=180, bg=30, noise=8):
    return np.clip(np.where(truth > 0, fg, bg) + rng.normal(0, noise, truth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("radius", [3, 6, 12, 24])
def test_estimate_diameter_follows_the_object_size(rng, radius):
    shape = (20 * radius, 20 * radius)
    centres = [(y, x) for y in range(2 * radius, shape[0] - 2 * radius, 4 * radius)
               for x in range(2 * radius, shape[1] - 2 * radius, 4 * radius)]
    truth = disks(shape, centres, radius)
    estimate = ev.estimate_diameter(noisy(rng, truth))
    # The 1-px smoothing before Otsu widens 6-px nuclei by about a tenth.
    assert abs(math.log(estimate / ev.true_diameter(truth))) < 0.15, (estimate, ev.true_diameter(truth))
    assert math.isnan(ev.estimate_diameter(np.full((16, 16), 7, np.uint8)))


def test_estimate_diameter_caps_clumps_at_their_inscribed_width(rng):
    # Mostly clumps of three overlapping nuclei in a row, which Otsu leaves as one component each: the plain
    # median equivalent diameter would be ~1.6 d, the cap at 1.4 x the inscribed diameter keeps it under 1.45 d.
    r, truth, k = 8, np.zeros((240, 240), np.int32), 0
    yy, xx = np.mgrid[:240, :240]
    for row, y in enumerate(range(20, 240, 40)):
        for x0 in range(20, 200, 80):
            pieces = 1 if (row + x0) % 3 == 0 else 3
            for j in range(pieces):
                k += 1
                truth[(yy - y) ** 2 + (xx - (x0 + j * 1.7 * r)) ** 2 <= r * r] = k
    image = noisy(rng, truth)
    d = ev.true_diameter(truth)
    estimate = ev.estimate_diameter(image)
    from scipy import ndimage as ndi

    components, _ = ndi.label(image > 100)
    assert ev.true_diameter(components) > 1.5 * d
    assert 0.9 * d < estimate < 1.45 * d, (estimate, d)


def test_classical_sized_splits_touching_nuclei(rng):
    centres = [(30, 30), (30, 52), (80, 40), (80, 100)]           # the first two touch
    truth = disks((120, 140), centres, 11)
    labels = ev.classical_sized(noisy(rng, truth, 160, 20, 6))
    assert labels.dtype == np.int32 and labels.shape == truth.shape and labels.max() == 4
    assert ev.match(labels, truth)["tp"][_index(0.75)] == 4
    assert ev.classical_sized(np.zeros((10, 10), np.uint8)).max() == 0


def test_model_rows_run_as_they_are_and_rescaled(monkeypatch):
    """The real bundled model underneath; the spy only records how each row calls it."""
    real = ev.load_engine_model("nuclei", "fp32")
    calls = []
    original = real.run

    def spy(image, **kwargs):
        calls.append(kwargs.get("object_diameter", "missing"))
        return original(image, **kwargs)

    monkeypatch.setattr(real, "run", spy)
    monkeypatch.setattr(ev, "load_engine_model", lambda name, precision: real)
    pipelines = ev.make_pipelines(["model", "model+rescale", "segment"])
    assert list(pipelines) == ["model", "model+rescale", "segment"]
    for name in ("model", "model+rescale"):
        assert pipelines[name](np.zeros((64, 64), np.uint8), 5.0).shape == (64, 64)
    assert calls == [None, "auto"]
    with pytest.raises(SystemExit, match=r"unknown pipelines \['cellpose'\]"):
        ev.make_pipelines(["cellpose"])


def write_dataset(root: Path, rng, count=3):
    """A tiny dsb2018_fluo-shaped folder: images/<id>.tif uint8 and labels/<id>.tif uint16."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(count):
        centres = [(y + int(dy), x + int(dx)) for (y, x), (dy, dx) in
                   zip([(16, 16), (16, 50), (48, 16), (48, 50), (32, 33)], rng.integers(-2, 3, (5, 2)))]
        truth = disks((64, 72), centres, 5 + k).astype(np.uint16)
        image = np.clip(np.where(truth > 0, 170, 25) + rng.normal(0, 5, truth.shape), 0, 255).astype(np.uint8)
        tifffile.imwrite(root / "images" / f"img{k}.tif", image)
        tifffile.imwrite(root / "labels" / f"img{k}.tif", truth)
    return root


def test_the_tool_runs_end_to_end_and_writes_its_json(tmp_path, rng, capsys):
    data = write_dataset(tmp_path / "dsb2018_fluo", rng)
    out = tmp_path / "eval.json"
    assert ev.main(["--data", str(data), "--split", "all", "--scales", "1,0.5,2", "--quiet",
                    "--pipelines", "classical-sized,segment,otsu+fill,otsu+label", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classical-sized @ 0.5" in printed and "per group at scale 1" in printed and "64x72" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 3 and result["scales"] == ["1", "0.5", "2"]
    assert result["command"].startswith("eval_segmentation.py --data")
    assert len(result["per_image"]) == 9
    for name in ("classical-sized", "segment", "otsu+fill", "otsu+label"):
        for scale in ("1", "0.5", "2"):
            entry = result["summary"][name][scale]
            assert entry["all"]["images"] == 3 and set(entry["groups"]) == {"64x72"}
            assert 0 <= entry["all"]["ap@0.5:0.95"] <= entry["all"]["f1@0.5"] <= 1
    assert result["summary"]["classical-sized"]["1"]["all"]["f1@0.5"] > 0.9
    assert result["diameter"]["2"]["median_abs_log_ratio"] < 0.15


def test_bad_input_names_the_file(tmp_path, rng, monkeypatch):
    data = write_dataset(tmp_path / "dsb2018_fluo", rng, count=1)
    tifffile.imwrite(data / "images" / "img0.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(SystemExit, match=r"img0\.tif: expected a 2-D image, got shape \(2, 8, 8\)"):
        ev.read_pair(data, "img0")
    tifffile.imwrite(data / "images" / "img0.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(SystemExit, match=r"labels/img0\.tif: labels of shape \(64, 72\) for an image of shape \(8, 8\)"):
        ev.read_pair(data, "img0")
    (data / "labels" / "img0.tif").unlink()
    with pytest.raises(SystemExit, match=r"labels/img0\.tif: missing"):
        ev.read_pair(data, "img0")
    with pytest.raises(SystemExit, match=r"no dsb2018_fluo data at .*nowhere"):
        ev.main(["--data", str(tmp_path / "nowhere")])
    monkeypatch.setenv("CELLRT_DATA", str(tmp_path / "elsewhere"))
    assert ev.data_root() == tmp_path / "elsewhere"
    with pytest.raises(SystemExit, match=r"no dsb2018_fluo data at .*elsewhere/dsb2018_fluo \(set CELLRT_DATA"):
        ev.main([])
    for bad in ("0,1", "a", ""):
        with pytest.raises(SystemExit, match=r"--scales should be"):
            ev.parse_scales(bad)


SHARED_DSB = ev.data_root() / "dsb2018_fluo"


@pytest.mark.skipif(not (SHARED_DSB / "labels").is_dir(),
                    reason=f"real data not present at {SHARED_DSB} (set CELLRT_DATA; see shared/data/README.md)")
def test_the_new_rows_reproduce_the_old_ones_on_real_nuclei():
    # The mean per-image F1 at 0.5 of segment and otsu+label equals what the tool printed before
    # (match_instances per image), on the same images.
    every = 60
    old = ev.evaluate(SHARED_DSB, every=every)
    new = ev.evaluate_scales(SHARED_DSB, split="all", scales=(1.0,), every=every,
                             pipelines=("segment", "otsu+fill", "otsu+label"))
    assert new["images"] == old["images"] == 10
    for name in ("segment", "otsu+fill", "otsu+label"):
        ours = new["summary"][name]["1"]["all"]
        assert ours["mean_f1@0.5"] == pytest.approx(old[name]["f1"], abs=1e-12)
        assert ours["mean_precision@0.5"] == pytest.approx(old[name]["precision"], abs=1e-12)
        assert ours["mean_recall@0.5"] == pytest.approx(old[name]["recall"], abs=1e-12)
