"""What this installation was built with, and where its C/C++ SDK lives."""

from __future__ import annotations

from pathlib import Path

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    _core = None
    _core_error: str | None = f"{type(exc).__name__}: {exc}"
else:
    _core_error = None

_SDK = Path(__file__).resolve().parent / "sdk"


def has_cuda() -> bool:
    """True when the compiled extension contains the CUDA kernels."""
    return _core is not None and bool(_core.has_cuda())


def cuda_device_count() -> int:
    """CUDA devices usable right now through the extension (0 without a GPU)."""
    return int(_core.cuda_device_count()) if has_cuda() else 0


def core_error() -> str | None:
    """Why ``cellrt._core`` failed to import, or None when it imported."""
    return _core_error


def include_dir() -> str:
    """Folder holding ``cellrt/c_api.h`` and the C++ headers."""
    return str(_SDK / "include")


def cmake_dir() -> str:
    """Folder to pass as ``-Dcellrt_DIR`` to ``find_package(cellrt CONFIG)``."""
    return str(_SDK / "lib" / "cmake" / "cellrt")


def build_info() -> dict:
    """Build facts of the extension: version, CUDA, host instruction set."""
    return {
        "core_imported": _core is not None,
        "core_error": _core_error,
        "core_version": _core.version() if _core is not None else None,
        "built_with_cuda": has_cuda(),
        "cuda_devices": cuda_device_count(),
        "host_isa": getattr(_core, "host_isa", None),
        "sdk_include_dir": include_dir(),
        "sdk_cmake_dir": cmake_dir(),
        # Only a pip install puts the SDK there; an in-tree checkout run from PYTHONPATH has none.
        "sdk_installed": Path(cmake_dir()).is_dir(),
        "sdk_c_api_version": sdk_c_api_version(),
    }


def sdk_c_api_version() -> int | None:
    """CELLRT_C_API_VERSION of the installed SDK's c_api.h (what C callers compile against), None without
    one. Read from the header: loading libcellrt_c here would run its CPU check in this process."""
    import re  # noqa: PLC0415

    try:
        text = (Path(include_dir()) / "cellrt" / "c_api.h").read_text()
    except OSError:
        return None
    found = re.search(r"^#define CELLRT_C_API_VERSION (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else None
