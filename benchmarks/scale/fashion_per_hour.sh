#!/bin/sh
# Issue 82: which family gives the best set per hour on a CPU, on full Fashion-MNIST (60,000
# images): the coresets beside the recommended path and random real images of
# fashion_recommended.sh, at IPC 10 and 50, evaluated under the same recipe (3 ConvNet-3
# networks, protocol dsa cut to EPOCHS epochs). Each selection's wall time and peak memory go to
# results/scale/commands.json, the evaluations to results/scale/fashion_recommended/.
# Usage: sh benchmarks/scale/fashion_per_hour.sh [WORK_DIR] [EPOCHS] [METHODS] [IPCS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-/tmp/fashion_recommended}
epochs=${2:-300}
methods=${3:-herding kmeans}
ipcs=${4:-10 50}
py="$repo/.venv/bin/python"
out="$repo/benchmarks/results/scale/fashion_recommended"
mkdir -p "$work" "$out"
for ipc in $ipcs; do
  for method in $methods; do
    [ -d "$work/$method$ipc/synthetic" ] || "$py" "$here/peak_rss.py" \
      --label "fashionmnist, $method, IPC $ipc" -- \
      ddkit distill --dataset fashionmnist --method "$method" --ipc "$ipc" --out "$work/$method$ipc"
    "$py" "$here/set_rows.py" --label "fashionmnist $method$ipc" \
      --command-label "fashionmnist, $method, IPC $ipc" "$work/$method$ipc"
    [ -f "$out/$method$ipc.json" ] || "$repo/.venv/bin/ddkit" evaluate "$work/$method$ipc" \
      --protocol dsa --epochs "$epochs" --models convnet --runs 3 --out "$out/$method$ipc.json"
  done
done
