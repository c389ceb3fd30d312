"""Whole plates: reader threads -> batched inference across fields -> worker pool -> per-well outputs.

Stages overlap: readers decode and tile the next fields while the backend
runs, and workers stitch, post-process and measure finished fields. Batches
fill across field and well boundaries. At most ``max_fields_in_flight``
fields are held at once, so memory stays flat for any plate size. Each well
is written atomically when its last field is done; ``resume`` skips wells
already written by a run with the same model and parameters, and the final
tables are assembled from the well files, so a resumed run produces the same
tables as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from .._atomic import write_text
from ..drift import DriftReference, DriftReferenceError, monitor_stream
from ..io.images import IMAGE_FORMATS, FieldImageWriter
from ..io.plate import FieldSource, Plate, PlateError, read_field, well_sort_key
from ..io.tables import concat_tables, is_count, read_table, write_table
from .engine import EngineError, FieldEngine
from .model import Model
from .scale import (ScaleError, check_length, estimate_object_diameter, factor_from_pixel_sizes, model_scale,
                    rescale_factor)

# Fields (evenly spread over the plate) whose object diameter is estimated before the run; the plate's
# is their median, so every field of the plate runs at one scale and their measurements compare.
SCALE_SAMPLE_FIELDS = 8
# A sampled field whose diameter differs from the plate's by more than this is named in a warning.
SCALE_WARNING_RATIO = 1.5

STAGES = ("read", "tile", "infer", "stitch", "postprocess", "measure", "write")


@dataclass
class PlateOptions:
    batch_size: int = 8
    readers: int = 2
    workers: int = 2
    max_fields_in_flight: int = 16
    skip_bad: bool = False
    table_format: str = "parquet"
    channel_map: dict = field(default_factory=dict)   # model input channel -> plate channel
    save_labels: bool = False
    save_predictions: bool = False
    image_format: str = "tiff"                         # of label/prediction images: 'tiff' or 'ome-zarr'
    # A drift reference (.npz from `cellrt drift-reference`), "auto" (the model's own drift-reference.npz
    # when it was made at this run's precision) or None (no drift monitoring).
    drift_reference: str | None = "auto"
    # The plate's typical object diameter in its pixels: "auto" (estimated from a sample of fields), a
    # number (--object-diameter), or None (every field run as it is).
    object_diameter: float | str | None = "auto"
    # Where percentile normalisation takes its statistics: "field", "plate" (pooled from the sampled
    # fields) or "auto" (the model's: per plate for image2image models, per field otherwise).
    normalization: str = "auto"
    # The plate's pixel size in um (--pixel-size), over its metadata's; None: the metadata's, if any.
    pixel_size_um: float | None = None

    def fingerprint_fields(self) -> dict:
        # What changes the outputs (not how fast they are made): a resumed run must write the same files.
        return {"channel_map": dict(sorted(self.channel_map.items())), "table_format": self.table_format,
                "images": [self.save_labels, self.save_predictions, self.image_format],
                "object_diameter": self.object_diameter, "normalization": self.normalization,
                "pixel_size_um": self.pixel_size_um}


def model_drift_reference(folder, precision: str) -> Path:
    """Where a model folder keeps the drift reference "auto" uses for runs at ``precision``."""
    return Path(folder) / f"drift-reference.{precision}.npz"


class PlateRunError(RuntimeError):
    """A plate run that stopped: the message names the well, field and file."""


def resolve_channels(model: Model, plate: Plate, channel_map: dict) -> tuple[list[str], list[str]]:
    """(plate channels feeding the model's inputs in order, plate channels measured only)."""
    wanted = list(model.manifest.input_channels)
    unknown = [m for m in channel_map if m not in wanted]
    if unknown:
        raise PlateError(f"channel map names {unknown}, which are not inputs of model {model.name!r} {wanted}")
    inputs = []
    for index, name in enumerate(wanted):
        if name in channel_map:
            choice = str(channel_map[name])
        elif name in plate.channels:
            choice = name
        elif len(wanted) == 1 and len(plate.channels) == 1:
            choice = plate.channels[0]
        else:
            raise PlateError(f"{plate.root}: model {model.name!r} takes channels {wanted}; the plate has channels "
                             f"{plate.channels}: say which is which, e.g. --channel {name}={plate.channels[0]}")
        if choice not in plate.channels:
            raise PlateError(f"{plate.root}: channel {choice!r} (for model input {name!r}) is not in the plate's "
                             f"channels {plate.channels}")
        inputs.append(choice)
    extras = [c for c in plate.channels if c not in inputs]
    return inputs, extras


class PlateRun:
    """One model over one plate into one output folder."""

    def __init__(self, model: Model, plate: Plate, out, options: PlateOptions | None = None):
        self.model = model
        self.plate = plate
        self.out = Path(out)
        self.options = options or PlateOptions()
        o = self.options
        for name in ("batch_size", "readers", "workers", "max_fields_in_flight"):
            value = getattr(o, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PlateOptions.{name} should be a positive int, got {value!r}")
        if o.image_format not in IMAGE_FORMATS:
            raise ValueError(f"PlateOptions.image_format should be one of {IMAGE_FORMATS}, got {o.image_format!r}")
        self.inputs, self.extras = resolve_channels(model, plate, o.channel_map)
        self.drift, self.drift_source, self.drift_note = self._drift_reference()
        self.fingerprint = self._fingerprint()
        self.images: FieldImageWriter | None = None
        self.changed_wells: list[str] = []   # written before with other fields; redone on resume
        self.failed_wells: list[str] = []    # written before with fields that failed; redone on resume
        self.thumbnail_wells = _evenly_spaced(self.plate.wells, THUMBNAIL_WELLS)
        if o.normalization not in ("auto", "field", "plate"):
            raise ValueError(f"PlateOptions.normalization should be 'auto', 'field' or 'plate', got "
                             f"{o.normalization!r}")
        if o.pixel_size_um is not None:
            check_length(o.pixel_size_um, "the pixel size (um)", "--pixel-size")
        self.pixel_size_um, self.pixel_size_source = ((float(o.pixel_size_um), "--pixel-size")
                                                      if o.pixel_size_um is not None
                                                      else (plate.pixel_size_um, plate.pixel_size_source))
        self.scale: dict | None = None           # the plate's object scale, found when the run starts
        self.normalization: dict | None = None   # the plate's normalisation, likewise
        self._samples: list | None = None

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def _drift_reference(self) -> tuple[DriftReference | None, Path | None, str]:
        """(reference or None, its file, a sentence for the report on what drift is monitored against)."""
        choice = self.options.drift_reference
        if choice is None:
            return None, None, "no drift reference given for this run"
        spec = self.model.manifest.output("embedding")
        if choice == "auto":
            path = model_drift_reference(self.model.manifest.folder, self.model.precision)
            if spec is None:
                return None, None, (f"model {self.model.name!r} has no embedding output, which drift monitoring "
                                    "compares")
            if not path.is_file():
                return None, None, (f"model {self.model.name!r} brings no drift reference for "
                                    f"{self.model.precision} runs (pass --drift-reference)")
        else:
            path = Path(choice)
            if spec is None:
                raise PlateRunError(f"drift reference {path}: model {self.model.name!r} has no embedding output, "
                                    "which drift monitoring compares; run without --drift-reference")
        try:
            reference = DriftReference.load(path)
            reference.check_compatible(dims=spec.size, precision=self.model.precision, model=self.model.name,
                                       weights_sha256=self.model.weights_sha256, source=f"drift reference {path}")
        except DriftReferenceError as error:
            if choice == "auto":
                return None, None, f"the model's drift reference does not apply: {error}"
            raise PlateRunError(str(error)) from error
        where = "the model's own" if choice == "auto" else str(path)
        return reference, path, (f"{where} reference ({len(reference.embeddings)} fields, window "
                                 f"{reference.window} fields, alarm threshold for one false alarm in "
                                 f"{reference.ert:.0f} fields)")

    def _fingerprint(self) -> str:
        manifest = self.model.manifest
        doc = {"model": manifest.name, "onnx_sha256": manifest.onnx_sha256, "precision": self.model.precision,
               "weights_sha256": self.model.weights_sha256,
               "postprocess": manifest.postprocess, "inputs": self.inputs, "extras": self.extras,
               "tile_size": self.model.tile_size,
               "plate": self.plate.name, "layout": self.plate.layout, **self.options.fingerprint_fields()}
        if self.plate.plane != (1, 1):
            doc["plane"] = list(self.plate.plane)
        # The drift reference is not part of it: the well files hold the embeddings, and the drift tables
        # are recomputed from them at the end of every run, so a resumed run may use another reference.
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def _well_paths(self, well: str) -> tuple[Path, Path]:
        folder = self.out / "wells"
        return folder / f"{well}.objects.{self.options.table_format}", folder / f"{well}.json"

    def _holds_results(self) -> bool:
        return (self.out / "run.json").is_file() or any((self.out / "wells").glob("*.json"))

    def completed_wells(self) -> set[str]:
        """Wells written by a run with this fingerprint over the fields the plate has for them now, every
        field with a result; a well that gained or lost fields since (a plate resumed while still being
        imaged) is redone and listed in ``changed_wells``, one with a field that failed (a file since put
        right, say) in ``failed_wells``."""
        done = set()
        self.changed_wells = []
        self.failed_wells = []
        for well in self.plate.wells:
            objects, record = self._well_paths(well)
            if objects.is_file() and record.is_file():
                try:
                    written = json.loads(record.read_text())
                except (OSError, json.JSONDecodeError):
                    continue  # unreadable record: redo the well
                if written.get("fingerprint") != self.fingerprint:
                    continue
                if {int(f["Metadata_Field"]) for f in written["fields"]} != {
                        f.field for f in self.plate.fields_of(well)}:
                    self.changed_wells.append(well)
                    continue
                if written.get("errors"):
                    self.failed_wells.append(well)
                    continue
                done.add(well)
        return done

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, progress=None) -> dict:
        """Process every field; returns the run summary (also written to run.json)."""
        if self.out.exists() and not self.out.is_dir():
            raise PlateRunError(f"{self.out}: the output folder is an existing file; choose another --out")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PlateRunError(f"{self.out}: cannot create the output folder: {error.strerror or error}") from error
        config_path = self.out / "run-config.json"
        # A run that stopped before finishing any well (a bad field without --skip-bad, say) left nothing to
        # keep or resume: a plain rerun starts over in its folder.
        if config_path.is_file() and (resume or self._holds_results()):
            previous = json.loads(config_path.read_text())
            if not resume:
                raise PlateRunError(f"{self.out}: holds a run already; pass --resume to continue it or choose "
                                    f"another --out")
            if previous.get("fingerprint") != self.fingerprint:
                raise PlateRunError(f"{self.out}: holds a run with another model, plate or parameters "
                                    f"(fingerprint {previous.get('fingerprint', '?')[:12]} vs "
                                    f"{self.fingerprint[:12]}); choose another --out")
        write_text(config_path, json.dumps({"fingerprint": self.fingerprint, "cellrt": __version__,
                                            "model": self.model.name, "plate": str(self.plate.root)}, indent=2))
        skipped = self.completed_wells() if resume else set()
        todo = [f for f in self.plate.fields if f.well not in skipped]
        if self.scale is None:
            self.scale = self.plate_scale()
        if self.normalization is None:
            self.normalization = self.plate_normalization()
        started = time.perf_counter()
        records = self._process(todo, progress) if todo else {}
        wall = time.perf_counter() - started
        return self._finalise(records, skipped, wall, len(todo))

    def _process(self, todo: list[FieldSource], progress) -> dict:
        per_well = defaultdict(int)
        for source in todo:
            per_well[source.well] += 1
        engine = FieldEngine(self.model, self.inputs, self.extras, self.options,
                             field_shape=self.plate.typical_field_shape(), factor=self.scale["factor"],
                             normalization=self.normalization.get("values"))

        def feed() -> None:
            for source in todo:
                if not engine.put(source):
                    return
            engine.close_input()

        feeder = threading.Thread(target=feed, name="cellrt-feed", daemon=True)
        feeder.start()
        records: dict = {}
        buckets: dict[str, list] = defaultdict(list)
        done_fields = 0
        try:
            while done_fields < len(todo):
                try:
                    state, outcome = engine.next_result()
                except EngineError as error:
                    raise PlateRunError(str(error)) from error
                done_fields += 1
                source = state.source
                self._bucket(buckets, state, outcome)
                if len(buckets[source.well]) == per_well[source.well]:
                    records[source.well] = self._write_well(source.well, buckets.pop(source.well))
                if progress is not None:
                    progress(done_fields, len(todo), source.well)
        finally:
            engine.shutdown()
            feeder.join()
        return records

    def plate_scale(self) -> dict:
        """The plate's object scale and the factor every field is resampled by (``run.json``'s ``scale``).

        ``object_diameter`` "auto": the median of the estimates of up to
        ``SCALE_SAMPLE_FIELDS`` fields spread over the plate (fields where the
        estimate fails - empty, saturated - are left out and listed); a
        number: that diameter; None, or a model without an object scale:
        factor 1. Sampled fields that differ from the plate's diameter by more
        than ``SCALE_WARNING_RATIO`` are named in ``warnings``.
        """
        choice = self.options.object_diameter
        scale = model_scale(self.model.manifest)
        pixel = ({"plate_pixel_size_um": self.pixel_size_um, "plate_pixel_size_source": self.pixel_size_source}
                 if self.pixel_size_um is not None else {})
        if scale is None:
            if choice not in (None, "auto"):
                raise PlateRunError(f"--object-diameter: model {self.model.name!r} records no object scale, so "
                                    f"fields cannot be rescaled for it; run without --object-diameter")
            return {"factor": 1.0, "source": f"model {self.model.name!r} records no object scale", **pixel}
        record = {"model_diameter_px": scale.object_diameter_px, "model_range_px": list(scale.diameter_range_px),
                  **pixel}
        if choice is None:
            return {"factor": 1.0, "source": "not rescaled (--object-diameter none)", **record}
        try:
            if choice == "auto" and self.pixel_size_um is not None and scale.pixel_size_um is not None:
                factor = factor_from_pixel_sizes(self.pixel_size_um, scale, self.pixel_size_source)
                # The model's diameter seen in the plate's pixels: in range or not as the estimate would be.
                diameter = scale.object_diameter_px / factor
                return {"factor": rescale_factor(diameter, scale, self.pixel_size_source),
                        "object_diameter_px": round(diameter, 2),
                        "source": f"pixel sizes: the plate's {self.pixel_size_um:g} um, the model's "
                                  f"{scale.pixel_size_um:g} um", **record}
            if choice != "auto":
                diameter = check_length(choice, "the object diameter", "--object-diameter")
                factor = rescale_factor(diameter, scale, "--object-diameter")
                return {"factor": factor, "object_diameter_px": diameter, "source": "--object-diameter", **record}
            fields, diameters = [], []
            for source, stack, error in self._sampled_fields():
                entry = {"Metadata_Well": source.well, "Metadata_Field": source.field}
                try:
                    if error is not None:
                        raise error
                    estimate = estimate_object_diameter(stack[0])
                except (PlateError, ValueError, OSError) as failure:   # the run reports the field when it gets there
                    entry["note"] = f"unreadable: {failure}"
                else:
                    entry.update(estimate.to_json())
                    if estimate.diameter_px is not None:
                        diameters.append(estimate.diameter_px)
                fields.append(entry)
            if not diameters:
                return {"factor": 1.0, "source": f"estimate failed on all {len(fields)} sampled fields; not "
                                                 "rescaled", "fields": fields, **record}
            diameter = float(np.median(diameters))
            factor = rescale_factor(diameter, scale, "the plate's estimated object diameter")
        except ScaleError as error:
            raise PlateRunError(str(error)) from error
        warnings = [f"well {f['Metadata_Well']} field {f['Metadata_Field']}: objects of {f['diameter_px']:.1f} px, "
                    f"the plate's are {diameter:.1f} px" for f in fields if f.get("diameter_px")
                    and max(f["diameter_px"] / diameter, diameter / f["diameter_px"]) > SCALE_WARNING_RATIO]
        return {"factor": factor, "object_diameter_px": round(diameter, 2),
                "source": f"estimated: median of {len(diameters)} of {len(fields)} sampled fields", **record,
                "fields": fields, "warnings": warnings}

    def _sampled_fields(self) -> list:
        """(source, its model inputs (C, H, W) or None, the error reading them) for up to
        ``SCALE_SAMPLE_FIELDS`` fields spread over the plate, read once for the scale and the
        normalisation."""
        if self._samples is None:
            self._samples = []
            for source in _evenly_spaced_list(self.plate.fields, SCALE_SAMPLE_FIELDS):
                try:
                    self._samples.append((source, read_field(source, self.inputs), None))
                except (PlateError, ValueError, OSError) as error:
                    self._samples.append((source, None, error))
        return self._samples

    def plate_normalization(self) -> dict:
        """How the model's inputs are normalised in this run (``run.json``'s ``normalization``): per field,
        or per plate with the percentiles of the sampled fields' pooled pixels (``values``: scale, offset)."""
        manifest = self.model.manifest
        mode = manifest.normalization.get("mode", "none")
        scope = manifest.normalization_scope if self.options.normalization == "auto" else self.options.normalization
        if mode != "percentile":
            return {"mode": mode, "scope": "model constants" if mode == "fixed" else "none"}
        if scope == "field":
            return {"mode": mode, "scope": "field", "percentiles": manifest.normalization["percentiles"]}
        read = [(source, stack) for source, stack, error in self._sampled_fields() if error is None]
        if not read:
            raise PlateRunError(f"plate {self.plate.name}: none of the {len(self._sampled_fields())} fields sampled "
                                f"for per-plate normalisation could be read (first: {self._sampled_fields()[0][2]}); "
                                f"pass --normalization field")
        scale, offset = self.model.normalization([stack for _, stack in read])
        return {"mode": mode, "scope": "plate", "percentiles": manifest.normalization["percentiles"],
                "fields": [f"{source.well} field {source.field}" for source, _ in read],
                "values": [scale.tolist(), offset.tolist()]}

    def _bucket(self, buckets: dict, state, outcome) -> None:
        """File one field's outcome under its well; a failure stops the run unless skip_bad."""
        source = state.source
        if isinstance(outcome, Exception):
            if not self.options.skip_bad:
                raise PlateRunError(f"well {source.well}, field {source.field}: {outcome}") from outcome
            buckets[source.well].append((source, None, str(outcome), self._slim(state, None, outline=False)[0]))
            return
        bucket = buckets[source.well]
        # The well's outline thumbnail is drawn from its first successful field: only that one keeps its
        # image and labels for it (a field numbered lower arriving later takes over).
        outline = source.well in self.thumbnail_wells and all(
            other.field > source.field for other, result, _, _ in bucket if result is not None)
        if outline:
            for index, (other, result, error, other_state) in enumerate(bucket):
                if result is not None:
                    other_state, result = self._slim(other_state, result, outline=False)
                    bucket[index] = (other, result, error, other_state)
        state, result = self._slim(state, outcome, outline=outline)
        bucket.append((source, result, None, state))

    # A field waits in its well's bucket until the well's last field is done (live, without
    # fields_per_well: until close()); it keeps only what the well's write needs, so memory stays flat.
    def _slim(self, state, result, *, outline: bool):
        """(state, result copy) without the arrays no write asks for: the engine let go of the tiles and
        model outputs already; the image and labels stay only for an outline thumbnail (labels also when
        they are saved), predictions only when saved. The caller of a live run keeps its full result."""
        if state.prepared is not None and not outline:
            state.prepared.image = None
            state.prepared.extra_channels = {}
        if result is None:
            return state, None
        o = self.options
        keep_labels = o.save_labels or outline
        keep_prediction = o.save_predictions or (o.save_labels and o.image_format == "ome-zarr")
        return state, replace(result, labels=result.labels if keep_labels else None,
                              prediction=result.prediction if keep_prediction else None, tile_embeddings=None)

    # -- outputs -----------------------------------------------------------------------------------------------
    def _field_objects(self, source: FieldSource, result) -> dict:
        count = result.count
        table = {"Metadata_Plate": np.full(count, self.plate.name, dtype=object),
                 "Metadata_Well": np.full(count, source.well, dtype=object),
                 "Metadata_Field": np.full(count, source.field, dtype=np.int32)}
        table.update(result.objects)
        if self.pixel_size_um is not None:
            # The same measurements in physical units, where the plate's pixel size is known.
            um = self.pixel_size_um
            table["AreaShape_Area_um2"] = np.asarray(result.objects["AreaShape_Area"], np.float64) * um * um
            for name in ("AreaShape_Perimeter", "AreaShape_EquivalentDiameter", "AreaShape_MajorAxisLength",
                         "AreaShape_MinorAxisLength"):
                table[f"{name}_um"] = np.asarray(result.objects[name], np.float64) * um
        if result.class_names:
            table["Classify_Class"] = _class_of_objects(result)
        return table

    def _field_summary(self, source: FieldSource, result, error: str | None) -> dict:
        row = {"Metadata_Plate": self.plate.name, "Metadata_Well": source.well, "Metadata_Field": source.field,
               # A failed field was not measured: its count is missing, not 0 (no cells).
               "Count": None if result is None else int(result.count), "Error": error or ""}
        if result is not None:
            row.update(_object_summary(result.objects, _class_of_objects(result), self._class_names()))
        return row

    def _class_names(self) -> list[str]:
        manifest = self.model.manifest
        return list(manifest.object_classes) if manifest.kind == "semantic" else []

    def _field_latency(self, state) -> float:
        """Seconds from the field's read to its result: not the wait for the well's other fields, nor the
        well's write (a stage of its own in the timings)."""
        return state.finished - state.started

    def _write_well(self, well: str, entries: list) -> dict:
        started = time.perf_counter()
        entries.sort(key=lambda e: e[0].field)
        tables = [self._field_objects(source, result) for source, result, _, _ in entries if result is not None]
        objects = concat_tables(tables) if tables else {"Metadata_Well": np.empty(0, object)}
        fields = [self._field_summary(source, result, error) for source, result, error, _ in entries]
        errors = [{"Metadata_Well": s.well, "Metadata_Field": s.field,
                   "Files": ";".join(str(p) for p in s.files.values()), "Error": error}
                  for s, _, error, _ in entries if error]
        # Only fields that gave a result are timed: a field that failed to read took next to no time, and its
        # near-zero latency counted as a field processed made a plate of unreadable files look fast.
        timings = []
        for source, result, _, state in entries:
            if result is None:
                continue
            row = {"Metadata_Well": source.well, "Metadata_Field": source.field,
                   "latency": self._field_latency(state)}
            for stage in STAGES[:-1]:
                row[stage] = float(result.timings.get(stage, 0.0))
            timings.append(row)
        if self.images is None:
            manifest = self.model.manifest
            self.images = FieldImageWriter(self.out, image_format=self.options.image_format,
                                           save_labels=self.options.save_labels,
                                           save_predictions=self.options.save_predictions,
                                           prediction_channels=list(manifest.dense_output.channels),
                                           wells=self.plate.wells, plate_name=self.plate.name,
                                           pixel_size_um=manifest.pixel_size_um)
        self.images.write_well(well, [(source.field, result) for source, result, _, _ in entries if result is not None])
        if well in self.thumbnail_wells:
            first = next(((s, r, st) for s, r, _, st in entries if r is not None), None)
            if first is not None:
                source, result, state = first
                write_thumbnail(self.out / "thumbnails" / f"{well}_f{source.field:02d}.png",
                                state.prepared.image[0], result.labels)
        objects_path, record_path = self._well_paths(well)
        write_table(objects_path, objects, self.options.table_format)
        write_seconds = (time.perf_counter() - started) / max(1, len(timings))
        for row in timings:
            row["write"] = write_seconds
        record = {"fingerprint": self.fingerprint, "well": well, "fields": fields, "errors": errors,
                  "timings": timings, "embedding": _well_embedding(entries),
                  "field_embeddings": {str(source.field): result.embedding for source, result, _, _ in entries
                                       if result is not None and result.embedding is not None}}
        write_text(record_path, json.dumps(record, indent=1, default=_json_default))  # last: marks the well done
        return record

    def _finalise(self, records: dict, skipped: set, wall: float, processed: int) -> dict:
        for well in skipped:
            records[well] = json.loads(self._well_paths(well)[1].read_text())
        # Fields left out when the plate was scanned (--skip-bad) count as failed fields of their wells.
        scan_failed = defaultdict(list)
        for row in self.plate.rejected:
            if row["Metadata_Well"]:
                scan_failed[row["Metadata_Well"]].append(
                    {"Metadata_Plate": self.plate.name, "Metadata_Well": row["Metadata_Well"],
                     "Metadata_Field": row["Metadata_Field"], "Count": None, "Error": row["Error"]})
        written = [w for w in self.plate.wells if w in records]   # plate order
        wells = sorted(set(written) | set(scan_failed), key=well_sort_key)
        fmt = self.options.table_format
        # CSV cells are joined as text, so identifiers stay as written (plate barcode 20240101, field 1).
        objects = concat_tables([read_table(self._well_paths(w)[0], as_text=True) for w in written])
        write_table(self.out / f"objects.{fmt}", objects, fmt)
        well_fields = {w: sorted((records[w]["fields"] if w in records else []) + scan_failed[w],
                                 key=lambda f: int(f["Metadata_Field"])) for w in wells}
        fields = [row for w in wells for row in well_fields[w]]
        write_table(self.out / "fields.csv", _rows_to_table(fields), "csv")
        drift_rows, drift_summary = self._drift(written, records)
        well_rows = [_well_summary(self.plate.name, w, well_fields[w], objects, self._class_names()) for w in wells]
        if self.drift is not None:
            per_well = defaultdict(list)
            for d in drift_rows:
                per_well[d["Metadata_Well"]].append(d)
            for row in well_rows:
                mine = per_well[row["Metadata_Well"]]
                full = [d["Drift_Ratio"] for d in mine if d["Drift_WindowFull"]]
                row["Drift_MaxRatio"] = max(full) if full else float("nan")
                row["Drift_Alarms"] = sum(d["Drift_Alarm"] for d in mine)
            write_table(self.out / "drift.csv", _rows_to_table(drift_rows) if drift_rows else
                        {"Metadata_Well": [], "Metadata_Field": []}, "csv")
        write_table(self.out / "wells.csv", _rows_to_table(well_rows), "csv")
        errors = [row for w in written for row in records[w]["errors"]] + self.plate.rejected
        write_table(self.out / "errors.csv", _rows_to_table(errors) if errors else
                    {"Metadata_Well": [], "Metadata_Field": [], "Files": [], "Error": []}, "csv")
        timings = [row for w in written for row in records[w]["timings"]]
        write_table(self.out / "timings.csv", _rows_to_table(timings) if timings else {"latency": []}, "csv")
        failed = sum(len(records[w]["errors"]) for w in written if w not in skipped)
        summary = self._summary(timings, wall, processed, failed, skipped)
        summary["drift"] = drift_summary
        write_text(self.out / "run.json", json.dumps(summary, indent=2, default=_json_default))
        return summary

    def _acquisition_order(self, wells: list[str]) -> list[tuple[str, int]]:
        """(well, field) in the order the plate was imaged: its wells as the source lists them, fields ascending."""
        position = {well: i for i, well in enumerate(wells)}
        return sorted(((f.well, f.field) for f in self.plate.fields if f.well in position),
                      key=lambda key: (position[key[0]], key[1]))

    def _drift(self, wells: list[str], records: dict) -> tuple[list[dict], dict]:
        """The drift monitor over every field with an embedding, in plate order (wells as the plate lists
        them, fields ascending: acquisition order), from the well records - so a resumed run gives the
        same statistic as an uninterrupted one."""
        if self.drift is None:
            return [], {"monitored": False, "note": self.drift_note}
        keys, vectors, unusable = [], [], []
        for well, field_no in self._acquisition_order(wells):
            embedding = (records[well].get("field_embeddings") or {}).get(str(field_no))
            if embedding is None:
                continue
            if not np.isfinite(np.asarray(embedding, np.float64)).all():   # a broken field must not stop the plate
                unusable.append({"well": well, "field": field_no})
                continue
            keys.append((well, field_no))
            vectors.append(embedding)
        steps = monitor_stream(self.drift, np.asarray(vectors, np.float32)) if vectors else []
        rows = [{"Metadata_Well": well, "Metadata_Field": field_no, "Drift_Step": step.index,
                 "Drift_Statistic": step.statistic, "Drift_Threshold": step.threshold, "Drift_Ratio": step.ratio,
                 "Drift_WindowFull": step.window_full, "Drift_Alarm": step.alarm}
                for (well, field_no), step in zip(keys, steps)]
        alarms = [r for r in rows if r["Drift_Alarm"]]
        ref = self.drift
        return rows, {"monitored": True, "note": self.drift_note, "reference": str(self.drift_source),
                      "reference_sha256": hashlib.sha256(self.drift_source.read_bytes()).hexdigest(),
                      "fields_without_finite_embedding": unusable,
                      "window": ref.window, "ert": ref.ert, "threshold": ref.threshold, "sigma": ref.sigma,
                      "fields": len(rows), "alarms": len(alarms),
                      "wells_with_alarms": sorted({r["Metadata_Well"] for r in alarms},
                                                  key={w: i for i, w in enumerate(wells)}.get),
                      "first_alarm": None if not alarms else
                      {"well": alarms[0]["Metadata_Well"], "field": alarms[0]["Metadata_Field"]}}

    def _plate_summary(self) -> dict:
        """The plate as scanned: fields rejected then (--skip-bad) are fields of the plate all the same, so
        they count in its totals, said apart, and their wells in its geometry."""
        plate = self.plate
        rejected = plate.rejected_fields
        read = set(plate.wells)
        # The root as an absolute path: the manifest of a run is read later, from anywhere.
        return {"name": plate.name, "root": str(Path(plate.root).resolve()), "layout": plate.layout,
                "channels": plate.channels,
                "wells": len(plate.imaged_wells), "fields": len(plate.fields) + len(rejected),
                "rejected_fields": len(rejected), "rejected_wells": len({k.well for k in rejected} - read),
                "geometry": plate.geometry()}

    def _summary(self, timings: list, wall: float, processed: int, failed: int, skipped: set) -> dict:
        """The run's facts; throughput, latency and stage shares are over this run's fields that gave a result
        (None, or no shares, when none did), and ``fields_failed`` says how many of ``processed`` did not."""
        manifest = self.model.manifest
        this_run = [t for t in timings if t["Metadata_Well"] not in skipped]
        latencies = np.array([t["latency"] for t in this_run]) if this_run else np.zeros(0)
        stage_totals = {s: float(sum(t[s] for t in this_run)) for s in STAGES}
        busy = sum(stage_totals.values())
        timed = len(this_run)
        return {
            "cellrt": __version__, "fingerprint": self.fingerprint,
            "model": {"name": manifest.name, "kind": manifest.kind, "onnx_sha256": manifest.onnx_sha256,
                      "folder": str(manifest.folder), "backend": self.model.backend.name,
                      "precision": self.model.precision, "weights_sha256": self.model.weights_sha256,
                      "tile_size": self.model.tile_size},
            "plate": self._plate_summary(),
            "channels": {"model_inputs": dict(zip(manifest.input_channels, self.inputs)), "measured": self.extras},
            "options": asdict(self.options),
            "resumed_wells": sorted(skipped), "redone_changed_wells": list(self.changed_wells),
            "redone_failed_wells": list(self.failed_wells),
            "fields_processed": processed, "fields_with_results": timed, "fields_failed": failed,
            "plate_fields_with_results": len(timings),
            "wall_seconds": wall, "fields_per_second": timed / wall if timed and wall > 0 else None,
            "latency_p50_s": float(np.percentile(latencies, 50)) if timed else None,
            "latency_p99_s": float(np.percentile(latencies, 99)) if timed else None,
            "stage_seconds": stage_totals,
            "stage_share": {s: v / busy for s, v in stage_totals.items()} if busy > 0 else {},
            "infer_share_of_wall": stage_totals["infer"] / wall if timed and wall > 0 else None,
            "scale": self.scale,
            "normalization": self.normalization,
        }


THUMBNAIL_WELLS = 16     # wells (evenly spread over the plate) whose first field gets an outline thumbnail
THUMBNAIL_SIDE = 320


def _evenly_spaced_list(items: list, count: int) -> list:
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _evenly_spaced(items: list, count: int) -> set:
    return set(_evenly_spaced_list(items, count))


def write_thumbnail(path: Path, image: np.ndarray, labels: np.ndarray) -> None:
    """A PNG of the field (1-99.8 percentile grey) with the objects' outlines in yellow, at most
    THUMBNAIL_SIDE pixels a side: outlines are found at full resolution and kept through the
    downsampling (a block shows an outline if any of its pixels is one)."""
    from PIL import Image  # noqa: PLC0415 - Pillow comes with matplotlib; 15x faster to import than its imsave

    from .._atomic import atomic_path  # noqa: PLC0415
    from ..kernels.stitch import percentile_normalization  # noqa: PLC0415

    scale, offset = percentile_normalization(np.asarray(image)[None], (1.0, 99.8))
    # No coarser than the field's short side allows (a 5000 x 3 strip stays 1 pixel wide).
    step = max(1, min(-(-max(labels.shape) // THUMBNAIL_SIDE), min(labels.shape)))
    h, w = (labels.shape[0] // step) * step, (labels.shape[1] // step) * step
    grey = np.subtract(np.asarray(image)[:h, :w], offset[0], dtype=np.float32)
    grey *= scale[0]
    np.clip(grey, 0, 1, out=grey)
    labels = np.asarray(labels)
    # An object pixel with a 4-neighbour of another label (or background) is on its outline.
    edge = np.zeros(labels.shape, bool)
    across = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    down = labels[1:, :] != labels[:-1, :]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    edge &= labels > 0
    edge = edge[:h, :w]
    if step > 1:   # blocks: reduce each band of ``step`` rows first (contiguous rows, vectorised), then columns
        grey = grey.reshape(h // step, step, w).sum(axis=1).reshape(h // step, w // step, step).sum(axis=2)
        grey *= 1.0 / (step * step)
        edge = edge.reshape(h // step, step, w).any(axis=1).reshape(h // step, w // step, step).any(axis=2)
    rgb = np.repeat(np.rint(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb[edge] = (255, 217, 0)
    with atomic_path(path) as tmp:
        # zlib level 3: as small as the default here (~26 kB for a 320² field) at a quarter of its time
        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=3)


def _well_embedding(entries) -> list | None:
    vectors = [result.embedding for _, result, _, _ in entries if result is not None and result.embedding is not None]
    return np.mean(vectors, axis=0).tolist() if vectors else None


def _rows_to_table(rows: list[dict]) -> dict:
    """Rows (dicts) to columns; a row without a column (or with None) gets '' in a text column, NaN in a
    float one, and a missing cell in an integer one (an object column of ints and None, which the table
    writers keep as integers: a count stays 24, not 24.0, when another row's is missing)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    table = {}
    for column in columns:
        present = [row[column] for row in rows if row.get(column) is not None]
        if any(isinstance(v, str) for v in present):
            table[column] = np.array([row.get(column) if row.get(column) is not None else "" for row in rows],
                                     dtype=object)
        elif present and len(present) < len(rows) and all(is_count(v) for v in present):
            table[column] = np.array([row.get(column) for row in rows], dtype=object)
        else:
            table[column] = np.array([row.get(column) if row.get(column) is not None else float("nan")
                                      for row in rows])
    return table


def _class_of_objects(result) -> np.ndarray:
    """Each object's class name (empty for a model without classes, or no objects)."""
    if not result.class_names or not result.count:
        return np.empty(0, object)
    return np.asarray(result.class_names, dtype=object)[result.objects["Classify_ClassIndex"]]


def _object_summary(objects: dict, classes: np.ndarray, class_names: list[str]) -> dict:
    """Per-field and per-well summary columns of some objects: count and fraction per class, mean and
    median area and mean intensities (NaN with no objects, so every row has the same columns)."""
    count = len(classes) if class_names else len(objects.get("AreaShape_Area", ()))
    row = {}
    for name in class_names:
        n = int(np.sum(classes == name))
        row[f"Count_{name}"] = n
        row[f"Fraction_{name}"] = n / count if count else float("nan")
    area = np.asarray(objects.get("AreaShape_Area", ()), dtype=np.float64)
    row["MeanArea"] = float(np.mean(area)) if count else float("nan")
    row["MedianArea"] = float(np.median(area)) if count else float("nan")
    for column in objects:
        if column.startswith("Intensity_MeanIntensity_"):
            values = np.asarray(objects[column], dtype=np.float64)
            row[f"Mean_{column}"] = float(np.mean(values)) if count else float("nan")
            row[f"Median_{column}"] = float(np.median(values)) if count else float("nan")
    return row


def _well_summary(plate: str, well: str, fields: list[dict], objects: dict, class_names: list[str]) -> dict:
    mask = objects["Metadata_Well"] == well if len(objects.get("Metadata_Well", [])) else np.zeros(0, bool)
    # Over the fields that gave a result; missing when none did (records of earlier versions wrote 0 for a
    # failed field: those count by their Error).
    counts = [f["Count"] for f in fields if not f["Error"] and f["Count"] is not None]
    # The plate named on every row, as in fields.csv and the objects: wells.csv of several plates concatenate.
    row = {"Metadata_Plate": plate, "Metadata_Well": well, "Fields": len(fields),
           "FieldsFailed": sum(1 for f in fields if f["Error"]),
           "Count": int(sum(counts)) if counts else None}
    # The plate's columns even when the well has no object, so every well row names the intensity columns.
    mine = {column: values[mask] for column, values in objects.items()}
    classes = mine.get("Classify_Class", np.empty(0, object))
    row.update(_object_summary(mine, classes, class_names))
    return row


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
