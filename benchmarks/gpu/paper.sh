#!/bin/sh
# The `paper` suite's MNIST cells on a lent GPU, in one device call: JOBS bench processes share
# the GPU (default 6; a unit's small kernels leave it idle most of the time, so several
# processes fill it, and the bench's claims give each process other units), the methods in
# PRIORITY first, then every other cell of the IPCs in IPCS, until SECONDS have passed. Each
# seed of a cell is kept as it finishes (the bench resumes), so the deadline loses at most the
# units in progress. Exact mode, so TF32 is off (float32 as on the CPU). The results file and
# the cell folders are packed into $OUT/paper_gpu.tgz, to unpack over benchmarks/results here;
# then gzip the cells' *.jsonl and regenerate the tables (BENCHMARKS.md, "Suite `paper`").
# Usage (the device tool, carrying .devdata, which holds MNIST's four files under mnist/):
#   PRIORITY=m3d,ncfm IPCS=1,10 JOBS=6 sh benchmarks/gpu/paper.sh 540
# (DEVICE=cpu tries the script here.) $OUT gets three files: gpu.txt, bench.log, paper_gpu.tgz.
set -u
SECONDS_LEFT=${1:-540}
export PYTHONPATH="$PWD/src" DDKIT_DATA="$PWD/.devdata" DDKIT_EXACT=1 PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${OUT:-/tmp/gpu_paper}
mkdir -p "$OUT"
start=$(date +%s)
bench() {  # one bench process, until the deadline
  left=$((SECONDS_LEFT - ($(date +%s) - start)))
  [ "$left" -gt 20 ] || return 0
  timeout -s INT -k 20 "$left" python3 -m ddkit bench --suite paper --datasets mnist \
    --ipcs "${IPCS:-1,10}" --device "${DEVICE:-cuda}" "$@"
}
worker() {  # the priority methods, then every cell
  [ -n "${PRIORITY:-}" ] && bench --methods "$PRIORITY"
  bench
}
nvidia-smi -L 2>&1 | tee "$OUT/gpu.txt"
logs=$(mktemp -d)
j=0
while [ "$j" -lt "${JOBS:-6}" ]; do
  worker >"$logs/bench$j.log" 2>&1 &
  j=$((j + 1))
  sleep 5  # staggered: each claims its first unit before the next starts
done
wait
for f in "$logs"/bench*.log; do echo "== $f"; cat "$f"; done >"$OUT/bench.log"
tail -n 20 "$OUT/bench.log"
tar czf "$OUT/paper_gpu.tgz" benchmarks/results/paper.json benchmarks/results/paper-cells
