#!/bin/sh
# One device call: every row of benchmarks/gpu/beside_reference.py on the lent GPU, ddkit beside
# the reference code, each side in its own process (README.md beside this file). Needs
# benchmarks/gpu/reference/ (sh benchmarks/gpu/prepare.sh, then carry it). Usage:
#   sh benchmarks/gpu/run.sh [SECONDS] [beside_reference.py options, e.g. --rows dm-mnist-ipc10]
# No side starts after SECONDS - 30 (default 330); $OUT gets beside_reference.json, log.txt, gpu.txt.
set -u
SECONDS_LEFT=${1:-330}
[ $# -gt 0 ] && shift
OUT=${OUT:-/tmp/beside_reference}
mkdir -p "$OUT"
[ -d benchmarks/gpu/reference/DatasetCondensation ] || {
  echo "benchmarks/gpu/reference/ missing: run prepare.sh here and carry it" | tee "$OUT/log.txt"; exit 2; }
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"; } >"$OUT/gpu.txt" 2>&1
timeout -s INT "$SECONDS_LEFT" python3 benchmarks/gpu/beside_reference.py \
  --deadline $((SECONDS_LEFT - 30)) --out "$OUT/beside_reference.json" "$@" 2>&1 | tee "$OUT/log.txt"
