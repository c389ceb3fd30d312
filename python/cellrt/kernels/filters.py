"""Separable filters and local thresholds on single-channel images.

``gaussian_blur`` and ``box_mean`` run as C++ kernels (rows, then columns,
with a ring buffer of filtered rows), as CUDA kernels for cupy images (a
thread per row, then per column, the CPU's arithmetic from the shared
header) and as numba references; the local thresholds build on them.
``gaussian_blur_recursive`` is the same blur computed by a recursive (IIR)
filter whose cost does not grow with sigma - for large local-threshold
blocks - at the price of a small approximation error.
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


def _check_device_image(image, op: str) -> None:
    if image.ndim != 2:
        raise ValueError(f"{op}: image should have shape (H, W), got {tuple(image.shape)}")
    if np.dtype(image.dtype).kind not in "buif":
        raise ValueError(f"{op}: image should be numeric, got {image.dtype}")


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
    num_threads = _backend.check_num_threads("gaussian_blur", num_threads)
    _check_sigma(sigma, "gaussian_blur")
    if not (_backend.is_real(truncate) and math.isfinite(truncate) and truncate > 0):
        raise ValueError(f"gaussian_blur: truncate should be > 0, got {truncate!r}")
    mode = _border(border, "gaussian_blur")
    if _backend.is_device_array(image):
        _backend.resolve("gaussian_blur", backend, True)
        _check_device_image(image, "gaussian_blur")
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.separable_filter(0, image, float(sigma), float(truncate), mode)
    image = _as_float_image(image, "gaussian_blur")
    chosen = _backend.resolve("gaussian_blur", backend, False)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        out = np.empty_like(image)
        _core.gaussian_blur(image, out, float(sigma), float(truncate), mode, int(num_threads))
        return out
    from . import _filters_numba  # noqa: PLC0415

    return _filters_numba.gaussian_blur(image, float(sigma), float(truncate), mode)


def _check_sigma(sigma, op: str, largest: float = math.inf) -> None:
    if not (isinstance(sigma, (int, float, np.floating, np.integer)) and not isinstance(sigma, bool)
            and math.isfinite(sigma) and 0 <= sigma <= largest):
        bound = "a number >= 0" if largest == math.inf else f"a number in [0, {largest:g}]"
        raise ValueError(f"{op}: sigma should be {bound}, got {sigma!r}")


def gaussian_blur_recursive(image, sigma: float, *, border: str = "reflect", backend: str = "auto",
                            num_threads: int = 0) -> np.ndarray:
    """Gaussian blur whose cost per pixel does not depend on ``sigma``.

    A recursive (IIR) filter: Deriche's fourth-order approximation of the
    gaussian (two complex pole pairs run forwards and backwards along each
    row, then each column), with constants refitted by
    ``tools/fit_recursive_gaussian.py``. ``gaussian_blur`` costs
    ``2 * (8 sigma + 1)`` multiply-adds a pixel; this about 60 flops a pixel
    for any sigma, so it wins from sigma ~3 up (local thresholds with
    blocks of a few dozen pixels and more).

    Not exact: the kernel it applies differs from ``gaussian_blur``'s
    (scipy's) taps by at most ~6.5e-4 of the largest input value per pass
    for ``sigma >= 1`` (9.4e-4 at 0.5), far less on smooth images; the gain
    is normalised to 1, and a flat image stays flat to within 1 ulp (so on
    a plateau - a saturated area - ``image > blur`` can hold where the exact
    blur gives equality). Deterministic and equal on the C++ and CUDA
    backends bit for bit; the numba backend (the fallback without the C++
    extension, and the reference) is a direct float64 convolution with the
    same kernel, ~13 sigma wide each side: its cost grows with sigma.

    Parameters
    ----------
    image : (H, W) array
        Read as float32.
    sigma : float
        Standard deviation in pixels, in [0, 1e5] (0 returns a copy).
    border : {'reflect', 'nearest'}
        As ``gaussian_blur``.

    Returns
    -------
    (H, W) float32 ndarray
    """
    num_threads = _backend.check_num_threads("gaussian_blur_recursive", num_threads)
    _check_sigma(sigma, "gaussian_blur_recursive", 1e5)
    mode = _border(border, "gaussian_blur_recursive")
    if _backend.is_device_array(image):
        _backend.resolve("gaussian_blur_recursive", backend, True)
        _check_device_image(image, "gaussian_blur_recursive")
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.separable_filter(2, image, float(sigma), 0.0, mode)
    image = _as_float_image(image, "gaussian_blur_recursive")
    chosen = _backend.resolve("gaussian_blur_recursive", backend, False)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        out = np.empty_like(image)
        _core.gaussian_blur_recursive(image, out, float(sigma), mode, int(num_threads))
        return out
    from . import _filters_numba  # noqa: PLC0415

    return _filters_numba.gaussian_blur_recursive(image, float(sigma), mode)


def _window(size, op: str) -> tuple[int, int]:
    if isinstance(size, (tuple, list)) and len(size) != 2:
        raise ValueError(f"{op}: size should be a positive int or a (y, x) pair of them, got {size!r}")
    sy, sx = size if isinstance(size, (tuple, list)) else (size, size)
    for s in (sy, sx):
        if not _backend.is_int(s) or s < 1:
            raise ValueError(f"{op}: size should be a positive int or a (y, x) pair of them, got {size!r}")
    return int(sy), int(sx)


def box_mean(image, size, *, border: str = "reflect", backend: str = "auto", num_threads: int = 0) -> np.ndarray:
    """Mean over a ``size`` window around each pixel, as
    ``scipy.ndimage.uniform_filter``; O(1) per pixel for any window.

    Returns
    -------
    (H, W) float32 ndarray
    """
    num_threads = _backend.check_num_threads("box_mean", num_threads)
    sy, sx = _window(size, "box_mean")
    mode = _border(border, "box_mean")
    if _backend.is_device_array(image):
        _backend.resolve("box_mean", backend, True)
        _check_device_image(image, "box_mean")
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.separable_filter(1, image, sy, sx, mode)
    image = _as_float_image(image, "box_mean")
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
    sigma ``(block_size - 1) / 6``; ``gaussian_recursive``: the same blur by
    ``gaussian_blur_recursive`` (cost independent of ``block_size``, within
    ~6.5e-4 of the image's largest value of ``gaussian``). Minus ``offset``.
    """
    num_threads = _backend.check_num_threads("threshold_local", num_threads)
    if not _backend.is_int(block_size) or block_size < 3 or block_size % 2 == 0:
        raise ValueError(f"threshold_local: block_size should be an odd int >= 3, got {block_size!r}")
    if not _backend.is_real(offset) or not math.isfinite(offset):
        # np.float32(None) is NaN: every pixel's threshold NaN, nothing foreground, no error.
        raise ValueError(f"threshold_local: offset should be a finite number, got {offset!r}")
    if method == "mean":
        local = box_mean(image, int(block_size), border=border, backend=backend, num_threads=num_threads)
    elif method == "gaussian":
        local = gaussian_blur(image, (block_size - 1) / 6.0, border=border, backend=backend, num_threads=num_threads)
    elif method == "gaussian_recursive":
        local = gaussian_blur_recursive(image, (block_size - 1) / 6.0, border=border, backend=backend,
                                        num_threads=num_threads)
    else:
        raise ValueError("threshold_local: method should be 'mean', 'gaussian' or 'gaussian_recursive', "
                         f"got {method!r}")
    return local - np.float32(offset)


FOOTPRINTS = {"square": 0, "disk": 1}


def footprint_half_widths(radius: int, footprint: str = "disk") -> np.ndarray:
    """Half-width of the footprint at each row offset -r..r: r for a square; for
    a disk the largest h with h^2 + dy^2 <= r^2 (scikit-image's ``disk(r)``)."""
    dy = np.arange(-radius, radius + 1, dtype=np.int64)
    if footprint == "square":
        return np.full(2 * radius + 1, radius, np.int16)
    room = radius * radius - dy * dy
    h = np.floor(np.sqrt(room.astype(np.float64))).astype(np.int64)
    h -= (h * h > room)
    h += ((h + 1) * (h + 1) <= room)
    return h.astype(np.int16)


def _morphology(op: str, mask, radius, footprint: str, dilate: bool, backend: str, num_threads: int):
    num_threads = _backend.check_num_threads(op, num_threads)
    if not _backend.is_int(radius) or not 0 <= radius < 32767:
        raise ValueError(f"{op}: radius should be an int in [0, 32767), got {radius!r}")
    if footprint not in FOOTPRINTS:
        raise ValueError(f"{op}: footprint should be 'square' or 'disk', got {footprint!r}")
    if _backend.is_device_array(mask):
        _backend.resolve(op, backend, True)
        if mask.ndim != 2:
            raise ValueError(f"{op}: mask should have shape (H, W), got {tuple(mask.shape)}")
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.binary_morphology(mask, int(radius), FOOTPRINTS[footprint], dilate)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{op}: mask should have shape (H, W), got {mask.shape}")
    if mask.dtype.kind not in "biuf":
        raise ValueError(f"{op}: mask should be boolean or numeric, got dtype {mask.dtype}")
    if mask.dtype.kind == "f" and not np.all(np.isfinite(mask)):
        raise ValueError(f"{op}: mask holds NaN or inf; threshold it first")
    mask = np.ascontiguousarray(mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8))
    if mask.size >= 2**31:
        raise ValueError(f"{op}: the mask should have fewer than 2^31 pixels, got {mask.shape}")
    chosen = _backend.resolve(op, backend, False)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        return _core.binary_morphology(mask, int(radius), FOOTPRINTS[footprint], dilate,
                                       int(num_threads)).view(bool)
    from . import _filters_numba  # noqa: PLC0415

    return _filters_numba.binary_morphology(mask, footprint_half_widths(int(radius), footprint), dilate)


def binary_erosion(mask, radius: int, footprint: str = "disk", *, backend: str = "auto",
                   num_threads: int = 0):
    """Erosion by a (2 r + 1)-wide square or a disk of radius r (scikit-image's
    ``disk``); the image border does not erode. Returns a bool array (cupy for
    cupy input: the CUDA backend)."""
    return _morphology("binary_erosion", mask, radius, footprint, False, backend, num_threads)


def binary_dilation(mask, radius: int, footprint: str = "disk", *, backend: str = "auto",
                    num_threads: int = 0):
    """Dilation by the same footprints (the complement of the eroded
    complement); outside the image is background."""
    return _morphology("binary_dilation", mask, radius, footprint, True, backend, num_threads)


def binary_opening(mask, radius: int, footprint: str = "disk", *, backend: str = "auto",
                   num_threads: int = 0):
    """Erosion then dilation: removes specks and thin bridges smaller than the footprint."""
    num_threads = _backend.check_num_threads("binary_opening", num_threads)
    eroded = binary_erosion(mask, radius, footprint, backend=backend, num_threads=num_threads)
    return binary_dilation(eroded, radius, footprint, backend=backend, num_threads=num_threads)


def binary_closing(mask, radius: int, footprint: str = "disk", *, backend: str = "auto",
                   num_threads: int = 0):
    """Dilation then erosion: closes gaps smaller than the footprint."""
    num_threads = _backend.check_num_threads("binary_closing", num_threads)
    dilated = binary_dilation(mask, radius, footprint, backend=backend, num_threads=num_threads)
    return binary_erosion(dilated, radius, footprint, backend=backend, num_threads=num_threads)
