#!/bin/sh
# Issue 82: the recommended path (`ddkit distill --method recommended`) on full Fashion-MNIST
# (60,000 images) at IPC 10 and 50 under a time budget, beside random real images of the same
# bytes, both evaluated under one recipe (3 ConvNet-3 networks, protocol dsa cut to EPOCHS
# epochs). Each command's wall time and peak memory go to results/scale/commands.json, the
# evaluations to results/scale/fashion_recommended/. Needs `sh benchmarks/tools/get_data.sh`.
# Usage: sh benchmarks/scale/fashion_recommended.sh [WORK_DIR] [BUDGET] [EPOCHS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-/tmp/fashion_recommended}
budget=${2:-15m}
epochs=${3:-300}
py="$repo/.venv/bin/python"
out="$repo/benchmarks/results/scale/fashion_recommended"
mkdir -p "$work" "$out"
for ipc in 10 50; do
  [ -d "$work/rec$ipc/synthetic" ] || "$py" "$here/peak_rss.py" \
    --label "fashionmnist, recommended, IPC $ipc, --budget $budget" -- \
    ddkit distill --dataset fashionmnist --method recommended --ipc "$ipc" --budget "$budget" \
    --out "$work/rec$ipc"
  [ -d "$work/random$ipc/synthetic" ] || "$py" "$here/peak_rss.py" \
    --label "fashionmnist, random real, IPC $ipc" -- \
    ddkit distill --dataset fashionmnist --method random --ipc "$ipc" --out "$work/random$ipc"
done
for ipc in 10 50; do
  for set in rec random; do
    [ -f "$out/${set}${ipc}.json" ] || "$repo/.venv/bin/ddkit" evaluate "$work/$set$ipc" \
      --protocol dsa --epochs "$epochs" --models convnet --runs 3 --out "$out/${set}${ipc}.json"
  done
done
