#!/bin/sh
# Everything a lent GPU should run, in one device call (the device tool; carry .devdata, which
# holds MNIST under mnist/, and .whl, which holds the opacus and mlxtend wheels the GPU
# machine lacks). Side by side until SECONDS have passed, each part switched by a variable:
#   * TESTS=1: the CUDA half of tests/test_devices.py (every method and audit on CUDA data),
#   * PAPER_JOBS=4: the `paper` suite's MNIST cells (benchmarks/gpu/paper.sh, that many
#     processes; 0 for none),
#   * MTT=1: benchmarks/gpu/mtt.sh (mtt at MNIST IPC 10 matched as the paper),
#   * KIP_CURVE=1: kip's validation accuracy against its budget at MNIST IPC 1 in the suite's
#     published variant (benchmarks/studies/dream_curve.py --batches as-is, protocol mse),
#   * the privacy audit's networks (benchmarks/campaigns/trust_mnist5k.sh privacy), one stage a process:
#     PRIVACY_STAGES lists them as METHODS:IPCS:DP_EPSILONS ('' for none), without the
#     full-data networks (kept already); stages that share an IPC both train its random rows'
#     networks unless they are kept (the default: the stages still missing).
# Every part resumes from what earlier calls kept, so the deadline loses only units in progress.
# $OUT gets four files (the device tool returns eight at most): summary.txt (the logs' tails),
# paper_gpu.tgz and privacy_gpu.tgz (the paper cells and the privacy audit's kept networks:
# unpack both in the repository root, gzip the cells' *.jsonl, then regenerate the tables; the
# privacy table from one whole trust_mnist5k.sh privacy run here), and session.tgz (every log,
# experts_together_cuda.json, mtt/ with the mtt run folders less their experts, kip_curve.*,
# kip_curve_work.tgz with the curve's rows and checkpoint).
# Usage: MTT=1 KIP_CURVE=1 PAPER_JOBS=0 sh benchmarks/gpu/session.sh 540
# Eight processes sharing one GPU starved each other (BENCHMARKS "A fourth lent GPU"): give a
# call two or three parts, e.g. MTT=1 alone (carrying runs/gpu_mtt) with PRIVACY_STAGES=''.
set -u
SECONDS_LEFT=${1:-540}
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
logs=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/*.whl >"$logs/pip.txt" 2>&1 && export PYTHONPATH="/tmp/site"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" DDKIT_DATA="$PWD/.devdata"
export DDKIT_EXACT=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export DDKIT="python3 -m ddkit" DEVICE=${DEVICE:-cuda}
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"; } >"$logs/gpu.txt" 2>&1
# first, alone on the GPU: experts trained together (vmap) against one by one (the default on a
# GPU is together; benchmarks/campaigns/bench_experts_together.py); EXPERTS_BENCH=0 skips it
if [ "${EXPERTS_BENCH:-1}" = 1 ]; then
  start=$(date +%s)
  timeout -s INT 150 python3 benchmarks/campaigns/bench_experts_together.py --device "$DEVICE" \
    --datasets mnist5k,mnist --experts 8 --epochs 1 --out "$logs/experts_together_cuda.json" \
    >"$logs/experts_together.log" 2>&1
  SECONDS_LEFT=$((SECONDS_LEFT - $(date +%s) + start))
fi
[ "${TESTS:-1}" = 1 ] && timeout -s INT $((SECONDS_LEFT / 3)) python3 -m pytest -q \
  -p no:cacheprovider tests/test_devices.py >"$logs/tests.log" 2>&1 &
[ "${PAPER_JOBS:-4}" -gt 0 ] && OUT="$logs/paper" JOBS=${PAPER_JOBS:-4} \
  sh benchmarks/gpu/paper.sh "$SECONDS_LEFT" >/dev/null 2>&1 &
[ "${MTT:-0}" = 1 ] && OUT="$logs/mtt" sh benchmarks/gpu/mtt.sh "$SECONDS_LEFT" >/dev/null 2>&1 &
[ "${KIP_CURVE:-0}" = 1 ] && timeout -s INT "$SECONDS_LEFT" python3 \
  benchmarks/studies/dream_curve.py --dataset "${KIP_DATASET:-mnist}" --ipc 1 --methods kip \
  --batches as-is --milestones "kip=${KIP_MILESTONES:-200,500,1000,2000,4000}" \
  --suite paper \
  --protocol mse --epochs "${KIP_EPOCHS:-1000}" --device "$DEVICE" --work runs/kip-curve \
  --out "$logs/kip_curve.json" >"$logs/kip_curve.log" 2>&1 &
for stage in ${PRIVACY_STAGES-dsa:10: tesla:10: dsa:50: tesla:50:}; do
  methods=${stage%%:*}; rest=${stage#*:}; ipcs=${rest%%:*}; eps=${rest#*:}
  METHODS=$methods IPCS=$ipcs DP_EPSILONS=$eps NO_FULL=1 timeout -s INT "$SECONDS_LEFT" \
    sh benchmarks/campaigns/trust_mnist5k.sh privacy >"$logs/privacy-$methods-$ipcs.log" 2>&1 &
  sleep 2
done
wait
[ -f "$logs/paper/paper_gpu.tgz" ] && mv "$logs/paper/paper_gpu.tgz" "$OUT/"
# the kept networks only: a stage's privacy.json holds its own rows, and unpacked over the
# table the last whole run assembled it would replace it
[ -d benchmarks/results/audit-privacy-mnist5k/signals ] &&
  tar czf "$OUT/privacy_gpu.tgz" benchmarks/results/audit-privacy-mnist5k/signals
# the run folders less their experts (which retrain): carry them back as runs/... to resume
[ -d runs/gpu_mtt ] && mkdir -p "$logs/mtt" &&
  tar czf "$logs/mtt/work.tgz" --exclude=experts runs/gpu_mtt
[ -d runs/kip-curve ] && tar czf "$logs/kip_curve_work.tgz" runs/kip-curve
for f in $(find "$logs" -name '*.log' -o -name '*.txt' | sort); do
  echo "== ${f#"$logs"/}"; tail -n 15 "$f"
done >"$OUT/summary.txt"
tar czf "$OUT/session.tgz" -C "$logs" .
tail -n 60 "$OUT/summary.txt"
