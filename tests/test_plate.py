"""Plates end to end: sources and their errors, the streaming pipeline, resume, outputs, report, CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tifffile

import cellrt
from cellrt.io import PlateError, open_plate
from cellrt.io.plate import format_well, pattern_regex, well_position
from cellrt.io.tables import read_table
from cellrt.pipeline.plate import PlateOptions, PlateRun, PlateRunError
from cellrt.training import data as training_data

DEMO = Path(str(resources.files("cellrt") / "data" / "demo" / "plate"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cellrt", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def nuclei():
    return cellrt.load_model("nuclei", backend="ort", threads=2)


@pytest.fixture(scope="module")
def operetta_plate(tmp_path_factory, dsb_dir):
    """Six wells x 2 fields of real nuclei (channel 1) plus a second channel (an inverted copy,
    measured only), named as Operetta/Harmony exports them."""
    root = tmp_path_factory.mktemp("operetta")
    images = (tifffile.imread(dsb_dir / "images" / f"{i}.tif") for i in training_data.dsb_ids(dsb_dir, held_out=True))
    same_size = [image for image in images if image.shape == (256, 256)][-12:]  # a plate's fields share one size
    for index, image in enumerate(same_size):
        row, column, site = index // 6 + 2, index // 2 % 3 + 3, index % 2 + 1
        stem = f"r{row:02d}c{column:02d}f{site:02d}p01"
        tifffile.imwrite(root / f"{stem}-ch1sk1fk1fl1.tiff", image)
        tifffile.imwrite(root / f"{stem}-ch2sk1fk1fl1.tiff", (255 - image).astype(np.uint8))
    return root


def _copy_demo(tmp_path: Path, count: int | None = None) -> Path:
    target = tmp_path / "plate"
    target.mkdir()
    for path in sorted(DEMO.glob("*.tif"))[:count]:
        shutil.copy(path, target / path.name)
    return target


# -- sources --------------------------------------------------------------------------------------------------------

def test_presets_and_patterns_parse_wells_fields_and_channels(operetta_plate):
    demo = open_plate(DEMO)
    assert (demo.name, demo.layout, demo.channels, len(demo.fields)) == ("demo", "imagexpress", ["1"], 48)
    assert demo.wells[:3] == ["A01", "A02", "A03"] and demo.geometry() == (8, 12)
    plate = open_plate(operetta_plate)
    assert plate.layout == "operetta" and plate.channels == ["1", "2"]
    assert plate.wells == ["B03", "B04", "B05", "C03", "C04", "C05"]
    assert [f.field for f in plate.fields_of("B03")] == [1, 2]
    assert pattern_regex("{well}_s{field}_{channel}.tif").fullmatch("B3_s2_DAPI.tif").group("channel") == "DAPI"
    assert format_well(*well_position("af48")) == "AF48" and format_well(15, 23) == "P24"
    with pytest.raises(PlateError, match=r"unknown placeholder \{site\}"):
        pattern_regex("{well}_{site}.tif")


def test_a_layout_that_is_not_a_regular_expression_is_named_not_a_traceback(tmp_path):
    """--layout '(?P<well' (a typo in a hand-written expression) ended the run in re's traceback."""
    with pytest.raises(PlateError, match=r"layout '\(\?P<well': not a valid regular expression \(missing >"):
        pattern_regex("(?P<well")
    (tmp_path / "P_A01_s1_w1.tif").write_bytes(b"")
    result = run_cli("run", str(tmp_path), "--model", "nuclei", "--out", str(tmp_path / "out"), "--layout", "^(?P<well>[A-H")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("cellrt run: layout '^(?P<well>[A-H': not a valid regular expression "
                                     "(unterminated character set)")


def test_instrument_exports_as_they_come(tmp_path, operetta_plate):
    """MetaXpress names without _s (one site) or _w (one wavelength), its _thumb files beside the
    images, Operetta z-stacks (a plane is chosen, the others left aside), channel names with '_'."""
    image = tifffile.imread(sorted(DEMO.glob("*.tif"))[0])
    single = tmp_path / "single_site"
    single.mkdir()
    for name in ("P1_A01_w1.tif", "P1_A01_w2{5AB6C3F4-0C0A-4E4D-9B0B-2B1D3C4E5F60}.tif", "P1_B02_w1.tif",
                 "P1_B02_w2.tif", "P1_A01_w1_thumb{5AB6C3F4-0C0A-4E4D-9B0B-2B1D3C4E5F61}.tif"):
        tifffile.imwrite(single / name, image)
    plate = open_plate(single)
    assert (plate.layout, plate.name, plate.wells, plate.channels) == ("imagexpress", "P1", ["A01", "B02"], ["1", "2"])
    assert [f.field for f in plate.fields] == [1, 1]
    one_wavelength = tmp_path / "one_wavelength"
    one_wavelength.mkdir()
    for name in ("P2_C03_s1.tif", "P2_C03_s2.tif"):
        tifffile.imwrite(one_wavelength / name, image)
    plate = open_plate(one_wavelength)
    assert [(f.well, f.field) for f in plate.fields] == [("C03", 1), ("C03", 2)] and plate.channels == ["1"]

    stack = tmp_path / "stack"
    shutil.copytree(operetta_plate, stack)
    for path in sorted(stack.glob("*p01-*.tiff")):
        shutil.copy(path, path.with_name(path.name.replace("p01-", "p02-")))
    first, second = open_plate(stack), open_plate(stack, z=2)
    assert len(first.fields) == len(second.fields) == 12 and first.other_planes == second.other_planes == 24
    assert {p.name[9:12] for f in second.fields for p in f.files.values()} == {"p02"}
    with pytest.raises(PlateError, match=r"no file matches layout 'operetta' at z 3, time point 1 \(48 file"):
        open_plate(stack, z=3)
    with pytest.raises(PlateError, match=r"z should be a plane number >= 1, got 0"):
        open_plate(stack, z=0)
    with pytest.raises(PlateError, match=r"z=2 was asked for, but layout 'imagexpress' names no \{z\}"):
        open_plate(DEMO, z=2)
    with pytest.raises(PlateError, match=r"layout 'glob' takes every file as one plane"):
        open_plate(DEMO, "glob", timepoint=2)

    regex = pattern_regex("{well}_{channel}_{field}.tif")
    match = regex.fullmatch("B03_phase_z03_2.tif")
    assert (match.group("well"), match.group("channel"), match.group("field")) == ("B03", "phase_z03", "2")
    assert pattern_regex("{well}_s{field}_{channel}.tif").fullmatch("B3_s2_DAPI-488.tif").group("channel") == "DAPI-488"


def test_custom_pattern_and_glob(tmp_path, dsb_dir):
    image = tifffile.imread(next((dsb_dir / "images").glob("*.tif")))
    for name in ("plateX-B3-f1-DAPI.tif", "plateX-B3-f1-GFP.tif", "plateX-B3-f2-DAPI.tif", "plateX-B3-f2-GFP.tif"):
        tifffile.imwrite(tmp_path / name, image)
    plate = open_plate(tmp_path, "{plate}-{well}-f{field}-{channel}.tif")
    assert plate.name == "plateX" and plate.wells == ["B03"] and plate.channels == ["DAPI", "GFP"]
    globbed = open_plate(tmp_path, "glob")
    assert len(globbed.fields) == 4 and globbed.geometry() is None
    with pytest.raises(PlateError, match="match no preset"):
        open_plate(tmp_path)


def test_bad_plates_are_reported_with_their_files(tmp_path, dsb_dir):
    plate = _copy_demo(tmp_path, 6)
    (plate / "demo_A01_s1_w2.tif").write_bytes((plate / "demo_A01_s1_w1.tif").read_bytes())
    with pytest.raises(PlateError, match=r"well A01, field 2 has no file for channel\(s\) \['2'\]"):
        open_plate(plate)
    skipped = open_plate(plate, skip_bad=True)
    assert [(f.well, f.field) for f in skipped.fields] == [("A01", 1)] and len(skipped.rejected) == 5
    (plate / "demo_A01_s1_w2.tif").unlink()
    (plate / "notes.tif").write_bytes(b"x")
    with pytest.raises(PlateError, match=r"1 file\(s\) do not match layout 'imagexpress'.*'notes.tif'"):
        open_plate(plate, "imagexpress")
    (plate / "notes.tif").unlink()
    tifffile.imwrite(plate / "demo_A1_s1_w1.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(PlateError, match="two files for well A01, field 1, channel 1"):
        open_plate(plate, "demo_{well}_s{field}_w{channel}.tif")
    with pytest.raises(PlateError, match="does not exist"):
        open_plate(tmp_path / "nowhere")


# -- the pipeline ----------------------------------------------------------------------------------------------------

def test_plate_counts_equal_the_model_run_field_by_field(tmp_path, nuclei):
    plate = open_plate(DEMO)
    summary = PlateRun(nuclei, plate, tmp_path / "out", PlateOptions(batch_size=5)).run()
    wells = read_table(tmp_path / "out" / "wells.csv")
    expected = {}
    for source in plate.fields:
        image = tifffile.imread(source.files["1"])
        # The plate runs every field at its one scale (the demo's lies in the model's range: factor 1).
        expected[source.well] = expected.get(source.well, 0) + nuclei.run(image, object_diameter=None).count
    assert dict(zip(wells["Metadata_Well"], wells["Count"].astype(int))) == expected
    objects = read_table(tmp_path / "out" / "objects.parquet")
    assert len(objects["ObjectNumber"]) == sum(expected.values())
    assert set(objects["Classify_Class"]) == {"nucleus"}
    assert "Intensity_MeanIntensity_DNA" in objects
    assert summary["fields_processed"] == 48 and summary["fields_per_second"] > 0
    assert set(summary["stage_seconds"]) == {"read", "tile", "infer", "stitch", "postprocess", "measure", "write"}
    timings = read_table(tmp_path / "out" / "timings.csv")
    assert len(timings["latency"]) == 48 and np.all(timings["infer"] > 0)
    # A field's latency spans its own stages (read to measure), not its well's write.
    own = sum(timings[stage] for stage in ("read", "tile", "stitch", "postprocess", "measure"))
    assert np.all(timings["latency"] >= own)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["model"]["onnx_sha256"] == nuclei.manifest.onnx_sha256 and run["options"]["batch_size"] == 5
    assert run["scale"]["factor"] == 1.0 and run["normalization"]["scope"] == "field"


def test_plate_counts_equal_the_kernels_called_directly(tmp_path, nuclei):
    """The issue's check, without cellrt's Model or engine: ONNX Runtime on the bundled ONNX file, then
    cellrt.kernels tile / stitch / instances_from_probability with the manifest's parameters."""
    import onnxruntime as ort

    from cellrt.kernels import instances_from_probability, stitch, tile
    from cellrt.kernels.stitch import percentile_normalization

    plate = open_plate(_copy_demo(tmp_path, 12))
    PlateRun(nuclei, plate, tmp_path / "out").run()
    fields = read_table(tmp_path / "out" / "fields.csv")
    from_run = {(w, int(f)): int(c) for w, f, c in zip(fields["Metadata_Well"], fields["Metadata_Field"],
                                                        fields["Count"])}
    manifest = nuclei.manifest
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(manifest.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    params = manifest.postprocess["params"]
    direct = {}
    for source in plate.fields:
        image = tifffile.imread(source.files["1"]).astype(np.float32)[None]
        scale, offset = percentile_normalization(image, tuple(manifest.normalization["percentiles"]))
        assert image.shape[1:] == (256, 256)   # one 256² tile, the model's tile for a field this size
        batch = tile(image, 256, manifest.overlap, dtype=np.float32, normalize="fixed", scale=scale, offset=offset)
        logits = session.run(["logits"], {session.get_inputs()[0].name: batch.tiles})[0]
        prob = stitch(logits, batch.origins, image.shape[1:], blend=manifest.blend, activation="softmax")
        direct[(source.well, source.field)] = instances_from_probability(prob, **params)[1]
    assert direct == from_run and sum(direct.values()) > 100


def test_a_fields_latency_does_not_wait_for_the_rest_of_its_well(tmp_path, nuclei):
    """One field in flight at a time: field 2 of a well starts only after field 1's result is taken, so a
    latency that ran to the well's write (the definition before) would exceed both fields' own stages."""
    out = tmp_path / "out"
    PlateRun(nuclei, open_plate(_copy_demo(tmp_path, 4)), out,
             PlateOptions(max_fields_in_flight=1, readers=1, workers=1)).run()
    timings = read_table(out / "timings.csv")
    own = sum(timings[stage] for stage in ("read", "tile", "infer", "stitch", "postprocess", "measure"))
    by_field = {(w, int(f)): (latency, spent) for w, f, latency, spent in
                zip(timings["Metadata_Well"], timings["Metadata_Field"], timings["latency"], own)}
    for well in ("A01", "A02"):
        (first, first_own), (_, second_own) = by_field[(well, 1)], by_field[(well, 2)]
        assert first_own <= first < first_own + second_own


def test_second_channel_is_measured_and_mapped_by_name(tmp_path, nuclei, operetta_plate):
    plate = open_plate(operetta_plate)
    with pytest.raises(PlateError, match=r"--channel DNA=1"):
        PlateRun(nuclei, plate, tmp_path / "a")
    run = PlateRun(nuclei, plate, tmp_path / "b", PlateOptions(channel_map={"DNA": "1"}, table_format="csv"))
    run.run()
    objects = read_table(tmp_path / "b" / "objects.csv")
    dna, inverted = objects["Intensity_MeanIntensity_DNA"], objects["Intensity_MeanIntensity_ch2"]
    # channel 2 is 255 - channel 1, pixel by pixel: float64 means of 8-bit sums add to 255 within a few ulp
    # (atol=1e-3 let means rounded to float32, 1e-5 off, through)
    np.testing.assert_allclose(dna + inverted, 255, rtol=1e-12, atol=0)


class _Crash(Exception):
    pass


def test_resume_after_a_crash_gives_identical_tables(tmp_path, nuclei):
    plate = open_plate(DEMO)
    PlateRun(nuclei, plate, tmp_path / "clean").run()

    def crash_after(limit):
        def progress(done, total, well):
            if done >= limit:
                raise _Crash(f"simulated crash after {done} fields")
        return progress

    crashed = PlateRun(nuclei, plate, tmp_path / "crashed")
    with pytest.raises(_Crash):
        crashed.run(progress=crash_after(17))
    written = crashed.completed_wells()
    assert 0 < len(written) < 24
    assert not (tmp_path / "crashed" / "objects.parquet").exists()  # no final table that looks complete
    assert not list((tmp_path / "crashed").rglob("*.partial"))
    with pytest.raises(PlateRunError, match="pass --resume"):
        PlateRun(nuclei, plate, tmp_path / "crashed").run()
    summary = PlateRun(nuclei, plate, tmp_path / "crashed").run(resume=True)
    assert sorted(summary["resumed_wells"]) == sorted(written)
    assert summary["fields_processed"] == 48 - 2 * len(written)
    for name in ("objects.parquet", "wells.csv", "fields.csv", "drift.csv"):
        clean, resumed = read_table(tmp_path / "clean" / name), read_table(tmp_path / "crashed" / name)
        assert list(clean) == list(resumed)
        for column in clean:
            np.testing.assert_array_equal(clean[column], resumed[column], err_msg=f"{name}:{column}")
    other = PlateRun(nuclei, plate, tmp_path / "crashed", PlateOptions(table_format="csv"))
    with pytest.raises(PlateRunError, match="another model, plate or parameters"):
        other.run(resume=True)


def test_resume_after_sigkill_gives_identical_tables(tmp_path):
    """A real kill -9 of `cellrt run` mid-plate (not an exception the run could clean up after)."""
    import signal
    import time

    clean = run_cli("run", str(DEMO), "--model", "nuclei", "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "cellrt", "run", str(DEMO), "--model", "nuclei", "--out",
                                str(out), "--readers", "1", "--workers", "1", "--batch", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((out / "wells").glob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-plate"
    assert not (out / "run.json").exists() and not (out / "objects.parquet").exists()
    resumed = run_cli("run", str(DEMO), "--model", "nuclei", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "wells were already complete" in resumed.stdout
    for name in ("objects.parquet", "wells.csv", "fields.csv", "drift.csv"):
        a, b = read_table(tmp_path / "clean" / name), read_table(out / name)
        assert list(a) == list(b)
        for column in a:
            np.testing.assert_array_equal(a[column], b[column], err_msg=f"{name}:{column}")


def test_ctrl_c_ends_a_run_with_one_line_and_resume_finishes_it(tmp_path):
    """SIGINT (Ctrl-C) mid-plate: no traceback, a line saying to --resume, exit status 130 (the shell's for
    SIGINT); the resumed run completes the plate."""
    import signal
    import time

    out = tmp_path / "interrupted"
    # A shell's background job (`.ci/run &`, nohup) starts with SIGINT ignored, and Python keeps it ignored:
    # the child gets the default disposition back, as a terminal's Ctrl-C finds it.
    process = subprocess.Popen([sys.executable, "-m", "cellrt", "run", str(DEMO), "--model", "nuclei", "--out",
                                str(out), "--readers", "1", "--workers", "1", "--batch", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len(list((out / "wells").glob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("cellrt run: interrupted; the wells finished so far are kept")
    assert "--resume" in stderr.strip().splitlines()[-1]
    resumed = run_cli("run", str(DEMO), "--model", "nuclei", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "wells were already complete" in resumed.stdout
    assert f"results in {out}: objects.parquet, fields.csv" in resumed.stdout   # the files by their names
    assert json.loads((out / "run.json").read_text())["plate"]["root"] == str(DEMO.resolve())


def test_resume_redoes_a_well_that_gained_fields(tmp_path, nuclei):
    """A plate resumed while it is still being imaged: a written well with a new field is redone."""
    plate_dir = _copy_demo(tmp_path, 3)          # A01 fields 1, 2 and A02 field 1
    PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out").run()
    shutil.copy(DEMO / "demo_A02_s2_w1.tif", plate_dir)
    summary = PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out").run(resume=True)
    assert summary["resumed_wells"] == ["A01"] and summary["redone_changed_wells"] == ["A02"]
    wells = read_table(tmp_path / "out" / "wells.csv")
    assert wells["Fields"].tolist() == [2, 2]
    fresh = PlateRun(nuclei, open_plate(plate_dir), tmp_path / "fresh").run()
    assert fresh["fields_processed"] == 4
    np.testing.assert_array_equal(read_table(tmp_path / "fresh" / "wells.csv")["Count"], wells["Count"])


def test_resume_retries_the_fields_that_failed(tmp_path, nuclei):
    """A field that failed under --skip-bad (a TIFF truncated by a copy, say) is not a finished field:
    once the file is put right, --resume redoes its well and the tables are those of a clean run. A
    plate that still gives no result on resume exits 1 again, as its first run did."""
    from cellrt.cli import main

    plate_dir = _copy_demo(tmp_path, 4)          # A01 fields 1, 2 and A02 fields 1, 2
    broken = plate_dir / "demo_A02_s1_w1.tif"
    good = broken.read_bytes()
    broken.write_bytes(good[:300])
    PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out", PlateOptions(skip_bad=True)).run()
    assert list(read_table(tmp_path / "out" / "errors.csv")["Metadata_Well"]) == ["A02"]
    broken.write_bytes(good)
    summary = PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out", PlateOptions(skip_bad=True)).run(resume=True)
    assert summary["resumed_wells"] == ["A01"] and summary["redone_failed_wells"] == ["A02"]
    assert summary["fields_processed"] == 2 and summary["fields_failed"] == 0
    assert len(read_table(tmp_path / "out" / "errors.csv")["Metadata_Well"]) == 0
    PlateRun(nuclei, open_plate(plate_dir), tmp_path / "clean").run()
    for name in ("wells.csv", "fields.csv", "objects.parquet"):
        a, b = read_table(tmp_path / "clean" / name), read_table(tmp_path / "out" / name)
        for column in a:
            np.testing.assert_array_equal(a[column], b[column], err_msg=f"{name}:{column}")

    for path in plate_dir.glob("*.tif"):
        path.write_bytes(b"II*\x00 not a tiff")
    out = str(tmp_path / "nothing")
    args = ["run", str(plate_dir), "--model", "nuclei", "--out", out, "--skip-bad"]
    assert main(args) == 1
    assert main([*args, "--resume"]) == 1


def test_unreadable_field_stops_the_run_or_is_recorded_with_skip_bad(tmp_path, nuclei):
    plate_dir = _copy_demo(tmp_path, 8)
    broken = plate_dir / "demo_A02_s1_w1.tif"
    broken.write_bytes(broken.read_bytes()[:300])  # truncated
    plate = open_plate(plate_dir)
    with pytest.raises(PlateRunError, match=r"well A02, field 1: .*demo_A02_s1_w1.tif: unreadable TIFF"):
        PlateRun(nuclei, plate, tmp_path / "strict").run()
    PlateRun(nuclei, plate, tmp_path / "lenient", PlateOptions(skip_bad=True)).run()
    errors = read_table(tmp_path / "lenient" / "errors.csv")
    assert list(errors["Metadata_Well"]) == ["A02"] and "unreadable TIFF" in errors["Error"][0]
    wells = read_table(tmp_path / "lenient" / "wells.csv")
    assert list(wells["FieldsFailed"].astype(int)) == [0, 1, 0, 0]


def test_a_field_with_nan_pixels_is_named_by_its_file(tmp_path, nuclei):
    plate_dir = _copy_demo(tmp_path, 2)
    path = plate_dir / "demo_A01_s2_w1.tif"
    image = tifffile.imread(path).astype(np.float32)
    image[3, 5] = np.nan
    tifffile.imwrite(path, image)
    with pytest.raises(PlateRunError, match=r"well A01, field 2: .*demo_A01_s2_w1.tif: nuclei: input channel 'DNA' "
                                            r"holds 1 NaN or infinite pixel"):
        PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out").run()


def test_a_run_that_finished_no_well_can_be_run_again_in_its_folder(tmp_path, nuclei):
    """A run stopped by a bad field before any well was written kept nothing: a plain rerun (here with
    --skip-bad) starts over in the same folder; once a well is written, a plain rerun is refused."""
    plate_dir = _copy_demo(tmp_path, 2)   # A01, fields 1 and 2
    broken = plate_dir / "demo_A01_s1_w1.tif"
    broken.write_bytes(broken.read_bytes()[:300])
    plate = open_plate(plate_dir)
    out = tmp_path / "out"
    with pytest.raises(PlateRunError, match="unreadable TIFF"):
        PlateRun(nuclei, plate, out).run()
    assert (out / "run-config.json").is_file() and not list((out / "wells").glob("*.json"))
    summary = PlateRun(nuclei, plate, out, PlateOptions(skip_bad=True)).run()
    assert summary["fields_failed"] == 1 and summary["fields_with_results"] == 1
    with pytest.raises(PlateRunError, match="holds a run already; pass --resume"):
        PlateRun(nuclei, plate, out, PlateOptions(skip_bad=True)).run()


def test_throughput_and_latency_count_only_the_fields_that_gave_a_result(tmp_path, nuclei, capsys):
    """A field that fails to read is done in a millisecond: counted as processed, it raised the throughput and
    pulled the latency towards 0. The numbers are over the fields with results, the failed ones said apart."""
    from cellrt.cli.run import _print_summary

    plate_dir = _copy_demo(tmp_path, 4)
    broken = plate_dir / "demo_A02_s1_w1.tif"
    broken.write_bytes(broken.read_bytes()[:300])
    out = tmp_path / "out"
    summary = PlateRun(nuclei, open_plate(plate_dir), out, PlateOptions(skip_bad=True)).run()
    assert (summary["fields_processed"], summary["fields_with_results"], summary["fields_failed"]) == (4, 3, 1)
    timings = read_table(out / "timings.csv")
    assert sorted(zip(timings["Metadata_Well"], timings["Metadata_Field"].tolist())) == [
        ("A01", 1), ("A01", 2), ("A02", 2)]
    assert summary["fields_per_second"] == pytest.approx(3 / summary["wall_seconds"])
    assert summary["latency_p50_s"] == pytest.approx(float(np.median(timings["latency"])))
    _print_summary(summary, out, out / "report" / "index.html")
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("3 fields in ") and first.endswith("; 1 more field(s) failed, not counted in these "
                                                                "(errors.csv)")


def test_a_plate_where_no_field_gave_a_result_has_no_throughput_to_report(tmp_path):
    """Every file unreadable (--skip-bad): no fields/s or latency made of failures, no empty Performance section."""
    plate_dir = _copy_demo(tmp_path, 4)
    for path in plate_dir.glob("*.tif"):
        path.write_bytes(path.read_bytes()[:300])
    out = tmp_path / "out"
    result = run_cli("run", str(plate_dir), "--model", "nuclei", "--out", str(out), "--skip-bad")
    assert result.returncode == 1, result.stderr     # outputs written, but not a finished plate
    assert "no field gave a result: all 4 failed (errors.csv), so there is no throughput or latency" in result.stdout
    assert "fields/s" not in result.stdout and "stage share" not in result.stdout
    summary = json.loads((out / "run.json").read_text())
    assert (summary["fields_processed"], summary["fields_with_results"], summary["fields_failed"]) == (4, 0, 4)
    assert [summary[k] for k in ("fields_per_second", "latency_p50_s", "latency_p99_s", "infer_share_of_wall")] == [
        None] * 4
    assert summary["stage_share"] == {}
    page = (out / "report" / "index.html").read_text()
    assert "<h2>Performance</h2>" not in page and "fields/s" not in page
    assert "none to report: no field gave a result (4 fields failed, see <a href='#errors'>Errors</a>)" in page


def test_a_field_of_an_unsupported_pixel_type_is_named(tmp_path, nuclei):
    plate_dir = _copy_demo(tmp_path, 4)
    tifffile.imwrite(plate_dir / "demo_A02_s1_w1.tif", np.zeros((256, 256), np.int64))
    with pytest.raises(PlateRunError, match=r"well A02, field 1: .*demo_A02_s1_w1.tif: pixel type int64 is not an "
                                            r"8/16/32-bit integer or float image"):
        PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out").run()


def test_a_field_of_another_size_is_named(tmp_path, nuclei):
    plate_dir = _copy_demo(tmp_path, 4)
    tifffile.imwrite(plate_dir / "demo_A02_s2_w1.tif", np.zeros((100, 120), np.uint8))
    with pytest.raises(PlateRunError, match=r"demo_A02_s2_w1.tif: shape \(100, 120\), but the plate's fields"):
        PlateRun(nuclei, open_plate(plate_dir), tmp_path / "out", PlateOptions(readers=1)).run()


def test_the_odd_sized_field_is_the_one_named_even_when_read_first(tmp_path, nuclei):
    """The plate's field shape is that of most fields (from the TIFF headers), not of whichever
    field a reader thread happens to finish first."""
    plate_dir = _copy_demo(tmp_path, 8)
    tifffile.imwrite(plate_dir / "demo_A01_s1_w1.tif", np.zeros((200, 180), np.uint8))  # first in plate order
    plate = open_plate(plate_dir)
    assert plate.typical_field_shape() == (256, 256)
    with pytest.raises(PlateRunError, match=r"well A01, field 1: .*demo_A01_s1_w1.tif: shape \(200, 180\), but "
                                            r"the plate's fields are \(256, 256\)"):
        PlateRun(nuclei, plate, tmp_path / "strict", PlateOptions(readers=2)).run()
    PlateRun(nuclei, plate, tmp_path / "lenient", PlateOptions(readers=2, skip_bad=True)).run()
    errors = read_table(tmp_path / "lenient" / "errors.csv", as_text=True)
    assert list(zip(errors["Metadata_Well"], errors["Metadata_Field"])) == [("A01", "1")]


def test_skip_bad_records_scan_time_rejections_like_run_time_failures(tmp_path, nuclei):
    """A duplicate file and a field missing a channel are left out with --skip-bad, recorded in
    errors.csv with the columns of fields that fail later, and counted as failed fields of their wells."""
    plate_dir = _copy_demo(tmp_path, 4)   # A01 and A02, fields 1 and 2
    shutil.copy(plate_dir / "demo_A01_s1_w1.tif", plate_dir / "demo_A01_s1_w1.tiff")    # two files, one channel
    (plate_dir / "again").mkdir()
    shutil.copy(plate_dir / "demo_A01_s1_w1.tif", plate_dir / "again")                  # and a third, elsewhere
    shutil.copy(plate_dir / "demo_A02_s1_w1.tif", plate_dir / "demo_A03_s1_w2.tif")     # A03: channel 2 only
    shutil.copy(plate_dir / "demo_A02_s1_w1.tif", plate_dir / "demo_A02_s1_w2.tif")
    shutil.copy(plate_dir / "demo_A02_s2_w1.tif", plate_dir / "demo_A02_s2_w2.tif")
    with pytest.raises(PlateError, match=r"two files for well A01, field 1, channel 1"):
        open_plate(plate_dir)
    plate = open_plate(plate_dir, skip_bad=True)
    assert sorted((f.well, f.field) for f in plate.fields) == [("A02", 1), ("A02", 2)]
    out = tmp_path / "out"
    PlateRun(nuclei, plate, out, PlateOptions(skip_bad=True, channel_map={"DNA": "1"})).run()
    header = (out / "errors.csv").read_text().splitlines()[0]
    assert header == "Metadata_Well,Metadata_Field,Files,Error"
    errors = read_table(out / "errors.csv", as_text=True)
    assert sorted(zip(errors["Metadata_Well"], errors["Metadata_Field"])) == [
        ("A01", "1"), ("A01", "2"), ("A03", "1")]
    duplicate = list(errors["Metadata_Well"]).index("A01")   # one row for the field, every copy named
    assert errors["Files"][duplicate].count("demo_A01_s1_w1.tif") == 3 and "again/demo_A01_s1_w1.tif" in (
        errors["Error"][duplicate])
    wells = read_table(out / "wells.csv", as_text=True)
    assert list(wells["Metadata_Well"]) == ["A01", "A02", "A03"]
    assert list(wells)[0] == "Metadata_Plate" and set(wells["Metadata_Plate"]) == {plate.name}
    assert list(wells["FieldsFailed"]) == ["2", "0", "1"] and list(wells["Fields"]) == ["2", "2", "1"]
    # A well none of whose fields was measured: its count is missing (not 0, "no cells"), as its means are.
    assert wells["Count"][0] == "" and wells["MeanArea"][0] == ""   # missing, not 0 and not "nan"
    assert wells["Count"][1] != "" and "." not in wells["Count"][1]
    fields = read_table(out / "fields.csv", as_text=True)
    failed = [i for i, e in enumerate(fields["Error"]) if e]
    assert failed and all(fields["Count"][i] == "" for i in failed)
    # Counts stay integers beside the failed fields' missing ones (not 24.0).
    counted = [c for c in fields.keys() if c == "Count" or c.startswith("Count_")]
    assert all("." not in v for c in counted for v in fields[c]), {c: list(fields[c]) for c in counted}
    fields = read_table(out / "fields.csv", as_text=True)
    assert [(w, f) for w, f in zip(fields["Metadata_Well"], fields["Metadata_Field"])] == [
        ("A01", "1"), ("A01", "2"), ("A02", "1"), ("A02", "2"), ("A03", "1")]


def _count_map_texts(monkeypatch) -> dict:
    """The cell texts of the report's 'Objects per well' map by well, filled in when the report is written.
    A spy, not a stand-in: every figure is still rendered, so a map that cannot be drawn fails the test."""
    from cellrt.report import plate_report

    texts = {}
    render = plate_report._figure_png

    def record(fig):
        ax = fig.axes[0]
        if ax.get_title() == "Objects per well":
            for text in ax.texts:
                x, y = text.get_position()
                texts[format_well(int(round(y)), int(round(x)))] = text.get_text()
        return render(fig)

    monkeypatch.setattr(plate_report, "_figure_png", record)
    return texts


def test_a_well_rejected_when_scanned_is_on_the_plate_maps_and_in_the_plate_totals(tmp_path, nuclei, monkeypatch):
    """A plate otherwise A01-A02 whose H12 was rejected when scanned (two files for one channel): the plate's
    geometry came from the fields left to read, (2, 3), so H12 fell outside every map, and the totals left it
    out. It is a well of the plate: on the maps as failed, counted, and the rejection said."""
    from cellrt.report import write_plate_report

    plate_dir = _copy_demo(tmp_path, 4)   # A01 and A02, fields 1 and 2
    shutil.copy(plate_dir / "demo_A01_s1_w1.tif", plate_dir / "demo_H12_s1_w1.tif")
    shutil.copy(plate_dir / "demo_A01_s1_w1.tif", plate_dir / "demo_H12_s1_w1.tiff")
    plate = open_plate(plate_dir, skip_bad=True)
    assert plate.wells == ["A01", "A02"] and plate.imaged_wells == ["A01", "A02", "H12"]
    assert plate.geometry() == (8, 12)
    out = tmp_path / "out"
    summary = PlateRun(nuclei, plate, out, PlateOptions(skip_bad=True)).run()
    assert summary["plate"]["geometry"] == (8, 12) and summary["fields_processed"] == 4
    assert {k: summary["plate"][k] for k in ("wells", "fields", "rejected_fields", "rejected_wells")} == {
        "wells": 3, "fields": 5, "rejected_fields": 1, "rejected_wells": 1}
    texts = _count_map_texts(monkeypatch)
    page = write_plate_report(out).read_text()
    assert texts["H12"] == "failed" and texts["A01"].isdigit() and len(texts) == 3
    assert ("demo (5 fields in 3 wells, layout imagexpress); 1 field rejected when the plate was scanned (1 well "
            "had no field left), see <a href='#errors'>Errors</a>") in page
    assert "every field failed in 1: H12" in page


def test_a_plate_whose_every_field_was_rejected_when_scanned_counts_them(tmp_path, nuclei, monkeypatch):
    """It said '0 fields in 0 wells': the fields it has are all rejected ones."""
    from cellrt.report import write_plate_report

    plate_dir = _copy_demo(tmp_path, 2)   # A01, fields 1 and 2, each with a second file for its channel
    for path in sorted(plate_dir.glob("*.tif")):
        shutil.copy(path, path.with_suffix(".tiff"))
    plate = open_plate(plate_dir, skip_bad=True)
    assert plate.fields == [] and plate.imaged_wells == ["A01"]
    out = tmp_path / "out"
    summary = PlateRun(nuclei, plate, out, PlateOptions(skip_bad=True)).run()
    assert {k: summary["plate"][k] for k in ("wells", "fields", "rejected_fields", "rejected_wells")} == {
        "wells": 1, "fields": 2, "rejected_fields": 2, "rejected_wells": 1}
    _count_map_texts(monkeypatch)
    page = write_plate_report(out).read_text()
    assert "demo (2 fields in 1 well, layout imagexpress); 2 fields rejected when the plate was scanned" in page
    assert "every one was rejected when the plate was scanned (--skip-bad), so the run had no field left" in page


def test_csv_tables_keep_identifiers_as_written(tmp_path, nuclei):
    """A numeric plate barcode and integer ids stay as they were written when the wells' CSV tables
    are joined into objects.csv (they used to come back as 20240101.0, 1.0)."""
    plate_dir = tmp_path / "plate"
    plate_dir.mkdir()
    for path in sorted(DEMO.glob("*.tif"))[:4]:
        shutil.copy(path, plate_dir / path.name.replace("demo_", "20240101_"))
    out = tmp_path / "out"
    PlateRun(nuclei, open_plate(plate_dir), out, PlateOptions(table_format="csv")).run()
    objects = read_table(out / "objects.csv", as_text=True)
    well_file = read_table(next((out / "wells").glob("A01.objects.csv")), as_text=True)
    assert set(objects["Metadata_Plate"]) == {"20240101"} and set(objects["Metadata_Field"]) == {"1", "2"}
    first = len(well_file["ObjectNumber"])
    for column in well_file:
        assert list(objects[column][:first]) == list(well_file[column]), column
    assert objects["ObjectNumber"][0] == "1"


def test_field_and_well_summaries_have_the_same_columns(tmp_path, nuclei):
    plate_dir = _copy_demo(tmp_path, 4)
    out = tmp_path / "out"
    PlateRun(nuclei, open_plate(plate_dir), out).run()
    fields, wells = read_table(out / "fields.csv"), read_table(out / "wells.csv")
    summary = [c for c in wells if c.startswith(("Count_", "Fraction_", "Mean", "Median"))]
    assert {"Fraction_nucleus", "MedianArea", "Median_Intensity_MeanIntensity_DNA"} <= set(summary)
    assert set(summary) <= set(fields)
    for name in ("nucleus",):
        assert np.allclose(fields[f"Fraction_{name}"], fields[f"Count_{name}"] / fields["Count"])


def test_a_plate_without_objects_keeps_the_intensity_columns_in_wells_csv(tmp_path, nuclei):
    """Empty wells (no cells, or a blank plate) keep every summary column, missing: wells.csv lost its
    Mean_/Median_Intensity columns when no well of the plate had an object, while fields.csv kept them, so
    the columns of a plate's tables depended on what its images held."""
    plate_dir = tmp_path / "plate"
    plate_dir.mkdir()
    for well in ("A01", "A02"):
        tifffile.imwrite(plate_dir / f"P_{well}_s1_w1.tif", np.full((64, 64), 1000, np.uint16))
    out = tmp_path / "out"
    PlateRun(nuclei, open_plate(plate_dir), out).run()
    fields, wells = read_table(out / "fields.csv"), read_table(out / "wells.csv")
    assert list(wells["Count"]) == [0, 0]
    summary = ["Count", "Count_nucleus", "Fraction_nucleus", "MeanArea", "MedianArea",
               "Mean_Intensity_MeanIntensity_DNA", "Median_Intensity_MeanIntensity_DNA"]
    assert set(summary) <= set(wells) and set(summary) <= set(fields)
    assert list(read_table(out / "wells.csv", as_text=True)["Median_Intensity_MeanIntensity_DNA"]) == ["", ""]


# -- report and CLI --------------------------------------------------------------------------------------------------

def test_cellrt_demo_writes_tables_and_a_report(tmp_path):
    out = tmp_path / "demo"
    for _ in range(2):  # a second run starts afresh in the same folder
        result = run_cli("demo", "--out", str(out))
        assert result.returncode == 0, result.stdout + result.stderr
    assert "48 fields in" in result.stdout and "report:" in result.stdout
    page = (out / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "Objects per well" in page
    assert (out / "report" / "count.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Outline thumbnails of 16 wells spread over the plate, embedded in the report.
    thumbnails = sorted(p.name for p in (out / "thumbnails").glob("*.png"))
    assert len(thumbnails) == 16 and thumbnails[0] == "A01_f01.png" and thumbnails[-1] == "B12_f01.png"
    assert "Segmentation check" in page and page.count("data:image/png;base64,") >= 4 + 16
    wells = read_table(out / "wells.csv")
    assert len(wells["Metadata_Well"]) == 24 and wells["Count"].sum() > 500


def test_cellrt_run_cli_with_channel_map_and_errors(tmp_path, operetta_plate):
    out = tmp_path / "run"
    result = run_cli("run", str(operetta_plate), "--model", "nuclei", "--out", str(out), "--channel", "DNA=1",
                     "--format", "csv", "--batch", "3", "--save-labels", "--save-predictions",
                     "--images-format", "ome-zarr")
    assert result.returncode == 0, result.stderr
    assert (out / "objects.csv").is_file()
    assert len(open_plate(out / "images.ome.zarr").fields) == 12
    assert "fields/s" in result.stdout and "p99" in result.stdout
    again = run_cli("run", str(operetta_plate), "--model", "nuclei", "--out", str(out), "--channel", "DNA=1",
                    "--format", "csv")
    assert again.returncode == 1 and "pass --resume" in again.stderr
    bad = run_cli("run", str(operetta_plate), "--model", "nuclei", "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "--channel DNA=1" in bad.stderr
    # Output folders that cannot be: a message naming the path, no traceback.
    (tmp_path / "a-file").write_text("")
    for place, why in ((tmp_path / "a-file", "is an existing file"), (tmp_path / "a-file" / "below", "cannot create")):
        result = run_cli("run", str(operetta_plate), "--model", "nuclei", "--out", str(place), "--channel", "DNA=1")
        assert result.returncode == 1 and f"{place}: " in result.stderr and why in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.int8
def test_cellrt_run_int8_and_the_tip_that_names_it(tmp_path, operetta_plate):
    # FP32 on the CPU for a model with a gated INT8 file: the summary says so, with the manifest's held-out numbers.
    fp32 = run_cli("run", str(operetta_plate), "--model", "nuclei", "--out", str(tmp_path / "fp32"), "--channel",
                   "DNA=1")
    manifest = cellrt.load_model("nuclei", backend="ort").manifest
    assert (f"tip: nuclei also ships an INT8 network checked against this one (held-out f1_iou50 "
            f"{manifest.int8['metrics']['f1_iou50']} vs {manifest.training['metrics']['f1_iou50']} in FP32): "
            "`cellrt run ... --precision int8`") in fp32.stdout
    int8 = run_cli("run", str(operetta_plate), "--model", "nuclei", "--out", str(tmp_path / "int8"), "--channel",
                   "DNA=1", "--precision", "int8")
    assert int8.returncode == 0 and "(ort, int8)" in int8.stdout and "tip:" not in int8.stdout


# -- OME-Zarr HCS ----------------------------------------------------------------------------------------------------

def _write_ome_zarr_plate(root: Path, tiff_plate, zarr_format: int) -> Path:
    """The demo plate's first wells as an NGFF HCS plate (0.4 on Zarr v2, 0.5 on Zarr v3), written
    with zarr itself: two channels (the nuclei, and the nuclei inverted), axes (c, y, x) for 0.4 and
    (t, c, z, y, x) for 0.5, channel names in the omero metadata."""
    zarr = pytest.importorskip("zarr", reason="zarr not available")
    version = "0.4" if zarr_format == 2 else "0.5"

    def attrs(group, doc):
        group.attrs.update(doc if zarr_format == 2 else {"ome": {"version": version, **doc}})

    plate = zarr.open_group(str(root), mode="w", zarr_format=zarr_format)
    wells = tiff_plate.wells[:3]
    rows = sorted({w[0] for w in wells})
    columns = sorted({str(int(w[1:])) for w in wells}, key=int)
    attrs(plate, {"plate": {"name": "zarr-demo", "rows": [{"name": r} for r in rows],
                            "columns": [{"name": c} for c in columns],
                            "wells": [{"path": f"{w[0]}/{int(w[1:])}", "rowIndex": rows.index(w[0]),
                                       "columnIndex": columns.index(str(int(w[1:])))} for w in wells],
                            **({"version": version} if zarr_format == 2 else {})}})
    axes = ["c", "y", "x"] if zarr_format == 2 else ["t", "c", "z", "y", "x"]
    for well in wells:
        well_group = plate.require_group(f"{well[0]}/{int(well[1:])}")
        fields = tiff_plate.fields_of(well)
        attrs(well_group, {"well": {"images": [{"path": str(i)} for i in range(len(fields))]}})
        for index, source in enumerate(fields):
            image = tifffile.imread(source.files["1"])
            data = np.stack([image, 255 - image])
            if zarr_format == 3:
                data = data[None, :, None]
            image_group = well_group.require_group(str(index))
            array = image_group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=data.shape)
            array[...] = data
            attrs(image_group, {"multiscales": [{"axes": [{"name": a} for a in axes], "datasets": [{"path": "0"}]}],
                                "omero": {"channels": [{"label": "DNA"}, {"label": "inverted"}]}})
    return root


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_plate_gives_the_same_objects_as_its_tiffs(tmp_path, nuclei, zarr_format):
    tiffs = open_plate(DEMO)
    root = _write_ome_zarr_plate(tmp_path / "plate.zarr", tiffs, zarr_format)
    plate = open_plate(root)
    assert (plate.layout, plate.name, plate.channels) == ("ome-zarr", "zarr-demo", ["DNA", "inverted"])
    assert plate.wells == tiffs.wells[:3] and len(plate.fields) == 6
    assert_same_objects_as_the_tiff_folder(nuclei, plate, tmp_path)


def assert_same_objects_as_the_tiff_folder(nuclei, plate, tmp_path: Path) -> None:
    """``plate`` holds the demo plate's first 6 fields as channels DNA and inverted (255 - DNA):
    its objects equal those of the same fields read from the TIFF folder."""
    PlateRun(nuclei, plate, tmp_path / "converted").run()
    PlateRun(nuclei, open_plate(_copy_demo(tmp_path, 6)), tmp_path / "tiff").run()
    converted = read_table(tmp_path / "converted" / "objects.parquet")
    from_tiff = read_table(tmp_path / "tiff" / "objects.parquet")
    for column in ("Metadata_Well", "Metadata_Field", "AreaShape_Area", "Intensity_MeanIntensity_DNA"):
        np.testing.assert_array_equal(converted[column], from_tiff[column])
    np.testing.assert_allclose(converted["Intensity_MeanIntensity_DNA"] + converted["Intensity_MeanIntensity_inverted"],
                               255, rtol=1e-12, atol=0)


def test_ome_zarr_errors_name_the_path(tmp_path):
    zarr = pytest.importorskip("zarr", reason="zarr not available")
    group = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w", zarr_format=2)
    group.attrs.update({"plate": {"wells": [{"path": "A/1"}], "rows": [{"name": "A"}], "columns": [{"name": "1"}]}})
    with pytest.raises(PlateError, match=r"bad.zarr/A/1: well listed in the plate metadata is missing"):
        open_plate(tmp_path / "bad.zarr", "ome-zarr")


# -- OME-TIFF plates ------------------------------------------------------------------------------------------------

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _ome_pixels(image_id: int, shape, order: str, size_z: int, tiff_data: str) -> str:
    return (f'<Image ID="Image:{image_id}" Name="field {image_id}"><Pixels ID="Pixels:{image_id}" '
            f'DimensionOrder="{order}" Type="uint8" SizeX="{shape[1]}" SizeY="{shape[0]}" SizeC="2" '
            f'SizeZ="{size_z}" SizeT="1"><Channel ID="Channel:{image_id}:0" Name="DNA"/>'
            f'<Channel ID="Channel:{image_id}:1" Name="inverted"/>{tiff_data}</Pixels></Image>')


def _ome_plate_xml(wells: list[str], fields_per_well: list[int], images: str, extra: str = "") -> str:
    body, index = [], 0
    for w, (well, count) in enumerate(zip(wells, fields_per_well)):
        row, column = well_position(well)
        samples = "".join(f'<WellSample ID="WellSample:{w}:{k}" Index="{index + k}"><ImageRef ID="Image:{index + k}"/>'
                          f'</WellSample>' for k in range(count))
        body.append(f'<Well ID="Well:{w}" Row="{row}" Column="{column}">{samples}</Well>')
        index += count
    return (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}" Creator="cellrt tests">{extra}'
            f'<Plate ID="Plate:0" Name="ome-tiff-demo">{"".join(body)}</Plate>{images}</OME>')


def _write_ome_tiff_plate(root: Path, tiff_plate, *, multi_file: bool) -> Path:
    """The demo plate's first three wells as an OME-TIFF plate with two channels (the nuclei, and
    the nuclei inverted), written with tifffile and hand-made OME-XML as instrument software does.

    One file: dimension order XYZCT with two z planes (the second all zeros), so reading the right
    page for (channel, z=0) is what makes the objects match. Multi-file: one binary-only file per
    field and a .companion.ome holding the plate, TiffData with UUID FileName and no IFD."""
    root.mkdir()
    wells = tiff_plate.wells[:3]
    fields = [source for well in wells for source in tiff_plate.fields_of(well)]
    images_xml, planes = [], []
    for index, source in enumerate(fields):
        image = tifffile.imread(source.files["1"])
        channels = [image, (255 - image).astype(np.uint8)]
        if multi_file:
            name = f"field{index}.ome.tif"
            tiff_data = f'<TiffData><UUID FileName="{name}">urn:uuid:0000-{index}</UUID></TiffData>'
            images_xml.append(_ome_pixels(index, image.shape, "XYCZT", 1, tiff_data))
            binary_only = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}">'
                           f'<BinaryOnly MetadataFile="plate.companion.ome" UUID="urn:uuid:plate"/></OME>')
            with tifffile.TiffWriter(root / name, ome=False) as tif:
                for page, plane in enumerate(channels):
                    tif.write(plane, description=binary_only if page == 0 else None, metadata=None)
        else:
            tiff_data = f'<TiffData IFD="{len(planes)}" PlaneCount="4"/>'
            images_xml.append(_ome_pixels(index, image.shape, "XYZCT", 2, tiff_data))
            for plane in channels:
                planes += [plane, np.zeros_like(plane)]   # z = 0, z = 1 of each channel
    xml = _ome_plate_xml(wells, [len(tiff_plate.fields_of(w)) for w in wells], "".join(images_xml))
    if multi_file:
        (root / "plate.companion.ome").write_text(xml)
        return root
    with tifffile.TiffWriter(root / "plate.ome.tif", ome=False) as tif:
        for page, plane in enumerate(planes):
            tif.write(plane, description=xml if page == 0 else None, metadata=None)
    return root / "plate.ome.tif"


@pytest.mark.parametrize("multi_file", [False, True], ids=["one-file", "companion"])
def test_ome_tiff_plate_gives_the_same_objects_as_its_tiffs(tmp_path, nuclei, multi_file):
    tiffs = open_plate(DEMO)
    path = _write_ome_tiff_plate(tmp_path / "ome", tiffs, multi_file=multi_file)
    plate = open_plate(path)
    assert (plate.layout, plate.name, plate.channels) == ("ome-tiff", "ome-tiff-demo", ["DNA", "inverted"])
    assert plate.wells == tiffs.wells[:3] and len(plate.fields) == 6
    if multi_file:
        assert open_plate(path / "field0.ome.tif").wells == plate.wells   # binary-only file -> its companion
    assert_same_objects_as_the_tiff_folder(nuclei, plate, tmp_path)


def test_ome_tiff_errors_name_the_file(tmp_path):
    image = np.zeros((32, 32), np.uint8)
    # No OME-XML at all.
    tifffile.imwrite(tmp_path / "plain.ome.tif", image, ome=False)
    with pytest.raises(PlateError, match=r"plain.ome.tif: no OME-XML"):
        open_plate(tmp_path / "plain.ome.tif")
    # An image without a plate.
    tifffile.imwrite(tmp_path / "single.ome.tif", image)
    with pytest.raises(PlateError, match=r"single.ome.tif: OME-XML has no Plate element"):
        open_plate(tmp_path / "single.ome.tif")
    # A plate whose image has fewer pages than its TiffData claims.
    xml = _ome_plate_xml(["B02"], [1], _ome_pixels(0, image.shape, "XYCZT", 1, '<TiffData IFD="0" PlaneCount="2"/>'))
    short = tmp_path / "short" / "plate.ome.tif"
    short.parent.mkdir()
    tifffile.imwrite(short, image, description=xml, metadata=None, ome=False)
    plate = open_plate(short.parent)
    assert plate.fields[0].well == "B02"
    with pytest.raises(PlateError, match=r"plate.ome.tif: has 1 pages; the OME-XML maps channel inverted to page 1 \(well B02, field 1\)"):
        cellrt.io.plate.read_field(plate.fields[0], plate.channels)
    # A channel with no page at all, and a companion pointing to a missing file.
    xml = _ome_plate_xml(["A01"], [1], _ome_pixels(0, image.shape, "XYCZT", 1, '<TiffData IFD="0" PlaneCount="1"/>'))
    tifffile.imwrite(tmp_path / "nochan.ome.tif", image, description=xml, metadata=None, ome=False)
    with pytest.raises(PlateError, match=r"well A01, field 1.*no TiffData maps channel\(s\) \['inverted'\]"):
        open_plate(tmp_path / "nochan.ome.tif")
    companion = tmp_path / "lost" / "plate.companion.ome"
    companion.parent.mkdir()
    companion.write_text(_ome_plate_xml(["A01"], [1], _ome_pixels(
        0, image.shape, "XYCZT", 1, '<TiffData><UUID FileName="gone.ome.tif">urn:uuid:1</UUID></TiffData>')))
    with pytest.raises(PlateError, match=r"gone.ome.tif: referenced by the OME-XML but missing"):
        open_plate(companion)


# -- label and prediction images ------------------------------------------------------------------------------------

@pytest.mark.parametrize("image_format", ["tiff", "ome-zarr"])
def test_label_and_prediction_images_equal_the_model_run(tmp_path, nuclei, image_format):
    plate = open_plate(_copy_demo(tmp_path, 5))   # wells with one and two fields
    out = tmp_path / "out"
    PlateRun(nuclei, plate, out, PlateOptions(save_labels=True, save_predictions=True,
                                              image_format=image_format)).run()
    classes = list(nuclei.manifest.dense_output.channels)
    if image_format == "ome-zarr":
        zarr = pytest.importorskip("zarr", reason="zarr not available")
        written = open_plate(out / "images.ome.zarr")   # the output plate reads back as a plate
        assert (written.layout, written.name, written.channels) == ("ome-zarr", plate.name, classes)
        assert [(s.well, s.field) for s in written.fields] == [(s.well, s.field) for s in plate.fields]
        root = zarr.open_group(str(out / "images.ome.zarr"), mode="r")
    for source in plate.fields:
        expected = nuclei.run(tifffile.imread(source.files["1"]))
        if image_format == "tiff":
            labels = tifffile.imread(out / "labels" / f"{source.well}_f{source.field:02d}.tif")
            path = out / "predictions" / f"{source.well}_f{source.field:02d}.ome.tif"
            prediction = tifffile.imread(path)
            with tifffile.TiffFile(path) as tif:
                assert all(f'Name="{c}"' in tif.ome_metadata for c in classes)
        else:
            row, column = well_position(source.well)
            field_group = root[f"{'ABCDEFGH'[row]}/{column + 1}/{source.field}"]
            assert field_group["labels"].attrs["labels"] == ["cells"]
            labels = np.asarray(field_group["labels/cells/0"])
            prediction = np.asarray(field_group["0"])
            assert [c["label"] for c in field_group.attrs["omero"]["channels"]] == classes
        np.testing.assert_array_equal(labels, expected.labels)
        np.testing.assert_allclose(prediction, expected.prediction, rtol=0, atol=1e-6)


def test_image_outputs_need_a_known_format(tmp_path, nuclei):
    with pytest.raises(ValueError, match=r"image_format should be one of \('tiff', 'ome-zarr'\), got 'png'"):
        PlateRun(nuclei, open_plate(DEMO), tmp_path, PlateOptions(image_format="png"))


def test_thumbnail_outlines_follow_the_labels(tmp_path):
    from cellrt.pipeline.plate import write_thumbnail

    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 10:30] = 1
    image = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    write_thumbnail(tmp_path / "t.png", image, labels)
    import matplotlib.image

    rgb = matplotlib.image.imread(tmp_path / "t.png")[..., :3]
    yellow = (rgb[..., 0] > 0.99) & (rgb[..., 2] < 0.01)
    outline = np.zeros_like(yellow)
    outline[10:20, 10:30] = True
    outline[11:19, 11:29] = False   # the object's pixels on its four sides, nothing inside or outside
    np.testing.assert_array_equal(yellow, outline)


def test_thumbnail_of_a_large_field_is_block_means_with_any_outline_per_block(tmp_path, dsb_dir):
    """Fields above THUMBNAIL_SIDE are reduced by an integer step: each thumbnail pixel is the mean of
    its block of normalised, clipped pixels, yellow if any pixel of the block is on an outline."""
    import matplotlib.image
    import tifffile

    from cellrt.kernels import label
    from cellrt.kernels.stitch import percentile_normalization
    from cellrt.pipeline.plate import THUMBNAIL_SIDE, write_thumbnail

    nuclei = tifffile.imread(sorted((dsb_dir / "images").glob("*.tif"))[3])
    image = np.tile(nuclei, (5, 4))[:1001, :703].astype(np.uint16) * 257   # not a multiple of the step
    labels, _ = label(image > np.percentile(image, 80))
    write_thumbnail(tmp_path / "t.png", image, labels)
    rgb = matplotlib.image.imread(tmp_path / "t.png")[..., :3]
    step = -(-1001 // THUMBNAIL_SIDE)
    h, w = 1001 // step, 703 // step
    assert rgb.shape == (h, w, 3)
    scale, offset = percentile_normalization(image[None], (1.0, 99.8))
    grey = np.clip((image.astype(np.float64) - offset[0]) * scale[0], 0, 1)[:h * step, :w * step]
    expected_grey = grey.reshape(h, step, w, step).mean(axis=(1, 3))
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    on_outline = (centre > 0) & ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre) |
                                 (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
    expected_yellow = on_outline[:h * step, :w * step].reshape(h, step, w, step).any(axis=(1, 3))
    yellow = (rgb[..., 0] > 0.99) & (rgb[..., 1] > 0.84) & (rgb[..., 1] < 0.86) & (rgb[..., 2] < 0.01)
    assert expected_yellow.any() and not expected_yellow.all()
    np.testing.assert_array_equal(yellow, expected_yellow)
    np.testing.assert_allclose(rgb[~expected_yellow, 2], expected_grey[~expected_yellow], atol=1 / 255 + 1e-6)
    # A strip thinner than the step: reduced by its short side at most, never to nothing.
    write_thumbnail(tmp_path / "strip.png", image[:, :3], labels[:, :3])
    assert matplotlib.image.imread(tmp_path / "strip.png").shape[:2] == (333, 1)


def test_drift_monitor_runs_over_the_plate_in_acquisition_order(tmp_path, nuclei):
    """The model's own reference (auto) over the demo plate: one step per field in plate order, the statistic
    the monitor gives on the embeddings the wells recorded, per-well maxima and alarms in wells.csv, a
    summary in run.json and the heatmap in the report."""
    from cellrt.drift import DriftReference, monitor_stream
    from cellrt.pipeline.plate import model_drift_reference
    from cellrt.report import write_plate_report

    out = tmp_path / "run"
    summary = PlateRun(nuclei, open_plate(DEMO), out).run()
    drift = read_table(out / "drift.csv")
    order = [(str(w), int(f)) for w, f in zip(drift["Metadata_Well"], drift["Metadata_Field"])]
    assert order == sorted(order) and len(order) == 48
    np.testing.assert_array_equal(drift["Drift_Step"], np.arange(48))
    embeddings = [json.loads((out / "wells" / f"{w}.json").read_text())["field_embeddings"][str(f)] for w, f in order]
    reference = DriftReference.load(model_drift_reference(nuclei.manifest.folder, nuclei.precision))
    steps = monitor_stream(reference, np.asarray(embeddings, np.float32))
    np.testing.assert_allclose(drift["Drift_Statistic"], [s.statistic for s in steps], rtol=1e-12)
    np.testing.assert_array_equal(drift["Drift_Alarm"].astype(str), [str(s.alarm) for s in steps])
    wells = read_table(out / "wells.csv")
    for well, alarms in zip(wells["Metadata_Well"], wells["Drift_Alarms"]):
        assert alarms == sum(s.alarm for (w, _), s in zip(order, steps) if w == well)
    info = summary["drift"]
    assert info["monitored"] and info["fields"] == 48 and info["window"] == reference.window
    assert info["alarms"] == sum(s.alarm for s in steps)
    assert info["wells_with_alarms"] == sorted({w for (w, _), s in zip(order, steps) if s.alarm})
    html = write_plate_report(out).read_text()
    assert (out / "report" / "drift.png").is_file() and (out / "report" / "drift_course.png").is_file()
    assert "<tr><th>Drift</th><td>" in html and "the model&#x27;s own reference" in html


def test_drift_reference_from_a_run_and_the_refusals(tmp_path, nuclei):
    run_dir = tmp_path / "reference-run"
    PlateRun(nuclei, open_plate(DEMO), run_dir, PlateOptions(drift_reference=None)).run()
    assert json.loads((run_dir / "run.json").read_text())["drift"] == {
        "monitored": False, "note": "no drift reference given for this run"}
    assert not (run_dir / "drift.csv").exists()
    ref = tmp_path / "controls.npz"
    made = run_cli("drift-reference", str(run_dir), "--out", str(ref), "--window", "4")
    assert made.returncode == 0, made.stderr
    assert "48 fields of 24 wells (24 reference, 24 calibration)" in made.stdout  # whole wells on each side
    summary = PlateRun(nuclei, open_plate(DEMO), tmp_path / "checked", PlateOptions(drift_reference=str(ref))).run()
    assert summary["drift"]["monitored"] and summary["drift"]["reference"] == str(ref)
    assert "controls.npz reference (24 fields, window 4 fields" in summary["drift"]["note"]
    few = run_cli("drift-reference", str(run_dir), "--out", str(tmp_path / "x.npz"), "--wells", "A01-A12",
                  "--window", "4")
    assert few.returncode == 1 and "needs at least 20 held-out fields" in few.stderr

    too_few = run_cli("drift-reference", str(run_dir), "--out", str(tmp_path / "x.npz"), "--wells", "A01,A02")
    assert too_few.returncode == 1 and "4 reference fields are too few for a window of 16" in too_few.stderr
    unknown = run_cli("drift-reference", str(run_dir), "--out", str(tmp_path / "x.npz"), "--wells", "A01,H12")
    assert unknown.returncode == 1 and "no results for wells ['H12']" in unknown.stderr
    with pytest.raises(PlateRunError, match="missing.npz: no such drift reference file"):
        PlateRun(nuclei, open_plate(DEMO), tmp_path / "y", PlateOptions(drift_reference=str(tmp_path / "missing.npz")))


@pytest.mark.int8
def test_an_int8_run_takes_the_int8_drift_reference_only(tmp_path, nuclei):
    run_dir = tmp_path / "reference-run"
    PlateRun(nuclei, open_plate(DEMO), run_dir, PlateOptions(drift_reference=None)).run()
    ref = tmp_path / "controls.npz"
    assert run_cli("drift-reference", str(run_dir), "--out", str(ref), "--window", "4").returncode == 0
    int8 = cellrt.load_model("nuclei", backend="ort", precision="int8")
    with pytest.raises(PlateRunError, match="made from fp32 embeddings, this run computes int8 ones"):
        PlateRun(int8, open_plate(DEMO), tmp_path / "int8", PlateOptions(drift_reference=str(ref)))
    auto = PlateRun(int8, open_plate(DEMO), tmp_path / "int8-auto")
    assert auto.drift is not None and auto.drift.metadata["precision"] == "int8"


def test_a_field_without_a_finite_embedding_is_left_out_of_drift_not_fatal(tmp_path, nuclei):
    """A broken embedding (here written into a finished well's record, then the run resumed) must not stop
    the plate at its last step: the field is named in run.json and the monitor runs over the others."""
    out = tmp_path / "run"
    PlateRun(nuclei, open_plate(DEMO), out).run()
    record_path = out / "wells" / "A03.json"
    record = json.loads(record_path.read_text())
    record["field_embeddings"]["1"] = [float("nan")] * len(record["field_embeddings"]["1"])
    record_path.write_text(json.dumps(record))
    summary = PlateRun(nuclei, open_plate(DEMO), out).run(resume=True)
    assert summary["drift"]["fields_without_finite_embedding"] == [{"well": "A03", "field": 1}]
    drift = read_table(out / "drift.csv")
    assert len(drift["Metadata_Well"]) == 47
    assert ("A03", 1) not in set(zip(drift["Metadata_Well"].tolist(), drift["Metadata_Field"].tolist()))


def test_well_selections_parse_lists_and_rectangles():
    from cellrt.io.plate import parse_wells

    assert parse_wells("A01-B02") == ["A01", "A02", "B01", "B02"]
    assert parse_wells("b3, A01-A02 ,A02") == ["B03", "A01", "A02"]
    assert parse_wells("H12-G11") == ["G11", "G12", "H11", "H12"]
    assert len(parse_wells("A01-P02,A23-P24")) == 64
    assert parse_wells("") == []
    with pytest.raises(ValueError, match="'A01-Q' should be a well like 'B03' or a range like 'A01-H02'"):
        parse_wells("A01-Q")


# -- pixel sizes -----------------------------------------------------------------------------------------------------

def _one_field_ome_tiff(path: Path, image: np.ndarray, pixel_attributes: str) -> Path:
    pixels = (f'<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{image.shape[1]}" '
              f'SizeY="{image.shape[0]}" SizeC="1" SizeZ="1" SizeT="1" {pixel_attributes}>'
              f'<Channel ID="Channel:0:0" Name="DNA"/><TiffData IFD="0" PlaneCount="1"/></Pixels></Image>')
    xml = _ome_plate_xml(["B02"], [1], pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, description=xml, metadata=None)
    return path


def test_ome_tiff_pixel_size_gives_physical_columns(tmp_path, nuclei):
    image = tifffile.imread(sorted(DEMO.glob("*.tif"))[0])
    path = _one_field_ome_tiff(tmp_path / "nm" / "plate.ome.tif", image,
                               'PhysicalSizeX="325" PhysicalSizeXUnit="nm" PhysicalSizeY="325" PhysicalSizeYUnit="nm"')
    plate = open_plate(path)
    assert plate.pixel_size_um == pytest.approx(0.325) and "PhysicalSizeX" in plate.pixel_size_source
    summary = PlateRun(nuclei, plate, tmp_path / "out").run()
    assert summary["scale"]["plate_pixel_size_um"] == pytest.approx(0.325)
    objects = read_table(tmp_path / "out" / "objects.parquet")
    np.testing.assert_allclose(objects["AreaShape_Area_um2"], objects["AreaShape_Area"] * 0.325 ** 2)
    np.testing.assert_allclose(objects["AreaShape_Perimeter_um"], objects["AreaShape_Perimeter"] * 0.325)
    # --pixel-size wins over the metadata; a plate without one has no physical columns.
    given = PlateRun(nuclei, plate, tmp_path / "given", PlateOptions(pixel_size_um=0.65))
    assert given.plate_scale()["plate_pixel_size_source"] == "--pixel-size"
    PlateRun(nuclei, open_plate(_copy_demo(tmp_path, 2)), tmp_path / "plain").run()
    assert "AreaShape_Area_um2" not in read_table(tmp_path / "plain" / "objects.parquet")


@pytest.mark.parametrize("attributes, match", [
    ('PhysicalSizeX="0" PhysicalSizeY="0"', "pixel size X should be a finite number > 0, got '0'"),
    ('PhysicalSizeX="0.5" PhysicalSizeXUnit="furlong" PhysicalSizeY="0.5"', "pixel size unit 'furlong' is not a length unit"),
    ('PhysicalSizeX="0.5" PhysicalSizeY="0.9"', "pixels are not square"),
    ('PhysicalSizeX="nan" PhysicalSizeY="nan"', "pixel size X should be a finite number > 0, got 'nan'"),
])
def test_bad_ome_pixel_sizes_name_the_file(tmp_path, attributes, match):
    path = _one_field_ome_tiff(tmp_path / "bad.ome.tif", np.zeros((32, 32), np.uint8), attributes)
    with pytest.raises(PlateError, match=rf"bad.ome.tif: Pixels PhysicalSizeX/Y: {match}"):
        open_plate(path)


def test_ome_zarr_pixel_size_from_coordinate_transformations(tmp_path):
    root = _write_ome_zarr_plate(tmp_path / "plate.zarr", open_plate(DEMO), 2)
    assert open_plate(root).pixel_size_um is None   # no scale given
    import zarr

    group = zarr.open_group(str(root), mode="r+")
    for well in group.attrs["plate"]["wells"]:
        for index in range(2):
            image_group = group[f"{well['path']}/{index}"]
            meta = dict(image_group.attrs)
            multiscale = meta["multiscales"][0]
            multiscale["axes"] = [{"name": "c"}, {"name": "y", "unit": "micrometer"}, {"name": "x", "unit": "micrometer"}]
            multiscale["datasets"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 0.65, 0.65]}]
            image_group.attrs.update(meta)
    plate = open_plate(root)
    assert plate.pixel_size_um == pytest.approx(0.65) and "coordinateTransformations" in plate.pixel_size_source


def test_a_model_with_a_pixel_size_is_scaled_by_the_plates(tmp_path):
    from cellrt.runtime.manifest import load_manifest

    folder = tmp_path / "nuclei-0.65um"
    shutil.copytree(load_manifest(cellrt.pipeline.model.model_folder("nuclei")).folder, folder)
    doc = json.loads((folder / "cellrt.json").read_text())
    doc["pixel_size_um"] = 0.65
    (folder / "cellrt.json").write_text(json.dumps(doc))
    model = cellrt.load_model(folder, backend="ort", threads=1)
    plate = open_plate(DEMO)
    coarse = PlateRun(model, plate, tmp_path / "a", PlateOptions(pixel_size_um=1.3)).plate_scale()
    assert coarse["factor"] == pytest.approx(2.0) and coarse["source"].startswith("pixel sizes")
    same = PlateRun(model, plate, tmp_path / "b", PlateOptions(pixel_size_um=0.65)).plate_scale()
    assert same["factor"] == 1.0
    with pytest.raises(ValueError, match="--pixel-size: the pixel size \\(um\\) should be a finite number > 0"):
        PlateRun(model, plate, tmp_path / "c", PlateOptions(pixel_size_um=-1.0))
    with pytest.raises(PlateRunError, match="nm for um"):
        PlateRun(model, plate, tmp_path / "d", PlateOptions(pixel_size_um=650.0)).plate_scale()
