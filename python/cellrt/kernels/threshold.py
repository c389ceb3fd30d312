"""Global thresholds from an exact histogram.

Integer images (8/16-bit) use one bin per grey value, so Otsu's threshold is
exact; float images use ``nbins`` equal bins between their min and max,
with thresholds at bin centres (scikit-image's convention, so results agree
on the same histogram). 8/16-bit histograms come from cellrt's C++ kernel,
float ones from numpy.histogram.
"""

from __future__ import annotations

import numpy as np

METHODS = ("otsu", "mean", "manual")


def _value_counts(image: np.ndarray) -> np.ndarray:
    """Per-value counts of an 8/16-bit image: the C++ kernel, else numpy."""
    from .._build import _core  # noqa: PLC0415

    if _core is not None:
        return _core.histogram(np.ascontiguousarray(image))
    return np.bincount(image.ravel(), minlength=256 if image.dtype == np.uint8 else 65536)


def histogram(image, nbins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin centres of an image's values.

    Integer images get one bin per value from their min to their max
    (``nbins`` is ignored); float images ``nbins`` equal-width bins.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError("histogram: image should be non-empty")
    if image.dtype in (np.uint8, np.uint16):
        counts = _value_counts(image)
        nonzero = np.flatnonzero(counts)
        lo, hi = int(nonzero[0]), int(nonzero[-1])
        return counts[lo:hi + 1], np.arange(lo, hi + 1, dtype=np.float64)
    if image.dtype.kind in "iu" or image.dtype == np.bool_:
        values = image.ravel()
        lo = int(values.min())
        counts = np.bincount((values.astype(np.int64) - lo) if lo else values)
        return counts, np.arange(lo, lo + counts.size, dtype=np.float64)
    if image.dtype.kind != "f":
        raise ValueError(f"histogram: image should be numeric, got {image.dtype}")
    finite = np.isfinite(image)
    if not finite.all():
        raise ValueError(f"histogram: image holds {int(finite.size - np.count_nonzero(finite))} NaN/inf values")
    if isinstance(nbins, bool) or not isinstance(nbins, (int, np.integer)) or nbins < 2:
        raise ValueError(f"histogram: nbins should be an int >= 2, got {nbins!r}")
    counts, edges = np.histogram(image, bins=int(nbins), range=(float(image.min()), float(image.max())))
    return counts, (edges[:-1] + edges[1:]) / 2


def otsu_from_histogram(counts, centres) -> float:
    """Otsu's threshold: the bin centre maximising the between-class variance
    of {values <= t} and {values > t}.

    Both classes' sums are accumulated from their own end of the histogram
    (not as total minus the other class), which keeps near-ties resolved the
    same way as scikit-image's implementation of the same formula.
    """
    counts = np.asarray(counts, np.float64)
    centres = np.asarray(centres, np.float64)
    mass = counts * centres
    n_low = np.cumsum(counts)
    n_high = np.cumsum(counts[::-1])[::-1]
    mean_low = np.cumsum(mass) / n_low
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_high = (np.cumsum(mass[::-1]) / n_high[::-1])[::-1]
        # threshold at centre i: low = bins 0..i, high = bins i+1..
        between = n_low[:-1] * n_high[1:] * (mean_low[:-1] - mean_high[1:]) ** 2
    between[~np.isfinite(between)] = -1.0
    return float(centres[int(np.argmax(between))])


def threshold(image, method: str = "otsu", *, value=None, nbins: int = 256, correction: float = 1.0) -> float:
    """A global threshold for ``image``; foreground is ``image > threshold``.

    Parameters
    ----------
    image : array
        Any shape; uint8/uint16 (exact per-value histogram), other integers,
        or float (``nbins`` bins; NaN/inf raise ValueError).
    method : {'otsu', 'mean', 'manual'}
        ``otsu``: maximum between-class variance; ``mean``: the mean value
        (the in-silico-labeling post-processing uses it); ``manual``: ``value``.
    value : float
        The threshold for ``method='manual'``.
    nbins : int
        Histogram bins for float images.
    correction : float
        Multiplies the threshold (CellProfiler's threshold correction factor).

    Returns
    -------
    float
        A constant image returns its value (nothing is above it).

    Examples
    --------
    >>> threshold(np.array([1, 1, 2, 9, 10, 10], np.uint8))
    2.0
    """
    if method not in METHODS:
        raise ValueError(f"threshold: method should be one of {', '.join(METHODS)}, got {method!r}")
    if not (isinstance(correction, (int, float, np.floating)) and np.isfinite(correction) and correction > 0):
        raise ValueError(f"threshold: correction should be a positive number, got {correction!r}")
    if method == "manual":
        if value is None or not np.isfinite(value):
            raise ValueError(f"threshold: method='manual' needs a finite value=, got {value!r}")
        return float(value) * correction
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError("threshold: image should be non-empty")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise ValueError(f"threshold: image holds {int(np.count_nonzero(~np.isfinite(image)))} NaN/inf values")
    if method == "mean":
        return float(image.mean(dtype=np.float64)) * correction
    counts, centres = histogram(image, nbins)
    if np.count_nonzero(counts) == 1:  # a constant image: nothing lies above its value
        return float(centres[np.flatnonzero(counts)[0]]) * correction
    return otsu_from_histogram(counts, centres) * correction
