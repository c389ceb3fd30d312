"""Streaming MMD drift monitor with ERT-calibrated thresholds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..kernels.mmd import host_rbf_into, rbf_kernel_matrix, rbf_kernel_sums

FORMAT = "cellrt-drift-reference/1"
MIN_BOOTSTRAPS = 10_000
# Held-out fields per window field at least: random windows drawn from a pool of only ~2 windows' worth
# overlap so much that the statistic's spread is underestimated (a threshold for 1 % false alarms gave
# 21 % with a pool of 2 windows; 5 windows and more gave 0.5-1.5 % in simulation).
MIN_POOL_PER_WINDOW = 5
# The bootstrap keeps a pool x pool kernel matrix: beyond this many held-out fields a random subset
# calibrates (the finite-pool effect is long gone by then; memory stays ~128 MB).
MAX_CALIBRATION_POOL = 4_000
MAX_BOOTSTRAPS = 200_000
BOOTSTRAP_CHUNK = 4_096


class DriftReferenceError(ValueError):
    """A drift reference that cannot be built, read or used: the message says which file or argument."""


def _embeddings(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DriftReferenceError(f"{what} should be a non-empty (count, dims) array, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise DriftReferenceError(f"{what} should be numeric, got {array.dtype}")
    array = np.ascontiguousarray(array, np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise DriftReferenceError(f"{what}: {int(bad.sum())} vectors hold NaN or inf (first: row "
                                  f"{int(np.flatnonzero(bad)[0])})")
    return array


MEDIAN_POINTS = 1000


def median_distance(points: np.ndarray) -> float:
    """Median Euclidean distance between distinct points (the usual RBF width heuristic), over at most
    MEDIAN_POINTS evenly spaced ones: a width needs no more, and memory stays O(MEDIAN_POINTS^2)."""
    if len(points) > MEDIAN_POINTS:
        points = points[np.linspace(0, len(points) - 1, MEDIAN_POINTS).astype(int)]
    x = points.astype(np.float64)
    squared = (x * x).sum(1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2.0 * (x @ x.T), 0.0)[np.triu_indices(len(x), 1)]
    positive = d2[d2 > 0]
    return float(np.sqrt(np.median(positive))) if positive.size else 0.0


def _mean_off_diagonal(kernel_sum: float, count: int) -> float:
    """Mean of k(a, b) over ordered pairs a != b, from the full sum (the diagonal is all 1)."""
    return (kernel_sum - count) / (count * (count - 1))


@dataclass(frozen=True)
class DriftReference:
    """Reference embeddings, the kernel width and the calibrated alarm threshold.

    ``embeddings`` are the reference set the statistic compares with;
    ``calibration`` are held-out reference vectors (never part of the
    statistic) whose random windows calibrated ``threshold``: the (1 - 1/ert)
    quantile of the statistic on ``bootstraps`` windows of ``window``
    distinct calibration vectors. ``metadata`` records where the
    embeddings came from (model, weights, precision, wells) so a run with
    another model or precision can be refused.
    """

    embeddings: np.ndarray
    calibration: np.ndarray
    sigma: float
    window: int
    ert: float
    threshold: float
    null_mean: float
    null_std: float
    bootstraps: int
    seed: int
    metadata: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return int(self.embeddings.shape[1])

    @classmethod
    def build(cls, embeddings, *, window: int = 16, ert: float = 1000.0, sigma: float | None = None,
              calibration_fraction: float = 0.5, groups=None, bootstraps: int | None = None, seed: int = 0,
              metadata: dict | None = None) -> DriftReference:
        """Split ``embeddings`` (reference fields, e.g. control wells) into the
        reference set and a held-out calibration set, pick the kernel width
        (the median distance of the reference set unless ``sigma`` is given)
        and calibrate the threshold for ``ert`` fields between false alarms.

        ``groups`` (one label per field, e.g. its well) keeps each group on
        one side of the split: fields of one well resemble each other more
        than fields of a new plate resemble the reference, and a calibration
        set sharing wells with the reference would set the threshold too low.
        """
        vectors = _embeddings(embeddings, "drift reference embeddings")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
            raise DriftReferenceError(f"drift reference: window should be an int >= 2 (fields), got {window!r}")
        if isinstance(ert, bool) or not isinstance(ert, (int, float, np.integer, np.floating)) \
                or not math.isfinite(ert) or ert <= 1:
            raise DriftReferenceError(f"drift reference: ert should be a number of fields > 1, got {ert!r}")
        if not 0 < calibration_fraction < 1:
            raise DriftReferenceError(f"drift reference: calibration_fraction should be in (0, 1), got "
                                      f"{calibration_fraction!r}")
        total = len(vectors)
        rng = np.random.default_rng(seed)
        held_out_mask = _split(total, calibration_fraction, groups, rng)
        held_out = int(held_out_mask.sum())
        pool_needed = MIN_POOL_PER_WINDOW * window
        if held_out < pool_needed or total - held_out < window:
            need = max(math.ceil(pool_needed / calibration_fraction), math.ceil(window / (1 - calibration_fraction)))
            raise DriftReferenceError(
                f"drift reference: {total} reference fields are too few for a window of {window}: calibration "
                f"needs at least {pool_needed} held-out fields ({MIN_POOL_PER_WINDOW} windows' worth; this "
                f"split holds out {held_out}) and the reference {window}; give at least {need} fields (more "
                f"wells) or a smaller window")
        reference, calibration = vectors[~held_out_mask], vectors[held_out_mask]
        if sigma is None:
            sigma = median_distance(reference)
            if sigma <= 0:
                raise DriftReferenceError("drift reference: all reference embeddings are identical; "
                                          "an RBF width cannot be chosen (pass sigma=)")
        bootstraps = int(bootstraps or min(MAX_BOOTSTRAPS, max(MIN_BOOTSTRAPS, int(20 * ert))))
        pool = calibration if len(calibration) <= MAX_CALIBRATION_POOL else \
            calibration[np.sort(rng.choice(len(calibration), MAX_CALIBRATION_POOL, replace=False))]
        stats = _null_statistics(reference, pool, float(sigma), int(window), bootstraps, rng)
        threshold = float(np.quantile(stats, 1.0 - 1.0 / float(ert), method="higher"))
        metadata = dict(metadata or {})
        metadata.setdefault("calibration_pool", len(pool))
        metadata.setdefault("split_by_groups", groups is not None)
        return cls(embeddings=reference, calibration=calibration, sigma=float(sigma), window=int(window),
                   ert=float(ert), threshold=threshold, null_mean=float(stats.mean()), null_std=float(stats.std()),
                   bootstraps=bootstraps, seed=int(seed), metadata=metadata)

    # -- files ---------------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a .npz (atomically: an interrupted save leaves the old file or none)."""
        path = Path(path)
        header = {"format": FORMAT, "sigma": self.sigma, "window": self.window, "ert": self.ert,
                  "threshold": self.threshold, "null_mean": self.null_mean, "null_std": self.null_std,
                  "bootstraps": self.bootstraps, "seed": self.seed, "metadata": self.metadata}
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, embeddings=self.embeddings, calibration=self.calibration,
                     header=np.frombuffer(json.dumps(header).encode(), np.uint8))
        return path

    def save_raw(self, folder) -> Path:
        """For C/C++ software (``cellrt::DriftMonitor``, ``cellrt_drift_monitor_create``): the reference
        embeddings as raw little-endian float32 (``reference.f32``, N x D row-major) and ``reference.json``
        (count, dims, sigma, window, threshold, ert, metadata). Written atomically, file by file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "reference.f32") as tmp:
            tmp.write_bytes(np.ascontiguousarray(self.embeddings, "<f4").tobytes())
        header = {"format": "cellrt-drift-reference-raw/1", "count": int(self.embeddings.shape[0]),
                  "dims": self.dims, "dtype": "float32 little-endian, row-major", "sigma": self.sigma,
                  "window": self.window, "threshold": self.threshold, "ert": self.ert, "metadata": self.metadata}
        with atomic_path(folder / "reference.json") as tmp:
            tmp.write_text(json.dumps(header, indent=2))
        return folder

    @classmethod
    def load(cls, path) -> DriftReference:
        import zipfile  # noqa: PLC0415

        path = Path(path)
        try:
            # Our own handle: numpy leaves the file open when the archive is damaged.
            with open(path, "rb") as handle:
                # Not a zip archive: numpy would guess a pickle and advise loading it "unsafely".
                if handle.read(4) != b"PK\x03\x04":
                    raise DriftReferenceError(f"{path}: not a cellrt drift reference (the .npz that `cellrt "
                                              f"drift-reference` writes): not an .npz archive")
                handle.seek(0)
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                embeddings, calibration = data["embeddings"], data["calibration"]
            if header.get("format") != FORMAT:
                raise DriftReferenceError(f"{path}: format {header.get('format')!r}, expected {FORMAT!r}")
            reference = cls(embeddings=_embeddings(embeddings, f"{path}: embeddings"),
                            calibration=_embeddings(calibration, f"{path}: calibration"),
                            sigma=float(header["sigma"]), window=int(header["window"]), ert=float(header["ert"]),
                            threshold=float(header["threshold"]), null_mean=float(header["null_mean"]),
                            null_std=float(header["null_std"]), bootstraps=int(header["bootstraps"]),
                            seed=int(header["seed"]), metadata=dict(header.get("metadata", {})))
        except FileNotFoundError:
            raise DriftReferenceError(f"{path}: no such drift reference file") from None
        except DriftReferenceError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
            raise DriftReferenceError(f"{path}: not a cellrt drift reference ({type(exc).__name__}: {exc})") from exc
        if reference.embeddings.shape[1] != reference.calibration.shape[1]:
            raise DriftReferenceError(f"{path}: embeddings and calibration vectors differ in length")
        if not (reference.window >= 2 and math.isfinite(reference.sigma) and reference.sigma > 0
                and math.isfinite(reference.threshold) and reference.ert > 1
                and len(reference.embeddings) >= reference.window):
            raise DriftReferenceError(f"{path}: inconsistent header (window {reference.window}, sigma "
                                      f"{reference.sigma}, threshold {reference.threshold}, ert {reference.ert}, "
                                      f"{len(reference.embeddings)} reference fields)")
        return reference

    def check_compatible(self, *, dims: int, precision: str | None = None, model: str | None = None,
                         weights_sha256: str | None = None, source: str = "drift reference") -> None:
        """Refuse a reference made from other embeddings: another length, model or precision
        (INT8 and FP16 engines move embeddings by several percent of their spread)."""
        if dims != self.dims:
            raise DriftReferenceError(f"{source}: its embeddings have {self.dims} values, the model's {dims}")
        ref_model = self.metadata.get("model")
        if model is not None and ref_model is not None and ref_model != model:
            raise DriftReferenceError(f"{source}: made with model {ref_model!r}, this run uses {model!r}")
        ref_precision = self.metadata.get("precision")
        if precision is not None and ref_precision is not None and ref_precision != precision:
            raise DriftReferenceError(
                f"{source}: made from {ref_precision} embeddings, this run computes {precision} ones; make a "
                f"reference at {precision} (cellrt drift-reference on a run with --precision {precision})")
        ref_weights = self.metadata.get("weights_sha256")
        if weights_sha256 is not None and ref_weights is not None and ref_weights != weights_sha256:
            raise DriftReferenceError(f"{source}: made with other weights of model {ref_model or model!r} "
                                      f"(SHA-256 {ref_weights[:12]}…, this run {weights_sha256[:12]}…): the "
                                      f"embeddings differ; make a reference with this model")


def _split(total: int, fraction: float, groups, rng: np.random.Generator) -> np.ndarray:
    """Which fields are held out for calibration: a random ``fraction`` of them, or of the groups."""
    if groups is None:
        held_out = np.zeros(total, bool)
        held_out[rng.permutation(total)[:int(round(total * fraction))]] = True
        return held_out
    labels = np.asarray(groups)
    if labels.shape != (total,):
        raise DriftReferenceError(f"drift reference: groups should give one label per field ({total}), got "
                                  f"shape {labels.shape}")
    names, index = np.unique(labels, return_inverse=True)
    sizes = np.bincount(index)
    held_out_groups = np.zeros(len(names), bool)
    taken = 0
    for g in rng.permutation(len(names)):   # whole groups until the fraction is reached
        if taken >= fraction * total:
            break
        held_out_groups[g] = True
        taken += sizes[g]
    return held_out_groups[index]


def _null_statistics(reference: np.ndarray, calibration: np.ndarray, sigma: float, window: int,
                     bootstraps: int, rng: np.random.Generator) -> np.ndarray:
    """The statistic on random windows of distinct calibration vectors (no drift by construction)."""
    n = len(reference)
    xx = _mean_off_diagonal(float(rbf_kernel_sums(reference, reference, sigma).sum()), n)
    cal_cal = rbf_kernel_matrix(calibration, calibration, sigma)
    cal_ref = rbf_kernel_sums(calibration, reference, sigma)
    stats = np.empty(bootstraps)
    chunk_size = max(1, min(BOOTSTRAP_CHUNK, (1 << 22) // len(calibration)))   # random keys <= 32 MB a chunk
    for start in range(0, bootstraps, chunk_size):
        count = min(chunk_size, bootstraps - start)
        idx = np.argpartition(rng.random((count, len(calibration))), window - 1, axis=1)[:, :window]
        yy = cal_cal[idx[:, :, None], idx[:, None, :]].sum(axis=(1, 2))
        stats[start:start + count] = xx + (yy - window) / (window * (window - 1)) \
            - 2.0 * cal_ref[idx].sum(axis=1) / (n * window)
    return stats


@dataclass(frozen=True)
class DriftStep:
    """The monitor after one field: ``statistic`` is the MMD^2 estimate over
    the current window; ``alarm`` once the window is full and the statistic
    exceeds ``threshold``."""

    index: int
    statistic: float
    threshold: float
    window_full: bool
    alarm: bool

    @property
    def ratio(self) -> float:
        """statistic / threshold (> 1: above the alarm line)."""
        return self.statistic / self.threshold if self.threshold > 0 else float("inf")


class DriftMonitor:
    """Sliding-window MMD^2 between incoming embeddings and a reference.

    Per field: one kernel row of the new vector against the reference and
    the window together (O((N + W) D), one call into the kernel backend on
    buffers kept across fields); the statistic then comes from stored sums
    in O(W^2), exactly (no running subtraction that would accumulate
    rounding over a long run).
    """

    def __init__(self, reference: DriftReference, *, backend: str = "auto"):
        from ..kernels import _backend  # noqa: PLC0415

        if backend not in ("auto", "cpu", "numba"):
            raise ValueError(f"DriftMonitor: backend should be 'auto', 'cpu' or 'numba' (embeddings arrive on "
                             f"the host, one vector per field), got {backend!r}")
        self.reference = reference
        self.backend = _backend.resolve("drift monitor", backend, False)
        ref = reference.embeddings
        n, w = len(ref), reference.window
        self._n = n
        self._xx = _mean_off_diagonal(float(rbf_kernel_sums(ref, ref, reference.sigma, backend=backend).sum()), n)
        # The reference, then the window's vectors in their ring slots: one kernel row per field covers both.
        self._points = np.zeros((n + w, reference.dims), np.float32)
        self._points[:n] = ref
        self._row = np.zeros((1, n + w))
        self._cross = np.zeros(w)           # sum over the reference of k(window vector, x)
        self._pairs = np.eye(w)             # k between window vectors (diagonal 1)
        self.count = 0

    def reset(self) -> None:
        self._pairs[...] = np.eye(self.reference.window)
        self._cross[...] = 0.0
        self.count = 0

    def update(self, embedding) -> DriftStep:
        ref = self.reference
        vector = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32).reshape(-1))
        if vector.shape[0] != ref.dims:
            raise ValueError(f"drift monitor: an embedding should have {ref.dims} values, got {vector.shape[0]}")
        if not np.isfinite(vector).all():
            raise ValueError("drift monitor: the embedding holds NaN or inf")
        n, w = self._n, ref.window
        slot = self.count % w
        m = min(self.count + 1, w)            # occupied slots after this field: 0 .. m-1
        self._points[n + slot] = vector
        row = host_rbf_into(vector[None], self._points[:n + m], ref.sigma, self._row[:, :n + m], self.backend, 1)[0]
        self._cross[slot] = row[:n].sum()
        self._pairs[slot, :m] = row[n:n + m]
        self._pairs[:m, slot] = row[n:n + m]
        self._pairs[slot, slot] = 1.0
        self.count += 1
        cross = self._cross[:m].sum() / (n * m)
        within = _mean_off_diagonal(float(self._pairs[:m, :m].sum()), m) if m >= 2 else 1.0
        statistic = float(self._xx + within - 2.0 * cross)
        full = self.count >= w
        return DriftStep(index=self.count - 1, statistic=statistic, threshold=ref.threshold, window_full=full,
                         alarm=bool(full and statistic > ref.threshold))


def monitor_stream(reference: DriftReference, embeddings, *, backend: str = "auto") -> list[DriftStep]:
    """Run a fresh monitor over ``embeddings`` (in acquisition order)."""
    monitor = DriftMonitor(reference, backend=backend)
    return [monitor.update(e) for e in _embeddings(embeddings, "drift stream embeddings")]
