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
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from .._atomic import write_text
from ..io.plate import FieldSource, Plate, PlateError, read_field
from ..io.tables import concat_tables, read_table, write_table
from .model import Model

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

    def fingerprint_fields(self) -> dict:
        # What changes the numbers (not how fast they are made).
        return {"channel_map": dict(sorted(self.channel_map.items())), "table_format": self.table_format}


class PlateRunError(RuntimeError):
    """A plate run that stopped: the message names the well, field and file."""


def _channel_column(name: str) -> str:
    return f"ch{name}" if name.isdigit() else name


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


@dataclass
class _Field:
    source: FieldSource
    started: float
    prepared: object = None
    outputs: dict | None = None
    next_tile: int = 0
    done_tiles: int = 0
    infer_seconds: float = 0.0
    error: Exception | None = None


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
        self.inputs, self.extras = resolve_channels(model, plate, o.channel_map)
        self.fingerprint = self._fingerprint()

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        manifest = self.model.manifest
        doc = {"model": manifest.name, "onnx_sha256": manifest.onnx_sha256,
               "postprocess": manifest.postprocess, "inputs": self.inputs, "extras": self.extras,
               "plate": self.plate.name, "layout": self.plate.layout, **self.options.fingerprint_fields()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def _well_paths(self, well: str) -> tuple[Path, Path]:
        folder = self.out / "wells"
        return folder / f"{well}.objects.{self.options.table_format}", folder / f"{well}.json"

    def completed_wells(self) -> set[str]:
        done = set()
        for well in self.plate.wells:
            objects, record = self._well_paths(well)
            if objects.is_file() and record.is_file():
                try:
                    if json.loads(record.read_text()).get("fingerprint") == self.fingerprint:
                        done.add(well)
                except (OSError, json.JSONDecodeError):
                    pass  # unreadable record: redo the well
        return done

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, progress=None) -> dict:
        """Process every field; returns the run summary (also written to run.json)."""
        self.out.mkdir(parents=True, exist_ok=True)
        config_path = self.out / "run-config.json"
        if config_path.is_file():
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
        started = time.perf_counter()
        records = self._process(todo, progress) if todo else {}
        wall = time.perf_counter() - started
        return self._finalise(records, skipped, wall, len(todo))

    def _process(self, todo: list[FieldSource], progress) -> dict:
        model, o = self.model, self.options
        per_well = defaultdict(int)
        for source in todo:
            per_well[source.well] += 1
        ready: queue.Queue = queue.Queue()
        results: queue.Queue = queue.Queue()
        admit = threading.Semaphore(o.max_fields_in_flight)
        stop = threading.Event()
        channels = self.inputs + self.extras
        shape_lock = threading.Lock()
        field_shape: list = []

        def read(source: FieldSource) -> None:
            state = _Field(source, time.perf_counter())
            try:
                t0 = time.perf_counter()
                with shape_lock:
                    expect = field_shape[0] if field_shape else None
                stack = read_field(source, channels, expect_shape=expect)
                with shape_lock:
                    if not field_shape:
                        field_shape.append(stack.shape[1:])
                read_seconds = time.perf_counter() - t0
                extras = {_channel_column(c): stack[len(self.inputs) + i] for i, c in enumerate(self.extras)}
                state.prepared = model.prepare(stack[:len(self.inputs)], extra_channels=extras)
                state.prepared.timings["read"] = read_seconds
                state.outputs = model.output_buffers(len(state.prepared.tiles), state.prepared.tiles.shape[2:])
            except Exception as error:  # noqa: BLE001 - reported per field, with its files
                state.error = error
            ready.put(state)

        def feed() -> None:
            for source in todo:
                while not admit.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                readers.submit(read, source)

        def finish(state: _Field) -> None:
            try:
                state.prepared.timings["infer"] = state.infer_seconds
                result = model.finish(state.prepared, state.outputs)
                results.put((state, result))
            except Exception as error:  # noqa: BLE001
                results.put((state, error))

        def infer_loop() -> None:
            pending: list[_Field] = []
            received = 0
            try:
                while not stop.is_set():
                    waiting = sum(len(f.prepared.tiles) - f.next_tile for f in pending)
                    if received < len(todo) and waiting < o.batch_size:
                        try:
                            state = ready.get(timeout=0.05)
                        except queue.Empty:
                            if waiting:  # the readers are behind: run what there is rather than idle
                                self._run_batch(pending, workers.submit, finish)
                                pending = [f for f in pending if f.done_tiles < len(f.prepared.tiles)]
                            continue
                        received += 1
                        if state.error is not None:
                            results.put((state, state.error))
                        else:
                            pending.append(state)
                        continue
                    if waiting == 0:
                        break
                    self._run_batch(pending, workers.submit, finish)
                    pending = [f for f in pending if f.done_tiles < len(f.prepared.tiles)]
            except Exception as error:  # noqa: BLE001 - an inference failure stops the run
                results.put((None, error))

        readers = ThreadPoolExecutor(o.readers, thread_name_prefix="cellrt-read")
        workers = ThreadPoolExecutor(o.workers, thread_name_prefix="cellrt-post")
        feeder = threading.Thread(target=feed, name="cellrt-feed", daemon=True)
        inference = threading.Thread(target=infer_loop, name="cellrt-infer", daemon=True)
        feeder.start()
        inference.start()
        records: dict = {}
        buckets: dict[str, list] = defaultdict(list)
        done_fields = 0
        try:
            while done_fields < len(todo):
                state, outcome = results.get()
                if state is None:
                    raise PlateRunError(f"inference failed: {type(outcome).__name__}: {outcome}") from outcome
                admit.release()
                done_fields += 1
                source = state.source
                if isinstance(outcome, Exception):
                    if not o.skip_bad:
                        raise PlateRunError(f"well {source.well}, field {source.field}: {outcome}") from outcome
                    buckets[source.well].append((source, None, str(outcome), state))
                else:
                    buckets[source.well].append((source, outcome, None, state))
                if len(buckets[source.well]) == per_well[source.well]:
                    records[source.well] = self._write_well(source.well, buckets.pop(source.well))
                if progress is not None:
                    progress(done_fields, len(todo), source.well)
        finally:
            stop.set()
            readers.shutdown(wait=True, cancel_futures=True)
            inference.join()
            workers.shutdown(wait=True, cancel_futures=True)
        return records

    def _run_batch(self, pending: list[_Field], submit, finish) -> None:
        """One batch of up to ``batch_size`` tiles taken across the pending fields, in order."""
        model = self.model
        parts, owners = [], []
        room = self.options.batch_size
        for state in pending:
            if room == 0:
                break
            available = len(state.prepared.tiles) - state.next_tile
            take = min(room, available)
            if take <= 0:
                continue
            parts.append(state.prepared.tiles[state.next_tile:state.next_tile + take])
            owners.append((state, state.next_tile, take))
            state.next_tile += take
            room -= take
        xp = model._cupy if model._cupy is not None else np
        batch = parts[0] if len(parts) == 1 else xp.concatenate(parts)
        started = time.perf_counter()
        outputs = model.backend.infer(xp.ascontiguousarray(batch))
        elapsed = time.perf_counter() - started
        offset = 0
        total = len(batch)
        for state, first, count in owners:
            for name, array in outputs.items():
                state.outputs[name][first:first + count] = array[offset:offset + count]
            offset += count
            state.done_tiles += count
            state.infer_seconds += elapsed * count / total
            if state.done_tiles == len(state.prepared.tiles):
                submit(finish, state)

    # -- outputs -----------------------------------------------------------------------------------------------
    def _field_objects(self, source: FieldSource, result) -> dict:
        count = result.count
        table = {"Metadata_Plate": np.full(count, self.plate.name, dtype=object),
                 "Metadata_Well": np.full(count, source.well, dtype=object),
                 "Metadata_Field": np.full(count, source.field, dtype=np.int32)}
        table.update(result.objects)
        if result.class_names:
            names = np.asarray(result.class_names, dtype=object)
            table["Classify_Class"] = names[result.objects["Classify_ClassIndex"]] if count else np.empty(0, object)
        return table

    def _field_summary(self, source: FieldSource, result, error: str | None) -> dict:
        row = {"Metadata_Plate": self.plate.name, "Metadata_Well": source.well, "Metadata_Field": source.field,
               "Count": 0 if result is None else int(result.count), "Error": error or ""}
        if result is not None:
            area = result.objects["AreaShape_Area"]
            row["MeanArea"] = float(np.mean(area)) if result.count else float("nan")
            row["MedianArea"] = float(np.median(area)) if result.count else float("nan")
            for name in result.class_names:
                row[f"Count_{name}"] = int(np.sum(result.objects["Classify_ClassIndex"] ==
                                                  result.class_names.index(name)))
            for column, values in result.objects.items():
                if column.startswith("Intensity_MeanIntensity_"):
                    row[f"Mean_{column}"] = float(np.mean(values)) if result.count else float("nan")
        return row

    def _write_well(self, well: str, entries: list) -> dict:
        started = time.perf_counter()
        entries.sort(key=lambda e: e[0].field)
        tables = [self._field_objects(source, result) for source, result, _, _ in entries if result is not None]
        objects = concat_tables(tables) if tables else {"Metadata_Well": np.empty(0, object)}
        fields = [self._field_summary(source, result, error) for source, result, error, _ in entries]
        errors = [{"Metadata_Well": s.well, "Metadata_Field": s.field,
                   "Files": ";".join(str(p) for p in s.files.values()), "Error": error}
                  for s, _, error, _ in entries if error]
        now = time.perf_counter()
        timings = []
        for source, result, error, state in entries:
            row = {"Metadata_Well": source.well, "Metadata_Field": source.field,
                   "latency": now - state.started}
            stages = dict(result.timings) if result is not None else {}
            for stage in STAGES[:-1]:
                row[stage] = float(stages.get(stage, 0.0))
            timings.append(row)
        if self.options.save_labels:
            import tifffile  # noqa: PLC0415

            from .._atomic import atomic_path  # noqa: PLC0415
            for source, result, _, _ in entries:
                if result is not None:
                    with atomic_path(self.out / "labels" / f"{well}_f{source.field:02d}.tif") as tmp:
                        tifffile.imwrite(tmp, result.labels, compression="zlib")
        objects_path, record_path = self._well_paths(well)
        write_table(objects_path, objects, self.options.table_format)
        write_seconds = (time.perf_counter() - started) / max(1, len(entries))
        for row in timings:
            row["write"] = write_seconds
        record = {"fingerprint": self.fingerprint, "well": well, "fields": fields, "errors": errors,
                  "timings": timings, "embedding": _well_embedding(entries)}
        write_text(record_path, json.dumps(record, indent=1, default=_json_default))  # last: marks the well done
        return record

    def _finalise(self, records: dict, skipped: set, wall: float, processed: int) -> dict:
        for well in skipped:
            records[well] = json.loads(self._well_paths(well)[1].read_text())
        wells = [w for w in self.plate.wells if w in records]
        fmt = self.options.table_format
        objects = concat_tables([read_table(self._well_paths(w)[0]) for w in wells])
        write_table(self.out / f"objects.{fmt}", objects, fmt)
        fields = [row for w in wells for row in records[w]["fields"]]
        write_table(self.out / "fields.csv", _rows_to_table(fields), "csv")
        write_table(self.out / "wells.csv", _rows_to_table([_well_summary(w, records[w]["fields"], objects)
                                                            for w in wells]), "csv")
        errors = [row for w in wells for row in records[w]["errors"]] + self.plate.rejected
        write_table(self.out / "errors.csv", _rows_to_table(errors) if errors else
                    {"Metadata_Well": [], "Metadata_Field": [], "Files": [], "Error": []}, "csv")
        timings = [row for w in wells for row in records[w]["timings"]]
        write_table(self.out / "timings.csv", _rows_to_table(timings) if timings else {"latency": []}, "csv")
        summary = self._summary(timings, wall, processed, skipped)
        write_text(self.out / "run.json", json.dumps(summary, indent=2, default=_json_default))
        return summary

    def _summary(self, timings: list, wall: float, processed: int, skipped: set) -> dict:
        manifest = self.model.manifest
        this_run = [t for t in timings if t["Metadata_Well"] not in skipped]
        latencies = np.array([t["latency"] for t in this_run]) if this_run else np.zeros(0)
        stage_totals = {s: float(sum(t[s] for t in this_run)) for s in STAGES}
        busy = sum(stage_totals.values()) or 1.0
        return {
            "cellrt": __version__, "fingerprint": self.fingerprint,
            "model": {"name": manifest.name, "kind": manifest.kind, "onnx_sha256": manifest.onnx_sha256,
                      "folder": str(manifest.folder), "backend": self.model.backend.name},
            "plate": {"name": self.plate.name, "root": str(self.plate.root), "layout": self.plate.layout,
                      "channels": self.plate.channels, "wells": len(self.plate.wells),
                      "fields": len(self.plate.fields), "geometry": self.plate.geometry()},
            "channels": {"model_inputs": dict(zip(manifest.input_channels, self.inputs)), "measured": self.extras},
            "options": asdict(self.options),
            "resumed_wells": sorted(skipped), "fields_processed": processed,
            "wall_seconds": wall, "fields_per_second": processed / wall if wall > 0 else None,
            "latency_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "latency_p99_s": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "stage_seconds": stage_totals,
            "stage_share": {s: v / busy for s, v in stage_totals.items()},
            "infer_share_of_wall": stage_totals["infer"] / wall if wall > 0 else None,
        }


def _well_embedding(entries) -> list | None:
    vectors = [result.embedding for _, result, _, _ in entries if result is not None and result.embedding is not None]
    return np.mean(vectors, axis=0).tolist() if vectors else None


def _rows_to_table(rows: list[dict]) -> dict:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    table = {}
    for column in columns:
        values = [row.get(column, "") for row in rows]
        table[column] = np.array(values, dtype=object if any(isinstance(v, str) for v in values) else None)
    return table


def _well_summary(well: str, fields: list[dict], objects: dict) -> dict:
    mask = objects["Metadata_Well"] == well if len(objects.get("Metadata_Well", [])) else np.zeros(0, bool)
    row = {"Metadata_Well": well, "Fields": len(fields), "FieldsFailed": sum(1 for f in fields if f["Error"]),
           "Count": int(sum(f["Count"] for f in fields))}
    if "Classify_Class" in objects:
        names = sorted(set(objects["Classify_Class"].tolist()))
        for name in names:
            n = int(np.sum(objects["Classify_Class"][mask] == name))
            row[f"Count_{name}"] = n
            row[f"Fraction_{name}"] = n / row["Count"] if row["Count"] else float("nan")
    if row["Count"]:
        area = objects["AreaShape_Area"][mask]
        row["MeanArea"], row["MedianArea"] = float(np.mean(area)), float(np.median(area))
        for column in objects:
            if column.startswith("Intensity_MeanIntensity_"):
                values = objects[column][mask].astype(np.float64)
                row[f"Mean_{column}"] = float(np.mean(values))
                row[f"Median_{column}"] = float(np.median(values))
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
