"""Backend discovery and selection shared by all kernels."""

from __future__ import annotations

import importlib.util
import numbers
import warnings

import numpy as np

from .._build import _core, core_error, cuda_device_count, has_cuda

BACKENDS = ("cuda", "cpu", "numba")


class BackendUnavailableError(RuntimeError):
    """A kernel backend was requested that this installation cannot run."""


def _numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def available_backends() -> list[str]:
    """Backends usable now, fastest first."""
    found = []
    if has_cuda() and cuda_device_count() > 0:
        found.append("cuda")
    if _core is not None:
        found.append("cpu")
    if _numba_available():
        found.append("numba")
    return found


def is_int(value) -> bool:
    """An integer argument: Python or numpy ints, not bools (True is an int to Python, never a count here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_out(op: str, out, shape: tuple, dtype, source=None, source_name: str = "") -> None:
    """Refuses an ``out=`` array the kernels cannot write: not a writable C-contiguous host array of
    ``shape`` and ``dtype``, or one sharing memory with the input ``source`` (pass None where out may be
    the input itself)."""
    if not isinstance(out, np.ndarray):
        given = type(out).__name__
    else:
        flaws = [f for f, bad in (("not C-contiguous", not out.flags.c_contiguous),
                                  ("read-only", not out.flags.writeable)) if bad]
        given = f"{out.dtype} {out.shape}" + "".join(f", {f}" for f in flaws)
        if out.shape == tuple(shape) and out.dtype == dtype and not flaws:
            if source is not None and np.shares_memory(out, source):
                raise ValueError(f"{op}: out should not share memory with {source_name}")
            return
    raise ValueError(f"{op}: out should be a writable C-contiguous {np.dtype(dtype).name} array of shape "
                     f"{tuple(shape)}, got {given}")


def is_flag(value) -> bool:
    """A yes/no argument: a Python or numpy bool (a string such as "no" is truthy, an int a likely slip)."""
    return isinstance(value, (bool, np.bool_))


def check_flag(op: str, name: str, value) -> None:
    if not is_flag(value):
        raise ValueError(f"{op}: {name} should be True or False, got {value!r}")


def check_connectivity(op: str, connectivity) -> None:
    """4 or 8, as an int: 4.0 or True were taken before."""
    if not is_int(connectivity) or connectivity not in (4, 8):
        raise ValueError(f"{op}: connectivity should be 4 or 8, got {connectivity!r}")


def check_min_area(op: str, min_area) -> None:
    # min_area=-1 or True was taken as 'no filter' and None failed comparing with 1.
    if not is_int(min_area) or min_area < 0:
        raise ValueError(f"{op}: min_area should be an int >= 0, got {min_area!r}")


def is_real(value) -> bool:
    """A real-number argument: Python or numpy ints and floats, not bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# Far above any machine's cores; keeps the value inside the C int the extension takes (the C++
# side caps the workers at 4x the hardware threads and at the work items anyway).
_MAX_NUM_THREADS = 1 << 16


def check_num_threads(op: str, num_threads) -> int:
    """``num_threads`` as the int the extension takes: >= 0, 0 meaning all hardware threads."""
    if not is_int(num_threads) or num_threads < 0:
        raise ValueError(f"{op}: num_threads should be an int >= 0 (0: all hardware threads), got {num_threads!r}")
    return min(int(num_threads), _MAX_NUM_THREADS)


def is_device_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__")


def array_module(array):
    """numpy, or cupy for device arrays: code written once for both."""
    if is_device_array(array):
        import cupy  # noqa: PLC0415 - device arrays come from cupy

        return cupy
    import numpy  # noqa: PLC0415

    return numpy


_numba_fallback_warned = False


def _warn_numba_fallback() -> None:
    # Once per process: a broken build is one fact, and a plate run calls the kernels per field.
    global _numba_fallback_warned
    if _numba_fallback_warned:
        return
    _numba_fallback_warned = True
    warnings.warn(f"cellrt: the C++ extension failed to import ({core_error()}); backend='auto' runs the numba "
                  "kernels instead, 15-50x slower. `cellrt doctor` reports the build; pass backend='numba' to "
                  "choose them knowingly", RuntimeWarning, stacklevel=4)


def resolve(op: str, backend: str, device_input: bool) -> str:
    """Turns ``backend`` into a concrete backend for an input, or raises."""
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"{op}: backend should be one of 'auto', 'cuda', 'cpu', 'numba', got {backend!r}")
    if backend == "auto":
        if device_input:
            backend = "cuda"
        elif _core is not None:
            backend = "cpu"
        elif _numba_available():
            backend = "numba"
            _warn_numba_fallback()
        else:
            raise BackendUnavailableError(f"{op}: no host backend: cellrt._core failed to import ({core_error()}) "
                                          "and numba is not installed")
    if backend == "cuda":
        # Availability first: advice to move a host array to the GPU is no use where there is none.
        if not has_cuda():
            raise BackendUnavailableError(f"{op}: backend 'cuda' unavailable: cellrt was built without CUDA"
                                          + ("" if device_input else "; use backend='cpu' for host arrays"))
        if cuda_device_count() == 0:
            raise BackendUnavailableError(f"{op}: backend 'cuda' unavailable: no CUDA device is visible"
                                          + ("" if device_input else "; use backend='cpu' for host arrays"))
        if not device_input:
            raise ValueError(
                f"{op}: backend 'cuda' takes device arrays (e.g. cupy); got a host array. "
                "Move it with cupy.asarray() or use backend='cpu'."
            )
        return backend
    if device_input:
        raise ValueError(f"{op}: backend {backend!r} takes host (numpy) arrays; got a device array")
    if backend == "cpu" and _core is None:
        raise BackendUnavailableError(f"{op}: backend 'cpu' unavailable: cellrt._core failed to import ({core_error()})")
    if backend == "numba" and not _numba_available():
        raise BackendUnavailableError(f"{op}: backend 'numba' unavailable: numba is not installed")
    return backend
