#!/bin/sh
# Wall time of each distributed path of issue 38 with 1 and 2 processes on this machine (digits,
# no download): expert trajectories (experts sharded), evaluation (runs sharded), DM (classes
# sharded) and DSA (per-class image gradients summed over the ranks). One process runs
# `python -m ddkit`, two run `torchrun --standalone --nproc-per-node 2 -m ddkit`; each process
# gets THREADS torch threads (default 1; two cores bound the speed-up, correctness is the
# point). After the timings it checks that both process counts wrote the same experts, sets
# (DSA within 1e-6) and evaluation accuracies. Writes $OUT/times.tsv (path, processes,
# seconds); the figures go to BENCHMARKS.md by hand.
# Usage: sh benchmarks/distributed.sh [OUT]   (default OUT=runs/bench-distributed)
set -eu
PY=${PY:-$(pwd)/.venv/bin/python}
TORCHRUN=${TORCHRUN:-$(pwd)/.venv/bin/torchrun}
OUT=${1:-runs/bench-distributed}
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
  timed experts "$n" experts --dataset digits --model convnet2 --num-experts 4 --epochs 10 \
    --quiet --out "$dir/experts"
  timed dm "$n" distill --dataset digits --method dm --ipc 10 --iterations 500 --quiet \
    --out "$dir/dm"
  timed dsa "$n" distill --dataset digits --method dsa --ipc 10 --iterations 5 --quiet \
    --out "$dir/dsa"
  timed evaluate "$n" evaluate "$dir/dm" --protocol fast --runs 6 --quiet \
    --out "$dir/eval.json"
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
for name, atol in (("dm", 0.0), ("dsa", 1e-6)):
    a = SyntheticSet.load(one / name / "synthetic").images
    b = SyntheticSet.load(two / name / "synthetic").images
    print(f"{name}: largest difference {float((a - b).abs().max()):.3g} (tolerance {atol})")
acc = [json.loads((d / "eval.json").read_text())["results"][0]["accuracies"] for d in (one, two)]
print(f"evaluate: accuracies identical: {acc[0] == acc[1]}")
EOF
