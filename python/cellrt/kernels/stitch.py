"""Tile an image into an overlapping batch and stitch model outputs back.

``tile`` and ``stitch`` are mirrors: ``tile`` cuts a ``[C, H, W]`` image
into ``[N, C, th, tw]`` tiles on a regular grid (last tile flush with the
border, images smaller than a tile mirrored), optionally normalising and
casting on the way; ``stitch`` blends ``[N, C', th, tw]`` model outputs
back into a ``[C', H, W]`` image, optionally applying the final activation
or argmax in the same pass.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _backend

BLEND_MODES = ("constant", "linear", "cosine", "gaussian", "crop")
_ACTIVATIONS = {None: 0, "none": 0, "sigmoid": 1, "softmax": 2}
_NAN_POLICIES = ("raise", "propagate")
_NATIVE_IMAGE_DTYPES = (np.uint8, np.uint16, np.float32)
_DTYPE_CODES = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.float16): 2,
                np.dtype(np.float32): 3, np.dtype(np.int32): 4}
MAX_FUSED_CHANNELS = 64
# Pixels in one tile (per channel). Model inputs are a few hundred to a few thousand pixels a
# side; a tile past this is a mistaken argument (an image size passed as the tile size), and
# refusing it names the argument instead of failing in the allocator. It also keeps each side
# far below the C++ core's int32 limit (2**29).
MAX_TILE_PIXELS = 2**28
# Values (channels x pixels) one stitch() call blends into one output. The bound is memory, not index range:
# the C++ and CUDA cores index pixels in int64 and take sides below 2**29 (_CORE_MAX_SIDE), but the output is
# held whole in host or GPU memory (the numba path holds about three times it while blending). 2**32 values
# are 16 GiB of float32: room for a well mosaic (10 x 10 fields of 2048 x 2048 pixels with 3 channels are
# 1.3e9), within the memory of the hosts and GPUs cellrt targets. Past it an image_shape is almost always a
# mistaken argument (a mosaic's size in the wrong unit, axes swapped), which numpy or cupy would otherwise meet
# with a MemoryError, or the operating system with the out-of-memory killer; a real image that large is
# stitched in regions.
MAX_STITCH_VALUES = 2**32
_CORE_MAX_SIDE = (2**31 - 1) // 4   # cellrt::detail::check_sides (csrc/core/validate.h)


class TileBatch(NamedTuple):
    """Result of :func:`tile`."""

    tiles: np.ndarray
    """``[N, C, th, tw]`` float32 or float16, C-contiguous."""
    origins: np.ndarray
    """``[N, 2]`` int64, (y, x) of each tile's top-left corner, raster order."""


def _pair(value, name: str, op: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: {name} should be a number or a (y, x) pair, got {value!r}")
        return tuple(value)
    return (value, value)


def _image_hw(image_shape, op: str) -> tuple[tuple, int, int]:
    try:
        dims = tuple(image_shape)
    except TypeError:
        dims = None
    if dims is None or len(dims) not in (2, 3):
        raise ValueError(f"{op}: image_shape should be (H, W) or (C, H, W), got {image_shape!r}")
    if not all(_backend.is_int(d) for d in dims):
        # int() would truncate a float silently: (50.5, 60) is a caller's mistake, not 50 rows.
        raise ValueError(f"{op}: image_shape should hold integers, got {image_shape!r}")
    dims = tuple(int(d) for d in dims)
    if dims[-2] < 1 or dims[-1] < 1:
        raise ValueError(f"{op}: image_shape should be non-empty, got {dims!r}")
    return dims, dims[-2], dims[-1]


def _tile_hw(tile_size, op: str) -> tuple[int, int]:
    th, tw = _pair(tile_size, "tile_size", op)
    for t in (th, tw):
        if not _backend.is_int(t) or t < 1:
            raise ValueError(f"{op}: tile_size should be a positive int or a (y, x) pair of them, got {tile_size!r}")
    return int(th), int(tw)


def resolve_overlap(overlap, tile_hw: tuple[int, int], op: str = "tile") -> tuple[int, int]:
    """Overlap in pixels per axis from pixels (int) or a fraction of the tile.

    A fraction ``f`` in ``[0, 1)`` means a stride of ``int(tile * (1 - f))``
    pixels (at least 1), as MONAI's ``sliding_window_inference`` computes it.
    """
    result = []
    for o, t, axis in zip(_pair(overlap, "overlap", op), tile_hw, "yx"):
        if isinstance(o, bool) or not isinstance(o, (int, np.integer, float, np.floating)):
            raise ValueError(f"{op}: overlap should be an int (pixels) or a float in [0, 1), got {overlap!r}")
        if isinstance(o, (float, np.floating)):
            if not (0.0 <= o < 1.0):
                raise ValueError(f"{op}: overlap as a fraction should be in [0, 1), got {o!r} for axis {axis}")
            result.append(t - max(1, int(t * (1.0 - o))))
        else:
            if not (0 <= o < t):
                raise ValueError(f"{op}: overlap should be in [0, tile) = [0, {t}) pixels for axis {axis}, got {o}")
            result.append(int(o))
    return result[0], result[1]


def _axis_origins(length: int, tile: int, overlap: int) -> np.ndarray:
    if length <= tile:
        return np.zeros(1, np.int64)
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return np.minimum(np.arange(count, dtype=np.int64) * stride, length - tile)


def _grid_numpy(height: int, width: int, th: int, tw: int, oy: int, ox: int) -> np.ndarray:
    """The grid without the extension, and the reference its C++ twin (cellrt::tile_origins) is tested against."""
    ys, xs = _axis_origins(height, th, oy), _axis_origins(width, tw, ox)
    grid = np.empty((ys.size, xs.size, 2), np.int64)
    grid[..., 0] = ys[:, None]
    grid[..., 1] = xs[None, :]
    return grid.reshape(-1, 2)


def tile_origins(image_shape, tile_size, overlap=0.25) -> np.ndarray:
    """Top-left corners of a regular tile grid over an image.

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W)`` or ``(C, H, W)``.
    tile_size : int or (int, int)
        Tile side, or ``(th, tw)``.
    overlap : int, float or pair
        Pixels shared by neighbouring tiles, or a fraction of the tile in
        ``[0, 1)``.

    Returns
    -------
    origins : (N, 2) int64 ndarray
        ``(y, x)`` in raster order; the last tile of each row and column sits
        flush with the border; an axis shorter than the tile has one origin, 0.
        The grid of ``cellrt::tile_origins`` (C++) and ``cellrt_tile_origins``
        (C), which compute it here when the extension is present.

    Examples
    --------
    >>> tile_origins((5, 700), 256, overlap=0.25)[:, 1].tolist()
    [0, 192, 384, 444]
    """
    return _origins(image_shape, tile_size, overlap, "tile_origins")


def _origins(image_shape, tile_size, overlap, op: str) -> np.ndarray:
    _, height, width = _image_hw(image_shape, op)
    th, tw = _tile_hw(tile_size, op)
    oy, ox = resolve_overlap(overlap, (th, tw), op)
    # The C++ grid when the extension is there: the one C and C++ callers of tile and stitch get
    # (cellrt_tile_origins), so a plate tiled in Python and in acquisition software is tiled alike.
    from .._build import _core  # noqa: PLC0415

    if _core is not None:
        return _core.tile_origins(height, width, th, tw, oy, ox)
    return _grid_numpy(height, width, th, tw, oy, ox)


def _integer_percentiles(values: np.ndarray, qs) -> np.ndarray:
    # Exact np.percentile(..., method="linear") from a histogram: one pass
    # instead of a partial sort of every pixel. The histogram is the C++
    # kernel's (np.bincount first widens every value to int64: 8 vs 1.3 ms
    # for a 2048^2 uint16 field).
    from .threshold import _value_counts  # noqa: PLC0415

    counts = _value_counts(values)
    cumulative = np.cumsum(counts)
    n = cumulative[-1]
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        v_lo = np.searchsorted(cumulative, lo, side="right")
        v_hi = np.searchsorted(cumulative, hi, side="right")
        out.append(v_lo + (pos - lo) * (v_hi - v_lo))
    return np.asarray(out, np.float64)


def _core_percentiles():
    from .._build import _core  # noqa: PLC0415

    return None if _core is None else _core.percentiles


def percentile_normalization(image, percentiles=(1.0, 99.8), op: str = "tile") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, offset)`` mapping percentile ``lo`` to 0 and ``hi`` to 1.

    A channel whose two percentiles coincide (a flat field) gets scale 0, so
    it normalises to zeros instead of dividing by zero. Percentiles are taken
    over the finite values (NaN and +-inf ignored, as ``np.nanpercentile``
    ignores NaN): one bad pixel would otherwise make them NaN and wipe out
    the whole channel. A channel with no finite value gets scale 0, offset 0.
    """
    pair = list(percentiles) if isinstance(percentiles, (tuple, list, np.ndarray)) else []
    if len(pair) != 2 or not all(_backend.is_real(q) for q in pair) or not (0.0 <= pair[0] < pair[1] <= 100.0):
        raise ValueError(f"{op}: percentiles should be a (lo, hi) pair of numbers with 0 <= lo < hi <= 100, "
                         f"got {percentiles!r}")
    lo_q, hi_q = (float(q) for q in pair)
    xp = _backend.array_module(image)
    core_percentiles = _core_percentiles()
    scale, offset = [], []
    for channel in image:
        if xp is np and channel.dtype in (np.uint8, np.uint16):
            lo, hi = _integer_percentiles(channel, (lo_q, hi_q))
        elif xp is np and channel.dtype == np.float32 and core_percentiles is not None:
            # The C++ selection (two passes over the values, non-finite ones left out): np.percentile
            # partially sorts a copy of every finite value (54 vs 5.4 ms at 2048^2).
            (lo, hi), finite = core_percentiles(np.ascontiguousarray(channel), [lo_q, hi_q])
            if finite == 0:
                lo = hi = 0.0
        else:
            finite = xp.isfinite(channel)
            # The copy of the finite values is made only for an image that needs it.
            values = channel if bool(finite.all()) else channel[finite]
            if values.size == 0:
                lo = hi = 0.0
            else:
                lo, hi = (float(v) for v in xp.percentile(values, [lo_q, hi_q]))
        offset.append(lo)
        scale.append(1.0 / (hi - lo) if hi > lo else 0.0)
    return np.asarray(scale, np.float32), np.asarray(offset, np.float32)


def _per_channel(value, channels: int, name: str, default: float) -> np.ndarray:
    if value is None:
        return np.full(channels, default, np.float32)
    arr = np.asarray(value, np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise ValueError(f"tile: {name} should be a scalar or one value per channel ({channels}), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"tile: {name} should be finite, got {value!r}")
    return arr.astype(np.float32)


def _check_policy(nan_policy: str, op: str) -> None:
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"{op}: nan_policy should be 'raise' or 'propagate', got {nan_policy!r}")


def _as_image(image, op: str):
    device = _backend.is_device_array(image)
    if not device:
        image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"{op}: image should have shape (H, W) or (C, H, W), got {tuple(image.shape)}")
    if 0 in image.shape:
        raise ValueError(f"{op}: image should be non-empty, got shape {tuple(image.shape)}")
    dt = np.dtype(image.dtype)
    if dt.kind not in "buif":
        raise ValueError(f"{op}: image should be numeric, got dtype {dt}")
    if dt not in [np.dtype(t) for t in _NATIVE_IMAGE_DTYPES]:
        # Other numeric types are read as float32 (one copy).
        image = image.astype(np.float32)
    return image, device


def tile(image, tile_size, overlap=0.25, *, dtype=np.float32, normalize=None, percentiles=(1.0, 99.8),
         scale=None, offset=None, nan_policy="raise", backend="auto", num_threads=0, out=None) -> TileBatch:
    """Cut an image into overlapping tiles, normalised and cast in one pass.

    Parameters
    ----------
    image : (H, W) or (C, H, W) array
        uint8, uint16 and float32 are read directly (any strides); other
        numeric types are converted to float32 first. A cupy array runs on
        the CUDA backend and returns cupy tiles.
    tile_size : int or (int, int)
        Tile side(s) in pixels, the model's input size; at most
        ``MAX_TILE_PIXELS`` (2**28) pixels per tile.
    overlap : int, float or pair, default 0.25
        Pixels shared by neighbouring tiles, or a fraction of the tile in
        ``[0, 1)`` (MONAI's convention). Must be below the tile size.
    dtype : {numpy.float32, numpy.float16}
        Element type of the tiles.
    normalize : {None, 'percentile', 'fixed'}
        ``'percentile'``: per channel, map the ``percentiles`` (lo, hi) of the
        image to 0 and 1 (CSBDeep-style, no clipping). ``'fixed'``: apply
        ``(pixel - offset) * scale``. None (default): values pass unchanged.
    percentiles : (float, float)
        ``(lo, hi)`` with ``0 <= lo < hi <= 100``: percentiles for
        ``normalize='percentile'``; exact (histogram-based for 8/16-bit
        images).
    scale, offset : float or sequence of float, optional
        Per-channel values for ``normalize='fixed'``.
    nan_policy : {'raise', 'propagate'}
        ``'raise'`` (default) raises ValueError when a tile would hold NaN or
        inf, including float16 overflow of unnormalised 16-bit data, and
        when a float image holds NaN or inf (naming the count and the first
        one). ``'propagate'`` keeps them: NaN pixels stay NaN in their tiles,
        and ``'percentile'`` normalisation is computed over the finite values.
    backend : {'auto', 'cuda', 'cpu', 'numba'}
    num_threads : int
        CPU threads for the ``cpu`` backend, >= 0 (0: all hardware threads;
        at most 4x those, and one per work item, are started).
    out : ndarray, optional
        Preallocated C-contiguous ``[N, C, th, tw]`` array of ``dtype`` to
        fill: numpy for the host backends, cupy for ``cuda``. Reusing one
        buffer per batch avoids the page faults of a fresh allocation,
        which cost as much as the tiling.

    Returns
    -------
    TileBatch
        ``tiles`` ``[N, C, th, tw]`` (C-contiguous, ``dtype``) and ``origins``
        ``[N, 2]`` int64 from :func:`tile_origins`.

    Examples
    --------
    >>> img = np.arange(600 * 500, dtype=np.uint16).reshape(600, 500)
    >>> batch = tile(img, 256, overlap=64)
    >>> batch.tiles.shape, batch.origins[-1].tolist()
    ((9, 1, 256, 256), [344, 244])
    """
    num_threads = _backend.check_num_threads("tile", num_threads)
    image, device = _as_image(image, "tile")
    _check_policy(nan_policy, "tile")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"tile: dtype should be float32 or float16, got {dtype}")
    th, tw = _tile_hw(tile_size, "tile")
    if th * tw > MAX_TILE_PIXELS:
        # Checked before anything is allocated: the tiles of a 50 x 60 image with tile_size=100000
        # would be 37 GiB of mirrored copies of it.
        raise ValueError(f"tile: tile_size {tile_size!r} makes {th} x {tw} = {th * tw} pixels per tile, over the "
                         f"limit of {MAX_TILE_PIXELS} (2**28); the image is {image.shape[1]} x {image.shape[2]} "
                         "(every tile is filled, mirroring the image where the tile runs past it). Pass the "
                         "model's input size")
    origins = _origins(image.shape, (th, tw), overlap, "tile")
    channels = image.shape[0]
    if normalize is None and (scale is not None or offset is not None):
        normalize = "fixed"
    if normalize == "percentile":
        if scale is not None or offset is not None:
            raise ValueError("tile: scale/offset are for normalize='fixed', not 'percentile'")
        if nan_policy == "raise":
            # Before the percentiles: with a NaN pixel the tiles are rejected anyway, and the
            # error should be about the image, not about the normalisation derived from it.
            _raise_if_nonfinite(image)
        scale_c, offset_c = percentile_normalization(image, percentiles)
    elif normalize == "fixed":
        scale_c = _per_channel(scale, channels, "scale", 1.0)
        offset_c = _per_channel(offset, channels, "offset", 0.0)
    elif normalize is None:
        scale_c, offset_c = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    else:
        raise ValueError(f"tile: normalize should be None, 'percentile' or 'fixed', got {normalize!r}")

    chosen = _backend.resolve("tile", backend, device)
    shape = (origins.shape[0], channels, th, tw)
    _check_out("tile", out, shape, dtype, chosen)
    if chosen == "cuda":
        from . import _cuda  # noqa: PLC0415 - needs cupy

        tiles, nonfinite = _cuda.tile(image, origins, th, tw, scale_c, offset_c, dtype, out)
    elif chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        tiles = np.empty(shape, dtype) if out is None else out
        nonfinite = _core.tile(image, origins, tiles, scale_c, offset_c, int(num_threads))
    else:
        from . import _stitch_numba  # noqa: PLC0415 - JIT cost only when used

        tiles, nonfinite = _stitch_numba.tile(image, origins, th, tw, scale_c, offset_c, dtype)
        if out is not None:
            out[...] = tiles
            tiles = out

    if nonfinite and nan_policy == "raise":
        _raise_if_nonfinite(image)
        raise ValueError(f"tile: {nonfinite} tile values overflow {dtype} (largest finite 65504); "
                         "normalise (normalize='percentile' or scale=) or use dtype=numpy.float32")
    return TileBatch(tiles, origins)


def _raise_if_nonfinite(image) -> None:
    if np.dtype(image.dtype).kind != "f":
        return
    # Counted where the image is: a device image is not copied to the host to find nothing.
    xp = _backend.array_module(image)
    nonfinite = ~xp.isfinite(image)
    bad = int(xp.count_nonzero(nonfinite))
    if bad:
        where = tuple(int(i) for i in xp.argwhere(nonfinite)[0])
        raise ValueError(f"tile: image holds {bad} NaN/inf values (first at channel, y, x = {where}); "
                         "clean the image or pass nan_policy='propagate'")


def _stitch_options(tiles_shape, image_shape, overlap, blend, sigma_scale, activation, argmax):
    _, channels, th, tw = tiles_shape
    if blend not in BLEND_MODES:
        raise ValueError(f"stitch: blend should be one of {', '.join(BLEND_MODES)}, got {blend!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"stitch: activation should be None, 'sigmoid' or 'softmax', got {activation!r}")
    dims, height, width = _image_hw(image_shape, "stitch")
    if len(dims) == 3 and dims[0] != channels:
        raise ValueError(f"stitch: image_shape has {dims[0]} channels but tiles have {channels}")
    # Before anything is allocated, on every backend (see MAX_STITCH_VALUES).
    if max(height, width) >= _CORE_MAX_SIDE:
        raise ValueError(f"stitch: image_shape {image_shape!r} has a side of {max(height, width)} pixels; sides "
                         f"should be below {_CORE_MAX_SIDE}")
    if channels * height * width > MAX_STITCH_VALUES:
        raise ValueError(f"stitch: image_shape {image_shape!r} makes {channels} x {height} x {width} = "
                         f"{channels * height * width} output values (channels x pixels), over the limit of "
                         f"{MAX_STITCH_VALUES} (2**32, 16 GiB of float32); stitch the image in regions")
    if overlap is None:
        if blend in ("linear", "cosine"):
            raise ValueError(f"stitch: blend={blend!r} tapers over the tiles' overlap; pass overlap= "
                             "(the value given to tile())")
        overlap = 0
    oy, ox = resolve_overlap(overlap, (th, tw), "stitch")
    if blend == "gaussian" and not (_backend.is_real(sigma_scale) and math.isfinite(sigma_scale) and sigma_scale > 0):
        raise ValueError(f"stitch: sigma_scale should be a positive number, got {sigma_scale!r}")
    if (activation == "softmax" or argmax) and channels > MAX_FUSED_CHANNELS:
        raise ValueError(f"stitch: softmax and argmax take at most {MAX_FUSED_CHANNELS} channels, got {channels}")
    return channels, height, width, oy, ox


def stitch(tiles, origins, image_shape, *, overlap=None, blend="gaussian", sigma_scale=0.125, activation=None,
           argmax=False, fill_value=None, nan_policy="raise", backend="auto", num_threads=0, out=None):
    """Blend overlapping tiles back into one image.

    Each output pixel is ``sum_k w_k v_k / sum_k w_k`` over the tiles ``k``
    covering it, in ascending tile order (deterministic; float32
    accumulation). Weights are separable windows that taper only on tile
    sides lying inside the image, never on the image border; tile pixels
    beyond the image are ignored.

    Parameters
    ----------
    tiles : (N, C, th, tw) float32 or float16 array, C-contiguous
        Model outputs, numpy or cupy.
    origins : (N, 2) int array
        ``(y, x)`` top-left corners, as returned by :func:`tile`.
    image_shape : (H, W) or (C, H, W)
        At most ``MAX_STITCH_VALUES`` (2**32) values C x H x W.
    overlap : int, float or pair, optional
        The tiler's overlap; the ramp width of ``linear`` / ``cosine``
        (required for those, ignored otherwise).
    blend : {'gaussian', 'constant', 'linear', 'cosine', 'crop'}
        ``constant`` averages; ``gaussian`` weights by
        ``exp(-d^2 / 2 (sigma_scale * tile)^2)`` about the tile centre (flat
        on the border half); ``crop`` takes each pixel from the covering
        tile whose centre is nearest (lowest index on ties).
    sigma_scale : float
        Gaussian sigma as a fraction of the tile side (MONAI's default 0.125).
    activation : {None, 'sigmoid', 'softmax'}
        Applied to the blended values (logits are blended, then activated).
    argmax : bool
        Return ``(H, W)`` int32 class indices of the blended channels
        (first on ties) instead of values; uncovered pixels are -1.
    fill_value : float, optional
        Value for pixels no tile covers. None (default) raises ValueError if
        any pixel is uncovered.
    nan_policy : {'raise', 'propagate'}
        ``'raise'`` raises ValueError if a blended value is NaN or inf,
        naming the tiles that hold NaN/inf, or saying that finite tiles
        overflowed float32 when summed.
    backend : {'auto', 'cuda', 'cpu', 'numba'}
    num_threads : int
        CPU threads for the ``cpu`` backend, >= 0 (0: all hardware threads;
        at most 4x those, and one per work item, are started).
    out : array, optional
        Preallocated C-contiguous output (``(C, H, W)`` float32, or
        ``(H, W)`` int32 with ``argmax``): numpy for the host backends,
        cupy for ``cuda``.

    Returns
    -------
    (C, H, W) float32 array, or (H, W) int32 with ``argmax``.

    Examples
    --------
    >>> img = np.random.default_rng(0).random((300, 400), dtype=np.float32)
    >>> tiles, origins = tile(img, 128, overlap=32)
    >>> back = stitch(tiles, origins, img.shape, overlap=32, blend="cosine")
    >>> bool(np.allclose(back[0], img, atol=1e-6))
    True
    """
    num_threads = _backend.check_num_threads("stitch", num_threads)
    device = _backend.is_device_array(tiles)
    if not device:
        tiles = np.asarray(tiles)
    if tiles.ndim != 4:
        raise ValueError(f"stitch: tiles should have shape (N, C, tile_h, tile_w), got {tuple(tiles.shape)}")
    if np.dtype(tiles.dtype) not in (np.float32, np.float16):
        raise ValueError(f"stitch: tiles should be float32 or float16, got {np.dtype(tiles.dtype)} "
                         "(cast with .astype(numpy.float32))")
    if 0 in tiles.shape[1:]:
        raise ValueError(f"stitch: tiles should have non-empty C, tile_h and tile_w, got {tuple(tiles.shape)}")
    if not (tiles.flags.c_contiguous if not device else _is_c_contiguous_device(tiles)):
        raise ValueError("stitch: tiles should be C-contiguous; pass numpy.ascontiguousarray(tiles)")
    origins = np.asarray(origins)
    if origins.ndim != 2 or origins.shape != (tiles.shape[0], 2) or origins.dtype.kind not in "iu":
        raise ValueError(f"stitch: origins should be an integer array of shape ({tiles.shape[0]}, 2), "
                         f"got {origins.dtype} {tuple(origins.shape)}")
    _check_policy(nan_policy, "stitch")
    if fill_value is not None and not _backend.is_real(fill_value):
        raise ValueError(f"stitch: fill_value should be a number or None, got {fill_value!r}")
    channels, height, width, oy, ox = _stitch_options(tiles.shape, image_shape, overlap, blend, sigma_scale,
                                                       activation, argmax)
    # Checked in the caller's dtype: converted to int64 first, a uint64 2**63 would be reported
    # as a negative number it never was.
    bad = (origins[:, 0] < 0) | (origins[:, 0] >= height) | (origins[:, 1] < 0) | (origins[:, 1] >= width)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"stitch: origins[{k}] = {tuple(origins[k].tolist())} should lie inside the "
                         f"{height} x {width} image")
    origins = np.ascontiguousarray(origins, np.int64)
    mode, act = BLEND_MODES.index(blend), _ACTIVATIONS[activation]
    fill = 0.0 if fill_value is None else float(fill_value)
    out_shape = (height, width) if argmax else (channels, height, width)
    out_dtype = np.int32 if argmax else np.float32

    chosen = _backend.resolve("stitch", backend, device)
    _check_out("stitch", out, out_shape, out_dtype, chosen)
    if chosen == "cuda":
        from . import _cuda  # noqa: PLC0415

        result, uncovered, nonfinite = _cuda.stitch(tiles, origins, out_shape, out_dtype, mode, oy, ox,
                                                    sigma_scale, act, argmax, fill, out)
    elif chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        result = np.empty(out_shape, out_dtype) if out is None else out
        uncovered, nonfinite = _core.stitch(tiles, origins, result, mode, oy, ox, float(sigma_scale), act,
                                            bool(argmax), fill, int(num_threads))
    else:
        from . import _stitch_numba  # noqa: PLC0415

        result, uncovered, nonfinite = _stitch_numba.stitch(tiles, origins, height, width, mode, oy, ox,
                                                            float(sigma_scale), act, bool(argmax), fill)
        if out is not None:
            out[...] = result
            result = out

    if uncovered and fill_value is None:
        raise ValueError(f"stitch: {uncovered} pixels of the {height} x {width} image are covered by no tile; "
                         "check origins and image_shape, or pass fill_value=")
    if nonfinite and nan_policy == "raise":
        host = tiles.get() if device else tiles
        with np.errstate(invalid="ignore"):
            culprits = np.flatnonzero(~np.isfinite(host.reshape(host.shape[0], -1)).all(axis=1))
        if culprits.size == 0:
            # Finite tiles can still give inf: the weighted sum of a few values near 3.4e38.
            raise ValueError(f"stitch: {nonfinite} blended values overflow float32: every tile value is finite, "
                             "but their weighted sums are too large for float32 (largest finite 3.4e38); "
                             "scale the tiles down, or pass nan_policy='propagate' to keep the infinities")
        raise ValueError(f"stitch: {nonfinite} blended values are NaN or inf (tiles with non-finite values: "
                         f"{culprits[:8].tolist()}{'...' if culprits.size > 8 else ''}); "
                         "pass nan_policy='propagate' to keep them")
    return result


def _check_out(op: str, out, shape, dtype, backend: str) -> None:
    if out is None:
        return
    on_device = _backend.is_device_array(out)
    if backend == "cuda":
        fits = on_device and _is_c_contiguous_device(out)
    else:
        fits = isinstance(out, np.ndarray) and out.flags.c_contiguous and out.flags.writeable
    if not fits or tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != np.dtype(dtype):
        kind = "C-contiguous device (cupy)" if backend == "cuda" else "writable C-contiguous"
        raise ValueError(f"{op}: out should be a {kind} {np.dtype(dtype)} array of shape {tuple(shape)} "
                         f"for the {backend} backend, got {getattr(out, 'dtype', type(out).__name__)} "
                         f"{tuple(getattr(out, 'shape', ()))}" + ("" if on_device or backend != "cuda"
                                                                  else " on the host"))


def _is_c_contiguous_device(a) -> bool:
    flags = getattr(a, "flags", None)
    if flags is not None and hasattr(flags, "c_contiguous"):
        return bool(flags.c_contiguous)
    iface = a.__cuda_array_interface__
    return iface.get("strides") is None


def dtype_code(dtype) -> int:
    """Element-type code shared with the C++ core (cellrt::DType)."""
    return _DTYPE_CODES[np.dtype(dtype)]
