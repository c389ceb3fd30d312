"""Touching objects split by shape: distance transform, h-maxima seeds, seeded watershed.

A foreground map (or mask) alone merges nuclei that touch. Their shape still
tells them apart: inside each roughly round object the distance to the
background peaks once, and two touching objects meet along a neck where it
dips. ``split_touching`` seeds one object per h-maximum of the distance
transform and floods the mask from the seeds, deepest first, so the objects
part along the necks - the classic declumping of screening tools
(CellProfiler's "shape" declumping, scikit-image's distance + watershed
recipe). Host kernels (C++, numba); the priority flood is sequential, so
device arrays are not taken here (``instances_from_probability`` copies them).
"""
from __future__ import annotations

import numpy as np

from . import _backend
from .labeling import _as_mask


def _host_mask(mask, op: str) -> np.ndarray:
    if _backend.is_device_array(mask):
        raise ValueError(f"{op}: takes host (numpy) arrays; got a device array (the watershed is sequential: "
                         f"copy it down with .get())")
    # label()'s mask: the same checks, and uint8/bool masks taken as they are (the kernels read non-zero as
    # foreground) instead of a new 0/1 copy.
    return _as_mask(mask, op)


def _real_values(values, name: str, op: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        # The float32 cast parsed strings ('63.' -> 63) and dropped imaginary parts.
        raise ValueError(f"{op}: {name} should be real numbers, got dtype {values.dtype}")
    return np.ascontiguousarray(values, dtype=np.float32)


def _check_h_and_connectivity(h, connectivity, op: str) -> None:
    if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)) or not h >= 0:
        raise ValueError(f"{op}: h should be a number >= 0, got {h!r}")
    _backend.check_connectivity(op, connectivity)


def distance_transform(mask, *, backend: str = "auto", num_threads: int = 0) -> np.ndarray:
    """Exact Euclidean distance from every non-zero pixel of ``mask`` to the nearest zero pixel, as
    ``scipy.ndimage.distance_transform_edt`` computes it (rounded to float32); 0 on zero pixels, inf
    everywhere when the mask has no zero pixel (pixels beyond the border are not background)."""
    num_threads = _backend.check_num_threads("distance_transform", num_threads)
    mask = _host_mask(mask, "distance_transform")
    if _backend.resolve("distance_transform", backend, False) == "cpu":
        from .._build import _core  # noqa: PLC0415

        return _core.distance_transform(mask, int(num_threads))
    from . import _watershed_numba  # noqa: PLC0415

    return _watershed_numba.distance_transform(mask)


def h_maxima_seeds(values, h: float, *, connectivity: int = 8, backend: str = "auto") -> tuple[np.ndarray, int]:
    """One seed per h-maximum of ``values``: per dome rising at least ``h`` above the saddle where it meets
    a higher one (and per connected component's highest peak), its highest pixel (first in raster order
    on ties). Values <= 0 are background. Returns ``(seeds, count)``: int32, 1..N in raster order, one
    pixel each. Where ``skimage.morphology.h_maxima``'s regions are domes, one seed lies in each; it marks
    a dome's equal maxima that are not 8-connected (``[1, 3, 2.5, 3, 1]``, h = 1) as separate regions,
    where this is one seed - the dip between them is less than h."""
    _check_h_and_connectivity(h, connectivity, "h_maxima_seeds")
    values = _real_values(values, "values", "h_maxima_seeds")
    if values.ndim != 2:
        raise ValueError(f"h_maxima_seeds: values should have shape (H, W), got {values.shape}")
    if np.isnan(values).any():
        raise ValueError("h_maxima_seeds: values hold NaN")
    if _backend.resolve("h_maxima_seeds", backend, False) == "cpu":
        from .._build import _core  # noqa: PLC0415

        seeds = _core.h_maxima_seeds(values, float(h), int(connectivity))
    else:
        from . import _watershed_numba  # noqa: PLC0415

        seeds = _watershed_numba.h_maxima_seeds(values, np.float32(h), int(connectivity))
    return seeds, int(seeds.max()) if seeds.size else 0


def watershed(surface, markers, mask, *, connectivity: int = 8, backend: str = "auto",
              num_threads: int = 0) -> np.ndarray:
    """Seeded watershed: the ``markers`` (> 0) flood the pixels of ``mask`` reachable from them in
    increasing order of ``surface`` (ties: first reached, first served), each pixel taking the label of
    the neighbour it is reached from. Returns new int32 labels; markers outside the mask are dropped.
    Deterministic; as ``skimage.segmentation.watershed(surface, markers, mask=mask)`` up to ties. The C++
    backend floods the mask's components one at a time, shared out among ``num_threads`` threads (the
    same labels as one flood of the whole image)."""
    num_threads = _backend.check_num_threads("watershed", num_threads)
    _backend.check_connectivity("watershed", connectivity)
    mask = _host_mask(mask, "watershed")
    surface = _real_values(surface, "surface", "watershed")
    markers = np.asarray(markers)
    if surface.shape != mask.shape or markers.shape != mask.shape:
        raise ValueError(f"watershed: surface, markers and mask should have one shape, got {surface.shape}, "
                         f"{markers.shape}, {mask.shape}")
    if np.isnan(surface).any():
        raise ValueError("watershed: surface holds NaN")
    if markers.dtype.kind not in "iu" or (markers.size and (markers.min() < 0 or markers.max() >= 2 ** 31)):
        raise ValueError(f"watershed: markers should be non-negative integer labels below 2^31, got "
                         f"{markers.dtype}")
    labels = np.array(markers, dtype=np.int32, order="C")
    if _backend.resolve("watershed", backend, False) == "cpu":
        from .._build import _core  # noqa: PLC0415

        _core.watershed(surface, labels, mask, int(connectivity), num_threads)
    else:
        from . import _watershed_numba  # noqa: PLC0415

        _watershed_numba.watershed(surface, labels, mask, int(connectivity))
    return labels


def split_touching(mask, *, h: float = 1.0, connectivity: int = 8, backend: str = "auto",
                   num_threads: int = 0) -> tuple[np.ndarray, int]:
    """Objects of ``mask`` with touching ones split by shape.

    One seed per h-maximum of the distance transform: a round object's distance to the background
    peaks once; two touching ones peak twice, with a dip of (radius - neck half-width) between them.
    Peaks that stand less than ``h`` pixels above such a dip (the slow undulation along an elongated
    object) are not seeds. The seeds then flood the mask, deepest first (watershed of the negated
    distance, ``connectivity``-connected), so objects part along their necks. ``num_threads`` (0: all
    hardware threads) serves the distance transform and the flood; the seeds are found on one.

    Returns ``(labels, count)``: int32 labels 1..N in raster order of the seeds.
    """
    num_threads = _backend.check_num_threads("split_touching", num_threads)
    mask = _host_mask(mask, "split_touching")
    _check_h_and_connectivity(h, connectivity, "split_touching")
    if _backend.resolve("split_touching", backend, False) == "cpu":
        from .._build import _core  # noqa: PLC0415

        # The three kernels on arrays made here, without the public functions' checks and copies (the
        # distance has no NaN, the seeds are a fresh int32 array to flood in place): 10 of 70 ms at 2048^2.
        distance = _core.distance_transform(mask, num_threads)
        seeds = _core.h_maxima_seeds(distance, float(h), int(connectivity))
        count = int(seeds.max()) if seeds.size else 0
        np.negative(distance, out=distance)
        _core.watershed(distance, seeds, mask, int(connectivity), num_threads)
        return seeds, count
    distance = distance_transform(mask, backend=backend, num_threads=num_threads)
    seeds, count = h_maxima_seeds(distance, h, connectivity=connectivity, backend=backend)
    return watershed(-distance, seeds, mask, connectivity=connectivity, backend=backend,
                     num_threads=num_threads), count
