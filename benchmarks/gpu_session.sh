#!/bin/sh
# Everything a lent GPU should run, in one device call (the device tool; carry .devdata, which
# holds MNIST under mnist/, and .whl, which holds the opacus and mlxtend wheels the GPU
# machine lacks). Side by side until SECONDS have passed:
#   * the CUDA half of tests/test_devices.py (every method and audit on CUDA data),
#   * the `paper` suite's MNIST cells (benchmarks/gpu_paper.sh, PAPER_JOBS processes),
#   * the privacy audit's networks (benchmarks/trust_mnist5k.sh privacy), one stage a process:
#     PRIVACY_STAGES lists them as METHODS:IPCS:DP_EPSILONS, without the full-data networks
#     (kept already); stages that share an IPC both train its random rows' networks unless
#     they are kept, so the default gives IPC 50 to one stage.
# Every part resumes from what earlier calls kept, so the deadline loses only units in progress.
# $OUT gets: experts_together_cuda.json (and .log), gpu.txt, tests.log, bench.log, privacy.log, paper_gpu.tgz, privacy_gpu.tgz (the
# kept networks); unpack the archives in the repository root (gzip the cells' *.jsonl), then
# regenerate the tables (the privacy table: one whole trust_mnist5k.sh privacy run here).
# Usage: sh benchmarks/gpu_session.sh 540
set -u
SECONDS_LEFT=${1:-540}
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/*.whl >"$OUT/pip.txt" 2>&1 && export PYTHONPATH="/tmp/site"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" DDKIT_DATA="$PWD/.devdata"
export DDKIT_EXACT=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export DDKIT="python3 -m ddkit" DEVICE=${DEVICE:-cuda}
logs=$(mktemp -d)
# first, alone on the GPU: experts trained together (vmap) against one by one (the default on a
# GPU is together; benchmarks/bench_experts_together.py); EXPERTS_BENCH=0 skips it
if [ "${EXPERTS_BENCH:-1}" = 1 ]; then
  start=$(date +%s)
  timeout -s INT 150 python3 benchmarks/bench_experts_together.py --device cuda \
    --datasets mnist5k,mnist --experts 8 --epochs 1 --out "$OUT/experts_together_cuda.json" \
    >"$OUT/experts_together.log" 2>&1
  SECONDS_LEFT=$((SECONDS_LEFT - $(date +%s) + start))
fi
timeout -s INT $((SECONDS_LEFT / 3)) python3 -m pytest -q -p no:cacheprovider \
  tests/test_devices.py >"$OUT/tests.log" 2>&1 &
OUT="$logs" JOBS=${PAPER_JOBS:-4} sh benchmarks/gpu_paper.sh "$SECONDS_LEFT" >/dev/null 2>&1 &
# MTT=1: benchmarks/gpu_mtt.sh alongside (mtt at MNIST IPC 10, matched as the paper; $OUT/mtt/)
[ -n "${MTT:-}" ] && OUT="$OUT/mtt" sh benchmarks/gpu_mtt.sh "$SECONDS_LEFT" >/dev/null 2>&1 &
for stage in ${PRIVACY_STAGES:-random:10:1 random:10:8 dm:10: dm:50: kip:10: tesla:10: dsa:10:}; do
  methods=${stage%%:*}; rest=${stage#*:}; ipcs=${rest%%:*}; eps=${rest#*:}
  METHODS=$methods IPCS=$ipcs DP_EPSILONS=$eps NO_FULL=1 timeout -s INT "$SECONDS_LEFT" \
    sh benchmarks/trust_mnist5k.sh privacy >"$logs/privacy-$methods-$ipcs.log" 2>&1 &
  sleep 2
done
wait
cp "$logs/gpu.txt" "$OUT/gpu.txt" 2>/dev/null
cp "$logs/bench.log" "$OUT/bench.log" 2>/dev/null
cp "$logs/paper_gpu.tgz" "$OUT/paper_gpu.tgz" 2>/dev/null
for f in "$logs"/privacy-*.log; do echo "== $f"; tail -n 30 "$f"; done >"$OUT/privacy.log"
# the kept networks only: a stage's privacy.json holds its own rows, and unpacked over the
# table the last whole run assembled it would replace it
tar czf "$OUT/privacy_gpu.tgz" benchmarks/results/audit-privacy-mnist5k/signals
tail -n 5 "$OUT/tests.log" "$OUT/privacy.log"
