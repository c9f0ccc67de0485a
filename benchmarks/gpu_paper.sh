#!/bin/sh
# The `paper` suite's MNIST cells on a lent GPU, in one device call: the methods in PRIORITY
# first, then every other cell of the IPCs in IPCS, until SECONDS have passed. Each seed of a
# cell is kept as it finishes (the bench resumes), so the deadline loses at most the seeds in
# progress. Exact mode, so TF32 is off (float32 as on the CPU). The results file and the cell
# folders are packed into $OUT/paper_gpu.tgz, to unpack over benchmarks/results here; then
# gzip the cells' *.jsonl and regenerate the tables (BENCHMARKS.md, "Suite `paper`").
# Usage (the device tool, carrying .devdata, which holds MNIST's four files under mnist/):
#   PRIORITY=m3d,ncfm IPCS=1,10 sh benchmarks/gpu_paper.sh 540
set -u
SECONDS_LEFT=${1:-540}
export PYTHONPATH="$PWD/src" DDKIT_DATA="$PWD/.devdata" DDKIT_EXACT=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_paper}
mkdir -p "$OUT"
start=$(date +%s)
bench() {
  left=$((SECONDS_LEFT - ($(date +%s) - start)))
  [ "$left" -gt 20 ] || return 0
  timeout -s INT -k 20 "$left" python3 -m ddkit bench --suite paper --datasets mnist \
    --ipcs "${IPCS:-1,10}" --device cuda "$@" 2>&1 | tee -a "$OUT/bench.log"
}
nvidia-smi -L | tee "$OUT/bench.log"
[ -n "${PRIORITY:-}" ] && bench --methods "$PRIORITY"
bench
tar czf "$OUT/paper_gpu.tgz" benchmarks/results/paper.json benchmarks/results/paper-cells
