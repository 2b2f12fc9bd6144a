#!/usr/bin/env bash
# Runs the GPU tests and the GPU suite on a machine with an NVIDIA GPU where onnxruntime-gpu is
# installed into $SITE (a --target folder) — the way docs/benchmarks-gpu.md was produced.
#   bash bench/gpu_run.sh OUTDIR [tests|suite|all] [suite args...]
set -uo pipefail
OUT=${1:?outdir}; WHAT=${2:-all}; shift 2 || true
SITE=${SITE:-/tmp/site}
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# onnxruntime-gpu installed outside the venv that holds nvidia-* CUDA wheels: point the loader at them.
NV=$(python3 -c "import glob,site; print(':'.join(sorted(glob.glob(site.getsitepackages()[0]+'/nvidia/*/lib'))))")
export LD_LIBRARY_PATH="$NV${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 --version;
  python3 -c "import onnxruntime as o, onnx, numpy; print('ort', o.__version__, o.get_available_providers(), 'onnx', onnx.__version__, 'numpy', numpy.__version__)"; } 2>&1 | tee "$OUT/env.txt"
if [ "$WHAT" = tests ] || [ "$WHAT" = all ]; then
  timeout 280 python3 -m pytest -q -ra -m "gpu or trt" -p no:cacheprovider tests/test_gpu_ort.py tests/test_latency.py \
    tests/test_layers.py tests/test_tensorrt_gpu.py 2>&1 | tee "$OUT/pytest_gpu.txt" | tail -40
fi
if [ "$WHAT" = suite ] || [ "$WHAT" = all ]; then
  timeout 500 python3 bench/gpu_suite.py --out "$OUT" "$@" 2>&1 | tee "$OUT/suite_log.txt" | tail -60
fi
