"""Build-level checks: the extension and its CUDA flag, source layout, the C
headers as C, and a downstream CMake project linking the installed SDK."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cellrt
from cellrt._build import _core

ROOT = Path(__file__).resolve().parents[1]


def test_extension_imports_and_reports_its_build():
    info = cellrt.build_info()
    assert info["core_imported"], info["core_error"]
    assert info["core_version"] == cellrt.__version__
    assert cellrt.has_cuda() == bool(_core.has_cuda())
    assert isinstance(_core.cuda_device_count(), int)


@pytest.mark.skipif(os.environ.get("CELLRT_EXPECT_CUDA") != "1",
                    reason="set CELLRT_EXPECT_CUDA=1 where nvcc was present at build time (CI does)")
def test_cuda_kernels_were_compiled_when_nvcc_was_present():
    assert cellrt.has_cuda(), "nvcc was present but the extension was built without CUDA"


def test_stubs_name_every_binding_and_columns_agree():
    from cellrt.kernels.labeling import INTENSITY_COLUMNS, SHAPE_COLUMNS

    stub = (ROOT / "python/cellrt/_core.pyi").read_text()
    public = [name for name in dir(_core) if not name.startswith("__")]
    missing = [name for name in public if f"def {name}(" not in stub and f"{name}:" not in stub
               and not isinstance(getattr(_core, name), type)]
    assert not missing, f"_core.pyi lacks {missing}"
    assert (_core.MEASURE_SHAPE_COLUMNS, _core.MEASURE_INTENSITY_COLUMNS) == (len(SHAPE_COLUMNS),
                                                                              len(INTENSITY_COLUMNS))


def test_no_two_sources_share_a_stem():
    sources = [p for p in (ROOT / "csrc").rglob("*") if p.suffix in (".cpp", ".cu", ".c")]
    stems = [p.stem for p in sources]
    assert sources and len(stems) == len(set(stems)), sorted(stems)


def test_sources_are_listed_in_cmake():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for p in (ROOT / "csrc").rglob("*"):
        if p.suffix in (".cpp", ".cu"):
            assert p.relative_to(ROOT).as_posix() in cmake, f"{p} is not listed in CMakeLists.txt"


def _sdk() -> tuple[Path, Path]:
    include, cmake_dir = Path(cellrt.include_dir()), Path(cellrt.cmake_dir())
    if not (include / "cellrt" / "c_api.h").is_file():
        pytest.fail(f"the installed package has no C/C++ SDK at {include}")
    return include, cmake_dir.parents[1]


def _compile_c(source: str, exe: Path, include: Path, lib: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("a C compiler is not available on this machine")
    build = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", str(ROOT / source),
                            f"-I{include}", f"-L{lib}", "-lcellrt_c", f"-Wl,-rpath,{lib}", "-lm", "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return exe


def test_c_headers_compile_as_c99_and_the_c_abi_works(tmp_path):
    exe = _compile_c("tests/c/test_headers.c", tmp_path / "test_headers", *_sdk())
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("ok")


def _skip_unless_x86_64_v3_build() -> None:
    if _core.host_isa != "x86-64-v3":
        pytest.skip("this cellrt was built for baseline x86-64 (CELLRT_X86_64_V3=OFF): there is nothing to check")


def test_c_abi_refuses_calls_when_the_cpu_lacks_x86_64_v3(tmp_path):
    # libcellrt_c's kernels are compiled for x86-64-v3; on an older CPU a C caller got SIGILL where the Python
    # module refuses to import. The test hook makes this CPU count as one without x86-64-v3.
    _skip_unless_x86_64_v3_build()
    exe = _compile_c("tests/c/test_cpu_check.c", tmp_path / "test_cpu_check", *_sdk())
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         env={**os.environ, "CELLRT_TEST_CPU_LACKS_X86_64_V3": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("ok")
    assert "[pretended: CELLRT_TEST_CPU_LACKS_X86_64_V3 is set]" in run.stdout
    # Without the hook, on this CPU, the same calls go through (and the program reports them as not refused).
    native = subprocess.run([str(exe)], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "CELLRT_TEST_CPU_LACKS_X86_64_V3"})
    assert native.returncode == 1 and "FAILED cellrt_histogram" in native.stderr, native.stderr


def test_cpu_check_program_calls_every_entry_point_that_returns_a_status():
    import re

    header = (ROOT / "csrc/include/cellrt/c_api.h").read_text()
    program = (ROOT / "tests/c/test_cpu_check.c").read_text()
    entry_points = re.findall(r"CELLRT_EXPORT\s+cellrt_status_t\s+(cellrt_\w+)\s*\(", header)
    assert len(entry_points) > 15
    assert [name for name in entry_points if f"REFUSED({name}(" not in program] == []


def test_c_abi_on_an_emulated_cpu_without_x86_64_v3(plain_install, tmp_path):
    # The real thing, where qemu's user-mode emulator is installed: a Nehalem (SSE4.2, no AVX) runs the program
    # against the wheel's library and against a plain install whose every file got -march=x86-64-v3 through
    # CMAKE_CXX_FLAGS (see plain_install): the C ABI's own code must still run there up to the check.
    _skip_unless_x86_64_v3_build()
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 (qemu-user) is not installed")
    env = {k: v for k, v in os.environ.items() if k != "CELLRT_TEST_CPU_LACKS_X86_64_V3"}
    for name, include, lib in (("wheel", *_sdk()), ("plain", plain_install / "include", _libdir(plain_install))):
        exe = _compile_c("tests/c/test_cpu_check.c", tmp_path / f"test_cpu_check_{name}", include, lib)
        run = subprocess.run([qemu, "-cpu", "Nehalem", str(exe)], capture_output=True, text=True, env=env)
        assert run.returncode == 0, f"{name}: " + run.stdout + run.stderr
        assert run.stdout.strip().endswith("ok") and "pretended" not in run.stdout, run.stdout


def _flat(text: str) -> str:
    """Comment text as one line: no comment markers, single spaces."""
    return " ".join(text.replace("/*", " ").replace("*/", " ").replace("//", " ").replace(" * ", " ").split())


def test_headers_and_readme_state_thread_safety_and_the_stitch_limits():
    # What integrators read against what the code does: the fused-channel limit of stitch_kernel.h (which
    # tests/c/test_headers.c exercises, with argmax's -1 for uncovered pixels) and the threading rules (which
    # tests/c/sanitize_driver.cpp exercises under ThreadSanitizer).
    import re

    from cellrt.kernels.stitch import MAX_FUSED_CHANNELS

    limit = int(re.search(r"kMaxFusedChannels = (\d+);", (ROOT / "csrc/stitch/stitch_kernel.h").read_text())[1])
    assert MAX_FUSED_CHANNELS == limit
    c_api = _flat((ROOT / "csrc/include/cellrt/c_api.h").read_text())
    stitch_h = _flat((ROOT / "csrc/include/cellrt/stitch.h").read_text())
    readme = (ROOT / "README.md").read_text()
    readme = _flat(readme[readme.index("## C++ API and C ABI"):readme.index("## Build")])
    for name, text in (("c_api.h", c_api), ("stitch.h", stitch_h), ("README", readme)):
        assert f"at most {limit} channels" in text, name
        assert re.search(r"-1 where no tile covers a pixel|no tile covers get -1", text), name
    for name, text in (("c_api.h", c_api), ("README", readme)):
        assert "per thread" in text and "reentrant" in text, name
        assert re.search(r"one thread at a time per handle|must not be used \(update, reset, destroy\) by two "
                         r"threads at once", text), name
    assert "Not thread-safe" in _flat((ROOT / "csrc/include/cellrt/drift.h").read_text())


def _c_api_functions() -> set[str]:
    """The functions c_api.h declares with CELLRT_EXPORT."""
    import re

    header = (ROOT / "csrc/include/cellrt/c_api.h").read_text()
    return set(re.findall(r"CELLRT_EXPORT\b[^;(]*?\b(cellrt_\w+)\s*\(", header))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks the ELF dynamic symbol table")
def test_c_library_exports_exactly_the_c_api():
    # libcellrt_c used to export cellrt_core's C++ symbols (and the CUDA libraries' template instances) too: a
    # program linking cellrt::core and cellrt::c then had two copies of them, and the library's own calls could
    # bind to the program's copy.
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not available on this machine")
    _, lib = _sdk()
    listing = subprocess.run([nm, "-D", "--defined-only", str(lib / "libcellrt_c.so")], capture_output=True,
                             text=True, check=True).stdout
    exported = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    declared = _c_api_functions()
    assert len(declared) > 30
    assert exported == declared, (f"exported but not in c_api.h: {sorted(exported - declared)[:20]}; "
                                  f"in c_api.h but not exported: {sorted(declared - exported)}")


def _generator() -> list[str]:
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _configure_consumer(build: Path, *defines: str) -> subprocess.CompletedProcess:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not available on this machine")
    return subprocess.run(["cmake", "-S", str(ROOT / "tests/consumer"), "-B", str(build), *_generator(),
                           "-DCMAKE_BUILD_TYPE=Release", *defines], capture_output=True, text=True)


def _build_and_run_consumer(build: Path, *defines: str, programs=("consumer", "c_consumer")) -> None:
    configure = _configure_consumer(build, *defines)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compile_ = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert compile_.returncode == 0, compile_.stdout + compile_.stderr
    for program in programs:
        run = subprocess.run([str(build / program)], capture_output=True, text=True)
        assert run.returncode == 0, program + ": " + run.stdout + run.stderr
        assert run.stdout.strip().endswith("ok"), program + ": " + run.stdout


def test_downstream_cmake_project_links_the_installed_package(tmp_path):
    _build_and_run_consumer(tmp_path / "build", f"-Dcellrt_DIR={cellrt.cmake_dir()}")


def test_c_consumer_needs_no_cuda_toolkit(tmp_path):
    # An acquisition PC with a GPU driver but no CUDA toolkit: libcellrt_c carries the CUDA runtime, so a C program
    # linking only cellrt::c must find the package and link. find_package(CUDAToolkit) is switched off to be sure
    # no toolkit is found here; a CUDA-built SDK's config used to make it a required dependency.
    _build_and_run_consumer(tmp_path / "build", f"-Dcellrt_DIR={cellrt.cmake_dir()}",
                            "-DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON", "-DCONSUMER_C_ONLY=ON",
                            programs=("c_consumer",))


def test_linking_the_cuda_built_core_without_a_toolkit_says_what_to_do(tmp_path):
    if not cellrt.has_cuda():
        pytest.skip("this cellrt was built without CUDA: its cellrt::core needs no toolkit")
    configure = _configure_consumer(tmp_path / "build", f"-Dcellrt_DIR={cellrt.cmake_dir()}",
                                    "-DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON")
    assert configure.returncode != 0
    message = " ".join(configure.stderr.split())
    assert "cellrt::core is linked by consumer. This cellrt::core was built with CUDA" in message, configure.stderr
    assert "can link cellrt::c instead" in message


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """A CPU-only `cmake --install` of this checkout into a prefix of its own (no wheel, no Python)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not available on this machine")
    root = tmp_path_factory.mktemp("plain")
    build, prefix = root / "build", root / "prefix"
    # An -march for every file, as a toolchain file may set it (where the CPU has x86-64-v3, as a v3 build of
    # _core says): the C ABI's own files must still come out for baseline x86-64.
    flags = ["-DCMAKE_CXX_FLAGS=-march=x86-64-v3"] if _core.host_isa == "x86-64-v3" else []
    for step in (["cmake", "-S", str(ROOT), "-B", str(build), *_generator(), "-DCELLRT_BUILD_PYTHON=OFF",
                  "-DCELLRT_ENABLE_CUDA=OFF", f"-DCMAKE_INSTALL_PREFIX={prefix}", *flags],
                 ["cmake", "--build", str(build), "--parallel"],
                 ["cmake", "--install", str(build)]):
        run = subprocess.run(step, capture_output=True, text=True)
        assert run.returncode == 0, " ".join(step) + "\n" + run.stdout[-4000:] + run.stderr[-4000:]
    return prefix


def _libdir(prefix: Path) -> Path:
    """The folder of libcellrt_c in an install prefix: lib, lib64 or lib/<multiarch>, as GNUInstallDirs chose."""
    found = sorted(prefix.glob("lib*/**/libcellrt_c.so"))
    assert found, f"no libcellrt_c.so under {prefix}"
    return found[0].parent


def test_downstream_cmake_project_links_a_plain_install_prefix(plain_install, tmp_path):
    # What an integrator without the wheel does: install from source, then find_package by prefix. The exported
    # targets must point into the prefix (an install destination starting with "." made them point above it).
    _build_and_run_consumer(tmp_path / "build", f"-DCMAKE_PREFIX_PATH={plain_install}")


def _configure_cellrt(build: Path, *defines: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *_generator(), "-DCELLRT_BUILD_PYTHON=OFF",
                           *defines], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("value", ["off", "FALSE", "0", "no", "N", "Off"])
def test_cmake_false_words_turn_cuda_off(value, tmp_path):
    # Where nvcc is present (as here), "off" or "no" used to build the CUDA kernels: only "OFF" was recognised.
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not available on this machine")
    run = _configure_cellrt(tmp_path / "build", f"-DCELLRT_ENABLE_CUDA={value}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "CUDA kernels enabled" not in run.stdout
    assert f"cellrt: CUDA kernels disabled (CELLRT_ENABLE_CUDA={value})" in run.stdout


@pytest.mark.parametrize("value", ["on", "YES", "true", "1", "Y"])
def test_cmake_true_words_require_cuda(value, tmp_path):
    # A compiler that cannot exist: a true word must then stop the build (ON), not fall back to the CPU (AUTO).
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not available on this machine")
    env = {**os.environ, "CUDACXX": str(tmp_path / "no-such-nvcc")}
    run = _configure_cellrt(tmp_path / "build", f"-DCELLRT_ENABLE_CUDA={value}", env=env)
    assert run.returncode != 0, run.stdout
    assert f"CELLRT_ENABLE_CUDA={value} but no CUDA compiler was found" in " ".join(run.stderr.split())


def test_cmake_auto_falls_back_and_other_words_are_refused(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not available on this machine")
    env = {**os.environ, "CUDACXX": str(tmp_path / "no-such-nvcc")}
    auto = _configure_cellrt(tmp_path / "auto", "-DCELLRT_ENABLE_CUDA=auto", env=env)
    assert auto.returncode == 0 and "no CUDA compiler found; building the CPU kernels only" in auto.stdout, \
        auto.stdout + auto.stderr
    typo = _configure_cellrt(tmp_path / "typo", "-DCELLRT_ENABLE_CUDA=of", env=env)
    assert typo.returncode != 0
    assert 'CELLRT_ENABLE_CUDA should be AUTO, ON or OFF' in " ".join(typo.stderr.split()), typo.stderr
    assert 'got "of"' in typo.stderr


def core_cpu_sources() -> list[str]:
    """The C++ sources of cellrt_core without the CUDA ones, as CMakeLists.txt lists them."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    block = cmake.split("set(CELLRT_CORE_SOURCES", 1)[1].split(")", 1)[0]
    return [s for s in block.split() if s.endswith(".cpp")]


@pytest.mark.parametrize("sanitizers", ["address,undefined", "thread"])
def test_cpu_kernels_are_clean_under_sanitizers(sanitizers, tmp_path):
    # AddressSanitizer + UBSan: out-of-bounds and undefined arithmetic;
    # ThreadSanitizer: the worker pool, the lock-free label numbering and concurrent C ABI callers.
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("a C++ compiler is not available on this machine")
    exe = tmp_path / "sanitize_driver"
    flags = ["-O1", "-g", f"-fsanitize={sanitizers}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
             "-std=c++17", "-ffp-contract=off", "-DCELLRT_WITH_CUDA=0", f"-I{ROOT / 'csrc'}",
             f"-I{ROOT / 'csrc/include'}"]
    if _core.host_isa == "x86-64-v3":
        flags.append("-march=x86-64-v3")
    c_abi = ["csrc/c_api/c_api.cpp", "csrc/c_api/cpu_check.cpp"]
    build = subprocess.run([cxx, *flags, str(ROOT / "tests/c/sanitize_driver.cpp"),
                            *(str(ROOT / s) for s in core_cpu_sources() + c_abi), "-lpthread", "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "TSAN_OPTIONS": "halt_on_error=1"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert "WARNING: ThreadSanitizer" not in run.stderr, run.stderr[-4000:]
    assert run.stdout.strip().endswith("ok")


def test_cli_doctor_json_is_complete():
    out = subprocess.run([sys.executable, "-m", "cellrt.cli", "doctor", "--json"], capture_output=True, text=True,
                         check=True).stdout
    import json

    report = json.loads(out)
    for key in ("cellrt", "build", "kernel_backends", "gpu_usable", "onnxruntime", "tensorrt", "tensorrt_rtx",
                "tensorrt_here", "cupy", "numba"):
        assert key in report
    assert "cpu" in report["kernel_backends"]
    assert report["build"]["built_with_cuda"] == cellrt.has_cuda()
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]


def test_kernels_work_in_a_forked_child():
    # The worker pool is per process: a child forked after the parent used
    # it (multiprocessing's default on Linux) must start its own, not hang.
    script = """
import os, numpy as np
from cellrt.kernels import tile, stitch
img = np.random.default_rng(0).random((1, 300, 300), dtype=np.float32)
b = tile(img, 64, 16, num_threads=2)
stitch(b.tiles, b.origins, img.shape, num_threads=2)
pid = os.fork()
if pid == 0:
    b = tile(img, 64, 16, num_threads=2)
    out = stitch(b.tiles, b.origins, img.shape, num_threads=3)
    os._exit(0 if np.allclose(out, img, atol=1e-5) else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_extension_keeps_its_own_pybind11_state():
    """cellrt._core registers its pybind11 internals under a key of its own, so an extension built with
    another pybind11 release (onnxruntime's, torch's) never reads cellrt's state as its own layout - one
    GPU image crashed in `import onnxruntime` after cellrt._core. Then both still load in one process."""
    import re

    from cellrt._build import _core

    binary = Path(_core.__file__).read_bytes()
    keys = set(re.findall(rb"__pybind11_internals_v\d+[A-Za-z0-9_]*__", binary))
    assert keys and all(b"_cellrt" in key for key in keys), keys
    probe = subprocess.run([sys.executable, "-c", "from cellrt._build import _core; import onnxruntime; "
                            "import numpy; print(_core.version())"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
