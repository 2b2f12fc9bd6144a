#!/usr/bin/env bash
# Runs the GPU tests and the GPU suite on a machine with an NVIDIA GPU — the way docs/benchmarks-gpu.md
# was produced. onnxruntime-gpu, cupti-python & co. are installed into $SITE (a --target folder) from
# a payload tar made on a machine with internet (see docs/benchmarks-gpu.md, "Reproduce"):
#   PAYLOAD=/tmp/payload.tar bash bench/gpu_run.sh OUTDIR [tests|suite|all] [suite args...]
# payload.tar: ort.tar.xz (onnxruntime-gpu 1.31.1's wheel contents, xz), *.whl (cupti-python, pyelftools,
# plotly, onnx-graphsurgeon, onnxconverter-common), realmodels/{models,data}/ (the real-model corpus files).
set -uo pipefail
OUT=${1:?outdir}; WHAT=${2:-all}; shift 2 || true
SITE=${SITE:-/tmp/site}
if [ -n "${PAYLOAD:-}" ] && [ ! -d "$SITE/onnxruntime" ]; then
  P=/tmp/payload; mkdir -p "$P" "$SITE"
  tar -xf "$PAYLOAD" -C "$P" && xz -dc "$P/ort.tar.xz" | tar -x -C "$SITE" || exit 3
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$P"/*.whl || exit 3
  export WB_REALMODELS_CACHE=$P/realmodels
fi
export WB_REALMODELS_CACHE=${WB_REALMODELS_CACHE:-/tmp/payload/realmodels}
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# onnxruntime-gpu installed outside the venv that holds nvidia-* CUDA wheels: point the loader at them;
# libcupti (for cupti-python) comes with the CUDA toolkit of the image.
NV=$(python3 -c "import glob,site; print(':'.join(sorted(glob.glob(site.getsitepackages()[0]+'/nvidia/*/lib'))))")
CUPTI=$(ls -d /usr/local/cuda*/targets/x86_64-linux/lib 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$NV${CUPTI:+:$CUPTI}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; python3 --version;
  python3 -c "import onnxruntime as o, onnx, numpy; print('ort', o.__version__, o.get_available_providers(), 'onnx', onnx.__version__, 'numpy', numpy.__version__)";
  python3 -c "from workbench.measure.cupti import cupti_unavailable; print('cupti:', cupti_unavailable() or 'available')"; } 2>&1 | tee "$OUT/env.txt"
if [ "$WHAT" = tests ] || [ "$WHAT" = all ]; then
  timeout ${TESTS_TIMEOUT:-200} python3 -m pytest -q -ra -m "gpu or trt" -p no:cacheprovider tests/test_gpu_ort.py tests/test_gpu_cupti.py \
    tests/test_latency.py tests/test_layers.py tests/test_tensorrt_gpu.py 2>&1 | tee "$OUT/pytest_gpu.txt" | tail -40
fi
if [ "$WHAT" = suite ] || [ "$WHAT" = all ]; then
  timeout ${SUITE_TIMEOUT:-500} python3 bench/gpu_suite.py --out "$OUT" "$@" 2>&1 | tee "$OUT/suite_log.txt" | tail -80
fi
