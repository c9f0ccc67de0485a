#!/bin/sh
# The trust tables of BENCHMARKS.md ("Trust audits"), measured on mnist5k with the standard
# suite's evaluation recipe (protocol dsa, 300 epochs, 3 networks, ConvNet-3 width 32) and its
# full-data recipe (30 epochs), at a reduced distillation budget (--iterations, stated in each
# results file). Each audit writes JSON + PNG into benchmarks/results/audit-*/.
# Usage: sh benchmarks/trust_mnist5k.sh adversarial|backdoor
set -eu
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
OUT=benchmarks/results
common="--dataset mnist5k --protocol dsa --runs 3 --seed 0 --models convnet-w32"
case "${1:-}" in
adversarial)
  "$DDKIT" audit adversarial $common --epochs 300 --methods dm,kip --ipc 10,50 \
    --iterations 200 --max-test 1000 --no-full --out "$OUT/audit-adversarial-mnist5k"
  "$DDKIT" audit adversarial $common --epochs 30 --methods '' --max-test 1000 \
    --out "$OUT/audit-adversarial-mnist5k-full"
  ;;
backdoor)
  for attack in naive doorping; do
    "$DDKIT" audit backdoor $common --epochs 300 --methods dm,kip --ipc 10 --iterations 200 \
      --attack "$attack" --out "$OUT/audit-backdoor-mnist5k-$attack"
  done
  ;;
*) echo "usage: $0 adversarial|backdoor" >&2; exit 2 ;;
esac
