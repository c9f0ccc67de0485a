#!/bin/sh
# The trust tables of BENCHMARKS.md ("Trust audits"), measured on mnist5k with the standard
# suite's evaluation recipe (protocol dsa, 300 epochs, 3 networks, ConvNet-3 width 32) and its
# full-data recipe (30 epochs), at a reduced distillation budget (--iterations, stated in each
# results file). Each audit writes JSON + PNG into benchmarks/results/audit-*/.
# The privacy audit trains 1 + 16 networks per source and keeps each one's statistics under its
# --out (signals/), so it runs in stages across sessions and resumes: METHODS and IPCS select a
# stage (default: the whole table); a later stage reuses every network an earlier one trained.
# Usage: sh benchmarks/campaigns/trust_mnist5k.sh adversarial|backdoor|privacy
set -eu
# exact mode (ddkit.levers): float32, eager, as every row already in the results was measured;
# DDKIT_EXACT=0 to measure the fast defaults instead
export DDKIT_EXACT="${DDKIT_EXACT:-1}"
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
OUT=benchmarks/results
# DEVICE=cuda computes on a GPU (with DDKIT="python3 -m ddkit" where there is no .venv; the
# privacy audit's DP-SGD needs opacus there too); kept units resume on either device
where=${DEVICE:+--device $DEVICE}
common="--dataset mnist5k --protocol dsa --runs 3 --seed 0 --models convnet-w32 $where"
case "${1:-}" in
adversarial)
  $DDKIT audit adversarial $common --epochs 300 --methods dm,kip --ipc 10,50 \
    --iterations 200 --max-test 1000 --no-full --out "$OUT/audit-adversarial-mnist5k"
  $DDKIT audit adversarial $common --epochs 30 --methods '' --max-test 1000 \
    --out "$OUT/audit-adversarial-mnist5k-full"
  ;;
backdoor)
  # DOORPING re-optimises its trigger every iteration (as the authors' code) stamped on 32
  # poisoned rows, on a fresh ConvNet-3 w32: dm's own network (the default, model=auto) and, for
  # kip, which has none, the same width (a width-128 network on 128 rows took 2 minutes an
  # iteration here)
  for attack in naive doorping; do
    $DDKIT audit backdoor $common --epochs 300 --methods dm,kip --ipc 10 --iterations 200 \
      --attack "$attack" --doorping model=convnet-w32 --doorping carriers=32 \
      --out "$OUT/audit-backdoor-mnist5k-$attack"
  done
  ;;
privacy)
  # 200 iterations each, except dsa, whose outer iteration costs ~60x dm's here: the standard
  # suite's mnist5k budgets for it (20 at IPC 10, 5 at IPC 50). A stage may also leave out the
  # full-data networks (NO_FULL=1) or give other DP-SGD budgets (DP_EPSILONS, '' for none);
  # processes running the same stage side by side share its networks (each claims the ones no
  # other holds); the last, whole run assembles the table from the kept networks
  $DDKIT audit privacy --dataset mnist5k --protocol dsa --seed 0 --models convnet-w32 $where \
    --epochs 300 --full-epochs 30 --methods "${METHODS-dm,dsa,tesla,kip}" --ipc "${IPCS:-10,50}" \
    --iterations 200,dsa@10=20,dsa@50=5 --shadows 16 --dp-epsilons "${DP_EPSILONS-1,8}" \
    ${NO_FULL:+--no-full} --out "$OUT/audit-privacy-mnist5k"
  ;;
*) echo "usage: $0 adversarial|backdoor|privacy" >&2; exit 2 ;;
esac
