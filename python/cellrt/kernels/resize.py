"""``resize``: an image's channels resampled onto another pixel grid.

The step that brings a field to the object scale a model was trained at
(``cellrt.pipeline.scale``), and the model's dense output back onto the
field's own grid. A separable triangle (bilinear) filter on aligned pixel
centres - torch's ``interpolate(mode="bilinear", align_corners=False)`` and
OpenCV's ``INTER_LINEAR`` when upsampling - widened to the scale factor when
downsampling with ``antialias`` (Pillow's BILINEAR, torch's
``antialias=True``), so that every input pixel contributes and fine texture
does not alias into false edges. C++ (rows, then columns, multithreaded),
CUDA for cupy arrays (the same arithmetic: equal bit for bit) and numba.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend

_NATIVE = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_MAX_SIDE = 2 ** 31 - 1


def _check_shape(shape, op: str) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(_backend.is_int(v) and 1 <= v <= _MAX_SIDE for v in shape)):
        raise ValueError(f"{op}: shape should be (height, width), two ints in 1 .. 2^31 - 1, got {shape!r}")
    return int(shape[0]), int(shape[1])


def rescaled_shape(shape, factor: float) -> tuple[int, int]:
    """The (height, width) of a (..., H, W) image resampled by ``factor`` (output pixels per input
    pixel): each side rounded to the nearest pixel, at least 1.

    >>> rescaled_shape((1024, 1360), 0.5)
    (512, 680)
    """
    if not (_backend.is_real(factor) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"rescaled_shape: factor should be a finite number > 0, got {factor!r}")
    height, width = (int(v) for v in tuple(shape)[-2:])
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def resize(image, shape, *, antialias: bool = True, backend: str = "auto", num_threads: int = 0):
    """Resample ``image`` onto a ``shape`` = (H_out, W_out) grid.

    Output sample ``i`` of an axis sits at input coordinate
    ``(i + 0.5) * n_in / n_out - 0.5``. The filter is a triangle of half-width
    one input pixel (bilinear interpolation); downsampling with ``antialias``
    widens it to ``n_in / n_out`` input pixels. Weights are normalised over
    the taps inside the image, so borders repeat nothing and a flat image
    stays flat.

    Parameters
    ----------
    image : (H, W) or (C, H, W) array, or a cupy array
        Any real dtype: uint8, uint16 and float32 are read as they are,
        others converted to float32. Values must be finite.
    shape : (int, int)
        Output height and width.
    antialias : bool
        Widen the filter when downsampling (default). ``False`` samples the
        two nearest pixels of every output centre, as plain bilinear does.

    Returns
    -------
    (H_out, W_out) or (C, H_out, W_out) float32 array
        On the input's device.

    Examples
    --------
    >>> resize(np.array([[0.0, 1.0]], np.float32), (1, 4)).tolist()
    [[0.0, 0.25, 0.75, 1.0]]
    """
    out_h, out_w = _check_shape(shape, "resize")
    _backend.check_flag("resize", "antialias", antialias)
    num_threads = _backend.check_num_threads("resize", num_threads)
    device = _backend.is_device_array(image)
    chosen = _backend.resolve("resize", backend, device)
    xp = _backend.array_module(image) if device else np
    image = xp.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"resize: image should have shape (H, W) or (C, H, W), got {tuple(image.shape)}")
    if np.dtype(image.dtype).kind not in "buif":
        raise ValueError(f"resize: image should be numeric, got {image.dtype}")
    if min(image.shape[-2:]) < 1:
        raise ValueError(f"resize: image should have sides >= 1, got shape {tuple(image.shape)}")
    planar = image.reshape((-1,) + tuple(image.shape[-2:]))
    if np.dtype(planar.dtype) not in _NATIVE:
        planar = planar.astype(np.float32)
    planar = xp.ascontiguousarray(planar)
    if planar.dtype.kind == "f" and not bool(xp.all(xp.isfinite(planar))):
        bad = int(planar.size - int(xp.count_nonzero(xp.isfinite(planar))))
        raise ValueError(f"resize: image holds {bad} NaN or infinite value(s); resize takes finite values")
    out_shape = tuple(image.shape[:-2]) + (out_h, out_w)
    if chosen == "cuda":
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.resize(planar, out_h, out_w, bool(antialias)).reshape(out_shape)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        out = np.empty((planar.shape[0], out_h, out_w), np.float32)
        _core.resize(planar, out, bool(antialias), int(num_threads))
        return out.reshape(out_shape)
    from . import _resize_numba  # noqa: PLC0415

    return _resize_numba.resize(planar, out_h, out_w, bool(antialias)).reshape(out_shape)


def resize_labels(labels, shape):
    """Instance or class labels onto a (H_out, W_out) grid by nearest neighbour: output pixel ``i`` of
    an axis takes input pixel ``floor((i + 0.5) * n_in / n_out)`` (the same pixel centres as
    :func:`resize`). Integer labels are never blended.

    >>> resize_labels(np.array([[1, 2], [3, 4]], np.int32), (4, 4))[0].tolist()
    [1, 1, 2, 2]
    """
    out_h, out_w = _check_shape(shape, "resize_labels")
    xp = _backend.array_module(labels)
    labels = xp.asarray(labels)
    if labels.ndim != 2 or np.dtype(labels.dtype).kind not in "biu":
        raise ValueError(f"resize_labels: labels should be a 2-D integer or bool array, got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if min(labels.shape) < 1:
        raise ValueError(f"resize_labels: labels should have sides >= 1, got shape {tuple(labels.shape)}")
    rows = _nearest_indices(labels.shape[0], out_h, xp)
    cols = _nearest_indices(labels.shape[1], out_w, xp)
    return labels[rows[:, None], cols[None, :]]


def _nearest_indices(n_in: int, n_out: int, xp):
    # Integer arithmetic: floor((2 i + 1) n_in / (2 n_out)) is exact where a float product can round up.
    i = xp.arange(n_out, dtype=np.int64)
    return xp.minimum(((2 * i + 1) * n_in) // (2 * n_out), n_in - 1)
