"""Global thresholds from an exact histogram.

Integer images (8/16-bit) use one bin per grey value, so Otsu's threshold is
exact; float images use ``nbins`` equal bins between their min and max,
with thresholds at bin centres (scikit-image's convention, so results agree
on the same histogram). 8/16-bit histograms come from cellrt's C++ or CUDA
kernel, float32 ones from the C++ kernel counting numpy.histogram's bins
(numpy.histogram itself for other floats, cupy.histogram for device images).
"""

from __future__ import annotations

import numpy as np

METHODS = ("otsu", "li", "triangle", "mean", "manual")


def _value_counts(image: np.ndarray) -> np.ndarray:
    """Per-value counts of an 8/16-bit image: the C++ kernel, else numpy."""
    from .._build import _core  # noqa: PLC0415

    if _core is not None:
        return _core.histogram(np.ascontiguousarray(image))
    return np.bincount(image.ravel(), minlength=256 if image.dtype == np.uint8 else 65536)


# Integer images spanning more values than this and than their pixel count are binned like float images.
_MAX_VALUE_BINS = 1 << 16


def _check_nbins(nbins) -> None:
    from . import _backend  # noqa: PLC0415

    if not _backend.is_int(nbins) or nbins < 2:
        raise ValueError(f"histogram: nbins should be an int >= 2, got {nbins!r}")


def _bin_centres(edges: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        centres = (edges[:-1] + edges[1:]) / 2
    if not np.all(np.isfinite(centres)):
        # float32 edges near +-3.4e38: their sum overflows to +-inf (a threshold of -inf), their mean does not.
        centres = ((edges[:-1].astype(np.float64) + edges[1:]) / 2).astype(edges.dtype)
    return centres


def histogram(image, nbins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin centres of an image's values.

    Integer images get one bin per value from their min to their max
    (``nbins`` is ignored) - unless that span exceeds both 65536 values and
    the pixel count: then, as float images, ``nbins`` equal-width bins.
    """
    from . import _backend  # noqa: PLC0415

    if _backend.is_device_array(image):   # cupy: counted on the GPU, only the counts come back
        if image.size == 0 or not (image.dtype in (np.uint8, np.uint16) or image.dtype.kind == "f"):
            raise ValueError(f"histogram: device images should be non-empty uint8, uint16 or float, got "
                             f"{image.dtype} of size {image.size}; copy others to the host")
        _backend.resolve("histogram", "cuda", True)
        if image.dtype.kind == "f":
            return _device_float_histogram(image, nbins)
        from . import _cuda  # noqa: PLC0415 - needs cupy

        counts = _cuda.value_counts(image)
        nonzero = np.flatnonzero(counts)
        lo, hi = int(nonzero[0]), int(nonzero[-1])
        return counts[lo:hi + 1], np.arange(lo, hi + 1, dtype=np.float64)
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
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < max(_MAX_VALUE_BINS, values.size):
            counts = np.bincount((values.astype(np.int64) - lo) if lo else values)
            return counts, np.arange(lo, lo + counts.size, dtype=np.float64)
        # One bin per value would outgrow both the image and a 16-bit histogram (2^32 bins for two uint32
        # pixels 0 and 4e9: a 32 GiB allocation): bin the values as a float image's.
        _check_nbins(nbins)
        counts, edges = np.histogram(values.astype(np.float64), bins=int(nbins), range=(float(lo), float(hi)))
        return counts, (edges[:-1] + edges[1:]) / 2
    if image.dtype.kind != "f":
        raise ValueError(f"histogram: image should be numeric, got {image.dtype}")
    _check_nbins(nbins)
    from .._build import _core  # noqa: PLC0415

    try:
        if _core is not None and image.dtype == np.float32 and nbins <= 1 << 24:
            # The same bins as numpy.histogram below, ~5x faster (one pass for the range, one to count).
            counts, edges, finite = _core.float_histogram(np.ascontiguousarray(image).reshape(-1), int(nbins))
        else:
            finite = int(np.count_nonzero(np.isfinite(image)))
            if finite == image.size:
                counts, edges = np.histogram(image, bins=int(nbins), range=(float(image.min()), float(image.max())))
    except ValueError as error:
        # Bins without width (numpy refuses them too). A constant image far from 0 lands here (numpy's
        # +-0.5 around its value is lost in its float type): one bin, at the value.
        lo, hi = image.min(), image.max()
        if lo == hi and np.isfinite(lo):
            return np.array([image.size], np.int64), np.array([lo], image.dtype)
        if "Too many bins" in str(error):   # numpy's words, for float types other than float32
            raise ValueError(f"histogram: {int(nbins)} bins are too many for the values' range [{float(lo):g}, "
                             f"{float(hi):g}]: in {image.dtype} some would have no width") from None
        raise
    if finite != image.size:
        raise ValueError(f"histogram: image holds {image.size - finite} NaN/inf values")
    return counts, _bin_centres(edges)


def numpy_bin_edges(lo: float, hi: float, nbins: int, dtype: np.dtype) -> np.ndarray | None:
    """The edges numpy.histogram(values, nbins, range=(lo, hi)) uses for values of float ``dtype``, on any
    numpy version: linspace in double from the extremes as Python floats (widened by 0.5 either side when
    equal), rounded to ``dtype``. None for a constant image whose widened edges round to one value; bins
    without width otherwise raise ValueError, as numpy.histogram and cellrt's C++ kernel refuse them."""
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    with np.errstate(all="ignore"):
        edges = np.linspace(first, last, nbins + 1, dtype=dtype)
    if bool(np.all(edges[:-1] < edges[1:])):
        return edges
    if lo == hi:
        return None
    raise ValueError(f"float_histogram: {nbins} bins are too many for the values' range [{lo:g}, {hi:g}]: in "
                     f"{np.dtype(dtype).name} some would have no width (numpy.histogram refuses them too)")


def _device_float_histogram(image, nbins) -> tuple[np.ndarray, np.ndarray]:
    """``nbins`` equal bins between a device image's min and max, counted on the GPU (cupy.histogram);
    only the counts and the extremes come to the host. The edges are numpy.histogram's, made on the host
    and handed to cupy (cupy makes its own on the device, which may round an edge the other way), so a
    value on an edge lands in the bin it does on the host."""
    import cupy  # noqa: PLC0415

    if not bool(cupy.isfinite(image).all()):
        raise ValueError(f"histogram: image holds {int((~cupy.isfinite(image)).sum())} NaN/inf values")
    _check_nbins(nbins)
    lo, hi = float(image.min()), float(image.max())
    edges = numpy_bin_edges(lo, hi, int(nbins), np.dtype(image.dtype))
    if edges is None:   # a constant image far from 0: one bin at its value, as on the host
        return np.array([image.size], np.int64), np.array([lo], image.dtype)
    counts = cupy.histogram(image, bins=cupy.asarray(edges))[0]
    counts = counts.get() if hasattr(counts, "get") else np.asarray(counts)
    return counts, _bin_centres(edges)


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


def triangle_from_histogram(counts, centres) -> float:
    """Zack's triangle threshold: draw a line from the histogram's peak to a
    zero-height point at the end of its longer tail; the threshold is the bin
    between them farthest below that line."""
    counts = np.asarray(counts, np.float64)
    occupied = np.flatnonzero(counts)
    low, high = int(occupied[0]), int(occupied[-1])
    peak = int(np.argmax(counts))
    reverse = peak - low < high - peak  # the right tail is longer: mirror it to the left
    if reverse:
        counts = counts[::-1]
        low, peak = len(counts) - 1 - high, len(counts) - 1 - peak
    span = peak - low
    if span <= 0:
        return float(centres[peak if not reverse else len(counts) - 1 - peak])
    x = np.arange(span, dtype=np.float64)
    # Distance below the line from (low, 0) to (peak, height), up to a constant factor.
    below = counts[peak] * x - span * counts[low + x.astype(np.int64)]
    level = int(np.argmax(below)) + low
    if reverse:
        level = len(counts) - 1 - level
    return float(centres[level])


def li_from_histogram(counts, centres, tolerance=None, max_iterations: int = 1000) -> float:
    """Li's minimum cross-entropy threshold, by the fixed-point iteration
    t <- (m_low - m_high) / (ln m_low - ln m_high) of Li & Tam (1998),
    where m_low / m_high are the means of the values <= t / > t, starting
    from the mean, until t moves by at most ``tolerance`` (default: half the
    smallest gap between values) or the values <= t are only the minimum
    (scikit-image's stops). Values are shifted to start at 0 (logarithms of
    the class means must be defined) and shifted back."""
    counts = np.asarray(counts, np.float64)
    centres = np.asarray(centres, np.float64)
    occupied = np.flatnonzero(counts)
    counts, centres = counts[occupied], centres[occupied]
    origin = centres[0]
    values = centres - origin
    if tolerance is None:
        tolerance = np.min(np.diff(values)) / 2 if len(values) > 1 else 0.0
    cum_n = np.cumsum(counts)
    cum_m = np.cumsum(counts * values)
    total_n, total_m = cum_n[-1], cum_m[-1]
    t = total_m / total_n
    previous = t + 2 * tolerance + 1
    for _ in range(max_iterations):
        if abs(t - previous) <= tolerance:
            break
        k = int(np.searchsorted(values, t, side="right")) - 1  # last value <= t
        n_low, m_low = cum_n[k], cum_m[k]
        n_high, m_high = total_n - n_low, total_m - m_low
        mean_low = m_low / n_low
        mean_high = m_high / n_high
        if mean_low <= 0:
            # Only the minimum is below t: log(0) is undefined, so stop here, as scikit-image does. Restarting
            # from elsewhere cycles back to this point and returns wherever the iteration cap falls.
            break
        previous = t
        t = (mean_low - mean_high) / (np.log(mean_low) - np.log(mean_high))
    return float(t + origin)


def threshold(image, method: str = "otsu", *, value=None, nbins: int = 256, correction: float = 1.0,
              smoothing: float = 0.0) -> float:
    """A global threshold for ``image``; foreground is ``image > threshold``.

    Parameters
    ----------
    image : array
        Any shape; uint8/uint16 (exact per-value histogram), other integers,
        or float (``nbins`` bins; NaN/inf raise ValueError).
    method : {'otsu', 'li', 'triangle', 'mean', 'manual'}
        ``otsu``: maximum between-class variance; ``li``: minimum
        cross-entropy (iterative); ``triangle``: Zack's triangle method, for
        images whose histogram is one peak with a tail (sparse bright
        objects); ``mean``: the mean value (the in-silico-labeling
        post-processing uses it); ``manual``: ``value``.
    value : float
        The threshold for ``method='manual'``.
    nbins : int
        Histogram bins for float images (and for integer images spanning
        more than 65536 values and more values than pixels).
    correction : float
        Multiplies the threshold (CellProfiler's threshold correction factor).
    smoothing : float
        Gaussian sigma in pixels; when > 0 the threshold is computed on the
        blurred 2-D image (compare the blurred image with it too), which
        steadies it on noisy fields.

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
    from . import _backend  # noqa: PLC0415

    # is_real: numpy scalars (np.int64(2)) are numbers, bools are not.
    if not (_backend.is_real(correction) and np.isfinite(correction) and correction > 0):
        raise ValueError(f"threshold: correction should be a positive number, got {correction!r}")
    if method == "manual":
        if not _backend.is_real(value) or not np.isfinite(value):
            raise ValueError(f"threshold: method='manual' needs a finite value=, got {value!r}")
        return float(value) * correction

    device = _backend.is_device_array(image)
    if device:   # cupy: the histogram is counted on the GPU; counts and extremes come back
        if image.size == 0 or not (image.dtype in (np.uint8, np.uint16) or image.dtype.kind == "f"):
            raise ValueError(f"threshold: device images should be non-empty uint8, uint16 or float, got "
                             f"{image.dtype} of size {image.size}; copy others to the host")
        if image.dtype.kind == "f":
            import cupy  # noqa: PLC0415

            finite = cupy.isfinite(image)
            if not bool(finite.all()):
                raise ValueError(f"threshold: image holds {int(image.size - int(finite.sum()))} NaN/inf values")
        if smoothing:
            from .filters import gaussian_blur  # noqa: PLC0415

            image = gaussian_blur(image, smoothing)
    else:
        image = np.asarray(image)
        if image.size == 0:
            raise ValueError("threshold: image should be non-empty")
        if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
            raise ValueError(f"threshold: image holds {int(np.count_nonzero(~np.isfinite(image)))} NaN/inf values")
        if smoothing:
            from .filters import gaussian_blur  # noqa: PLC0415

            image = gaussian_blur(image, smoothing)
    if method == "mean":
        return float(image.mean(dtype=np.float64)) * correction
    try:
        counts, centres = histogram(image, nbins)
    except ValueError as error:   # name the function the caller called
        message = str(error)
        for op in ("float_histogram: ", "histogram: "):
            if message.startswith(op):
                raise ValueError("threshold: " + message[len(op):]) from None
        raise
    if np.count_nonzero(counts) == 1:  # a constant image: nothing lies above its value
        return float(centres[np.flatnonzero(counts)[0]]) * correction
    if method == "li":
        if image.dtype.kind == "f":
            # Li iterates on the values themselves, not on bins.
            xp = _backend.array_module(image)
            values, counts = xp.unique(image.ravel().astype(xp.float64), return_counts=True)
            if device:
                values, counts = values.get(), counts.get()
            return li_from_histogram(counts, values) * correction
        # Integer values: converged within half a grey level (scikit-image's tolerance), however far apart
        # the used values are (12-bit data stored in 16 bits uses every 16th).
        return li_from_histogram(counts, centres, tolerance=0.5) * correction
    if method == "triangle":
        return triangle_from_histogram(counts, centres) * correction
    return otsu_from_histogram(counts, centres) * correction
