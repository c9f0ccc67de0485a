#!/bin/sh
# Colored MNIST from mnist5k (issue 36; BENCHMARKS.md "Biased data"): does distillation amplify a
# colour bias, and does kernel-density re-weighting (reweight=kde; Cui et al., ICML 2024) undo
# it? For each bias-conflicting percentage (0.5, 1, 2, 5 %: datasets colored-mnist5k-c<P>) and
# IPC (10, 50): random real rows, herding, dm, idm, tesla, and dm / idm with re-weighting, beside
# the full training split; idm-start is idm's start without matching (0 iterations: random real
# rows in its multi-formation, four smaller tiles per stored image), the baseline that tells
# idm's matching from its format (METHODS may add dsa and dsa-kde, gradient matching plain and
# re-weighted; they are not in the default list). Every set is evaluated with the standard
# suite's mnist5k recipe (protocol dsa, 300 epochs, 3 networks, ConvNet-3 width 32; the
# full-data row 30 epochs) on the unbiased test split, with group accuracy (ddkit evaluate
# --groups: unbiased, aligned, conflicting, worst-group). Distillation budgets are the standard
# suite's mnist5k ones (the paper ran DM for 20,000 iterations); method options are the mnist5k
# presets' values, which match on the dataset name and so must be given here.
#
# Results: benchmarks/results/biased-mnist5k/<dataset>-<method>-ipc<K>.json (ddkit evaluate's
# report; the method's options are in the run folder's config.json) and <dataset>-full.json;
# `python benchmarks/tables/biased_table.py` prints the tables from them.
# Run folders (distilled sets, experts): runs/biased-mnist5k/. Resumable: a finished evaluation
# is skipped, an interrupted distillation resumes from its checkpoint. RATIOS, IPCS and METHODS
# select a part, e.g. RATIOS=5 IPCS=10 METHODS="dm dm-kde" sh benchmarks/campaigns/biased_mnist5k.sh
# DEVICE=cuda distils and trains on a GPU (with DDKIT="python3 -m ddkit" PYTHON=python3 where
# there is no .venv); several processes with other RATIOS can share one GPU.
set -eu
# exact mode (ddkit.levers): float32, eager, as every row already in the results was measured;
# DDKIT_EXACT=0 to measure the fast defaults instead
export DDKIT_EXACT="${DDKIT_EXACT:-1}"
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
OUT=benchmarks/results/biased-mnist5k
RUNS=runs/biased-mnist5k
RATIOS=${RATIOS:-0.5 1 2 5}
IPCS=${IPCS:-10 50}
METHODS=${METHODS:-full random herding dm dm-kde idm idm-kde idm-start tesla}
WHERE=${DEVICE:+--device $DEVICE}
EVAL="--protocol dsa --runs 3 --seed 0 --models convnet-w32 --groups --quiet $WHERE"
W32="--set model=convnet-w32"
IDM="$W32 --set net_num=20 --set net_generate_interval=10 --set train_net_num=1
  --set model_train_steps=5 --set lr_img=1.0 --set ce_weight=0.01"
TESLA="$W32 --set num_experts=5 --set expert_train_epochs=10 --set expert_batch=32
  --set syn_steps=10 --set expert_epochs=1 --set max_start_epoch=8 --set lr_img=100.0
  --set lr_lr=1e-5 --set syn_lr=0.01 --set clip_grad=1.0 --set clip_lr_grad=100.0
  --set label_confidence=0.99"

# the distillation options of METHOD at IPC (iterations: the standard suite's mnist5k budgets)
options() {
  case $1 in
  random) echo "" ;;
  herding) echo "$W32" ;;
  dm) echo "--iterations $([ "$2" = 50 ] && echo 500 || echo 1000) $W32" ;;
  dm-kde) echo "$(options dm "$2") --set reweight=kde" ;;
  idm) echo "--iterations $([ "$2" = 50 ] && echo 200 || echo 300) $IDM" ;;
  idm-kde) echo "$(options idm "$2") --set reweight=kde" ;;
  idm-start) echo "--iterations 0 $IDM" ;;
  tesla) echo "--iterations $([ "$2" = 50 ] && echo "200 --set batch_syn=100" || echo 300) $TESLA" ;;
  dsa) echo "--iterations $([ "$2" = 50 ] && echo 5 || echo 20) $W32" ;;
  dsa-kde) echo "$(options dsa "$2") --set reweight=kde" ;;
  *) echo "unknown method $1; valid: full random herding dm dm-kde idm idm-kde idm-start tesla dsa" \
    "dsa-kde" >&2
    exit 2 ;;
  esac
}

base() {  # the registered method a benchmark row distils with
  case $1 in *-kde) echo "${1%-kde}" ;; *-start) echo "${1%-start}" ;; *) echo "$1" ;; esac
}

full_row() {  # the full training split, 30 epochs (the standard suite's mnist5k full-data row)
  $PYTHON - "$1" "$OUT/$1-full.json" "${DEVICE:-cpu}" <<'EOF'
import sys
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json

splits = load_dataset(sys.argv[1])
report = evaluate(SyntheticSet.from_real(splits.train), splits.test, "dsa", runs=3, epochs=30,
                  seed=0, models=["convnet-w32"], groups=True, device=sys.argv[3])
atomic_write_json(sys.argv[2], report.to_dict())
print(report.table())
EOF
}

for method in $METHODS; do  # refuse an unknown method before anything runs
  [ "$method" = full ] || options "$method" 10 >/dev/null
done
mkdir -p "$OUT"
for ratio in $RATIOS; do
  ds=colored-mnist5k-c$ratio
  for method in $METHODS; do
    if [ "$method" = full ]; then
      [ -f "$OUT/$ds-full.json" ] || full_row "$ds"
      continue
    fi
    for ipc in $IPCS; do
      cell=$ds-$method-ipc$ipc
      [ -f "$OUT/$cell.json" ] && continue
      echo "== $cell"
      if [ ! -f "$RUNS/$cell/synthetic/meta.json" ]; then
        # shellcheck disable=SC2046  # the options are words
        $DDKIT distill --dataset "$ds" --method "$(base "$method")" --ipc "$ipc" --seed 0 \
          --resume --quiet --out "$RUNS/$cell" $WHERE $(options "$method" "$ipc")
      fi
      # shellcheck disable=SC2086
      $DDKIT evaluate "$RUNS/$cell" $EVAL --epochs 300 --out "$OUT/$cell.json"
    done
  done
done
