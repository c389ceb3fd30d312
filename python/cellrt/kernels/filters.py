"""Separable filters and local thresholds on single-channel images.

``gaussian_blur`` and ``box_mean`` run as C++ kernels (rows, then columns,
with a ring buffer of filtered rows) and as numba references; the local
thresholds and binary morphology build on them.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend

BORDERS = {"reflect": 0, "nearest": 1}


def _as_float_image(image, op: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{op}: image should have shape (H, W), got {image.shape}")
    if image.dtype.kind not in "buif":
        raise ValueError(f"{op}: image should be numeric, got {image.dtype}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{op}: image holds {int(np.count_nonzero(~np.isfinite(image)))} NaN/inf values")
    return image


def _border(border: str, op: str) -> int:
    if border not in BORDERS:
        raise ValueError(f"{op}: border should be 'reflect' or 'nearest', got {border!r}")
    return BORDERS[border]


def gaussian_blur(image, sigma: float, *, truncate: float = 4.0, border: str = "reflect", backend: str = "auto",
                  num_threads: int = 0) -> np.ndarray:
    """Gaussian blur of a 2-D image, as ``scipy.ndimage.gaussian_filter``.

    Parameters
    ----------
    image : (H, W) array
        Read as float32.
    sigma : float
        Standard deviation in pixels (0 returns a copy).
    truncate : float
        Kernel radius ``int(truncate * sigma + 0.5)``.
    border : {'reflect', 'nearest'}
        ``reflect`` mirrors with the edge repeated (scipy's ``reflect``).

    Returns
    -------
    (H, W) float32 ndarray

    Examples
    --------
    >>> out = gaussian_blur(np.eye(5, dtype=np.float32), 1.0)
    >>> out.shape, out.dtype
    ((5, 5), dtype('float32'))
    """
    image = _as_float_image(image, "gaussian_blur")
    if not (isinstance(sigma, (int, float, np.floating, np.integer)) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"gaussian_blur: sigma should be a number >= 0, got {sigma!r}")
    if not (isinstance(truncate, (int, float)) and math.isfinite(truncate) and truncate > 0):
        raise ValueError(f"gaussian_blur: truncate should be > 0, got {truncate!r}")
    mode = _border(border, "gaussian_blur")
    chosen = _backend.resolve("gaussian_blur", backend, False)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        out = np.empty_like(image)
        _core.gaussian_blur(image, out, float(sigma), float(truncate), mode, int(num_threads))
        return out
    from . import _filters_numba  # noqa: PLC0415

    return _filters_numba.gaussian_blur(image, float(sigma), float(truncate), mode)


def _window(size, op: str) -> tuple[int, int]:
    sy, sx = size if isinstance(size, (tuple, list)) else (size, size)
    for s in (sy, sx):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"{op}: size should be a positive int or a (y, x) pair of them, got {size!r}")
    return int(sy), int(sx)


def box_mean(image, size, *, border: str = "reflect", backend: str = "auto", num_threads: int = 0) -> np.ndarray:
    """Mean over a ``size`` window around each pixel, as
    ``scipy.ndimage.uniform_filter``; O(1) per pixel for any window.

    Returns
    -------
    (H, W) float32 ndarray
    """
    image = _as_float_image(image, "box_mean")
    sy, sx = _window(size, "box_mean")
    mode = _border(border, "box_mean")
    chosen = _backend.resolve("box_mean", backend, False)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        out = np.empty_like(image)
        _core.box_mean(image, out, sy, sx, mode, int(num_threads))
        return out
    from . import _filters_numba  # noqa: PLC0415

    return _filters_numba.box_mean(image, sy, sx, mode)


def threshold_local(image, block_size: int, method: str = "gaussian", *, offset: float = 0.0,
                    border: str = "reflect", backend: str = "auto", num_threads: int = 0) -> np.ndarray:
    """Per-pixel threshold from the neighbourhood, as
    ``skimage.filters.threshold_local``: foreground is ``image > result``.

    ``mean``: the ``block_size`` box mean; ``gaussian``: a gaussian blur with
    sigma ``(block_size - 1) / 6``. Minus ``offset``.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 3 \
            or block_size % 2 == 0:
        raise ValueError(f"threshold_local: block_size should be an odd int >= 3, got {block_size!r}")
    if method == "mean":
        local = box_mean(image, int(block_size), border=border, backend=backend, num_threads=num_threads)
    elif method == "gaussian":
        local = gaussian_blur(image, (block_size - 1) / 6.0, border=border, backend=backend, num_threads=num_threads)
    else:
        raise ValueError(f"threshold_local: method should be 'mean' or 'gaussian', got {method!r}")
    return local - np.float32(offset)


def _disk_half_widths(radius: int) -> np.ndarray:
    dy = np.arange(-radius, radius + 1)
    return np.floor(np.sqrt(radius * radius - dy * dy) + 1e-9).astype(np.int64)


def _erode(mask: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    # Pixels outside the image count as foreground (borders do not erode),
    # as scikit-image's binary_erosion. A pixel survives if, at each vertical
    # offset dy, the row run of half-width h(dy) around it is all foreground.
    # Row erosions for h = 0, 1, 2... are built by AND-ing shifted copies
    # (one pass each on booleans, cheap for the small radii of cell images);
    # wide footprints use prefix sums instead (two slices per width).
    radius = (len(half_widths) - 1) // 2
    h_max = int(half_widths.max())
    height, width = mask.shape
    padded = np.pad(mask, ((radius, radius), (h_max + 1, h_max)), constant_values=True)
    rows = {}
    if h_max <= 8:
        eroded = padded[:, 1:]  # h = 0, columns shifted by the unused first one
        for h in range(h_max + 1):
            if h:
                eroded = eroded[:, 1:-1] & eroded[:, :-2] & eroded[:, 2:]
            rows[h] = eroded[:, h_max - h:h_max - h + width]
    else:
        padded[:, 0] = False  # the prefix sum's zero column
        prefix = np.cumsum(padded, axis=1, dtype=np.int32)
        for h in np.unique(half_widths):
            lo, hi = h_max - h, h_max + h + 1
            rows[int(h)] = (prefix[:, hi:hi + width] - prefix[:, lo:lo + width]) == 2 * h + 1
    out = rows[int(half_widths[0])][0:height].copy()
    for i, h in enumerate(half_widths[1:], start=1):
        out &= rows[int(h)][i:i + height]
    return out


def _footprint(size: int, shape: str, op: str) -> np.ndarray:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"{op}: radius should be a non-negative int, got {size!r}")
    if shape == "square":
        return np.full(2 * size + 1, size, np.int64)
    if shape == "disk":
        return _disk_half_widths(int(size))
    raise ValueError(f"{op}: footprint should be 'square' or 'disk', got {shape!r}")


def binary_erosion(mask, radius: int, footprint: str = "disk") -> np.ndarray:
    """Erosion by a (2 r + 1)-wide square or a disk of radius r
    (scikit-image's ``disk``); the image border does not erode."""
    from .labeling import _as_mask  # noqa: PLC0415

    return _erode(_as_mask(mask).view(bool), _footprint(radius, footprint, "binary_erosion"))


def binary_dilation(mask, radius: int, footprint: str = "disk") -> np.ndarray:
    """Dilation by the same footprints (symmetric, so the complement of the
    eroded complement); outside the image is background."""
    from .labeling import _as_mask  # noqa: PLC0415

    return ~_erode(~_as_mask(mask).view(bool), _footprint(radius, footprint, "binary_dilation"))


def binary_opening(mask, radius: int, footprint: str = "disk") -> np.ndarray:
    """Erosion then dilation: removes specks and thin bridges smaller than the footprint."""
    return binary_dilation(binary_erosion(mask, radius, footprint), radius, footprint)


def binary_closing(mask, radius: int, footprint: str = "disk") -> np.ndarray:
    """Dilation then erosion: closes gaps smaller than the footprint."""
    return binary_erosion(binary_dilation(mask, radius, footprint), radius, footprint)
