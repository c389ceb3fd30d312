"""Live acquisition: frames pushed by the software driving the microscope, results while imaging.

    run = LiveRun(model, "results/", channels=["1"], fields_per_well=4)
    future = run.submit(frame, well="B03", field=1, channel="1")   # returns at once (blocks only when full)
    ...
    future.result()      # the field's FieldResult, once all its channels arrived and it was processed
    summary = run.close()   # remaining wells written, final tables, report

The same engine and outputs as ``cellrt run``: a well's tables are written
atomically as soon as its ``fields_per_well``-th field is done (or at
``close()`` when the count is not known in advance), so results are on disk
while the rest of the plate is still being imaged.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..drift import DriftMonitor
from ..io.plate import FieldSource, Plate, format_well, well_position
from .engine import EngineError, FieldEngine
from .plate import PlateOptions, PlateRun, PlateRunError


class _Frames:
    """The reader of one live field: its frames, already in memory."""

    def __init__(self, frames: dict):
        self.frames = frames

    def __call__(self, channels):
        return [self.frames[c] for c in channels]


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
        from .._atomic import write_text  # noqa: PLC0415
        import json  # noqa: PLC0415
        write_text(self.out / "run-config.json", json.dumps({"fingerprint": self.fingerprint, "live": True,
                                                             "model": model.name}, indent=2))
        self._engine = FieldEngine(model, self.inputs, self.extras, self.options)
        self._lock = threading.Lock()
        self._frames: dict = {}
        self._futures: dict = {}
        self._submitted = 0
        self._finished = 0
        self._buckets: dict = defaultdict(list)
        self._records: dict = {}
        self._failure: BaseException | None = None
        self._started = time.perf_counter()
        self._closed = False
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
        if self._failure is not None:
            raise PlateRunError(f"the live run stopped: {self._failure}") from self._failure
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
        frame = np.array(frame, copy=True)  # the caller's buffer may be reused for the next frame
        if frame.ndim != 2:
            raise ValueError(f"LiveRun.submit: well {well}, field {field}, channel {channel}: frame should be 2-D, "
                             f"got shape {frame.shape}")
        key = (well, int(field))
        with self._lock:
            frames = self._frames.setdefault(key, {})
            if channel in frames or key in self._futures and self._futures[key].done():
                raise ValueError(f"LiveRun.submit: well {well}, field {field}, channel {channel} was already "
                                 f"submitted")
            frames[channel] = frame
            future = self._futures.setdefault(key, Future())
            complete = len(frames) == len(self.plate.channels)
            if complete:
                del self._frames[key]
                source = FieldSource(well, int(field), {c: Path(f"live:{well}/{field}/{c}") for c in frames},
                                     reader=_Frames(frames))
                self.plate.fields.append(source)
                self._order.append(key)
                self._submitted += 1
        if complete and not self._engine.put(source):
            raise PlateRunError("the live run stopped") from self._failure
        return future

    def _collect(self) -> None:
        import queue  # noqa: PLC0415

        while True:
            with self._lock:
                drained = self._closed and self._finished == self._submitted
            if drained:
                return
            try:
                state, outcome = self._engine.next_result(timeout=0.1)
            except queue.Empty:
                continue
            except EngineError as error:
                self._fail(error)
                return
            source = state.source
            key = (source.well, source.field)
            future = self._futures[key]
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
            try:
                self._bucket(self._buckets, state, outcome)
                self._advance_drift(key, None if isinstance(outcome, Exception) else outcome.embedding)
                with self._lock:
                    self._finished += 1
                if self.fields_per_well and len(self._buckets[source.well]) == self.fields_per_well:
                    self._records[source.well] = self._write_well(source.well, self._buckets.pop(source.well))
            except Exception as error:  # noqa: BLE001 - a failed field without skip_bad, or a write error
                self._fail(error)
                return

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
        self._failure = error
        with self._lock:
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(error)

    def close(self, *, report: bool = True) -> dict:
        """Wait for every submitted field, write the remaining wells, the final tables and the report."""
        with self._lock:
            self._closed = True
            incomplete = sorted(self._frames)
        self._engine.close_input()
        self._collector.join()
        self._engine.shutdown()
        self._callbacks.shutdown(wait=True)
        if self._failure is not None:
            raise PlateRunError(f"the live run stopped: {self._failure}") from self._failure
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
            self._engine.shutdown()
            self._callbacks.shutdown(wait=False)
