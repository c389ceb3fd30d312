"""The field engine: reader pool -> batched inference across fields -> worker pool.

Fed one field at a time with :meth:`FieldEngine.put` (which blocks while
``max_fields_in_flight`` fields are held: back-pressure keeps memory flat),
it returns each field's outcome - a :class:`FieldResult` or the exception
that stopped it - from :meth:`FieldEngine.next_result`, in completion order.
Readers decode and tile the next fields while the backend runs; batches of
tiles fill across field boundaries; workers stitch, post-process and
measure. Used by the plate runner and by live acquisition.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..io.plate import FieldSource, read_field


def channel_column(name: str) -> str:
    """Column-name form of a plate channel ('1' -> 'ch1')."""
    return f"ch{name}" if name.isdigit() else name


@dataclass
class FieldState:
    source: FieldSource
    started: float
    prepared: object = None
    outputs: dict | None = None
    next_tile: int = 0
    done_tiles: int = 0
    infer_seconds: float = 0.0
    error: Exception | None = None
    finished: float | None = None   # perf_counter when its result (or error) was ready
    outputs_ready: object = None    # device path: event after the copies of its outputs (for the worker's stream)


BUSY_BATCH_WAIT = 0.05    # s the model waits for more tiles while a field is being read
IDLE_BATCH_WAIT = 0.005   # s it waits when none is (a feeder between two fields admits the next in far less)


class EngineError(RuntimeError):
    """Inference itself failed (not one field): the run cannot go on."""


class FieldEngine:
    def __init__(self, model, inputs: list[str], extras: list[str], options, field_shape=None, factor: float = 1.0,
                 normalization=None):
        self.model, self.inputs, self.extras, self.options = model, inputs, extras, options
        self.factor = factor   # model pixels per field pixel: every field is resampled by it (Model.prepare)
        self.normalization = normalization   # (scale, offset) for every field, or None: each field's own
        self._ready: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._admit = threading.Semaphore(options.max_fields_in_flight)
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.RLock()
        self._space = threading.Condition(self._lock)
        self._reading = 0          # fields being read and tiled
        self._backlog = 0          # tiles read but not yet through the model
        self._tiles_per_field = 1  # of the last field read: the guess for fields still being read
        self._batch_tiles = options.batch_size  # tiles per inference call, for the last field's tile shape
        self._submitted = 0
        self._in_flight = 0        # admitted and not yet taken by next_result
        self._field_shape = tuple(field_shape) if field_shape is not None else None   # else: the first field read
        # CUDA's current device is per thread and starts at 0: threads that upload, tile, stitch or post-process
        # device arrays use the backend's device (a TensorRT engine on another GPU than 0).
        device = getattr(model.backend, "device", None)
        self._use_device = device.use if device is not None else None
        self._readers = ThreadPoolExecutor(options.readers, thread_name_prefix="cellrt-read",
                                           initializer=self._use_device)
        self._workers = ThreadPoolExecutor(options.workers, thread_name_prefix="cellrt-post",
                                           initializer=self._use_device)
        self._inference = threading.Thread(target=self._infer_loop, name="cellrt-infer", daemon=True)
        self._inference.start()

    # -- feeding ---------------------------------------------------------------------------------------------
    def put(self, source: FieldSource) -> bool:
        """Queue one field; blocks while the engine is full. False once the engine is shut down.

        Reading ahead is limited twice: at most ``max_fields_in_flight``
        fields are held, and a field is only read once the tiles waiting for
        the model (plus the fields being read) would not fill two batches -
        enough to keep the backend busy, no more, so a field's latency is not
        spent queueing behind others.
        """
        while not self._admit.acquire(timeout=0.1):
            if self._stop.is_set():
                return False
        with self._space:
            while not self._stop.is_set() and (
                    self._reading >= self.options.readers
                    or self._backlog + self._reading * self._tiles_per_field >= 2 * self._batch_tiles):
                self._space.wait(timeout=0.1)
            if self._stop.is_set():
                return False
            self._reading += 1
            self._submitted += 1
            self._in_flight += 1
        self._readers.submit(self._read, source)
        return True

    def _tiles_read(self, count: int, batch_tiles: int) -> None:
        with self._space:
            self._reading -= 1
            self._backlog += count
            if count:
                self._tiles_per_field = count
                self._batch_tiles = batch_tiles
            self._space.notify_all()

    def _tiles_inferred(self, count: int) -> None:
        with self._space:
            self._backlog -= count
            self._space.notify_all()

    def close_input(self) -> None:
        """No more fields will be put; the engine drains what it holds."""
        self._closed.set()

    def next_result(self, timeout: float | None = None):
        """(state, FieldResult or Exception) of the next finished field; raises :class:`EngineError`
        if inference failed, ``queue.Empty`` after ``timeout``."""
        state, outcome = self._results.get(timeout=timeout)
        if state is None:
            raise EngineError(f"inference failed: {type(outcome).__name__}: {outcome}") from outcome
        with self._lock:
            self._in_flight -= 1
        self._admit.release()
        return state, outcome

    def shutdown(self) -> None:
        self._stop.set()
        with self._space:
            self._space.notify_all()
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._inference.join()
        self._workers.shutdown(wait=True, cancel_futures=True)

    # -- stages ----------------------------------------------------------------------------------------------
    def _read(self, source: FieldSource) -> None:
        state = FieldState(source, time.perf_counter())
        try:
            t0 = time.perf_counter()
            with self._lock:
                expect = self._field_shape
            stack = read_field(source, self.inputs + self.extras, expect_shape=expect)
            with self._lock:
                if self._field_shape is None:
                    self._field_shape = stack.shape[1:]
            read_seconds = time.perf_counter() - t0
            extras = {channel_column(c): stack[len(self.inputs) + i] for i, c in enumerate(self.extras)}
            try:
                state.prepared = self.model.prepare(stack[:len(self.inputs)], extra_channels=extras,
                                                    factor=self.factor, normalization=self.normalization)
            except ValueError as error:   # the model refuses the pixels (NaN, say): name the files read
                files = ", ".join(str(source.files[c]) for c in self.inputs if c in source.files)
                raise ValueError(f"{files}: {error}" if files else str(error)) from error
            state.prepared.timings["read"] = read_seconds
            state.outputs = self.model.output_buffers(len(state.prepared.tiles), state.prepared.tiles.shape[2:])
        except Exception as error:  # noqa: BLE001 - reported per field, with its files
            state.error = error
        if state.error is not None:
            self._tiles_read(0, 0)
        else:
            tiles = state.prepared.tiles
            self._tiles_read(len(tiles), self.model.tiles_per_batch(tiles.shape[2:], self.options.batch_size))
        self._ready.put(state)

    def _finish(self, state: FieldState) -> None:
        try:
            if state.outputs_ready is not None:   # the inference thread's copies come before this thread's stitch
                self.model._cupy.cuda.get_current_stream().wait_event(state.outputs_ready)
            state.prepared.timings["infer"] = state.infer_seconds
            outcome = self.model.finish(state.prepared, state.outputs)
        except Exception as error:  # noqa: BLE001
            outcome = error
        # The tiles and the model's outputs are spent: a field may wait long for its well (live: until
        # close()), holding them would grow memory with the plate.
        state.prepared.tiles, state.outputs = None, None
        state.finished = time.perf_counter()
        self._results.put((state, outcome))

    def _infer_loop(self) -> None:
        pending: list[FieldState] = []
        received = 0
        try:
            if self._use_device is not None:
                self._use_device()
            while not self._stop.is_set():
                waiting = sum(len(f.prepared.tiles) - f.next_tile for f in pending)
                batch_size = self._batch_room(pending)[1]
                with self._lock:
                    drained = self._closed.is_set() and received == self._submitted
                if not drained and waiting < batch_size:
                    idle = self._nothing_coming(len(pending))
                    # More tiles are worth a short wait when none is on its way (a live frame on its own,
                    # the last field, every field in flight waiting here), a longer one when a field is
                    # being read or a finished one is about to free a slot for the next.
                    try:
                        state = self._ready.get(timeout=IDLE_BATCH_WAIT if idle else BUSY_BATCH_WAIT)
                    except queue.Empty:
                        # A reader that started during the short wait brings tiles: wait for them (the
                        # long wait's end runs what there is: the readers are behind).
                        if waiting and (not idle or self._nothing_coming(len(pending))):
                            pending = self._run_batch(pending)
                        continue
                    received += 1
                    if state.error is not None:
                        state.finished = time.perf_counter()
                        self._results.put((state, state.error))
                    else:
                        pending.append(state)
                    continue
                if waiting == 0:
                    if drained:
                        break
                    continue
                pending = self._run_batch(pending)
        except Exception as error:  # noqa: BLE001 - an inference failure stops the run
            self._results.put((None, error))

    def _nothing_coming(self, at_model: int) -> bool:
        """No field is being read, and none can be soon: the feeder is free to admit one (so it has none
        to give), or every field in flight is here at the model (none will finish and free a slot)."""
        with self._lock:
            return self._reading == 0 and (self._in_flight < self.options.max_fields_in_flight
                                           or self._in_flight <= at_model)

    def _batch_room(self, pending: list[FieldState]) -> tuple[tuple | None, int]:
        """(tile shape, tiles per call) of the next batch: that of the first pending field with tiles left."""
        for state in pending:
            tiles = state.prepared.tiles
            if state.next_tile < len(tiles):
                return tuple(tiles.shape[1:]), self.model.tiles_per_batch(tiles.shape[2:], self.options.batch_size)
        return None, self._batch_tiles

    def _run_batch(self, pending: list[FieldState]) -> list[FieldState]:
        """One batch of tiles of one shape taken across the pending fields, in order (fields of
        another size, e.g. live frames, wait for a batch of their own)."""
        model = self.model
        parts, owners = [], []
        shape, room = self._batch_room(pending)
        for state in pending:
            if room == 0:
                break
            if tuple(state.prepared.tiles.shape[1:]) != shape:
                continue
            take = min(room, len(state.prepared.tiles) - state.next_tile)
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
        self._tiles_inferred(len(batch))
        offset, total = 0, len(batch)
        inferred = []
        for state, first, count in owners:
            for name, array in outputs.items():
                state.outputs[name][first:first + count] = array[offset:offset + count]
            offset += count
            state.done_tiles += count
            state.infer_seconds += elapsed * count / total
            if state.done_tiles == len(state.prepared.tiles):
                inferred.append(state)
        remaining = [f for f in pending if f.done_tiles < len(f.prepared.tiles)]
        if inferred and model._cupy is not None:
            # The copies above are queued on this thread's stream; a worker's stream is the same legacy default
            # stream only while cupy runs without per-thread default streams: make it wait for them either way.
            ready = model._cupy.cuda.get_current_stream().record()
            for state in inferred:
                state.outputs_ready = ready
        for state in inferred:   # after the last look at their tiles: _finish lets go of them
            self._workers.submit(self._finish, state)
        return remaining
