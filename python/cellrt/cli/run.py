"""``cellrt run`` and ``cellrt demo``: a plate through a model into an output folder with a report."""
from __future__ import annotations

import os
import sys
import time
import traceback
from importlib import resources
from pathlib import Path

DEMO_PLATE = "data/demo/plate"


class Progress:
    """Wells done, fields/s and ETA on one line (a line per 10 % when not a terminal)."""

    def __init__(self, total_fields: int, total_wells: int, stream=None):
        # sys.stderr as it is when the run starts: a default argument kept the one of when this module was
        # imported, which a caller (a test capturing output, a notebook) may have replaced and closed since.
        self.total, self.wells_total = total_fields, total_wells
        self.stream = sys.stderr if stream is None else stream
        self.started = time.perf_counter()
        self.wells_seen: set = set()
        self.tty = self.stream.isatty()
        self.next_report = 0.1

    def __call__(self, done: int, total: int, well: str) -> None:
        self.wells_seen.add(well)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        line = (f"fields {done}/{total}  wells {len(self.wells_seen)}/{self.wells_total}  {rate:.1f} fields/s  "
                f"ETA {eta:.0f} s")
        if self.tty:
            self.stream.write("\r" + line.ljust(78) + ("\n" if done == total else ""))
            self.stream.flush()
        elif done / total >= self.next_report or done == total:
            self.stream.write(line + "\n")
            self.next_report = done / total + 0.1


def _print_summary(summary: dict, out: Path, report: Path) -> None:
    timed, failed = summary["fields_with_results"], summary["fields_failed"]
    engine = f"({summary['model']['backend']}, {summary['model'].get('precision', '?')})"
    if timed:
        p50, p99 = summary["latency_p50_s"], summary["latency_p99_s"]
        print(f"{timed} fields in {summary['wall_seconds']:.1f} s: {summary['fields_per_second']:.2f} fields/s, "
              f"latency p50 {p50:.2f} s / p99 {p99:.2f} s {engine}"
              + (f"; {failed} more field(s) failed, not counted in these (errors.csv)" if failed else ""))
    elif failed:
        print(f"no field gave a result: all {failed} failed (errors.csv), so there is no throughput or latency "
              f"to report {engine}")
    elif summary["plate"].get("rejected_fields") and summary["plate"]["rejected_fields"] == summary["plate"]["fields"]:
        print(f"no field was processed: all {summary['plate']['fields']} were rejected when the plate was scanned "
              f"(errors.csv), so there is no throughput or latency to report {engine}")
    else:
        print(f"no field was processed in this run {engine}")
    scale = summary.get("scale") or {}
    if "object_diameter_px" in scale:
        low, high = scale["model_range_px"]
        action = (f"fields resampled x{scale['factor']:.3g} to the model's {scale['model_diameter_px']:g} px"
                  if scale["factor"] != 1.0 else f"within the model's range {low:g}-{high:g} px: not resampled")
        print(f"object scale: diameter {scale['object_diameter_px']:g} px ({scale['source']}); {action}")
    elif scale.get("source"):
        print(f"object scale: {scale['source']}")
    norm = summary.get("normalization") or {}
    if norm.get("scope") == "plate":
        print(f"normalisation: per plate, percentiles {norm['percentiles']} of {len(norm['fields'])} sampled fields")
    for warning in scale.get("warnings", [])[:5]:
        print(f"warning: object scale differs: {warning} - run such wells apart with --object-diameter",
              file=sys.stderr)
    if summary["stage_share"]:
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in summary["stage_share"].items())
        print(f"stage share: {shares}; inference {100 * (summary['infer_share_of_wall'] or 0):.0f}% of wall time")
    if summary["resumed_wells"]:
        print(f"resumed: {len(summary['resumed_wells'])} wells were already complete")
    for key, why in (("redone_changed_wells", "whose fields changed since they were written"),
                     ("redone_failed_wells", "with fields that had failed")):
        if summary.get(key):
            print(f"redone: {len(summary[key])} well(s) {why} ({_first_wells(summary[key])})")
    images = [name for name in ("labels", "predictions", "images.ome.zarr") if (out / name).exists()]
    objects = next((name for name in ("objects.parquet", "objects.csv") if (out / name).exists()), "objects")
    print(f"results in {out}: {objects}, fields.csv, wells.csv, errors.csv, timings.csv, run.json"
          + "".join(f", {name}/" for name in images))
    drift = summary.get("drift") or {}
    if drift.get("monitored"):
        alarm = (f"ALARM in {drift['alarms']} fields, wells {', '.join(drift['wells_with_alarms'][:8])}"
                 if drift["alarms"] else "no alarm" if drift.get("fields") else "no field monitored")
        print(f"drift: {alarm} ({drift['fields']} fields against {drift['note']}); per field: drift.csv")
    else:
        print(f"drift: not monitored ({drift.get('note', 'no reference')})")
    print(f"report: {report}")


def input_errors() -> tuple[type[BaseException], ...]:
    """The errors a command ends with one line instead of a traceback: they are about what the user gave
    (a plate, a model folder, an option: ValueError, which PlateError and ManifestError are; a plate that
    stops mid-run: PlateRunError; the output disk full, read-only or removed: OSError) or about what the
    machine can run it with (a TensorRT engine refused by the FP16 gate, not built, not loadable here:
    EngineError; a batch ONNX Runtime could not run, out of memory say: InferenceError), and their messages
    name the file, model or option. Anything else is a bug and keeps its traceback."""
    from ..pipeline.plate import PlateRunError  # noqa: PLC0415
    from ..runtime.ort import InferenceError  # noqa: PLC0415
    from ..runtime.tensorrt import EngineError  # noqa: PLC0415 - imports neither tensorrt nor cupy

    return (ValueError, PlateRunError, OSError, EngineError, InferenceError)


def fail(command: str, error: BaseException | str) -> int:
    """One line on stderr for an error of :func:`input_errors` (or its message); the exit status.

    With ``CELLRT_TRACEBACK=1`` in the environment the error's traceback comes first: a bug that raises
    one of these errors would otherwise look like a mistake in the input."""
    if isinstance(error, BaseException) and os.environ.get("CELLRT_TRACEBACK", "") not in ("", "0"):
        traceback.print_exception(error, file=sys.stderr)
    print(f"cellrt {command}: {error}", file=sys.stderr)
    return 1


def run_drift_reference(run_dir: str, out: str, *, wells: str = "", window: int = 16, ert: float = 1000.0,
                        seed: int = 0) -> int:
    """A drift reference from the field embeddings a finished run recorded in its well files."""
    import json  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from ..drift import DriftReference, DriftReferenceError  # noqa: PLC0415

    folder = Path(run_dir)
    try:
        summary = json.loads((folder / "run.json").read_text())
    except FileNotFoundError:
        print(f"cellrt drift-reference: {folder}: no run.json (not a finished `cellrt run` output)", file=sys.stderr)
        return 1
    from ..io.plate import format_well, parse_wells, well_position  # noqa: PLC0415

    records = {p.stem: p for p in sorted((folder / "wells").glob("*.json"))}
    try:
        chosen = parse_wells(wells) or sorted(records)
    except ValueError as error:
        print(f"cellrt drift-reference: --wells: {error}", file=sys.stderr)
        return 2
    chosen = [format_well(*well_position(w)) for w in chosen]
    missing = [w for w in chosen if w not in records]
    if missing:
        print(f"cellrt drift-reference: {folder}: no results for wells {missing} (it has {sorted(records)[:8]}"
              f"{'…' if len(records) > 8 else ''})", file=sys.stderr)
        return 1
    vectors, groups = [], []
    for well in chosen:
        record = json.loads(records[well].read_text())
        for field_no in sorted(record.get("field_embeddings") or {}, key=int):
            vectors.append(record["field_embeddings"][field_no])
            groups.append(well)
    if not vectors:
        print(f"cellrt drift-reference: {folder}: the wells hold no field embeddings (the model "
              f"{summary['model']['name']!r} has no embedding output, or the run predates them)", file=sys.stderr)
        return 1
    model = summary["model"]
    metadata = {"model": model["name"], "precision": model.get("precision"),
                "weights_sha256": model.get("weights_sha256"), "source_run": str(folder.resolve()),
                "plate": summary["plate"]["name"], "wells": chosen}
    try:
        reference = DriftReference.build(np.asarray(vectors, np.float32), window=window, ert=ert, seed=seed,
                                         groups=groups, metadata=metadata)  # wells stay on one side of the split
    except DriftReferenceError as error:
        print(f"cellrt drift-reference: {error}", file=sys.stderr)
        return 1
    path = reference.save(out)
    print(f"wrote {path}: {len(vectors)} fields of {len(chosen)} wells ({len(reference.embeddings)} reference, "
          f"{len(reference.calibration)} calibration), window {window}, threshold {reference.threshold:.4g} "
          f"for one false alarm in {ert:g} fields; model {model['name']} ({model.get('precision')})")
    return 0


def _plate_arguments(channels, object_diameter: str, command: str) -> tuple[dict, object] | None:
    """--channel as a map and --object-diameter as PlateOptions takes them ('auto', None or a float); None
    after saying on stderr which one is malformed."""
    channel_map = {}
    for item in channels:
        model_channel, sep, plate_channel = item.partition("=")
        if not sep:
            print(f"cellrt {command}: --channel should be MODEL_CHANNEL=PLATE_CHANNEL, got {item!r}", file=sys.stderr)
            return None
        channel_map[model_channel] = plate_channel
    if object_diameter in ("auto", "none"):
        return channel_map, None if object_diameter == "none" else "auto"
    try:
        return channel_map, float(object_diameter)
    except ValueError:
        print(f"cellrt {command}: --object-diameter should be 'auto', 'none' or a number of pixels, got "
              f"{object_diameter!r}", file=sys.stderr)
        return None


def run_check(plate_path: str, model_name: str, *, layout: str = "auto", channels=(), object_diameter: str = "auto",
              as_json: bool = False) -> int:
    """``cellrt check``: what a run of this model on this plate will do about object scale, in a few lines."""
    import json  # noqa: PLC0415

    from ..io.plate import open_plate  # noqa: PLC0415
    from ..pipeline import load_model  # noqa: PLC0415
    from ..pipeline.plate import PlateOptions, PlateRun  # noqa: PLC0415

    arguments = _plate_arguments(channels, object_diameter, "check")
    if arguments is None:
        return 2
    channel_map, diameter = arguments
    try:
        plate = open_plate(plate_path, layout)
        model = load_model(model_name, backend="ort", threads=1)
        run = PlateRun(model, plate, Path(plate_path) / ".cellrt-check-unused",
                       PlateOptions(channel_map=channel_map, object_diameter=diameter))
        scale, normalization = run.plate_scale(), run.plate_normalization()
    except input_errors() as error:
        return fail("check", error)
    normalization.pop("values", None)
    if as_json:
        print(json.dumps({"plate": str(plate.root), "model": model.name, "scale": scale,
                          "normalization": normalization}, indent=2))
        return 0
    print(f"plate {plate.name}: {len(plate.fields)} fields in {len(plate.wells)} wells; model {model.name}")
    if "model_diameter_px" not in scale:
        print(f"object scale: {scale['source']}; fields run as they are")
    else:
        low, high = scale["model_range_px"]
        print(f"model: objects of {scale['model_diameter_px']:g} px, run as they are from {low:g} to {high:g} px")
        for entry in scale.get("fields", []):
            found = (f"{entry['diameter_px']:.1f} px ({entry['objects']} objects)" if entry.get("diameter_px")
                     else f"no estimate: {entry.get('note', '')}")
            print(f"  well {entry['Metadata_Well']} field {entry['Metadata_Field']}: {found}")
        if "object_diameter_px" in scale:
            d = scale["object_diameter_px"]
            verdict = ("in the model's range: fields run as they are" if scale["factor"] == 1.0 else
                       f"outside the model's range: every field will be resampled x{scale['factor']:.3g} "
                       f"({'down' if scale['factor'] < 1 else 'up'}), labels and measurements kept in the "
                       f"plate's pixels")
            print(f"plate: objects of {d:g} px ({scale['source']}); {verdict}")
        else:
            print(f"plate: {scale['source']}")
        for warning in scale.get("warnings", []):
            print(f"warning: {warning}: differs from the plate's by more than 1.5x; check these wells, or run them "
                  f"apart with --object-diameter")
    print(f"normalisation: {normalization.get('mode')} per {normalization.get('scope')}")
    return 0


def run_plate(plate_path: str, model_name: str, out: str, *, backend: str = "auto", batch: int = 8,
              workers: int = 2, readers: int = 2, threads: int = 0, resume: bool = False, skip_bad: bool = False,
              layout: str = "auto", z: int = 1, timepoint: int = 1, channels=(), table_format: str = "parquet",
              save_labels: bool = False, save_predictions: bool = False, images_format: str = "tiff",
              tile: str = "auto", precision: str = "auto", drift_reference: str | None = "auto",
              object_diameter: str = "auto", normalization: str = "auto", pixel_size: float | None = None) -> int:
    from ..io.plate import open_plate, well_sort_key  # noqa: PLC0415
    from ..pipeline import load_model  # noqa: PLC0415
    from ..pipeline.plate import PlateOptions, PlateRun  # noqa: PLC0415
    from ..report import write_plate_report  # noqa: PLC0415

    arguments = _plate_arguments(channels, object_diameter, "run")
    if arguments is None:
        return 2
    channel_map, diameter = arguments
    try:
        plate = open_plate(plate_path, layout, skip_bad=skip_bad, z=z, timepoint=timepoint)
        model = load_model(model_name, backend=backend, threads=threads, batch_size=batch, precision=precision,
                           tile_size=int(tile) if tile.isdigit() else tile)
        options = PlateOptions(batch_size=batch, readers=readers, workers=workers, skip_bad=skip_bad,
                               table_format=table_format, channel_map=channel_map, save_labels=save_labels,
                               save_predictions=save_predictions, image_format=images_format,
                               drift_reference=drift_reference, object_diameter=diameter,
                               normalization=normalization, pixel_size_um=pixel_size)
        run = PlateRun(model, plate, out, options)
        print(f"plate {plate.name}: {_fields_to_run(plate)}, channels {plate.channels} ({plate.layout}); model "
              f"{model.name} on {model.backend.name} ({model.precision})", file=sys.stderr)
        if plate.rejected_fields:
            wells = sorted({k.well for k in plate.rejected_fields}, key=well_sort_key)
            print(f"plate {plate.name}: {len(plate.rejected_fields)} field(s) rejected when scanned (--skip-bad), "
                  f"in wells {_first_wells(wells)}; why: errors.csv",
                  file=sys.stderr)
        if plate.other_planes:
            print(f"plate {plate.name}: reading z plane {plate.plane[0]}, time point {plate.plane[1]}; "
                  f"{plate.other_planes} file(s) of other planes left aside (--z, --timepoint)", file=sys.stderr)
        summary = run.run(resume=resume, progress=Progress(len(plate.fields), len(plate.wells)))
    except input_errors() as error:
        return fail("run", error)
    except KeyboardInterrupt:   # Ctrl-C: the wells written so far are complete and kept; say how to go on
        print(f"\ncellrt run: interrupted; the wells finished so far are kept in {out}: run the same command "
              f"with --resume to continue", file=sys.stderr)
        return 130
    report = write_plate_report(out)
    _print_summary(summary, Path(out), report)
    hint = _int8_hint(model, summary)
    if hint:
        print(hint)
    # --skip-bad carries on past bad fields, but a plate of which no field gave a result is not a finished
    # plate: automation waiting on the exit status should not file it as one (the outputs are written all
    # the same). A resumed run with nothing left to do is fine. The plate's tables decide, not this run's
    # fields: a resume whose retried fields fail again has the results of the wells it kept.
    nothing_came_out = not summary["plate_fields_with_results"] and (
        summary["fields_failed"] or summary["plate"].get("rejected_fields"))
    return 1 if nothing_came_out else 0


def _first_wells(wells: list) -> str:
    """'A01, A02, ...': the first eight wells named, the rest elided."""
    return ", ".join(wells[:8]) + (", ..." if len(wells) > 8 else "")


def _fields_to_run(plate) -> str:
    """What the start line says the run has to do. Fields rejected when scanned (--skip-bad) are named on the
    line after it; here they only keep the counts true: a plate whose every field was rejected read as
    '0 fields to run in 0 wells', an empty plate."""
    from .._text import counted  # noqa: PLC0415 - '1 field', '2 fields' as the report words them

    to_run = f"{counted(len(plate.fields), 'field')} to run in {counted(len(plate.wells), 'well')}"
    rejected = len(plate.rejected_fields)
    if not rejected:
        return to_run
    found = f"{counted(len(plate.fields) + rejected, 'field')} in {counted(len(plate.imaged_wells), 'well')}"
    if not plate.fields:
        return f"no field to run: all {found} were rejected when scanned"
    return f"{to_run} (of {found}; {rejected} rejected when scanned)"


def _int8_hint(model, summary: dict) -> str | None:
    """A CPU run in FP32 of a model that ships a gated INT8 file: say so, with both held-out results. Not after a
    run where no field gave a result: its speed is not what needs looking at."""
    from ..runtime.ort import int8_file_exact, int8_runs_on_cpu  # noqa: PLC0415

    manifest = model.manifest
    if (model.precision != "fp32" or model.backend.name != "ort" or not manifest.int8
            or not summary["fields_with_results"]):
        return None
    # The session's providers, not the backend's name: ONNX Runtime on CUDA runs an INT8 file's convolutions in
    # float, no faster, and one that fell back to the CPU is a CPU run the tip is for.
    if not int8_runs_on_cpu(model.backend.providers):
        return None
    if not int8_file_exact(manifest.int8.get("weight_bits", 8))[0]:
        return None
    held_out = (manifest.training or {}).get("metrics", {})
    int8 = manifest.int8.get("metrics", {})
    shared = [k for k, v in int8.items() if k in held_out and isinstance(v, (int, float)) and not k.endswith("images")]
    detail = f" (held-out {shared[0]} {int8[shared[0]]} vs {held_out[shared[0]]} in FP32)" if shared else ""
    return (f"tip: {manifest.name} also ships an INT8 network checked against this one{detail}: "
            "`cellrt run ... --precision int8` runs it in 8-bit arithmetic, faster on CPUs")


def run_demo(out: str) -> int:
    """The bundled nuclei model over the bundled demo plate (48 real fields)."""
    plate = resources.files("cellrt").joinpath(DEMO_PLATE)
    out_dir = Path(out)
    print(f"cellrt demo: the bundled 'nuclei' model on a demo plate of 48 real nuclei fields (dsb2018, never seen "
          f"in training) -> {out_dir}", file=sys.stderr)
    _clear_previous_demo(out_dir)
    with resources.as_file(plate) as plate_dir:
        return run_plate(str(plate_dir), "nuclei", str(out_dir))


def _clear_previous_demo(out_dir: Path) -> None:
    """Re-running the demo starts afresh; only a folder holding a previous demo run is cleared,
    and only of the files a run writes."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    config = out_dir / "run-config.json"
    if not config.is_file():
        return
    try:
        previous = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if not str(previous.get("plate", "")).replace("\\", "/").endswith(DEMO_PLATE):
        return
    for name in ("wells", "report", "labels", "predictions", "images.ome.zarr", "thumbnails"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for name in ("objects.parquet", "objects.csv", "fields.csv", "wells.csv", "errors.csv", "timings.csv",
                 "drift.csv", "run.json", "run-config.json"):
        (out_dir / name).unlink(missing_ok=True)
