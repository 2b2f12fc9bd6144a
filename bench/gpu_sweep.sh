#!/usr/bin/env bash
# The Ray sweep on the GPU machine (issues 19/20): one GPU, then every GPU of the host; same grid.
#   PAYLOAD=/tmp/payload.tar RAY_WHEELS=/tmp/raywheels WB_REALMODELS_CACHE=DIR bash bench/gpu_sweep.sh OUTDIR
# payload.tar as for bench/gpu_run.sh (onnxruntime-gpu & co.); RAY_WHEELS: ray 2.60 + jsonschema wheels (cp312).
set -uo pipefail
OUT=${1:?outdir}; mkdir -p "$OUT"
SITE=${SITE:-/tmp/site}
bash bench/gpu_run.sh "$OUT/env" none >/dev/null 2>&1 || { echo "payload install failed"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$RAY_WHEELS"/*.whl || exit 3
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1   # never NVLink multicast
NV=$(python3 -c "import glob,site; print(':'.join(sorted(glob.glob(site.getsitepackages()[0]+'/nvidia/*/lib'))))")
export LD_LIBRARY_PATH="$NV${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
RAY="python3 -c 'import sys; from ray.scripts.scripts import main; sys.argv[0]=\"ray\"; main()'"
NGPU=$(nvidia-smi -L | wc -l)
nvidia-smi -L | tee "$OUT/gpus.txt"
run_one() {  # $1 = label, $2 = CUDA_VISIBLE_DEVICES, $3 = number of GPUs, $4 = port
  CUDA_VISIBLE_DEVICES=$2 eval $RAY start --head --node-ip-address=127.0.0.1 --port=$4 --num-gpus=$3 \
    --include-dashboard=false --disable-usage-stats --temp-dir=/tmp/ray$1 > "$OUT/ray_$1.txt" 2>&1 || { tail -5 "$OUT/ray_$1.txt"; return 1; }
  timeout ${SWEEP_TIMEOUT:-240} python3 bench/gpu_sweep.py --ray 127.0.0.1:$4 --out "$OUT/$1" 2>&1 | tee "$OUT/$1.log" | tail -30
  eval $RAY stop --force >/dev/null 2>&1
}
run_one gpu1 0 1 6390
GPUS=$(seq -s, 0 $((NGPU-1)))
[ "$NGPU" -gt 1 ] && run_one gpu$NGPU "$GPUS" "$NGPU" 6391
python3 bench/gpu_sweep.py --summary "$OUT/gpu1" $([ "$NGPU" -gt 1 ] && echo "$OUT/gpu$NGPU") | tee "$OUT/summary.md"
