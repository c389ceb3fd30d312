#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, nvcc and cupy: build cellrt for that GPU,
# run every CUDA test, the GPU benchmark and a compute-sanitizer pass over
# the CUDA kernels. Logs go to $OUT (default /tmp/cellrt-gpu-check).
#
#   CELLRT_SHARED_DATA=/path/to/shared/data tools/gpu_check.sh
#
# A folder .devdata (a copy of shared/data) or .whl (extra wheels, e.g.
# MONAI for the peer column) in the checkout is used when present.
set -u
OUT=${OUT:-/tmp/cellrt-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/cellrt-site .whl/*.whl \
        && export PYTHONPATH=/tmp/cellrt-site
fi
if [ -d .devdata ]; then export CELLRT_SHARED_DATA=$PWD/.devdata; fi

start=$(date +%s)
"$PY" -m pip install --no-build-isolation --no-deps -q -Cbuild-dir=build/gpu \
    -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$arch" -Ccmake.define.CELLRT_ENABLE_CUDA=ON . >"$OUT/build.log" 2>&1
status=$?
echo "build for sm_$arch: exit $status in $(( $(date +%s) - start )) s"
if [ $status -ne 0 ]; then tail -60 "$OUT/build.log"; exit 1; fi
(cd /tmp && "$PY" -X faulthandler -m cellrt doctor)
# Once crashed on the H200 image (onnxruntime 1.30) before _core got a pybind11 state of its own:
(cd /tmp && "$PY" -c "from cellrt._build import _core; import onnxruntime" && echo "_core then onnxruntime: ok") \
    || echo "_core then onnxruntime: CRASHED"

# Only the files holding CUDA tests: the rest need packages a GPU image may lack.
timeout 300 "$PY" -m pytest -q -rs -m cuda -p no:cacheprovider -p no:logging \
    tests/test_build.py tests/test_stitch.py tests/test_segment.py tests/test_label_measure.py tests/test_filters.py \
    tests/test_runtime.py tests/test_device_glue.py tests/test_mmd.py tests/test_nms.py tests/test_watershed.py 2>&1 | tee "$OUT/pytest_cuda.log" | tail -80

timeout 240 "$PY" benchmarks/bench_cuda.py --repeats 10 2>&1 | tee "$OUT/bench_cuda.log"

if command -v compute-sanitizer >/dev/null; then
    timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" tools/gpu_smoke.py \
        >"$OUT/memcheck.log" 2>&1
    echo "compute-sanitizer memcheck: exit $?"; tail -25 "$OUT/memcheck.log"
fi

if command -v ncu >/dev/null; then  # one tile and one stitch launch of a 4096^2 field, after warm-up
    timeout 120 ncu --kernel-name regex:'tile_kernel|stitch_kernel' --launch-skip 2 --launch-count 2 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
        "$PY" -c "
import cupy as cp, numpy as np
from cellrt.kernels import tile, stitch
image = cp.asarray(np.random.default_rng(0).random((1, 4096, 4096), np.float32))
for _ in range(2):
    b = tile(image, 256, 0.25)
    stitch(b.tiles, b.origins, image.shape, blend='gaussian')
cp.cuda.Device().synchronize()" >"$OUT/ncu_stitch.log" 2>&1
    echo "ncu: exit $?"; grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Stall|==PROF==|Error" \
        "$OUT/ncu_stitch.log" | head -40
fi
