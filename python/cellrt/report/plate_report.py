"""The plate report a biologist opens after a run: plate heatmaps, per-stage time, throughput.

Reads only the run's output folder (wells.csv, timings.csv, errors.csv,
run.json), so it can be regenerated for any finished run.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_text
from .._text import counted
from ..io.plate import row_name, well_position, well_sort_key
from ..io.tables import read_table

STAGE_COLOURS = {"read": "#8da0cb", "tile": "#66c2a5", "infer": "#fc8d62", "stitch": "#e78ac3",
                 "postprocess": "#a6d854", "measure": "#ffd92f", "write": "#b3b3b3"}


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


NO_DATA = "#eeeeee"      # a well with no row in the tables (or outside the imaged area): plain grey
NO_VALUE_HATCH = "////"  # a well with a row but no value (no objects, every field failed): grey, hatched
ALARM_FRAME = "black"    # drift alarm frame: a colour in none of the heatmaps' colormaps


def _number(value) -> float:
    """One table cell as a float; an empty or unparsable cell (a missing value) is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _column(table: dict, name: str) -> np.ndarray:
    """A table column as floats, NaN where a cell is empty (wells.csv leaves means of a well without
    objects empty, or writes nan); an absent column is empty."""
    return np.array([_number(v) for v in table.get(name, [])], dtype=np.float64)


def _cell_text(value: float, integer: bool = False) -> str:
    if integer or abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.2f}"


def _plate_heatmap(values: dict, geometry, title: str, unit: str, cmap: str = "viridis", *, vmin=None, vmax=None,
                   outlined=(), labels=None, nan_label="n/a", integer=False, marked=(), below_vmin=None):
    """A plate map of ``values`` (well -> number). A well missing from ``values`` is plain grey (no data);
    one present with NaN is grey and hatched, labelled ``labels[well]`` or ``nan_label``. ``outlined``
    wells get the alarm frame, ``marked`` wells a dagger after their number; values below ``vmin`` are
    written as ``below_vmin`` when given (they are coloured as vmin)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    labels = labels or {}
    rows, columns = geometry
    grid = np.full((rows, columns), np.nan)
    no_value = {}
    for well, value in values.items():
        position = well_position(well)
        if position is not None and position[0] < rows and position[1] < columns:
            grid[position] = value
            if not np.isfinite(value):
                no_value[position] = labels.get(well, nan_label)
    fig, ax = plt.subplots(figsize=(0.55 * columns + 1.8, 0.5 * rows + 1.0))
    masked = np.ma.masked_invalid(grid)
    colours = plt.get_cmap(cmap).with_extremes(bad=NO_DATA)
    image = ax.imshow(masked, cmap=colours, aspect="equal", vmin=vmin, vmax=vmax)
    for (r, c) in no_value:
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch=NO_VALUE_HATCH,
                                   edgecolor="#b0b0b0", linewidth=0.0))
    framed = 0
    for well in outlined:
        position = well_position(well)
        if position is not None and position[0] < rows and position[1] < columns:
            # inset so that frames of neighbouring wells stay apart; black and white so it shows on any colour
            ax.add_patch(plt.Rectangle((position[1] - 0.42, position[0] - 0.42), 0.84, 0.84, fill=False,
                                       edgecolor=ALARM_FRAME, linewidth=2.6, zorder=4, gid="alarm"))
            ax.add_patch(plt.Rectangle((position[1] - 0.30, position[0] - 0.30), 0.60, 0.60, fill=False,
                                       edgecolor="white", linewidth=0.8, zorder=4))
            framed += 1
    ax.set_xticks(range(columns), [str(c + 1) for c in range(columns)], fontsize=7)
    ax.set_yticks(range(rows), [row_name(r) for r in range(rows)], fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=10)
    finite = grid[np.isfinite(grid)]
    marked_positions = {well_position(w) for w in marked}
    outlined_positions = {well_position(w) for w in outlined}
    if columns <= 24:
        low = (finite.min() if finite.size else 0.0) if vmin is None else vmin
        high = (finite.max() if finite.size else 1.0) if vmax is None else vmax
        middle = (low + high) / 2
        dark_ends = cmap in ("RdYlBu_r",)  # diverging: dark at both ends, light in the middle
        for (r, c), value in np.ndenumerate(grid):
            if (r, c) in no_value:
                ax.text(c, r, no_value[(r, c)], ha="center", va="center", fontsize=5.5, color="#444444")
            elif np.isfinite(value):
                if below_vmin is not None and vmin is not None and value < vmin:
                    text, shown = below_vmin, vmin
                else:
                    text, shown = _cell_text(value, integer), value
                if (r, c) in marked_positions:
                    text += "\u2020"
                light = abs(shown - middle) < (high - low) / 4 if dark_ends else shown > middle
                ax.text(c, r, text, ha="center", va="center", fontsize=6, color="black" if light else "white",
                        fontweight="bold" if (r, c) in outlined_positions else "normal",
                        zorder=5)
    handles = []
    if framed:
        handles.append(Patch(facecolor="none", edgecolor=ALARM_FRAME, linewidth=2.0, label="alarm"))
    if no_value:
        handles.append(Patch(facecolor=NO_DATA, edgecolor="#b0b0b0", hatch=NO_VALUE_HATCH, label="no value"))
    if (~np.isfinite(grid)).sum() > len(no_value):
        handles.append(Patch(facecolor=NO_DATA, edgecolor="#cccccc", label="no data"))
    if handles:
        ax.legend(handles=handles, fontsize=7, frameon=False, ncol=len(handles), loc="upper center",
                  bbox_to_anchor=(0.5, -0.035 * 8 / max(rows, 1) - 0.02), handlelength=1.4)
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    if integer:
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    bar.set_label(unit, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _stage_chart(stage_seconds: dict, wall: float):
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7.5, 1.9))
    left = 0.0
    total = sum(stage_seconds.values()) or 1.0
    for stage, seconds in stage_seconds.items():
        share = seconds / total
        ax.barh([0], [share], left=left, color=STAGE_COLOURS.get(stage, "#999999"), label=stage)
        if share > 0.06:
            ax.text(left + share / 2, 0, f"{stage}\n{100 * share:.0f}%", ha="center", va="center", fontsize=7)
        left += share
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("share of summed stage time (stages overlap in time; wall clock "
                  f"{wall:.1f} s)", fontsize=8)
    ax.legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.55), frameon=False)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _drift_course(drift: dict):
    """The drift statistic field by field in acquisition order, against the alarm line."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    # The unbiased MMD estimate scatters around 0 without drift, so it can be negative; drawn at 0.
    ratio = np.maximum(_column(drift, "Drift_Ratio"), 0.0)
    full = np.asarray(drift.get("Drift_WindowFull", [])).astype(str) == "True"
    alarm = np.asarray(drift.get("Drift_Alarm", [])).astype(str) == "True"
    if len(full) != len(ratio):
        full = np.ones(len(ratio), bool)
    if len(alarm) != len(ratio):
        alarm = ratio > 1.0
    wells = [str(w) for w in drift.get("Metadata_Well", [""] * len(ratio))]
    steps = np.arange(len(ratio))
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    ax.plot(steps[full], ratio[full], color="#4575b4", linewidth=1.0, marker=".", markersize=3, label="statistic")
    if (~full).any():
        ax.plot(steps[~full], ratio[~full], color="#bbbbbb", linewidth=1.0, marker=".", markersize=3,
                label="window filling")
    # The line is neutral and the alarms alone red: in one colour, an alarm dot sitting on the line vanishes into
    # it and the legend cannot tell which red means what.
    ax.axhline(1.0, color="#333333", linewidth=0.9, linestyle=(0, (4, 3)), zorder=2, label="alarm threshold")
    if alarm.any():
        ax.scatter(steps[alarm], ratio[alarm], color="#d7191c", edgecolors="white", linewidths=0.5, s=22,
                   zorder=3, label="alarm")
    finite = ratio[np.isfinite(ratio)]
    ax.set_ylim(0.0, 1.08 * max(1.1, float(finite.max()) if finite.size else 0.0))
    starts = [i for i in range(len(wells)) if i == 0 or wells[i] != wells[i - 1]]
    every = max(1, len(starts) // 16)
    ax.set_xticks([starts[i] for i in range(0, len(starts), every)],
                  [wells[starts[i]] for i in range(0, len(starts), every)], fontsize=7, rotation=90)
    ax.set_ylabel("statistic / threshold", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, frameon=False, ncol=4, loc="lower right", bbox_to_anchor=(1.0, 1.0))
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _latency_histogram(latencies: np.ndarray):
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 3)), color="#fc8d62")
    ax.set_xlabel("latency per field (s): read to result", fontsize=8)
    ax.set_ylabel("fields", fontsize=8)
    ax.tick_params(labelsize=7)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def write_plate_report(out_dir) -> Path:
    """Write ``out_dir/report/index.html`` and its PNGs; returns the HTML path."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "run.json").read_text())
    wells = read_table(out_dir / "wells.csv")
    timings = read_table(out_dir / "timings.csv")
    errors = read_table(out_dir / "errors.csv")
    # Wells not named as plate positions (a 'glob' plate: one "well" per file) have no plate map.
    on_plate = summary["plate"]["geometry"] is not None
    geometry = summary["plate"]["geometry"] or (8, 12)
    names = [str(w) for w in wells.get("Metadata_Well", [])]
    status = _well_status(wells, errors)
    all_failed, no_objects = status["all_failed"], status["no_objects"]
    # wells with results and wells that only appear in errors.csv (every field rejected when scanned)
    listed = names + sorted(all_failed - set(names), key=well_sort_key)
    # Not one field gave a result. When the scan rejected them all, the run's plate had no wells, hence no
    # geometry - which must not be read as wells not named as plate positions; either way maps or a wells
    # table would only repeat 'failed', and the reasons are in the errors table.
    nothing_read = bool(listed) and set(listed) <= all_failed

    figures = []  # (file name, title, caption, png)

    def per_well(column):
        values = dict(zip(names, _column(wells, column)))
        return {w: float("nan") if w in all_failed else values.get(w, float("nan")) for w in listed}

    mean_labels = {**{w: "none" for w in no_objects}, **{w: "failed" for w in all_failed}}
    # Counts are ratio data: their colour scale starts at 0, so that a well with twice the cells looks it; a scale
    # from the lowest well would make 80 against 90 look like empty against full.
    figures.append(("count.png", "Objects per well", "Number of objects (all classes) in all fields of the well"
                    + ("; \u2020: some of its fields failed, counted over the others only" if status["some_failed"]
                       else "") + "; colour scale from 0.",
                    _plate_heatmap(per_well("Count"), geometry, "Objects per well", "objects", vmin=0.0,
                                   labels={w: "failed" for w in all_failed}, integer=True,
                                   marked=status["some_failed"])))
    for column in wells:
        if column.startswith("Fraction_") and len({c for c in wells if c.startswith("Fraction_")}) > 1:
            label = column[len("Fraction_"):]
            figures.append((f"fraction_{label}.png", f"Fraction {label}", f"Share of objects classed {label}.",
                            _plate_heatmap(per_well(column), geometry, f"Fraction {label}", "fraction", "magma",
                                           labels=mean_labels)))
    if "MedianArea" in wells:
        figures.append(("area.png", "Median object area", "Median area of the well's objects, in pixels.",
                        _plate_heatmap(per_well("MedianArea"), geometry, "Median area", "px", "cividis",
                                       labels=mean_labels)))
    for column in wells:
        if column.startswith("Median_Intensity_MeanIntensity_"):
            channel = column[len("Median_Intensity_MeanIntensity_"):]
            figures.append((f"intensity_{channel}.png", f"Median of the mean {channel} intensity",
                            f"Per object mean {channel} intensity, median over the well.",
                            _plate_heatmap(per_well(column), geometry, f"Mean {channel} intensity (median)",
                                           "intensity", "inferno", labels=mean_labels)))
    drift = summary.get("drift") or {}
    if drift.get("monitored") and "Drift_MaxRatio" in wells:
        alarmed = {w for w, n in zip(names, _column(wells, "Drift_Alarms")) if n > 0}
        ratios = per_well("Drift_MaxRatio")
        finite = [v for v in ratios.values() if np.isfinite(v)]
        figures.append(("drift.png", "Drift",
                        "Largest drift statistic over the well's fields, as a multiple of the alarm threshold "
                        "(MMD of the model's field embeddings against the reference over a sliding window of "
                        f"{drift.get('window', '?')} fields in acquisition order). Above 1: alarm, black frame "
                        "and bold number. \u201c<0\u201d: the estimate came out below zero, which happens by "
                        "chance when the fields look like the reference (no drift). \u201cfilling\u201d: the "
                        "window was not yet full.",
                        _plate_heatmap(ratios, geometry, "Drift (max statistic / threshold)",
                                       "\u00d7 threshold", "RdYlBu_r", vmin=0.0, vmax=max([2.0, *finite]),
                                       outlined=alarmed, labels={w: "failed" for w in all_failed},
                                       nan_label="filling", below_vmin="<0")))
        if (out_dir / "drift.csv").is_file():
            course = read_table(out_dir / "drift.csv")
            if len(course.get("Drift_Ratio", [])):
                figures.append(("drift_course.png", "Drift over the plate",
                                "The drift statistic after each field, in acquisition order (wells labelled where "
                                "they start), as a multiple of the alarm threshold (dashed grey line); red dots: "
                                "fields that raised an alarm; values below 0 (no drift) are drawn at 0.",
                                _drift_course(course)))
    if len(timings.get("latency", [])):
        figures.append(("stages.png", "Where the time goes",
                        "Per-stage time summed over all fields of this run.",
                        _stage_chart(summary["stage_seconds"], summary["wall_seconds"])))
        figures.append(("latency.png", "Latency per field", "", _latency_histogram(np.asarray(
            timings["latency"], dtype=float))))

    if nothing_read or not on_plate:
        figures = [f for f in figures if f[0] not in _PLATE_MAPS and not f[0].startswith(("fraction_", "intensity_"))]
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    for name, _, _, png in figures:
        with atomic_path(report / name) as tmp:
            tmp.write_bytes(png)

    total_objects = int(np.nansum(_column(wells, "Count")))
    failed = len(errors.get("Error", []))
    model, plate = summary["model"], summary["plate"]
    facts = [("Plate", f"{html.escape(plate['name'])} ({counted(plate['fields'], 'field')} in "
                       f"{counted(plate['wells'], 'well')}, layout {html.escape(plate['layout'])})"
                       f"{_rejected_note(plate)}"),
             ("Model", f"{html.escape(model['name'])} ({model['kind']}, backend {model['backend']}"
                       f"{', ' + model['precision'] if model.get('precision') else ''}, "
                       f"ONNX SHA-256 {model.get('weights_sha256', model['onnx_sha256'])[:12]}…)"),
             ("Objects", f"{total_objects:,}"),
             ("Throughput", _throughput_fact(summary)),
             ("Inference share of wall time", "–" if summary.get("infer_share_of_wall") is None else
              f"{100 * summary['infer_share_of_wall']:.0f}%"),
             ("Fields with errors", str(failed)),
             ("Wells to check", _wells_fact(status, names, plate.get("wells"))),
             ("Drift", _drift_fact(drift)),
             ("Object scale", _scale_fact(summary.get("scale") or {})),
             ("cellrt", html.escape(summary["cellrt"]))]
    if summary.get("resumed_wells"):
        facts.append(("Resumed", f"{len(summary['resumed_wells'])} wells were already done and kept"))
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>cellrt plate report: {html.escape(plate['name'])}</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}"
             "table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #ddd;"
             "font-size:14px}figure{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}"
             "figcaption{font-size:12px;color:#555;max-width:520px}h2{margin-top:28px}</style></head><body>",
             f"<h1>Plate {html.escape(plate['name'])}</h1><table>"]
    parts += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts]
    if nothing_read:
        parts.append("</table>" + _nothing_read_note(plate))
    elif on_plate:
        parts.append("</table><h2>Plate layout</h2><p style='font-size:13px;color:#555'>In the plate maps, plain "
                     "grey: no data for the well (not imaged, or no results); grey and hatched: the well has no "
                     "value there (<i>none</i>: no objects were found, so there is no mean; <i>failed</i>: every "
                     "field of the well failed, or was rejected when the plate was scanned; see Errors).</p>")
    else:
        parts.append("</table>" + _wells_table(wells))
    for name, title, caption, png in figures:
        if name in ("stages.png", "latency.png"):
            continue
        parts.append(_figure_html(name, title, caption, png))
    thumbnails = sorted((out_dir / "thumbnails").glob("*.png"), key=lambda p: _thumbnail_key(p.stem))
    if thumbnails:
        counts = {}
        if (out_dir / "fields.csv").is_file():
            fields = read_table(out_dir / "fields.csv")
            counts = {(str(w), int(f)): int(c) for w, f, c in zip(fields.get("Metadata_Well", []),
                                                                  _column(fields, "Metadata_Field"),
                                                                  _column(fields, "Count"))
                      if np.isfinite(f) and np.isfinite(c)}
        parts.append("<h2>Segmentation check</h2><p style='font-size:13px;color:#555'>Outlines of the objects "
                     "found (yellow) on the first field of wells spread over the plate; the field's first input "
                     "channel, 1&ndash;99.8 percentile contrast.</p>")
        for path in thumbnails:
            well, field_no = _thumbnail_key(path.stem)
            objects = counts.get((well, field_no))
            caption = f"{well}, field {field_no}" + (f": {objects} objects" if objects is not None else "")
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<figure style='margin:4px 8px 8px 0'><img alt='{html.escape(caption)}' "
                         f"src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    performance = [_figure_html(name, title, caption, png) for name, title, caption, png in figures
                   if name in ("stages.png", "latency.png")]
    if performance:   # no field gave a result: nothing was timed, and the Throughput line says so
        parts += ["<h2>Performance</h2>", *performance]
    if failed:
        parts.append("<h2 id='errors'>Errors</h2><table><tr><th>Well</th><th>Field</th><th>Error</th></tr>")
        for well, field_no, error in zip(errors.get("Metadata_Well", []), errors.get("Metadata_Field", []),
                                         errors["Error"]):
            parts.append(f"<tr><td>{html.escape(str(well))}</td><td>{html.escape(_plain_cell(field_no))}</td>"
                         f"<td>{html.escape(str(error))}</td></tr>")
        parts.append("</table>")
    parts.append("<p style='font-size:12px;color:#777'>Tables: objects, fields.csv, wells.csv, errors.csv, "
                 "timings.csv and run.json beside this folder.</p></body></html>")
    path = report / "index.html"
    write_text(path, "\n".join(parts))
    return path


_PLATE_MAPS = ("count.png", "area.png", "drift.png")
WELLS_TABLE_ROWS = 384


def _wells_table(wells: dict) -> str:
    """Per-well numbers as a table, for wells that are not plate positions (no map to draw them on)."""
    columns = [c for c in ("Metadata_Well", "Fields", "FieldsFailed", "Count", "MeanArea", "MedianArea")
               if c in wells] + [c for c in wells if c.startswith(("Fraction_", "Median_Intensity_", "Drift_"))]
    names = list(wells.get("Metadata_Well", []))
    head = "".join(f"<th>{html.escape(c.replace('Metadata_', ''))}</th>" for c in columns)
    rows = []
    for i in range(min(len(names), WELLS_TABLE_ROWS)):
        cells = []
        for c in columns:
            value = wells[c][i]
            number = _number(value) if c != "Metadata_Well" else float("nan")
            text = (str(value) if c == "Metadata_Well" else "" if not np.isfinite(number)
                    else _plain_cell(number) if float(number).is_integer() else f"{number:.3g}")
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f"<p style='font-size:12px;color:#777'>First {WELLS_TABLE_ROWS} of {len(names)} wells; all in "
            f"wells.csv.</p>" if len(names) > WELLS_TABLE_ROWS else "")
    return ("<h2>Wells</h2><p style='font-size:13px;color:#555'>The wells are not named as plate positions (A01, "
            "B02, ...), so there are no plate maps; their numbers:</p><table><tr>" + head + "</tr>"
            + "".join(rows) + "</table>" + more)


def _throughput_fact(summary: dict) -> str:
    """Fields/s and latency over the fields that gave a result, with how many failed; without any, says so."""
    failed = summary.get("fields_failed", 0)   # absent from a run.json before failed fields were told apart
    if summary.get("fields_per_second") is None:
        if failed:
            return (f"none to report: no field gave a result ({counted(failed, 'field')} failed, see "
                    f"<a href='#errors'>Errors</a>), so nothing was timed")
        return "none to report: no field was processed in this run"
    latency = [summary.get(key) for key in ("latency_p50_s", "latency_p99_s")]
    text = (f"{summary['fields_per_second']:.2f} fields/s; latency p50 "
            + ", p99 ".join("–" if value is None else f"{value:.2f} s" for value in latency))
    if failed:
        text += (f" (over the {counted(summary['fields_with_results'], 'field')} that gave a result; {failed} more "
                 f"failed and {'is' if failed == 1 else 'are'} not counted, see <a href='#errors'>Errors</a>)")
    return text


def _rejected_note(plate: dict) -> str:
    """How many of the plate's fields (counted in its totals) were rejected when it was scanned, or ''."""
    fields = plate.get("rejected_fields", 0)
    if not fields:
        return ""
    wells = plate.get("rejected_wells", 0)
    whole = f" ({counted(wells, 'well')} had no field left)" if wells else ""
    return f"; {counted(fields, 'field')} rejected when the plate was scanned{whole}, see <a href='#errors'>Errors</a>"


def _nothing_read_note(plate: dict) -> str:
    """In place of the maps or the wells table, when no field of the plate gave a result."""
    # run.json before the plate's totals counted rejected fields has no 'rejected_fields' and 0 fields then.
    scan_only = plate["fields"] - plate.get("rejected_fields", 0) <= 0
    when = ("when the plate was scanned (--skip-bad), so the run had no field left to read" if scan_only
            else "when the plate was scanned or when the fields were read")
    return ("<h2>Wells</h2><p style='font-size:13px;color:#555'><b>No field of this plate could be read</b>: "
            f"every one was rejected {html.escape(when)}. There are no results to show; the reason for each "
            "field or file is in the <a href='#errors'>Errors</a> table below (errors.csv).</p>")


def _scale_fact(scale: dict) -> str:
    """The plate's object diameter against the model's range, what was resampled, and the sampled fields
    that differ from the plate's (run.json ``scale``)."""
    if not scale:
        return "not recorded (a run from before object scale was measured)"
    if "model_diameter_px" not in scale:
        return html.escape(scale.get("source", "") + "; fields run as they are")
    low, high = scale["model_range_px"]
    text = f"model's objects {scale['model_diameter_px']:g} px, run as they are from {low:g} to {high:g} px; "
    if "object_diameter_px" in scale:
        text += f"this plate's {scale['object_diameter_px']:g} px ({html.escape(scale['source'])}): "
        text += (f"<b>every field resampled ×{scale['factor']:.3g}</b> to the model's scale (labels and measurements "
                 f"in the plate's pixels)" if scale["factor"] != 1.0 else "in range, fields run as they are")
    else:
        text += html.escape(scale.get("source", ""))
    if scale.get("plate_pixel_size_um"):
        text += f"; pixel size {scale['plate_pixel_size_um']:g} µm ({html.escape(scale['plate_pixel_size_source'])})"
    warnings = scale.get("warnings") or []
    if warnings:
        text += ("; <b style='color:#d7191c'>check</b>: " + html.escape("; ".join(warnings[:6]))
                 + ("…" if len(warnings) > 6 else "") + " (more than 1.5× off the plate's)")
    return text


def _drift_fact(drift: dict) -> str:
    if not drift.get("monitored"):
        return html.escape("not monitored: " + drift.get("note", "no drift reference given for this run"))
    if drift["alarms"]:
        first = drift["first_alarm"]
        text = (f"<b style='color:#d7191c'>ALARM</b>: {drift['alarms']} of {drift['fields']} fields above the "
                f"threshold, in wells {html.escape(', '.join(drift['wells_with_alarms'][:12]))}"
                f"{'…' if len(drift['wells_with_alarms']) > 12 else ''} (first: {html.escape(str(first['well']))}, "
                f"field {first['field']}; black frames in the drift map): their images look unlike the "
                f"reference's to the model - check focus, "
                f"illumination and staining there; drift.csv has every field")
    elif not drift.get("fields"):
        text = "no field was monitored: none gave an embedding (every field failed or was rejected)"
    else:
        text = f"no alarm over {drift['fields']} fields"
    return text + "; against " + html.escape(drift["note"])


def _well_status(wells: dict, errors: dict) -> dict:
    """Wells where every field failed (in wells.csv with FieldsFailed == Fields, or only in errors.csv),
    wells where some did, and wells where no objects were found."""
    names = [str(w) for w in wells.get("Metadata_Well", [])]
    fields = dict(zip(names, _column(wells, "Fields")))
    failed = dict(zip(names, _column(wells, "FieldsFailed")))
    count = dict(zip(names, _column(wells, "Count")))
    error_wells = {str(w) for w in errors.get("Metadata_Well", []) if str(w) and str(w) != "nan"}
    all_failed = {w for w in names if fields.get(w, 0) > 0 and failed.get(w, 0) >= fields[w]}
    all_failed |= error_wells - set(names)
    some_failed = ({w for w in names if failed.get(w, 0) > 0} | (error_wells & set(names))) - all_failed
    no_objects = {w for w in names if count.get(w) == 0} - all_failed
    return {"all_failed": all_failed, "some_failed": some_failed, "no_objects": no_objects}


def _wells_fact(status: dict, names: list, plate_wells) -> str:
    def listing(wells):
        ordered = sorted(wells, key=well_sort_key)
        return html.escape(", ".join(ordered[:24]) + ("…" if len(ordered) > 24 else ""))

    items = []
    if status["no_objects"]:
        items.append(f"no objects found in {len(status['no_objects'])}: {listing(status['no_objects'])}")
    if status["all_failed"]:
        items.append(f"every field failed in {len(status['all_failed'])}: {listing(status['all_failed'])}")
    if status["some_failed"]:
        items.append(f"some fields failed in {len(status['some_failed'])}: {listing(status['some_failed'])}")
    missing = plate_wells - len(set(names) | status["all_failed"]) if isinstance(plate_wells, int) else 0
    if missing > 0:
        items.append(f"{missing} of the plate's {plate_wells} wells have no results (plain grey in the maps)")
    return "; ".join(items) if items else "none"


def _plain_cell(value) -> str:
    """A table cell as written: 2.0 -> '2', nan -> ''."""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if float(value).is_integer():
            return str(int(value))
    return str(value)


def _thumbnail_key(stem: str) -> tuple[str, int]:
    """'B03_f02' -> ('B03', 2), in plate order."""
    well, _, field_no = stem.rpartition("_f")
    return well, int(field_no) if field_no.isdigit() else 0


def _figure_html(name: str, title: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return (f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>{html.escape(title)}</b> {html.escape(caption)} ({name})</figcaption></figure>")
