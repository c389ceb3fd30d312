"""Connected-component labelling and per-object measurements.

``label`` turns a foreground mask into numbered objects; ``measure`` turns
a label image (and intensity channels) into a feature table with
CellProfiler's column names, ready for pandas, pyarrow or pycytominer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _backend

SHAPE_COLUMNS = (
    "AreaShape_Area",
    "AreaShape_BoundingBoxMinimum_X",
    "AreaShape_BoundingBoxMinimum_Y",
    "AreaShape_BoundingBoxMaximum_X",
    "AreaShape_BoundingBoxMaximum_Y",
    "Location_Center_X",
    "Location_Center_Y",
    "AreaShape_MajorAxisLength",
    "AreaShape_MinorAxisLength",
    "AreaShape_Eccentricity",
    "AreaShape_EquivalentDiameter",
    "AreaShape_Perimeter",
)
INTENSITY_COLUMNS = (
    "Intensity_IntegratedIntensity_{}",
    "Intensity_MeanIntensity_{}",
    "Intensity_StdIntensity_{}",
    "Intensity_MinIntensity_{}",
    "Intensity_MaxIntensity_{}",
)
_INT_COLUMNS = {"AreaShape_Area", "AreaShape_BoundingBoxMinimum_X", "AreaShape_BoundingBoxMinimum_Y",
                "AreaShape_BoundingBoxMaximum_X", "AreaShape_BoundingBoxMaximum_Y"}


def _as_mask(mask, op: str = "label") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{op}: mask should have shape (H, W), got {mask.shape}")
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    elif mask.dtype != np.uint8:
        if mask.dtype.kind not in "biuf":
            raise ValueError(f"{op}: mask should be boolean or numeric, got dtype {mask.dtype}")
        if mask.dtype.kind == "f" and not np.all(np.isfinite(mask)):
            raise ValueError(f"{op}: mask holds NaN or inf; threshold it first")
        mask = (mask != 0).view(np.uint8)
    return np.ascontiguousarray(mask)


def label(mask, connectivity: int = 8, *, backend: str = "auto", num_threads: int = 0, out=None):
    """Number the connected components of a foreground mask.

    Parameters
    ----------
    mask : (H, W) array
        Foreground where non-zero (bool, uint8 or any numeric type); a cupy
        array runs on the CUDA backend and returns cupy labels.
    connectivity : {8, 4}
        8: pixels touching at edges or corners are connected; 4: edges only.
    backend : {'auto', 'cuda', 'cpu', 'numba'}
    num_threads : int
        CPU threads for the ``cpu`` backend (0: all cores).
    out : (H, W) int32 ndarray, optional
        Preallocated C-contiguous output.

    Returns
    -------
    labels : (H, W) int32 ndarray
        0 for background, 1..N numbered in raster order of each component's
        first pixel -- the numbering of ``cv2.connectedComponents`` and
        ``skimage.measure.label``.
    count : int
        N.

    Examples
    --------
    >>> labels, n = label(np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]]), connectivity=4)
    >>> n, labels.tolist()
    (4, [[1, 0, 2], [0, 3, 0], [0, 0, 4]])
    """
    num_threads = _backend.check_num_threads("label", num_threads)
    _backend.check_connectivity("label", connectivity)
    if _backend.is_device_array(mask):
        _backend.resolve("label", backend, True)
        if mask.ndim != 2:
            raise ValueError(f"label: mask should have shape (H, W), got {tuple(mask.shape)}")
        from . import _cuda  # noqa: PLC0415 - needs cupy

        return _cuda.label(mask, connectivity)
    mask = _as_mask(mask)
    if mask.size >= 2**31:
        raise ValueError(f"label: the mask should have fewer than 2^31 pixels, got {mask.shape}")
    chosen = _backend.resolve("label", backend, False)
    if out is not None:
        _backend.check_out("label", out, mask.shape, np.int32, mask, "mask")
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        labels = np.empty(mask.shape, np.int32) if out is None else out
        count = _core.label(mask, labels, connectivity, int(num_threads))
    else:
        from . import _labeling_numba  # noqa: PLC0415

        labels, count = _labeling_numba.label(mask, connectivity)
        if out is not None:
            out[...] = labels
            labels = out
    return labels, int(count)


def _channel_names(channel_names, channels: int, op: str = "measure") -> list[str]:
    """The measured channels' names: given ones checked, else ch0, ch1, ..."""
    if channel_names is None:
        return [f"ch{k}" for k in range(channels)]
    names = [str(c) for c in channel_names]
    if len(names) != channels or len(set(names)) != channels:
        raise ValueError(f"{op}: channel_names should be {channels} distinct names, got {names!r}")
    return names


def feature_names(channel_names=()) -> list[str]:
    """Column names of :func:`measure`'s table, in order (after ObjectNumber)."""
    names = list(SHAPE_COLUMNS)
    for ch in channel_names:
        names += [c.format(ch) for c in INTENSITY_COLUMNS]
    return names


def _as_labels(labels, op: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{op}: labels should have shape (H, W), got {labels.shape}")
    return np.ascontiguousarray(_check_label_values(labels, op), dtype=np.int32)


def _check_label_values(labels: np.ndarray, op: str) -> np.ndarray:
    """Integer labels in [0, 2^31), as the int32 kernels take them (a cast would truncate float labels and
    wrap larger ones onto other objects' labels); returns ``labels``."""
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{op}: labels should be an integer array, got {labels.dtype}")
    # int32 too: contours skipped negative labels silently (measure's kernel counts them as out of range).
    if labels.size and (labels.min() < 0 or (labels.dtype != np.int32 and labels.max() > np.iinfo(np.int32).max)):
        raise ValueError(f"{op}: labels should lie in [0, 2^31), got {int(labels.min())}..{int(labels.max())}")
    return labels


def _contour_arrays(labels: np.ndarray, num_objects: int, backend: str, num_threads: int):
    chosen = _backend.resolve("contours", backend, False)
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        return _core.contours(labels, num_objects, int(num_threads))
    from . import _labeling_numba  # noqa: PLC0415

    return _labeling_numba.contours(labels, num_objects)


class ContourList(Sequence):
    """The outer contours of objects 1..N, held as one buffer: object i+1's
    (K, 2) int32 xy points are ``points[offsets[i]:offsets[i + 1]]``.

    Indexing returns that slice (a view, numpy or cupy as the labels were),
    made when asked for: a GPU result costs no per-object work until an
    object is looked at, and bulk consumers read ``offsets`` (host int64,
    N + 1) and ``points`` directly.
    """

    __slots__ = ("offsets", "points")

    def __init__(self, offsets: np.ndarray, points):
        self.offsets = offsets
        self.points = points

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"contours: object index {index} out of range for {len(self)} objects")
        return self.points[self.offsets[i]:self.offsets[i + 1]]

    def __repr__(self) -> str:
        where = "device" if _backend.is_device_array(self.points) else "host"
        return f"ContourList({len(self)} objects, {len(self.points)} points on the {where})"


def contours(labels, *, num_objects=None, holes: bool = False, backend: str = "auto",
             num_threads: int = 0) -> ContourList | list:
    """Outer contour of each object, as ``cv2.findContours(mask,
    RETR_EXTERNAL, CHAIN_APPROX_NONE)`` gives it for that object's mask;
    with ``holes=True`` also the contours of its holes, as
    ``cv2.findContours(mask, RETR_CCOMP, CHAIN_APPROX_NONE)`` gives them.

    Parameters
    ----------
    labels : (H, W) integer array
        0 background, 1..N objects.
    num_objects : int, optional
        N; default ``labels.max()``.
    holes : bool
        Also trace hole borders. A hole is a 4-connected region of pixels
        not of the object that its 8-connected pixels enclose (other objects
        inside it are part of the hole, as on the object's own mask); its
        contour runs over the object's pixels around it, starting at the
        pixel left of the hole's first pixel. Costs one pass over each
        object's bounding box.

    Returns
    -------
    ContourList: a sequence of (K, 2) int32 arrays, one per object (cupy
    arrays for cupy labels: traced on the GPU, one thread per object); with
    ``holes`` a list of lists of such arrays
        Border points (x, y) of objects 1..N in tracing order, starting at
        the object's first pixel in raster order; empty for labels that do
        not occur. Objects whose pixels are not 8-connected are traced from
        their first pixel only. With ``holes``, item i is ``[outer, hole_1,
        ...]``: the outer contour, then each hole's in raster order of the
        hole's first pixel.

    Examples
    --------
    >>> contours(np.array([[1, 1], [1, 1]]))[0].tolist()
    [[0, 0], [0, 1], [1, 1], [1, 0]]
    """
    num_threads = _backend.check_num_threads("contours", num_threads)
    if _backend.is_device_array(labels):
        _backend.resolve("contours", backend, True)
        if labels.ndim != 2:
            raise ValueError(f"contours: labels should have shape (H, W), got {tuple(labels.shape)}")
        from . import _cuda  # noqa: PLC0415 - needs cupy

        n = _num_objects(num_objects, labels, "contours")
        offsets, points, _ = _cuda.contour_arrays(labels, n)
        outer = ContourList(offsets.get(), points)
        if not holes:
            return outer
        import cupy  # noqa: PLC0415

        object_offsets, hole_offsets, hole_points = _cuda.hole_contour_arrays(labels, n)
        hole_points = cupy.asarray(hole_points)
        return [[outer[i]] + [hole_points[hole_offsets[h]:hole_offsets[h + 1]]
                              for h in range(object_offsets[i], object_offsets[i + 1])] for i in range(n)]
    labels = _as_labels(labels, "contours")
    n = _num_objects(num_objects, labels, "contours")
    offsets, points, _ = _contour_arrays(labels, n, backend, num_threads)
    outer = ContourList(np.asarray(offsets, np.int64), points)
    if not holes:
        return outer
    if _backend.resolve("contours", backend, False) == "cpu":
        from .._build import _core  # noqa: PLC0415
        object_offsets, hole_offsets, hole_points = _core.hole_contours(labels, n, int(num_threads))
    else:
        from . import _labeling_numba  # noqa: PLC0415
        object_offsets, hole_offsets, hole_points = _labeling_numba.hole_contours(labels, n)
    return [[outer[i]] + [hole_points[hole_offsets[h]:hole_offsets[h + 1]]
                          for h in range(object_offsets[i], object_offsets[i + 1])] for i in range(n)]


def measure(labels, intensities=None, *, channel_names=None, num_objects=None, backend: str = "auto",
            num_threads: int = 0) -> dict:
    """Measure every object of a label image in one pass.

    Parameters
    ----------
    labels : (H, W) int32 array
        0 background, 1..N objects (e.g. from :func:`label`).
    intensities : (H, W) or (K, H, W) array, optional
        Channels to measure intensities on: uint8, uint16 or float32 (any
        strides); other numeric types are read as float32.
    channel_names : sequence of str, optional
        One name per channel for the column names (default ``ch0``, ``ch1``...).
        With cupy labels the table is computed on the GPU and its columns
        are cupy arrays.
    num_objects : int, optional
        N; default ``labels.max()``. Labels in 1..N that do not occur get
        area 0 and NaN features.

    Returns
    -------
    dict of str -> ndarray
        A columnar table, one row per object: ``ObjectNumber`` (1..N), then
        ``AreaShape_Area``, the bounding box (``..._BoundingBoxMinimum_X/Y``
        inclusive, ``..._BoundingBoxMaximum_X/Y`` exclusive), the centroid
        ``Location_Center_X/Y`` (x = column, y = row), ``AreaShape_MajorAxisLength``,
        ``AreaShape_MinorAxisLength``, ``AreaShape_Eccentricity`` (as
        scikit-image's regionprops), ``AreaShape_EquivalentDiameter``,
        ``AreaShape_Perimeter`` (length of the outer contour, as
        ``cv2.arcLength``), and per
        channel ``Intensity_{Integrated,Mean,Std,Min,Max}Intensity_<name>``
        (population std). ``pandas.DataFrame(table)`` makes a data frame.

    Examples
    --------
    >>> labels = np.array([[0, 1, 1], [2, 0, 1]], np.int32)
    >>> t = measure(labels, np.array([[9, 1, 3], [4, 0, 5]], np.uint16))
    >>> t["AreaShape_Area"].tolist(), t["Intensity_MeanIntensity_ch0"].tolist()
    ([3, 1], [3.0, 4.0])
    """
    num_threads = _backend.check_num_threads("measure", num_threads)
    if _backend.is_device_array(labels):
        return _measure_device(labels, intensities, channel_names, num_objects, backend)
    labels = _as_labels(labels, "measure")
    num_objects = _num_objects(num_objects, labels, "measure")

    intensities = _as_intensities(intensities, labels.shape, np, "measure")
    channels = 0 if intensities is None else intensities.shape[0]
    channel_names = _channel_names(channel_names, channels)

    chosen = _backend.resolve("measure", backend, False)
    columns = len(SHAPE_COLUMNS) + len(INTENSITY_COLUMNS) * channels
    if chosen == "cpu":
        from .._build import _core  # noqa: PLC0415

        table = np.empty((num_objects, columns), np.float64)
        out_of_range = _core.measure(labels, num_objects, intensities, table, int(num_threads))
    else:
        from . import _labeling_numba  # noqa: PLC0415

        table, out_of_range = _labeling_numba.measure(labels, num_objects, intensities)
    if out_of_range:
        raise ValueError(f"measure: {out_of_range} label pixels are negative or above num_objects={num_objects}")
    return _as_table(table, channel_names, intensities, np)


def _as_intensities(intensities, shape: tuple, xp, op: str):
    """Intensity channels as (K, H, W) uint8, uint16 or float32 (other numeric types read as float32), or None."""
    if intensities is None:
        return None
    if xp is np and _backend.is_device_array(intensities):
        host = "the mask is" if op == "label_measure" else "the labels are"
        raise ValueError(f"{op}: intensities is a device array but {host} on the host; pass both on the same device")
    intensities = xp.asarray(intensities)
    given = tuple(intensities.shape)
    if intensities.ndim == 2:
        intensities = intensities[None]
    if intensities.ndim != 3 or tuple(intensities.shape[1:]) != tuple(shape):
        raise ValueError(f"{op}: intensities should be (H, W) or (K, H, W) with H, W = {tuple(shape)}, got {given}")
    if intensities.dtype not in (np.uint8, np.uint16, np.float32):
        if intensities.dtype.kind not in "biuf":
            raise ValueError(f"{op}: intensities should be numeric, got {intensities.dtype}")
        intensities = intensities.astype(xp.float32)
    return intensities


def _as_table(features, channel_names: list[str], intensities, xp, op: str = "measure") -> dict:
    """The feature rows (N, columns) as measure()'s columnar table (xp arrays)."""
    result = {"ObjectNumber": xp.arange(1, features.shape[0] + 1, dtype=xp.int32)}
    for j, name in enumerate(feature_names(channel_names)):
        col = features[:, j]
        result[name] = col.astype(xp.int64) if name in _INT_COLUMNS else xp.ascontiguousarray(col)
    if intensities is not None and intensities.dtype.kind == "f":
        _check_finite_intensities(result, channel_names, xp, op)
    return result


def label_measure(mask, intensities=None, *, connectivity: int = 8, min_area: int = 0, channel_names=None,
                  capacity: int | None = None, backend: str = "auto", num_threads: int = 0):
    """Label a mask, drop small objects and measure the rest in one call.

    The same labels and table as :func:`label`, then
    :func:`~cellrt.kernels.remove_small_objects` (``min_area``), then
    :func:`measure` - without their three round trips: on a GPU the object
    count stays on the device between labelling and measuring, and the host
    waits once, at the end.

    Parameters
    ----------
    mask : (H, W) array
        Foreground where non-zero; a cupy array runs on the GPU and gives
        cupy labels and columns.
    intensities, channel_names
        As :func:`measure`.
    connectivity : {8, 4}
    min_area : int
        Objects under this many pixels are dropped (0 or 1: none); the rest
        are numbered 1..N in raster order of their first pixel.
    capacity : int, optional
        Rows of the feature table made before the count is known (default:
        one per 256 pixels, at least 1024; never more than a checkerboard's
        objects). Objects past it are measured in a second pass once N is
        known; give it when N is roughly known to save that pass.

    Returns
    -------
    labels : (H, W) int32 array
    count : int
    table : dict of str -> array, as :func:`measure`
    """
    op = "label_measure"
    num_threads = _backend.check_num_threads(op, num_threads)
    _backend.check_connectivity(op, connectivity)
    _backend.check_min_area(op, min_area)
    if capacity is not None and (not _backend.is_int(capacity) or not 0 <= capacity < 2**31):
        raise ValueError(f"{op}: capacity should be an int in [0, 2^31) (rows of the feature table), got "
                         f"{capacity!r}")
    device = _backend.is_device_array(mask)
    chosen = _backend.resolve(op, backend, device)
    xp = _backend.array_module(mask)
    if device:
        if mask.ndim != 2:
            raise ValueError(f"{op}: mask should have shape (H, W), got {tuple(mask.shape)}")
    else:
        mask = _as_mask(mask, op)
    if mask.size >= 2**31:
        raise ValueError(f"{op}: the mask should have fewer than 2^31 pixels, got {tuple(mask.shape)}")
    intensities = _as_intensities(intensities, mask.shape, xp, op)
    channel_names = _channel_names(channel_names, 0 if intensities is None else intensities.shape[0], op)
    columns = len(feature_names(channel_names))
    # Past the pixel count every object is dropped alike; capped there, any int fits the kernels' int64.
    min_area = min(int(min_area), mask.size + 1)
    # No mask holds more objects than a checkerboard's (H W + 1) / 2: rows past that would never be filled.
    capacity = min(max(1024, mask.size // 256) if capacity is None else int(capacity), (mask.size + 1) // 2)
    if chosen == "numba":
        from . import _labeling_numba  # noqa: PLC0415
        from .objects import remove_small_objects  # noqa: PLC0415 - objects imports this module

        labels, count = label(mask, connectivity, backend="numba")
        if min_area > 1:
            labels, count = remove_small_objects(labels, min_area, backend="numba", out=labels)
        features, _ = _labeling_numba.measure(labels, count, intensities)   # labels 1..count: none out of range
        return labels, count, _as_table(features, channel_names, intensities, np, op)
    if device:
        from . import _cuda  # noqa: PLC0415 - needs cupy

        labels, count, features = _cuda.label_measure(mask, intensities, connectivity, min_area, capacity, columns)
    else:
        from .._build import _core  # noqa: PLC0415

        labels = np.empty(mask.shape, np.int32)
        features = np.empty((capacity, columns), np.float64)
        count, measured = _core.label_measure(mask, labels, intensities, features, connectivity, min_area,
                                              int(num_threads))
        if count > measured:   # more objects than rows: all of them, now that N is known
            features = np.empty((count, columns), np.float64)
            _core.measure(labels, count, intensities, features, int(num_threads))
        features = features[:count]
    return labels, int(count), _as_table(features, channel_names, intensities, xp, op)


def _num_objects(num_objects, labels, op: str) -> int:
    """N from the argument (checked: int() took 2.5, True and '3') or the largest label (checked against
    sparse ids: one pixel labelled 2e9 made contours allocate 16 GiB of offsets and the process be killed)."""
    if num_objects is None:
        n = int(labels.max()) if labels.size else 0
        _check_table_size(n, labels.size, op)
        return n
    # Labels are int32: no N from 2^31 on names an object, and its table (10**10 rows) died in numpy's allocator.
    if not _backend.is_int(num_objects) or not 0 <= num_objects < 2**31:
        raise ValueError(f"{op}: num_objects should be an int in [0, 2^31), got {num_objects!r}")
    return int(num_objects)


def _check_table_size(num_objects: int, pixels: int, op: str = "measure") -> None:
    """More objects than pixels (and a table past a million rows): labels are not numbered 1..N (one
    sparse id of 2e9 would make 2e9 mostly empty rows, hundreds of GiB), so say so instead of failing
    to allocate it. Small label images with gaps in their numbering stay accepted."""
    if num_objects > max(pixels, 1 << 20):
        raise ValueError(f"{op}: the largest label is {num_objects} but the image has {pixels} pixels: labels "
                         f"should be numbered 1..N (relabel them sequentially, e.g. with "
                         f"skimage.segmentation.relabel_sequential) or pass num_objects")


def _check_finite_intensities(table: dict, channel_names: list[str], xp, op: str = "measure") -> None:
    """An object covering a NaN or infinite intensity has a non-finite integrated intensity: its mean
    would be NaN while min/max skip the value and std reads 0, so no statistic of it is trustworthy."""
    present = table["AreaShape_Area"] > 0
    for name in channel_names:
        bad = present & ~xp.isfinite(table[f"Intensity_IntegratedIntensity_{name}"])
        count = int(bad.sum())
        if count:
            first = int(table["ObjectNumber"][bad][0])
            raise ValueError(f"{op}: {count} object(s) (the first: object {first}) cover NaN or infinite pixels "
                             f"of intensity channel {name!r}; replace or mask them before measuring")


def _measure_device(labels, intensities, channel_names, num_objects, backend):
    """measure() for cupy arrays: the table is built on the device and
    returned as cupy columns."""
    _backend.resolve("measure", backend, True)
    import cupy as cp  # noqa: PLC0415 - GPU extra only

    from . import _cuda  # noqa: PLC0415

    if labels.ndim != 2:
        raise ValueError(f"measure: labels should have shape (H, W), got {tuple(labels.shape)}")
    num_objects = _num_objects(num_objects, labels, "measure")
    intensities = _as_intensities(intensities, labels.shape, cp, "measure")
    channels = 0 if intensities is None else intensities.shape[0]
    channel_names = _channel_names(channel_names, channels)
    names = feature_names(channel_names)
    table, out_of_range = _cuda.measure(labels, num_objects, intensities, len(names))
    if out_of_range:
        raise ValueError(f"measure: {out_of_range} label pixels are negative or above num_objects={num_objects}")
    return _as_table(table, channel_names, intensities, cp)
