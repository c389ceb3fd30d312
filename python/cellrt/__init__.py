"""cellrt: an inference engine for high-content microscopy screening.

The kernels live in :mod:`cellrt.kernels`, the inference backends in
:mod:`cellrt.runtime`; :func:`load_model` runs one field through a model;
``cellrt doctor`` reports what this installation can run.
"""

from importlib import metadata as _metadata

from . import kernels
from ._build import build_info, cmake_dir, has_cuda, include_dir
from .pipeline import available_models, load_model

try:
    __version__ = _metadata.version("cellrt")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["kernels", "load_model", "available_models", "build_info", "cmake_dir", "has_cuda", "include_dir", "__version__"]
