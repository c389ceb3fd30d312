"""The plate report from small hand-made run folders: wells without objects, failed and missing wells,
drift alarms and negative drift ratios."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cellrt.io.plate import format_well, well_position
from cellrt.io.tables import read_table
from cellrt.report import plate_report, write_plate_report

MEANS = ("MeanArea", "MedianArea", "Mean_Intensity_MeanIntensity_DNA", "Median_Intensity_MeanIntensity_DNA")
WELLS_HEADER = ("Metadata_Well", "Fields", "FieldsFailed", "Count", "Count_nucleus", "Fraction_nucleus", *MEANS,
                "Drift_MaxRatio", "Drift_Alarms")


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _well(name, fields=2, failed=0, count=20, means=(150.0, 140.0, 80.0, 75.0), ratio=0.5, alarms=0):
    return (name, fields, failed, count, count, 1.0 if count else "", *means, ratio, alarms)


def _run_folder(path, wells, *, errors=(), plate_wells=None, drift_rows=None, missing="", geometry=(8, 12)):
    """A finished run's folder as `cellrt run` leaves it (the files the report reads)."""
    path.mkdir(parents=True, exist_ok=True)
    rows = [[missing if cell == "" else cell for cell in row] for row in wells]
    _write_csv(path / "wells.csv", WELLS_HEADER, rows)
    _write_csv(path / "errors.csv", ("Metadata_Well", "Metadata_Field", "Files", "Error"), errors)
    names = [row[0] for row in wells]
    _write_csv(path / "timings.csv", ("Metadata_Well", "Metadata_Field", "latency", "read", "infer", "write"),
               [(w, f, 0.2 + 0.01 * f, 0.01, 0.1, 0.02) for w in names for f in (1, 2)])
    _write_csv(path / "fields.csv", ("Metadata_Well", "Metadata_Field", "Count", "Error"),
               [(w, f, "", "") for w in names for f in (1, 2)])
    alarm_wells = [row[0] for row in wells if float(row[-1] or 0) > 0]
    drift_rows = drift_rows if drift_rows is not None else [
        (w, f, 2 * i + f - 1, 0.01, 0.01, row[-2] if row[-2] != "" else 0.1,
         "True", "True" if row[-1] and f == 1 else "False")
        for i, (w, row) in enumerate(zip(names, wells)) for f in (1, 2)]
    _write_csv(path / "drift.csv", ("Metadata_Well", "Metadata_Field", "Drift_Step", "Drift_Statistic",
                                    "Drift_Threshold", "Drift_Ratio", "Drift_WindowFull", "Drift_Alarm"), drift_rows)
    fields = 2 * len(names)
    summary = {
        "cellrt": "test", "resumed_wells": [],
        "model": {"name": "nuclei", "kind": "semantic", "backend": "ort", "precision": "fp32",
                  "onnx_sha256": "0" * 64, "weights_sha256": "0" * 64},
        "plate": {"name": "P<1>", "fields": fields, "wells": plate_wells or len(names), "layout": "imagexpress",
                  "geometry": list(geometry) if geometry else None},
        "fields_per_second": 10.0, "latency_p50_s": 0.2, "latency_p99_s": 0.3, "infer_share_of_wall": 0.5,
        "wall_seconds": 1.0, "stage_seconds": {"read": 0.1, "infer": 0.5, "write": 0.2},
        "drift": {"monitored": True, "note": "a test reference", "window": 4, "fields": fields,
                  "alarms": len(alarm_wells), "wells_with_alarms": alarm_wells,
                  "first_alarm": {"well": alarm_wells[0], "field": 1} if alarm_wells else None},
    }
    (path / "run.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def maps(monkeypatch):
    """What each figure drew, by title: cell texts by well, the frames drawn, and the colour mapping."""
    seen = {}

    def record(fig):
        ax = fig.axes[0]
        texts = {}
        for text in ax.texts:
            x, y = text.get_position()
            texts[format_well(int(round(y)), int(round(x)))] = text.get_text()
        seen[ax.get_title() or ax.get_ylabel()] = {"texts": texts, "patches": list(ax.patches),
                                                   "images": list(ax.images),
                                                   "lines": [line.get_ydata() for line in ax.lines], "axes": ax}
        return b"\x89PNG test"   # rendering is not what is tested here (and takes most of the time)

    monkeypatch.setattr(plate_report, "_figure_png", record)
    return seen


def _frames_at(patches, well):
    """Unfilled rectangles drawn within the well's cell (not the hatching of a well without a value)."""
    row, column = well_position(well)
    found = []
    for patch in patches:
        if not hasattr(patch, "get_xy") or patch.get_fill() or patch.get_hatch() or patch.get_linewidth() == 0:
            continue
        x, y = patch.get_xy()
        if column - 0.51 <= x < column + 0.5 and row - 0.51 <= y < row + 0.5:
            found.append(patch)
    return found


def test_wells_without_objects_failed_or_missing_render_as_no_value(tmp_path, maps):
    wells = [_well("A01", count=30),
             _well("A02", count=0, means=("", "", "", "")),                # blank / toxic well: no objects
             _well("A03", failed=2, count=0, means=("", "", "", ""), ratio=""),  # every field failed
             _well("A04", failed=1, count=12)]                            # one of two fields failed
    errors = [("A03", 1, "a.tif", "unreadable TIFF"), ("A03", 2, "b.tif", "unreadable TIFF"),
              ("A04", 2, "c.tif", "unreadable TIFF"),
              ("B01", 1, "d.tif", "rejected when scanned")]               # only in errors.csv
    out = _run_folder(tmp_path / "run", wells, errors=errors, plate_wells=6)   # one more well: no results at all
    report = write_plate_report(out)

    page = report.read_text()
    assert report == out / "report" / "index.html" and (out / "report" / "area.png").is_file()
    assert "no objects found in 1: A02" in page
    assert "every field failed in 2: A03, B01" in page
    assert "some fields failed in 1: A04" in page
    assert "1 of the plate's 6 wells have no results" in page
    assert "Plate P&lt;1&gt;" in page

    count = maps["Objects per well"]["texts"]
    assert count["A01"] == "30" and count["A02"] == "0"         # a real zero, written as a count
    assert count["A03"] == "failed" and count["B01"] == "failed"  # not 0: nothing was measured
    assert count["A04"] == "12\u2020"                              # counted over the surviving field only
    area = maps["Median area"]["texts"]
    assert area["A02"] == "none" and area["A03"] == "failed" and area["A01"] == "140"
    assert "B02" not in area                                      # absent from every table: plain grey
    assert all(text not in ("0", "0.00", "nan") for well, text in area.items() if well != "A01"), area
    # the error table shows fields as numbers, not floats
    assert "<td>A03</td><td>1</td>" in page


@pytest.mark.parametrize("text_cells", [False, True], ids=["numbers", "text"])
@pytest.mark.parametrize("missing", ["", "nan"], ids=["empty", "nan"])
def test_means_of_a_well_without_objects_may_be_empty_or_nan(tmp_path, maps, monkeypatch, missing, text_cells):
    """However the tables are read (cells as numbers where they parse, or every cell as text)."""
    if text_cells:
        monkeypatch.setattr(plate_report, "read_table", lambda path: read_table(path, as_text=True))
    wells = [_well("A01"), _well("A02", count=0, means=("", "", "", "")),
             _well("A03", failed=2, count=0, means=("", "", "", ""), ratio="")]
    page = write_plate_report(_run_folder(tmp_path / "run", wells, missing=missing)).read_text()
    assert maps["Objects per well"]["texts"] == {"A01": "20", "A02": "0", "A03": "failed"}
    for title in ("Median area", "Mean DNA intensity (median)"):
        assert maps[title]["texts"]["A02"] == "none" and maps[title]["texts"]["A03"] == "failed"
    assert "no objects found in 1: A02" in page and "every field failed in 1: A03" in page
    assert "<th>Objects</th><td>20</td>" in page


def test_a_plate_where_no_well_has_objects(tmp_path, maps):
    wells = [_well(w, count=0, means=("", "", "", "")) for w in ("A01", "A02", "B01")]
    page = write_plate_report(_run_folder(tmp_path / "run", wells)).read_text()
    assert maps["Median area"]["texts"] == {"A01": "none", "A02": "none", "B01": "none"}
    assert "no objects found in 3: A01, A02, B01" in page


def test_drift_alarm_frame_stands_out_from_the_colours_of_the_map(tmp_path, maps):
    wells = [_well("A01", ratio=0.4), _well("A02", ratio=1.86, alarms=1), _well("A03", ratio=1.06, alarms=1),
             _well("A04", ratio=2.6, alarms=2)]
    page = write_plate_report(_run_folder(tmp_path / "run", wells)).read_text()
    drift = maps["Drift (max statistic / threshold)"]
    image = drift["images"][0]
    for well, ratio in (("A02", 1.86), ("A03", 1.06), ("A04", 2.6)):
        frames = _frames_at(drift["patches"], well)
        assert frames, f"no alarm frame on {well}"
        cell = np.array(image.cmap(image.norm(ratio))[:3])
        frame = max(frames, key=lambda p: p.get_linewidth())
        distance = np.abs(np.array(frame.get_edgecolor()[:3]) - cell).max()
        assert distance > 0.5, f"the alarm frame of {well} is drawn in nearly the cell's colour"
        assert np.abs(np.array(frame.get_edgecolor()[:3]) - np.array(image.cmap(1.0)[:3])).max() > 0.3
    assert not _frames_at(drift["patches"], "A01")
    assert "black frame" in page and "ALARM" in page


def test_negative_drift_ratio_is_not_shown_as_a_negative_multiple(tmp_path, maps):
    wells = [_well("A01", ratio=-0.27), _well("A02", ratio=-0.0087), _well("A03", ratio=0.33)]
    out = _run_folder(tmp_path / "run", wells)
    page = write_plate_report(out).read_text()
    texts = maps["Drift (max statistic / threshold)"]["texts"]
    assert texts["A01"] == "<0" and texts["A02"] == "<0" and texts["A03"] == "0.33"
    assert not any(text.startswith("-") for text in texts.values())
    course = [np.asarray(y, float) for y in maps["statistic / threshold"]["lines"][:2] if len(y)]
    assert course and all(np.nanmin(y) >= 0 for y in course), "the drift course is drawn below 0"
    assert "below zero" in page
    # stored numbers are left alone
    assert "-0.27" in (out / "wells.csv").read_text()


def test_drift_window_filling_and_failed_wells_are_labelled(tmp_path, maps):
    wells = [_well("A01", ratio=""), _well("A02", failed=2, count=0, means=("", "", "", ""), ratio="")]
    write_plate_report(_run_folder(tmp_path / "run", wells))
    texts = maps["Drift (max statistic / threshold)"]["texts"]
    assert texts == {"A01": "filling", "A02": "failed"}


def test_report_is_drawn_for_real_with_every_kind_of_well(tmp_path):
    """No stand-in for the drawing: the PNGs (hatching, frames, legends) are written and embedded."""
    wells = [_well("A01", ratio=-0.27), _well("A02", count=0, means=("", "", "", ""), ratio=1.86, alarms=1),
             _well("A03", failed=2, count=0, means=("", "", "", ""), ratio=""), _well("A04", failed=1, ratio="")]
    out = _run_folder(tmp_path / "run", wells, errors=[("A03", 1, "a.tif", "bad"), ("A03", 2, "b.tif", "bad"),
                                                       ("A04", 1, "c.tif", "bad")], plate_wells=5)
    page = write_plate_report(out).read_text()
    for name in ("count.png", "area.png", "intensity_DNA.png", "drift.png", "drift_course.png", "stages.png"):
        assert (out / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert page.count("src='data:image/png;base64,") == 7


def test_wells_that_are_not_plate_positions_get_a_table_not_maps(tmp_path):
    """A 'glob' plate names its wells after files: no plate map can place them, so the report lists them."""
    wells = [_well("img_<7>", count=12), _well("img_8", count=0, means=("", "", "", ""))]
    out = _run_folder(tmp_path / "glob", wells, geometry=None)
    page = write_plate_report(out).read_text()
    assert "<h2>Wells</h2>" in page and "not named as plate positions" in page and "Plate layout" not in page
    assert "<td>img_&lt;7&gt;</td>" in page and "<td>12</td>" in page
    assert "<th>Drift_MaxRatio</th><th>Drift_Alarms</th>" in page
    report = out / "report"
    assert not (report / "count.png").exists() and not (report / "drift.png").exists()
    assert (report / "drift_course.png").exists()


def _no_field_read(path, wells, errors, *, geometry, plate_fields):
    """A run folder where every field failed: no timings, no drift steps, and run.json's plate as the run
    saw it (a scan that rejected every field leaves it no wells, so no geometry)."""
    out = _run_folder(path, wells, errors=errors, geometry=geometry, drift_rows=[])
    _write_csv(out / "timings.csv", ("Metadata_Well", "Metadata_Field", "latency"), [])
    summary = json.loads((out / "run.json").read_text())
    summary["plate"].update(fields=plate_fields, wells=len(wells) if plate_fields else 0)
    summary.update(fields_processed=plate_fields, fields_with_results=0, fields_failed=plate_fields,
                   fields_per_second=None, latency_p50_s=None, latency_p99_s=None, stage_share={},
                   infer_share_of_wall=None)
    (out / "run.json").write_text(json.dumps(summary))
    return out


def test_a_plate_whose_every_field_was_rejected_when_scanned_says_so(tmp_path, maps):
    """--skip-bad where the scan rejected every field (here each lacks a channel): the wells are plate positions
    and nothing could be read, so the report must not call them 'not named as plate positions'."""
    wells = [_well(w, fields=1, failed=1, count=0, means=("", "", "", ""), ratio="") for w in ("A01", "A02")]
    errors = [(w, 1, f"P_{w}_s1_w1.tif", f"well {w}, field 1 has no file for channel(s) ['2']") for w in ("A01", "A02")]
    out = _no_field_read(tmp_path / "run", wells, errors, geometry=None, plate_fields=0)
    page = write_plate_report(out).read_text()
    assert "not named as plate positions" not in page and "Plate layout" not in page
    assert "No field of this plate could be read</b>: every one was rejected when the plate was scanned" in page
    assert "<a href='#errors'>Errors</a>" in page and "<h2 id='errors'>Errors</h2>" in page
    assert "<td>A01</td><td>1</td><td>well A01, field 1 has no file" in page
    assert not (out / "report" / "count.png").exists() and not (out / "report" / "drift.png").exists()


def test_a_plate_where_every_field_failed_when_read_says_so(tmp_path, maps):
    """The same when the fields passed the scan and every one failed when read: no map of 'failed' wells."""
    wells = [_well(w, fields=1, failed=1, count=0, means=("", "", "", ""), ratio="") for w in ("A01", "B03")]
    errors = [(w, 1, f"P_{w}_s1_w1.tif", "unreadable TIFF") for w in ("A01", "B03")]
    out = _no_field_read(tmp_path / "run", wells, errors, geometry=(8, 12), plate_fields=2)
    page = write_plate_report(out).read_text()
    assert "No field of this plate could be read</b>: every one was rejected when the plate was scanned or " \
           "when the fields were read" in page
    assert "Plate layout" not in page and not (out / "report" / "count.png").exists()
    # nothing was timed: the throughput line says so, and no Performance heading stands over nothing
    assert "<th>Throughput</th><td>none to report: no field gave a result (2 fields failed" in page
    assert "<h2>Performance</h2>" not in page and "fields/s" not in page


def test_throughput_says_how_many_fields_failed_beside_it(tmp_path, maps):
    out = _run_folder(tmp_path / "run", [_well("A01"), _well("A02", failed=1)],
                      errors=[("A02", 2, "b.tif", "unreadable TIFF")])
    summary = json.loads((out / "run.json").read_text())
    summary.update(fields_processed=4, fields_with_results=3, fields_failed=1)
    (out / "run.json").write_text(json.dumps(summary))
    page = write_plate_report(out).read_text()
    assert ("<th>Throughput</th><td>10.00 fields/s; latency p50 0.20 s, p99 0.30 s (over the 3 fields that gave a "
            "result; 1 more failed and is not counted, see <a href='#errors'>Errors</a>)") in page
    assert "<h2>Performance</h2>" in page


def test_count_map_colour_scale_starts_at_zero(tmp_path, maps):
    """Counts are ratio data: 80 and 90 objects must not be drawn as the two ends of the scale."""
    wells = [_well("A01", count=80), _well("A02", count=85), _well("A03", count=90)]
    write_plate_report(_run_folder(tmp_path / "run", wells))
    norm = maps["Objects per well"]["images"][0].norm
    assert (norm.vmin, norm.vmax) == (0.0, 90.0)
    assert norm(80) > 0.85   # nearly as dark/bright as the fullest well, not the opposite end
    drift = maps["Drift (max statistic / threshold)"]["images"][0].norm
    assert (drift.vmin, drift.vmax) == (0.0, 2.0)   # the drift map keeps its scale around the threshold (1)


def test_drift_course_alarms_stand_apart_from_the_threshold_line(tmp_path, maps):
    """The alarm dots are red and named in the legend; the threshold line is a neutral dashed line, not the same
    red (an alarm just above 1 sat on a red line of its own colour)."""
    from matplotlib.colors import to_rgb  # noqa: PLC0415

    wells = [_well("A01", ratio=0.4), _well("A02", ratio=1.02, alarms=1), _well("A03", ratio=2.6, alarms=1)]
    write_plate_report(_run_folder(tmp_path / "run", wells))
    ax = maps["statistic / threshold"]["axes"]
    threshold = [line for line in ax.lines if list(line.get_ydata()) == [1.0, 1.0]]
    assert len(threshold) == 1
    line = np.array(to_rgb(threshold[0].get_color()))
    assert threshold[0].get_linestyle() in ("--", "-."), "the threshold is drawn as a solid line"
    assert line.max() - line.min() < 0.1, f"the threshold line is coloured ({threshold[0].get_color()}), not grey"
    alarms = [c for c in ax.collections if c.get_label() == "alarm"]
    assert len(alarms) == 1 and len(alarms[0].get_offsets()) == 2
    dots = np.array(alarms[0].get_facecolor()[0][:3])
    assert dots[0] > 0.7 and dots[1:].max() < 0.3, "the alarm dots are not red"
    assert np.abs(dots - line).max() > 0.5
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "alarm" in legend and "alarm threshold" in legend


def test_latency_axis_says_the_latency_ends_at_the_result_not_the_write(monkeypatch):
    """A field's latency runs from its read to its result, without the well's write (timed as a stage of its
    own, README and PlateRun._field_latency); the histogram's axis said 'read to written'."""
    import matplotlib.axes

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel", lambda self, text, **kw: labels.append(text))
    plate_report._latency_histogram(np.array([0.2, 0.3, 0.4]))
    assert labels == ["latency per field (s): read to result"]
