"""Image kernels of cellrt, each available on several backends.

Every kernel takes ``backend='auto' | 'cuda' | 'cpu' | 'numba'``:

- ``cuda``: the CUDA kernels of the compiled extension, for device arrays
  (cupy or anything with ``__cuda_array_interface__``);
- ``cpu``: the same kernel arithmetic compiled for the host, multithreaded;
- ``numba``: a pure-Python implementation written from the documented
  contract, the fallback and the independent reference.

``auto`` picks ``cuda`` for device arrays and otherwise ``cpu`` when the
extension is built, else ``numba``, warning once per process that the
extension failed to import. Asking for a backend that is not available
raises :class:`BackendUnavailableError`; nothing falls back silently.
"""

from ._backend import BackendUnavailableError, available_backends
from .filters import (binary_closing, binary_dilation, binary_erosion, binary_opening, box_mean, gaussian_blur,
                      gaussian_blur_recursive, threshold_local)
from .objects import (fill_holes, grow_labels, instances_from_mask, instances_from_probability, match_instances,
                      remove_small_objects, segment)
from .labeling import ContourList, contours, feature_names, label, label_measure, measure
from .mmd import rbf_kernel_matrix, rbf_kernel_sums
from .resize import rescaled_shape, resize, resize_labels
from .nms import instances_from_labels, mask_nms, matrix_nms, pack_masks
from .stitch import BLEND_MODES, TileBatch, stitch, tile, tile_origins
from .threshold import histogram, threshold
from .watershed import distance_transform, h_maxima_seeds, split_touching, watershed

__all__ = [
    "BLEND_MODES",
    "BackendUnavailableError",
    "ContourList",
    "TileBatch",
    "available_backends",
    "binary_closing",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "box_mean",
    "contours",
    "distance_transform",
    "feature_names",
    "fill_holes",
    "gaussian_blur",
    "gaussian_blur_recursive",
    "grow_labels",
    "h_maxima_seeds",
    "histogram",
    "instances_from_labels",
    "instances_from_mask",
    "instances_from_probability",
    "label",
    "label_measure",
    "mask_nms",
    "match_instances",
    "matrix_nms",
    "measure",
    "pack_masks",
    "rbf_kernel_matrix",
    "rbf_kernel_sums",
    "remove_small_objects",
    "rescaled_shape",
    "resize",
    "resize_labels",
    "segment",
    "split_touching",
    "stitch",
    "tile",
    "threshold",
    "threshold_local",
    "tile_origins",
    "watershed",
]
