"""Live acquisition: frames pushed one channel at a time, results while the plate is imaged."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tifffile

import cellrt
from cellrt.io import open_plate
from cellrt.io.tables import read_table
from cellrt.pipeline.live import LiveRun
from cellrt.pipeline.plate import PlateOptions, PlateRun, PlateRunError

DEMO = Path(str(resources.files("cellrt") / "data" / "demo" / "plate"))


@pytest.fixture(scope="module")
def nuclei():
    return cellrt.load_model("nuclei", backend="ort", threads=2)


def test_live_frames_give_the_same_tables_as_the_plate_on_disk(tmp_path, nuclei, rng):
    plate = open_plate(DEMO)
    PlateRun(nuclei, plate, tmp_path / "disk").run()
    order = rng.permutation(len(plate.fields))  # acquisition order need not be plate order
    run = LiveRun(nuclei, tmp_path / "live", channels=["1", "2"], plate_name="demo", fields_per_well=2,
                  options=PlateOptions(batch_size=4, channel_map={"DNA": "1"}))
    futures = {}
    for index in order:
        source = plate.fields[index]
        image = tifffile.imread(source.files["1"])
        # Two channels arrive separately: the nuclei, then a second stain (here the inverted image).
        first = run.submit(image, well=source.well, field=source.field, channel="1")
        second = run.submit(255 - image, well=source.well, field=source.field, channel=2)
        assert first is second
        futures[(source.well, source.field)] = first
    a_well = plate.fields[order[0]].well
    for field in (1, 2):
        assert futures[(a_well, field)].result(timeout=60).count >= 0
    deadline = time.monotonic() + 30
    while not (tmp_path / "live" / "wells" / f"{a_well}.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "live" / "wells" / f"{a_well}.json").exists()  # on disk before the plate is finished
    summary = run.close()
    assert summary["fields_processed"] == 48 and summary["incomplete_fields"] == []
    disk, live = read_table(tmp_path / "disk" / "wells.csv"), read_table(tmp_path / "live" / "wells.csv")
    np.testing.assert_array_equal(disk["Metadata_Well"], live["Metadata_Well"])
    np.testing.assert_array_equal(disk["Count"], live["Count"])
    objects = read_table(tmp_path / "live" / "objects.parquet")
    np.testing.assert_allclose(objects["Intensity_MeanIntensity_DNA"] + objects["Intensity_MeanIntensity_ch2"], 255,
                               rtol=1e-12, atol=0)
    assert (tmp_path / "live" / "report" / "index.html").is_file()


def test_live_submit_errors_name_the_field(tmp_path, nuclei):
    run = LiveRun(nuclei, tmp_path / "live", channels=["1"])
    frame = np.zeros((64, 64), np.uint16)
    with pytest.raises(ValueError, match=r"well B03, field 1: channel '2' is not one of the run's channels \['1'\]"):
        run.submit(frame, well="B3", field=1, channel=2)
    with pytest.raises(ValueError, match="well should be named like 'B03'"):
        run.submit(frame, well="middle", field=1, channel=1)
    with pytest.raises(ValueError, match="frame should be 2-D"):
        run.submit(np.zeros((2, 64, 64)), well="B03", field=1, channel=1)
    future = run.submit(frame, well="B03", field=1, channel=1)
    assert future.result(timeout=60).count == 0  # an empty field has no objects
    with pytest.raises(ValueError, match="well B03, field 1, channel 1 was already submitted"):
        run.submit(frame, well="B03", field=1, channel=1)
    summary = run.close()  # fields_per_well unknown: the well is written at close
    assert summary["fields_processed"] == 1
    assert read_table(tmp_path / "live" / "wells.csv")["Count"].tolist() == [0]
    with pytest.raises(PlateRunError, match=r"^LiveRun.submit after close\(\)$"):
        run.submit(frame, well="B03", field=2, channel=1)


def test_live_drift_steps_arrive_in_acquisition_order_and_match_the_final_table(tmp_path, nuclei, rng):
    """on_drift sees every field once, in the order the fields were completed by submit (not the order
    workers finish them), and the final drift.csv holds the same statistics."""
    from cellrt.drift import monitor_stream

    plate = open_plate(DEMO)
    seen = []
    run = LiveRun(nuclei, tmp_path / "live", channels=["1"], options=PlateOptions(batch_size=3, workers=3),
                  on_drift=lambda well, field, step: seen.append(((well, field), step)))
    order = [(plate.fields[i].well, plate.fields[i].field) for i in rng.permutation(len(plate.fields))]
    for well, field in order:
        source = next(f for f in plate.fields if (f.well, f.field) == (well, field))
        run.submit(tifffile.imread(source.files["1"]), well=well, field=field, channel="1")
    run.close(report=False)
    assert [key for key, _ in seen] == order
    assert [step.index for _, step in seen] == list(range(len(order)))
    drift = read_table(tmp_path / "live" / "drift.csv")
    assert [(str(w), int(f)) for w, f in zip(drift["Metadata_Well"], drift["Metadata_Field"])] == order
    np.testing.assert_allclose(drift["Drift_Statistic"], [step.statistic for _, step in seen], rtol=1e-12)
    import json
    embeddings = [json.loads((tmp_path / "live" / "wells" / f"{w}.json").read_text())["field_embeddings"][str(f)]
                  for w, f in order]
    replay = monitor_stream(run.drift, np.asarray(embeddings, np.float32))
    assert [s.alarm for s in replay] == [step.alarm for _, step in seen]


def test_a_failing_drift_callback_is_recorded_and_the_run_goes_on(tmp_path, nuclei):
    plate = open_plate(DEMO)

    def broken(well, field, step):
        raise RuntimeError(f"display for {well} is gone")

    run = LiveRun(nuclei, tmp_path / "live", channels=["1"], fields_per_well=2, on_drift=broken)
    for source in plate.fields[:8]:
        run.submit(tifffile.imread(source.files["1"]), well=source.well, field=source.field, channel="1")
    summary = run.close(report=False)
    assert summary["fields_processed"] == 8
    assert len(summary["callback_errors"]) == 8
    assert summary["callback_errors"][0] == "on_drift(well A01, field 1): RuntimeError: display for A01 is gone"


def test_a_resubmitted_frame_is_refused_whatever_the_state_of_the_first(tmp_path, nuclei):
    """A (well, field, channel) sent twice - an acquisition retry, a double click - is refused at submit,
    while its field waits for other channels, is being processed, is done or its well is written; the
    first one's result and every later field are unaffected."""
    plate = open_plate(DEMO)
    images = [tifffile.imread(source.files["1"]) for source in plate.fields[:6]]
    run = LiveRun(nuclei, tmp_path / "live", channels=["1", "2"], fields_per_well=2,
                  options=PlateOptions(channel_map={"DNA": "1"}))
    waiting = run.submit(images[0], well="A01", field=1, channel="1")
    with pytest.raises(ValueError, match="well A01, field 1, channel 1 was already submitted"):
        run.submit(images[0], well="A01", field=1, channel="1")      # its field waits for channel 2
    run.submit(255 - images[0], well="A01", field=1, channel="2")
    with pytest.raises(ValueError, match="well A01, field 1, channel 2 was already submitted"):
        run.submit(images[0], well="A01", field=1, channel="2")      # at once: its field is being processed
    assert waiting.result(timeout=60).count > 0
    with pytest.raises(ValueError, match="well A01, field 1, channel 1 was already submitted"):
        run.submit(images[0], well="A01", field=1, channel="1")      # done, its well still waits for field 2
    run.submit(images[1], well="A01", field=2, channel="1")
    run.submit(images[1], well="A01", field=2, channel="2").result(timeout=60)
    deadline = time.monotonic() + 30
    while not (tmp_path / "live" / "wells" / "A01.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ValueError, match="well A01, field 2, channel 2 was already submitted"):
        run.submit(images[1], well="A01", field=2, channel="2")      # its well is written
    later = []
    for index, image in enumerate(images[2:]):
        well, field = f"A0{2 + index // 2}", 1 + index % 2
        later.append(run.submit(image, well=well, field=field, channel="1"))
        run.submit(image, well=well, field=field, channel="2")
        with pytest.raises(ValueError, match=f"well {well}, field {field}, channel 2 was already submitted"):
            run.submit(image, well=well, field=field, channel="2")
    assert all(future.result(timeout=60).count >= 0 for future in later)
    summary = run.close(report=False)
    assert summary["fields_processed"] == 6 and summary["incomplete_fields"] == []
    fields = read_table(tmp_path / "live" / "fields.csv")
    assert [(str(w), int(f)) for w, f in zip(fields["Metadata_Well"], fields["Metadata_Field"])] == [
        ("A01", 1), ("A01", 2), ("A02", 1), ("A02", 2), ("A03", 1), ("A03", 2)]


def test_an_error_in_the_collector_fails_the_futures_and_stops_the_run(tmp_path, nuclei):
    """Anything unexpected in the thread that collects results reaches the caller - through the pending
    futures, the next submit and close() - instead of leaving futures that never resolve."""
    image = tifffile.imread(open_plate(DEMO).fields[0].files["1"])
    run = LiveRun(nuclei, tmp_path / "live", channels=["1"])

    receive = run._engine.next_result

    def loses_track(timeout=None):
        receive(timeout=timeout)   # the field's result arrives, then something unforeseen goes wrong
        raise KeyError("lost track of a field")

    run._engine.next_result = loses_track
    time.sleep(0.3)   # the collector's wait already under way (0.1 s) ends: its next one goes through the patch
    future = run.submit(image, well="A01", field=1, channel="1")
    assert isinstance(future.exception(timeout=30), KeyError)
    with pytest.raises(PlateRunError, match="the live run stopped: KeyError: 'lost track of a field'"):
        run.submit(image, well="A01", field=2, channel="1")
    with pytest.raises(PlateRunError, match="the live run stopped: KeyError: 'lost track of a field'"):
        run.close()


def test_leaving_the_with_block_on_an_error_fails_the_fields_in_flight(tmp_path, nuclei):
    plate = open_plate(DEMO)
    futures = []
    with pytest.raises(RuntimeError, match="stage lost focus"):
        with LiveRun(nuclei, tmp_path / "live", channels=["1", "2"],
                     options=PlateOptions(channel_map={"DNA": "1"})) as run:
            for source in plate.fields[:4]:
                image = tifffile.imread(source.files["1"])
                futures.append(run.submit(image, well=source.well, field=source.field, channel="1"))
                run.submit(image, well=source.well, field=source.field, channel="2")
            # Whether any of the four is still running at the raise is down to timing; a field still
            # waiting for its second channel is in flight for certain, so one of them must fail with the
            # reason (a plain close() on the error would fail it as 'never submitted' instead).
            stranded = run.submit(image, well="B01", field=1, channel="1")
            raise RuntimeError("stage lost focus")
    assert "the live run was left by RuntimeError: stage lost focus" in str(stranded.exception(timeout=30))
    for future in futures:   # each resolved: a result if it was done in time, else the reason it never will be
        error = future.exception(timeout=30)
        assert error is None or "the live run was left by RuntimeError: stage lost focus" in str(error)


def test_a_field_beyond_fields_per_well_is_refused_and_the_written_well_kept(tmp_path, nuclei):
    """Fields are numbered 1 to fields_per_well (as ImageXpress s1.., Operetta f01..): another field
    would rewrite a well already written without it."""
    plate = open_plate(DEMO)
    images = [tifffile.imread(source.files["1"]) for source in plate.fields[:3]]
    run = LiveRun(nuclei, tmp_path / "live", channels=["1"], fields_per_well=1)
    count = run.submit(images[0], well="A01", field=1, channel="1").result(timeout=60).count
    with pytest.raises(ValueError, match=r"well A01, field 2: .*fields_per_well=1.* already complete"):
        run.submit(images[1], well="A01", field=2, channel="1")
    with pytest.raises(ValueError, match=r"well A02, field 3: .*fields_per_well=1"):
        run.submit(images[1], well="A02", field=3, channel="1")    # beyond it before the well has any field
    run.submit(images[2], well="A02", field=1, channel="1")
    summary = run.close(report=False)
    assert summary["fields_processed"] == 2
    wells = read_table(tmp_path / "live" / "wells.csv")
    assert wells["Metadata_Well"].tolist() == ["A01", "A02"] and wells["Fields"].tolist() == [1, 1]
    assert int(wells["Count"][0]) == count


def test_live_latency_runs_from_the_complete_frame_to_its_result(tmp_path, nuclei):
    """Without fields_per_well the wells are written at close(); a field's latency is still the time from
    its last channel's submit to its future resolving, not to its well's write."""
    plate = open_plate(DEMO)
    run = LiveRun(nuclei, tmp_path / "live", channels=["1", "2"], options=PlateOptions(channel_map={"DNA": "1"}))
    longest = {}
    for source in plate.fields[:4]:
        image = tifffile.imread(source.files["1"])
        run.submit(image, well=source.well, field=source.field, channel="1")
        time.sleep(0.2)   # waiting for the second channel is acquisition time, not the field's latency
        started = time.perf_counter()
        run.submit(255 - image, well=source.well, field=source.field, channel="2").result(timeout=60)
        longest[(source.well, source.field)] = time.perf_counter() - started
        time.sleep(0.3)   # the microscope moves on; fields finished earlier wait for close()
    summary = run.close(report=False)
    timings = read_table(tmp_path / "live" / "timings.csv")
    latency = {(str(w), int(f)): t for w, f, t in zip(timings["Metadata_Well"], timings["Metadata_Field"],
                                                      timings["latency"])}
    assert latency.keys() == longest.keys()
    for key, bound in longest.items():
        assert 0 < latency[key] <= bound, key
    assert summary["latency_p50_s"] == pytest.approx(float(np.median(list(latency.values()))))
    import json
    record = json.loads((tmp_path / "live" / "wells" / "A01.json").read_text())
    assert [row["latency"] for row in record["timings"]] == [latency[("A01", 1)], latency[("A01", 2)]]


def test_a_live_run_keeps_only_what_its_wells_will_write(tmp_path, nuclei):
    """Without fields_per_well every field waits for close(): frames, tiles, model outputs and dense
    predictions are let go of as soon as a field is done (a full plate would hold tens of GB), the
    caller's future keeps the whole result, and outlines are drawn for the first wells imaged."""
    run = LiveRun(nuclei, tmp_path / "live", channels=["1", "2"], plate_name="demo",
                  options=PlateOptions(channel_map={"DNA": "1"}))
    sources = open_plate(DEMO).fields[:6]
    sources[2], sources[3] = sources[3], sources[2]     # A02: field 2 is imaged before field 1
    futures = []
    for s in sources:
        image = tifffile.imread(s.files["1"])
        futures.append(run.submit(image, well=s.well, field=s.field, channel="1"))
        run.submit(image, well=s.well, field=s.field, channel="2")
    unfinished = run.submit(image, well="B01", field=1, channel="1")   # its channel 2 never comes
    results = [f.result(timeout=60) for f in futures]
    assert all(r.prediction is not None and r.labels is not None for r in results)
    deadline = time.monotonic() + 30
    while sum(len(b) for b in run._buckets.values()) < len(sources) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(run._futures) == [("B01", 1)]      # the run holds only the future still waiting for frames
    assert all(source.reader.frames is None for source in run.plate.fields)
    for source, result, _, state in (entry for bucket in run._buckets.values() for entry in bucket):
        assert state.outputs is None and state.prepared.tiles is None
        assert result.prediction is None and result.tile_embeddings is None
        outline = source.field == 1      # the well's first field keeps image and labels for its outline
        assert (result.labels is not None) == outline and (state.prepared.image is not None) == outline
        assert state.prepared.extra_channels == {} or outline
    summary = run.close(report=False)
    assert sorted(p.name for p in (tmp_path / "live" / "thumbnails").glob("*.png")) == [
        f"{w}_f01.png" for w in sorted({s.well for s in sources})]
    # A field still missing a channel at close() fails its future instead of leaving it pending.
    assert summary["incomplete_fields"] == [{"well": "B01", "field": 1}]
    with pytest.raises(PlateRunError, match=r"well B01, field 1: channel\(s\) \['2'\] were never submitted"):
        unfinished.result(timeout=0)


def test_a_cancelled_future_does_not_stop_the_run(tmp_path, nuclei):
    """A caller may cancel a field's future (it no longer waits for it): the field is still measured,
    and close() neither fails on it nor on a cancelled field still missing a channel."""
    run = LiveRun(nuclei, tmp_path / "live", channels=["1", "2"], plate_name="demo",
                  options=PlateOptions(channel_map={"DNA": "1"}, drift_reference=None))
    image = tifffile.imread(sorted(DEMO.glob("*.tif"))[0])
    waiting = run.submit(image, well="A01", field=2, channel="1")          # channel 2 never comes
    assert waiting.cancel()
    run.submit(image, well="A01", field=1, channel="1")
    cancelled = run.submit(image, well="A01", field=1, channel="2")
    cancelled.cancel()      # may be too late (already running): either way the run goes on
    later = run.submit(image, well="B01", field=1, channel="1")
    run.submit(image, well="B01", field=1, channel="2")
    assert later.result(timeout=60).count > 0
    summary = run.close(report=False)
    assert summary["incomplete_fields"] == [{"well": "A01", "field": 2}]
    fields = read_table(tmp_path / "live" / "fields.csv")
    assert list(fields["Metadata_Well"]) == ["A01", "B01"] and fields["Count"].min() > 0


def test_live_frames_run_at_a_given_object_diameter(tmp_path, nuclei):
    """Live frames cannot be sampled before imaging: a given diameter sets every frame's scale (as a plate
    run with --object-diameter does); without one they run as they come, and run.json says which."""
    import shutil

    (tmp_path / "plate").mkdir()
    for path in sorted(DEMO.glob("*.tif"))[:4]:   # wells A01 and A02, two sites each
        shutil.copy(path, tmp_path / "plate" / path.name)
    plate = open_plate(tmp_path / "plate")
    PlateRun(nuclei, plate, tmp_path / "disk", PlateOptions(object_diameter=40.0)).run()
    run = LiveRun(nuclei, tmp_path / "live", channels=["1"], plate_name="demo", fields_per_well=2,
                  options=PlateOptions(object_diameter=40.0, channel_map={"DNA": "1"}))
    for s in plate.fields:
        run.submit(tifffile.imread(s.files["1"]), well=s.well, field=s.field, channel="1")
    summary = run.close()
    assert summary["scale"]["source"] == "--object-diameter" and summary["scale"]["factor"] < 1
    disk, live = read_table(tmp_path / "disk" / "fields.csv"), read_table(tmp_path / "live" / "fields.csv")
    np.testing.assert_array_equal(disk["Count"], live["Count"])
    plain = LiveRun(nuclei, tmp_path / "plain", channels=["1"], options=PlateOptions(channel_map={"DNA": "1"}))
    assert plain.scale["factor"] == 1.0 and "live frames" in plain.scale["source"]
    plain.close()
    with pytest.raises(PlateRunError, match="normalization 'plate' needs a plate's fields"):
        LiveRun(nuclei, tmp_path / "norm", channels=["1"], options=PlateOptions(normalization="plate",
                                                                               channel_map={"DNA": "1"}))
