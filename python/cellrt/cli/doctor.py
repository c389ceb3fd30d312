"""``cellrt doctor``: what this installation was built with and can run now."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys

import numpy as np

from .. import __version__
from .._build import build_info
from ..kernels import available_backends


_PROBE = """
import json, sys
try:
    module = __import__(sys.argv[1])
except Exception as exc:
    print(json.dumps({"importable": False, "error": (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]}))
else:
    found = {"importable": True, "version": getattr(module, "__version__", None)}
    if sys.argv[1] == "onnxruntime":
        found["providers"] = module.get_available_providers()
    print(json.dumps(found))
"""


# Whether TensorRT can run an engine on this GPU: no GPU, no module, or only TensorRT-RTX on a GPU it does not
# target (an H100/H200) all say no, with the reason.
_TENSORRT_PROBE = """
import json
from cellrt.runtime.tensorrt import unusable_here
reason = unusable_here()
print(json.dumps({"usable": reason is None, "reason": reason}))
"""


def _in_child(code: str, *args: str, doing: str) -> dict | str:
    """The JSON ``code`` prints last, run in a child interpreter: a broken native library (one GPU image's
    onnxruntime segfaults at import) is reported, not fatal to the doctor. A str says why there is none."""
    try:
        probe = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"{doing} did not finish in 120 s"
    if probe.returncode != 0:
        died = (f"killed by signal {signal.Signals(-probe.returncode).name}" if probe.returncode < 0
                else f"exit status {probe.returncode}")
        tail = probe.stderr.strip().splitlines()[-1:] or [""]
        return f"{doing} crashed the interpreter ({died}) {tail[0][:200]}"
    return json.loads(probe.stdout.strip().splitlines()[-1])


def _module_version(name: str) -> dict:
    """Import ``name`` in a child interpreter."""
    found = _in_child(_PROBE, name, doing=f"importing {name}")
    return {"importable": False, "error": found} if isinstance(found, str) else found


def _tensorrt_here() -> dict:
    found = _in_child(_TENSORRT_PROBE, doing="asking TensorRT about this GPU")
    return {"usable": False, "reason": found} if isinstance(found, str) else found


def collect() -> dict:
    report = {
        "cellrt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "build": build_info(),
        "kernel_backends": available_backends(),
        "gpu_usable": "cuda" in available_backends(),
        "onnxruntime": _module_version("onnxruntime"),
        "tensorrt": _module_version("tensorrt"),
        "tensorrt_rtx": _module_version("tensorrt_rtx"),
        "tensorrt_here": _tensorrt_here(),
        "cupy": _module_version("cupy"),
        "numba": _module_version("numba"),
        "tifffile": _module_version("tifffile"),
    }
    from ..pipeline.model import available_models  # noqa: PLC0415
    from ..runtime.ort import int8_dot_product  # noqa: PLC0415

    report["bundled_models"] = available_models()
    exact, cpu = int8_dot_product()
    report["int8_on_cpu"] = {"exact": exact, "cpu": cpu}
    return report


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def run_doctor(as_json: bool = False) -> int:
    report = collect()
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    b = report["build"]
    lines = [
        f"cellrt {report['cellrt']}  (Python {report['python']}, {report['platform']}, {report['cpu_count']} CPUs)",
        f"  extension cellrt._core    {'imported' if b['core_imported'] else 'FAILED: ' + str(b['core_error'])}",
        f"  built with CUDA           {_yes(b['built_with_cuda'])}",
        f"  CUDA devices usable now   {b['cuda_devices']}",
        f"  CPU kernels compiled for  {b['host_isa']}",
        f"  kernel backends           {', '.join(report['kernel_backends']) or 'none'}",
    ]
    ort = report["onnxruntime"]
    lines.append("  onnxruntime               " + (f"{ort['version']} ({', '.join(ort['providers'])})"
                                                    if ort["importable"] else f"not importable ({ort['error']})"))
    for name in ("tensorrt", "tensorrt_rtx", "cupy", "numba", "tifffile"):
        m = report[name]
        lines.append(f"  {name:<25} " + (m["version"] or "importable" if m["importable"]
                                             else f"not importable ({m['error']})"))
    here = report["tensorrt_here"]
    lines.append("  TensorRT engines here     " + ("yes" if here["usable"] else f"no ({here['reason']})"))
    int8 = report["int8_on_cpu"]
    lines.append("  INT8 models on this CPU   " + {True: "yes", False: "no", None: "unknown"}[int8["exact"]]
                 + f" ({int8['cpu']})")
    lines.append(f"  bundled models            {', '.join(report['bundled_models']) or 'none'}")
    if b["sdk_installed"]:
        version = b.get("sdk_c_api_version")
        lines.append(f"  C/C++ SDK (find_package)  -Dcellrt_DIR={b['sdk_cmake_dir']}"
                     + (f"  (C ABI version {version})" if version is not None else ""))
    else:
        lines.append(f"  C/C++ SDK (find_package)  not installed: {b['sdk_cmake_dir']} does not exist (an in-tree "
                     "checkout run from PYTHONPATH has none; `pip install .` installs it)")
    print("\n".join(lines))
    return 0
