#!/usr/bin/env bash
# Load-sensitive benchmarks on a quiet machine emulating the 2-core laptop: the process is pinned to two CPUs
# on two physical cores (taskset) and ONNX Runtime sessions that leave their thread count to ORT get 2 threads
# (bench/quiet/sitecustomize.py; ORT would size its pool from the host's cores, not the affinity).
# How docs/benchmarks-quiet.md was made (on the GPU host's idle CPUs; no GPU is used):
#   WHEELS=dir-of-wheels RM=corpus-dir bash bench/quiet/run.sh OUT [report] [precision] [demo]
# WHEELS: pure-Python wheels the host lacks (plotly, narwhals, onnx-graphsurgeon, polygraphy,
# onnxconverter-common, ml-dtypes), installed with --target /tmp/site. RM: a real-model corpus folder
# (models/ppocr_{det,rec}_v4.onnx, data/ppocr_rec_v4.npz, data/ppocr_det_v4_32.npz = the 16 detector pages and
# their mirror images, 32 samples: the report's sample budget).
OUT=${1:?}; shift; WHAT=${*:-report precision}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${WHEELS:-}" ] && python3 -m pip install -q --no-deps --no-index --target /tmp/site "$WHEELS"/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$HERE:$PWD WB_EMULATED_CORES=2 WB_REALMODELS_CACHE=${RM:?} PYTHONUNBUFFERED=1
CPUS=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
{ echo "cpus $CPUS"; lscpu | grep -i "model name\|^CPU(s)\|Thread"; python3 -c "import onnxruntime,onnx,numpy,pandas;print('ort',onnxruntime.__version__,'onnx',onnx.__version__,'numpy',numpy.__version__,'pandas',pandas.__version__)"; uptime; } | tee "$OUT/env.txt"
for w in $WHAT; do case $w in
report)  # each report twice: the first makes the variants, the second reuses them (.workbench-cache)
  for m in ppocr_det_v4 ppocr_rec_v4; do
    D=$RM/data/$m.npz; [ -f "$RM/data/${m}_32.npz" ] && D=$RM/data/${m}_32.npz
    for run in 1 2; do
      taskset -c "$CPUS" python3 "$HERE/timeit.py" "report$run-$m" python3 -m workbench.cli report "$RM/models/$m.onnx" \
        --backend onnxruntime --precision fp32,fp16,int8 --data "$D" --calib "$D" --out "$OUT/$m/report.html" \
        --no-progress 2>&1 | tail -8
    done
  done ;;
precision)
  taskset -c "$CPUS" python3 bench/run.py --only precision --no-write 2>&1 | tail -14 ;;
demo)  # `make demo`'s job (bench/bench_demo.py: 1 warm-up + 3 timed runs, the demo's own int8 speedup per run)
  taskset -c "$CPUS" python3 bench/run.py --only demo --no-write 2>&1 | tail -10 ;;
demomodels)  # bench_precision's two digits CNNs, timed the demo's way (2 ORT threads and 1)
  taskset -c "$CPUS" python3 -c "import sys, json; sys.path.insert(0, 'bench'); import bench_precision as b; from workbench.backends import get_backend; [print(json.dumps(r)) for r in b._demo_model_rows(get_backend('onnxruntime'), b._cpu_flags(), False)]" ;;
esac; done
