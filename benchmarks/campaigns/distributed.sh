#!/bin/sh
# Wall time of each distributed path of issue 38 with 1 and 2 processes on this machine (digits,
# no download): expert trajectories (experts sharded), evaluation (runs sharded), DM (classes
# sharded), DSA (per-class image gradients summed over the ranks), the teacher (data-parallel:
# rows of every batch, gradients summed), SRe2L recovery and RDED's scoring (image indices) and
# TESLA (one student: rows of every student mini-batch, its gradients summed). One process runs
# `python -m ddkit`, two run `torchrun --standalone --nproc-per-node 2 -m ddkit`; each process
# gets THREADS torch threads (default 1; two cores bound the speed-up, correctness is the
# point). After the timings it checks that both process counts wrote the same experts, sets,
# teacher and evaluation accuracies (bit for bit, or within the tolerance the tests state:
# DSA 1e-6, the teacher 1e-6, TESLA 1e-5). SRe2L and RDED use the one-process teacher in both
# runs, so that their sets compare. Writes $OUT/times.tsv (path, processes, seconds); the
# figures go to BENCHMARKS.md by hand.
#
# The budgets are variables, so a smoke run of the script itself takes a minute or two:
#   EXPERT_EPOCHS=3 DM_ITERS=5 DSA_ITERS=1 TEACHER_EPOCHS=1 SRE2L_ITERS=5 TESLA_ITERS=2 \
#   EVAL_RUNS=2 sh benchmarks/campaigns/distributed.sh runs/smoke-distributed
# Usage: sh benchmarks/campaigns/distributed.sh [OUT]   (default OUT=runs/bench-distributed)
set -eu
# exact mode (ddkit.levers): float32, eager, as every row already in the results was measured;
# DDKIT_EXACT=0 to measure the fast defaults instead
export DDKIT_EXACT="${DDKIT_EXACT:-1}"
PY=${PY:-$(pwd)/.venv/bin/python}
TORCHRUN=${TORCHRUN:-$(pwd)/.venv/bin/torchrun}
OUT=${1:-runs/bench-distributed}
EXPERT_EPOCHS=${EXPERT_EPOCHS:-10}  # TESLA starts at epochs 0 .. EXPERT_EPOCHS - 2
DM_ITERS=${DM_ITERS:-500}
DSA_ITERS=${DSA_ITERS:-5}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-10}
SRE2L_ITERS=${SRE2L_ITERS:-200}
TESLA_ITERS=${TESLA_ITERS:-50}
EVAL_RUNS=${EVAL_RUNS:-6}
export OMP_NUM_THREADS="${THREADS:-1}"
mkdir -p "$OUT"
printf 'path\tprocesses\tseconds\n' > "$OUT/times.tsv"

timed() {  # timed NAME PROCESSES ddkit-arguments...
  name=$1 n=$2
  shift 2
  start=$("$PY" -c 'import time; print(time.time())')
  if [ "$n" = 1 ]; then
    "$PY" -m ddkit "$@"
  else
    "$TORCHRUN" --standalone --nproc-per-node "$n" -m ddkit "$@"
  fi
  "$PY" -c "import sys, time; print(f'{sys.argv[1]}\t{sys.argv[2]}\t{time.time() - float(sys.argv[3]):.1f}')" \
    "$name" "$n" "$start" | tee -a "$OUT/times.tsv"
}

for n in 1 2; do
  dir="$OUT/n$n"
  rm -rf "$dir"
  timed experts "$n" experts --dataset digits --model convnet2 --num-experts 4 \
    --epochs "$EXPERT_EPOCHS" --quiet --out "$dir/experts"
  timed dm "$n" distill --dataset digits --method dm --ipc 10 --iterations "$DM_ITERS" --quiet \
    --out "$dir/dm"
  timed dsa "$n" distill --dataset digits --method dsa --ipc 10 --iterations "$DSA_ITERS" \
    --quiet --out "$dir/dsa"
  timed evaluate "$n" evaluate "$dir/dm" --protocol fast --runs "$EVAL_RUNS" --quiet \
    --out "$dir/eval.json"
  timed teacher "$n" teacher --dataset digits --epochs "$TEACHER_EPOCHS" --out "$dir/teacher"
  timed sre2l "$n" distill --dataset digits --method sre2l --ipc 10 --iterations "$SRE2L_ITERS" \
    --teacher "$OUT/n1/teacher" --quiet --out "$dir/sre2l"
  timed rded "$n" distill --dataset digits --method rded --ipc 10 \
    --teacher "$OUT/n1/teacher" --quiet --out "$dir/rded"
  timed tesla "$n" distill --dataset digits --method tesla --ipc 10 --iterations "$TESLA_ITERS" \
    --set experts_dir="$dir/experts" --set max_start_epoch="$((EXPERT_EPOCHS - 1))" --quiet \
    --out "$dir/tesla"
done

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

import torch

from ddkit.data.synthetic import SyntheticSet
from ddkit.io import load_tensors

out = Path(sys.argv[1])
one, two = out / "n1", out / "n2"
files = sorted(p.relative_to(one) for p in (one / "experts").rglob("*.safetensors"))
same = all(torch.equal(load_tensors(one / f)["params"], load_tensors(two / f)["params"]) for f in files)
print(f"experts: {len(files)} snapshots, identical: {same}")
for name, atol in (("dm", 0.0), ("dsa", 1e-6), ("sre2l", 0.0), ("rded", 0.0), ("tesla", 1e-5)):
    a, b = (SyntheticSet.load(d / name / "synthetic") for d in (one, two))
    diff = max(float((a.images - b.images).abs().max()), float((a.labels.float() - b.labels.float()).abs().max()))
    print(f"{name}: largest difference of images and labels {diff:.3g} (tolerance {atol}): {'ok' if diff <= atol else 'FAILED'}")
a, b = (load_tensors(d / "teacher" / "teacher.safetensors") for d in (one, two))
diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
print(f"teacher: largest difference of a weight or BN statistic {diff:.3g} (tolerance 1e-6): {'ok' if diff <= 1e-6 else 'FAILED'}")
acc = [json.loads((d / "eval.json").read_text())["results"][0]["accuracies"] for d in (one, two)]
print(f"evaluate: accuracies identical: {acc[0] == acc[1]}")
EOF
