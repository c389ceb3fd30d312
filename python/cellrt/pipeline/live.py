"""Live acquisition: frames pushed by the software driving the microscope, results while imaging.

    run = LiveRun(model, "results/", channels=["1"], fields_per_well=4)
    future = run.submit(frame, well="B03", field=1, channel="1")   # returns at once (blocks only when full)
    ...
    future.result()      # the field's FieldResult, once all its channels arrived and it was processed
    summary = run.close()   # remaining wells written, final tables, report

The same engine and outputs as ``cellrt run``: a well's tables are written
atomically as soon as its ``fields_per_well``-th field is done (or at
``close()`` when the count is not known in advance), so results are on disk
while the rest of the plate is still being imaged. Fields are numbered 1 to
``fields_per_well``; a (well, field, channel) is taken once. A field's
latency (timings.csv, run.json) runs from the submit that completed it to
its future resolving.
"""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .._atomic import write_text
from ..drift import DriftMonitor
from ..io.plate import FieldSource, Plate, format_well, well_position
from .engine import FieldEngine
from .plate import THUMBNAIL_WELLS, PlateOptions, PlateRun, PlateRunError


def _settle(future: Future, outcome) -> None:
    """Resolve a field's future with its result or error - unless its caller cancelled it (or it was
    failed already): a future resolves once, and a cancelled one must not stop the run."""
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass


class _Frames:
    """The reader of one live field: its frames, already in memory."""

    def __init__(self, frames: dict):
        self.frames = frames

    def __call__(self, channels):
        # Read once, by the engine's reader: the frames are let go of then, or a live plate's every
        # frame would stay in memory (the field's source stays listed in the plate).
        frames, self.frames = self.frames, None
        return [frames[c] for c in channels]


class LiveRun(PlateRun):
    def __init__(self, model, out, *, channels, plate_name: str = "live", fields_per_well: int | None = None,
                 options: PlateOptions | None = None, on_drift=None):
        """``on_drift(well, field, step)`` is called (from the collector thread) with each field's
        :class:`cellrt.drift.DriftStep`, in the order fields were completed by ``submit`` - the acquisition
        order - as soon as that field and every one before it are processed; ``step.alarm`` is the moment
        to pause the plate and look."""
        channels = [str(c) for c in channels]
        if not channels or len(set(channels)) != len(channels):
            raise ValueError(f"LiveRun: channels should be distinct plate channel names, got {channels}")
        if fields_per_well is not None and (isinstance(fields_per_well, bool) or not isinstance(fields_per_well, int)
                                            or fields_per_well < 1):
            raise ValueError(f"LiveRun: fields_per_well should be a positive int or None, got {fields_per_well!r}")
        plate = Plate(plate_name, Path(out), "live", channels, [])
        super().__init__(model, plate, out, options)
        self.fields_per_well = fields_per_well
        self.out.mkdir(parents=True, exist_ok=True)
        if (self.out / "run-config.json").is_file():
            raise PlateRunError(f"{self.out}: holds a run already; choose another folder for a live run")
        write_text(self.out / "run-config.json", json.dumps({"fingerprint": self.fingerprint, "live": True,
                                                             "model": model.name}, indent=2))
        # Frames arrive one by one: no plate to sample before imaging. A given object diameter sets the
        # scale of every frame; otherwise frames run as they come, each normalised on its own percentiles.
        self.scale = (self.plate_scale() if self.options.object_diameter not in (None, "auto") else
                      {"factor": 1.0, "source": "live frames: not rescaled (give PlateOptions.object_diameter "
                                                "to run them at the model's scale)"})
        self.normalization = {"mode": model.manifest.normalization.get("mode", "none"), "scope": "field",
                              "note": "live frames: each normalised on its own percentiles"}
        if self.options.normalization == "plate":
            raise PlateRunError("LiveRun: normalization 'plate' needs a plate's fields before the run; live frames "
                                "are normalised per field (PlateOptions.normalization 'field' or 'auto')")
        self._engine = FieldEngine(model, self.inputs, self.extras, self.options, factor=self.scale["factor"])
        self._lock = threading.Lock()
        self._frames: dict = {}         # (well, field) -> {channel: frame} while channels are missing
        self._futures: dict = {}        # (well, field) -> its future, until it resolves
        self._complete: dict = {}       # (well, field) -> perf_counter when its last channel was submitted
        self._fields_complete: dict = defaultdict(int)   # well -> fields with every channel submitted
        self._latencies: dict = {}      # (well, field) -> seconds from complete to its future resolving
        self._submitted = 0
        self._finished = 0
        self._buckets: dict = defaultdict(list)
        self._records: dict = {}
        self._failure: BaseException | None = None
        self._started = time.perf_counter()
        self._closed = False
        self._abandoned = False         # the with block raised: collect nothing more
        self._order: list = []          # (well, field) as their last channel arrived: the acquisition order
        self._settled: dict = {}        # (well, field) -> embedding, or None for a field without one
        self._drift_cursor = 0
        self._monitor = DriftMonitor(self.drift) if self.drift is not None else None
        self.on_drift = on_drift
        self.drift_steps: list = []     # ((well, field), DriftStep) in acquisition order
        self.callback_errors: list[str] = []
        self._callbacks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellrt-live-drift")
        self._collector = threading.Thread(target=self._collect, name="cellrt-live-collect", daemon=True)
        self._collector.start()

    def submit(self, frame, *, well: str, field: int, channel) -> Future:
        """Push one channel plane of one field; returns the field's future (the same for all its channels)."""
        if self._closed:
            raise PlateRunError("LiveRun.submit after close()")
        self._raise_if_stopped()
        position = well_position(str(well))
        if position is None:
            raise ValueError(f"LiveRun.submit: well should be named like 'B03', got {well!r}")
        well = format_well(*position)
        channel = str(channel)
        if channel not in self.plate.channels:
            raise ValueError(f"LiveRun.submit: well {well}, field {field}: channel {channel!r} is not one of the "
                             f"run's channels {self.plate.channels}")
        if isinstance(field, bool) or not isinstance(field, (int, np.integer)) or field < 1:
            raise ValueError(f"LiveRun.submit: well {well}: field should be a positive int, got {field!r}")
        field = int(field)
        frame = np.array(frame, copy=True)  # the caller's buffer may be reused for the next frame
        if frame.ndim != 2:
            raise ValueError(f"LiveRun.submit: well {well}, field {field}, channel {channel}: frame should be 2-D, "
                             f"got shape {frame.shape}")
        key = (well, field)
        with self._lock:
            self._raise_if_stopped()   # again under the lock: no future is handed out after _fail failed them
            if self._closed:           # and none after close() listed the fields still waiting
                raise PlateRunError("LiveRun.submit after close()")
            self._refuse_taken(key, channel)
            frames = self._frames.setdefault(key, {})
            frames[channel] = frame
            future = self._futures.setdefault(key, Future())
            complete = len(frames) == len(self.plate.channels)
            if complete:
                del self._frames[key]
                self._complete[key] = time.perf_counter()
                self._fields_complete[well] += 1
                if well not in self.thumbnail_wells and len(self.thumbnail_wells) < THUMBNAIL_WELLS:
                    self.thumbnail_wells.add(well)   # the plate's extent is unknown: the first wells imaged
                source = FieldSource(well, field, {c: Path(f"live:{well}/{field}/{c}") for c in frames},
                                     reader=_Frames(frames))
                self.plate.fields.append(source)
                self._order.append(key)
                self._submitted += 1
        if complete:
            try:
                accepted = self._engine.put(source)
            except RuntimeError:   # the run failed while this field was being handed over (its pools shut)
                accepted = False
            if not accepted:
                self._raise_if_stopped()
                raise PlateRunError(f"LiveRun.submit: well {well}, field {field}: the live run stopped")
        return future

    def _refuse_taken(self, key, channel: str) -> None:
        """ValueError for a (well, field, channel) taken already, or a field the well has no room for: a
        second copy would resolve a future twice (stopping the run) or rewrite a well already written."""
        well, field = key
        waiting = self._frames.get(key, {})
        if channel in waiting or key in self._complete:
            if channel in waiting:
                state = "its field waits for its other channels"
            elif key in self._futures:   # a complete field's future leaves the run when it resolves
                state = "its field is being processed"
            elif well in self._records:
                state = f"its well {well} is written"
            else:
                state = "its field is done"
            raise ValueError(f"LiveRun.submit: well {well}, field {field}, channel {channel} was already submitted "
                             f"({state}); each is taken once")
        if self.fields_per_well is not None and field > self.fields_per_well:
            # Fields are numbered from 1, as the plate layouts name them (ImageXpress s1, Operetta f01).
            if well in self._records:
                state = f"; well {well} is already complete and written"
            elif self._fields_complete[well] >= self.fields_per_well:
                state = f"; well {well} is already complete"
            else:
                state = ""
            raise ValueError(f"LiveRun.submit: well {well}, field {field}: the run has fields_per_well="
                             f"{self.fields_per_well}, so fields 1 to {self.fields_per_well}{state}")

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            error = self._failure
            described = str(error) if isinstance(error, PlateRunError) else f"{type(error).__name__}: {error}"
            raise PlateRunError(f"the live run stopped: {described}") from error

    def _collect(self) -> None:
        try:
            self._collect_results()
        except BaseException as error:  # noqa: BLE001 - a failed field without skip_bad, a write error, a bug:
            self._fail(error)           # whatever it is reaches the futures, submit() and close()

    def _collect_results(self) -> None:
        import queue  # noqa: PLC0415

        while True:
            with self._lock:
                drained = self._abandoned or (self._closed and self._finished == self._submitted)
            if drained:
                return
            try:
                state, outcome = self._engine.next_result(timeout=0.1)
            except queue.Empty:
                continue
            source = state.source
            key = (source.well, source.field)
            resolved = time.perf_counter()
            with self._lock:   # the caller holds its future; the run lets go of it and of its result
                self._latencies[key] = resolved - self._complete[key]
                future = self._futures.pop(key)
            _settle(future, outcome)   # its result still goes into the tables if the caller cancelled it
            self._bucket(self._buckets, state, outcome)
            self._advance_drift(key, None if isinstance(outcome, Exception) else outcome.embedding)
            with self._lock:
                self._finished += 1
            if self.fields_per_well and len(self._buckets[source.well]) == self.fields_per_well:
                self._records[source.well] = self._write_well(source.well, self._buckets.pop(source.well))

    def _field_latency(self, state) -> float:
        """From the submit that completed the field to its future resolving: a live field may wait in the
        engine's queue behind others before it is read, and that wait is part of what the instrument sees."""
        with self._lock:
            return self._latencies.pop((state.source.well, state.source.field))

    def _advance_drift(self, key, embedding) -> None:
        """Feed the monitor every field up to the first one still in flight, in acquisition order."""
        if self._monitor is None:
            return
        self._settled[key] = embedding
        while True:
            with self._lock:
                if self._drift_cursor >= len(self._order) or self._order[self._drift_cursor] not in self._settled:
                    return
                ready = self._order[self._drift_cursor]
                self._drift_cursor += 1
            vector = self._settled.pop(ready)
            if vector is None or not np.isfinite(vector).all():   # failed field, or a broken embedding
                continue
            step = self._monitor.update(vector)
            self.drift_steps.append((ready, step))
            if self.on_drift is not None:
                # On their own thread, in order: a slow callback, one that raises, or one that submits
                # the next field never blocks or stops the collector.
                self._callbacks.submit(self._call_on_drift, ready, step)

    def _call_on_drift(self, key, step) -> None:
        try:
            self.on_drift(key[0], key[1], step)
        except Exception as error:  # noqa: BLE001 - user code: recorded, the run carries on
            self.callback_errors.append(f"on_drift(well {key[0]}, field {key[1]}): {type(error).__name__}: {error}")

    def _acquisition_order(self, wells: list[str]) -> list[tuple[str, int]]:
        chosen = set(wells)
        return [key for key in self._order if key[0] in chosen]

    def _fail(self, error: BaseException) -> None:
        """Stop the run on ``error``: every pending future fails with it, submit and close raise it."""
        with self._lock:
            self._failure = error   # under the lock: submit hands out no new future from here on
            pending = list(self._futures.values())
        for future in pending:      # outside it: a done-callback may call submit, which takes the lock
            _settle(future, error)
        # A submit blocked on a full engine would wait forever for results nobody collects any more.
        self._engine.shutdown()

    def close(self, *, report: bool = True) -> dict:
        """Wait for every submitted field, write the remaining wells, the final tables and the report."""
        with self._lock:
            self._closed = True
            incomplete = sorted(self._frames)
            # A field still missing channels is never run: its future fails now (a caller waiting on it
            # would wait forever) and its frames are let go of.
            waiting = {key: (self._futures.pop(key), sorted(set(self.plate.channels) - set(self._frames.pop(key))))
                       for key in incomplete}
        for (well, field), (future, missing) in waiting.items():
            _settle(future, PlateRunError(f"well {well}, field {field}: channel(s) {missing} were never "
                                          f"submitted before close()"))
        self._engine.close_input()
        self._collector.join()
        self._engine.shutdown()
        self._callbacks.shutdown(wait=True)
        self._raise_if_stopped()
        for well in list(self._buckets):
            self._records[well] = self._write_well(well, self._buckets.pop(well))
        summary = self._finalise(self._records, set(), time.perf_counter() - self._started, self._submitted)
        summary["incomplete_fields"] = [{"well": w, "field": f} for w, f in incomplete]
        summary["callback_errors"] = list(self.callback_errors)
        if report:
            from ..report import write_plate_report  # noqa: PLC0415
            write_plate_report(self.out)
        return summary

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            # The collector stops first, so that only this thread resolves futures from here on; the
            # fields still in flight then fail instead of leaving a thread that waits on them hanging.
            with self._lock:
                self._abandoned = True
            self._collector.join()
            if self._failure is None:
                self._fail(PlateRunError(f"the live run was left by {kind.__name__}: {value}"))
            self._engine.shutdown()
            self._callbacks.shutdown(wait=False)
