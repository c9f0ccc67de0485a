#!/bin/sh
# Tables (issue 39; BENCHMARKS.md "Other kinds of data"): does a distilled table beat a coreset of
# the same size? For each dataset (letter: mlbench LetterRecognition 20,000 x 16, 26 classes;
# satellite: 6,435 x 36, 6 classes; breast-cancer: sklearn, 569 x 30) and IPC (1, 10): random
# real rows, herding, k-center (coresets) and dm, dc, kip, mtt (distillation), all on the MLP
# (the table default), beside the full training split. Every set is evaluated by the learners tabular
# users use (ddkit evaluate --learners: logistic regression, k-NN, random forest, gradient
# boosting, and the MLP under the 'tabular' protocol), 5 seeds where the learner is random.
# Distillation budgets: each method's default scaled to the data (ddkit's rule for a dataset
# without a preset; the warning says how many), ITERATIONS=N to force one.
#
# letter and satellite come from Debian's r-cran-mlbench, installed into the data root once:
#   apt-get download r-cran-mlbench     # r-cran-mlbench_2.1-3-1_amd64.deb
#   DEB=r-cran-mlbench_2.1-3-1_amd64.deb sh benchmarks/campaigns/tabular.sh
# (needs the extra 'tabular': pip install 'ddkit[tabular]').
#
# Results: benchmarks/results/tabular/<dataset>-<method>-ipc<K>.json and <dataset>-full.json
# (ddkit evaluate's report), and a markdown table printed at the end (also tabular.md, REPORT=NAME
# to rename it; benchmarks/campaigns/timeseries.sh runs this script on series). Run
# folders: runs/tabular/. Resumable: a finished evaluation is skipped. DATASETS, IPCS, METHODS,
# RUNS, EPOCHS select a part or a smoke run, e.g.
#   DATASETS=wine IPCS=1 METHODS="full random dm" RUNS=1 EPOCHS=5 ITERATIONS=2 OUT=/tmp/t RUNDIR=/tmp/r sh benchmarks/campaigns/tabular.sh
set -eu
# exact mode (ddkit.levers): float32, eager, as every row already in the results was measured;
# DDKIT_EXACT=0 to measure the fast defaults instead
export DDKIT_EXACT="${DDKIT_EXACT:-1}"
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
OUT=${OUT:-benchmarks/results/tabular}
RUNDIR=${RUNDIR:-runs/tabular}
DATASETS=${DATASETS:-letter satellite breast-cancer}
IPCS=${IPCS:-1 10}
METHODS=${METHODS:-full random herding kcenter dm dc kip mtt}
RUNS=${RUNS:-5}
LEARNERS=${LEARNERS:-logreg,knn,rf,gb,mlp}
EPOCHS_FLAG=${EPOCHS:+--epochs $EPOCHS}
ITER_FLAG=${ITERATIONS:+--iterations $ITERATIONS}

if [ -n "${DEB:-}" ]; then
  for name in letter satellite; do "$DDKIT" data fetch "$name" --from "$DEB"; done
fi

full_row() {  # the full training split under the same learners
  "$PYTHON" - "$1" "$OUT/$1-full.json" "$LEARNERS" "$RUNS" "${EPOCHS:-}" <<'PY'
import sys
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.learners import evaluate_learners
from ddkit.io import atomic_write_json

name, out, learners, runs, epochs = sys.argv[1:6]
splits = load_dataset(name)
report = evaluate_learners(SyntheticSet.from_real(splits.train), splits.test, learners,
                           runs=int(runs), seed=0, epochs=int(epochs) if epochs else None)
atomic_write_json(out, report.to_dict())
print(report.table())
PY
}

mkdir -p "$OUT"
for ds in $DATASETS; do
  for method in $METHODS; do
    if [ "$method" = full ]; then
      [ -f "$OUT/$ds-full.json" ] || { echo "== $ds-full"; full_row "$ds"; }
      continue
    fi
    for ipc in $IPCS; do
      cell=$ds-$method-ipc$ipc
      [ -f "$OUT/$cell.json" ] && continue
      echo "== $cell"
      if [ ! -f "$RUNDIR/$cell/synthetic/meta.json" ]; then
        # shellcheck disable=SC2086  # the flags are words
        "$DDKIT" distill --dataset "$ds" --method "$method" --ipc "$ipc" --seed 0 --resume \
          --quiet --out "$RUNDIR/$cell" $ITER_FLAG
      fi
      # shellcheck disable=SC2086
      "$DDKIT" evaluate "$RUNDIR/$cell" --learners "$LEARNERS" --runs "$RUNS" --seed 0 --quiet \
        --out "$OUT/$cell.json" $EPOCHS_FLAG
    done
  done
done

"$PYTHON" - "$OUT" "${REPORT:-tabular.md}" <<'PY'
import json, sys
from pathlib import Path

rows, learners = [], []
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    results = json.loads(f.read_text())["results"]
    cells = {r["model"]: f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}" for r in results}
    learners += [m for m in cells if m not in learners]
    rows.append((f.stem, cells))
lines = ["| set | " + " | ".join(learners) + " |", "|---" * (len(learners) + 1) + "|"]
lines += [f"| {name} | " + " | ".join(c.get(m, "") for m in learners) + " |" for name, c in rows]
text = "\n".join(lines)
(Path(sys.argv[1]) / sys.argv[2]).write_text(text + "\n")
print(text)
PY
