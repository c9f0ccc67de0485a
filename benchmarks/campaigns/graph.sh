#!/bin/sh
# Graphs (issue 39; BENCHMARKS.md "Other kinds of data"): does a condensed graph beat random real
# nodes of the same size? For each generated graph (sbm: 4 classes x 150 nodes, 16 features;
# sbm-large: 6 classes x 500 nodes; seeded stochastic block models, extra 'graph') and IPC
# (nodes per class; the default run: sbm), gcond and doscond (each method's preset for the graph, its source in
# `ddkit list --presets gcond`) and the kcenter coreset (its nodes' induced subgraph). Each set is
# evaluated by `ddkit evaluate` under the 'graph' protocol (a 2-layer GCN trained on the set's
# nodes and adjacency, tested on the real graph's test nodes, 600 epochs, final epoch, 5 seeds),
# which also trains the same GCN on random real nodes of the same size (their induced subgraph,
# redrawn per seed) and on the full graph: every row carries its own baselines.
#
# Results: benchmarks/results/graph/<dataset>-<method>-ipc<K>.json (ddkit evaluate's report) and
# a markdown table printed at the end (also graph.md). Run folders: runs/graph/. Resumable: a
# finished evaluation is skipped. DATASETS, IPCS, METHODS, RUNS, EPOCHS, ITERATIONS select a part
# or a smoke run, e.g.
#   DATASETS=sbm-small IPCS=2 METHODS=doscond RUNS=1 EPOCHS=5 ITERATIONS=2 OUT=/tmp/g RUNDIR=/tmp/gr sh benchmarks/campaigns/graph.sh
set -eu
# exact mode (ddkit.levers): float32, eager, as every row already in the results was measured;
# DDKIT_EXACT=0 to measure the fast defaults instead
export DDKIT_EXACT="${DDKIT_EXACT:-1}"
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
OUT=${OUT:-benchmarks/results/graph}
RUNDIR=${RUNDIR:-runs/graph}
DATASETS=${DATASETS:-sbm}
IPCS=${IPCS:-1 5 10}
METHODS=${METHODS:-gcond doscond kcenter}
RUNS=${RUNS:-5}
EPOCHS_FLAG=${EPOCHS:+--epochs $EPOCHS}
ITER_FLAG=${ITERATIONS:+--iterations $ITERATIONS}

mkdir -p "$OUT"
for ds in $DATASETS; do
  for ipc in $IPCS; do
    for method in $METHODS; do
      cell=$ds-$method-ipc$ipc
      [ -f "$OUT/$cell.json" ] && continue
      echo "== $cell"
      if [ ! -f "$RUNDIR/$cell/synthetic/meta.json" ]; then
        # shellcheck disable=SC2086  # the flags are words
        "$DDKIT" distill --dataset "$ds" --method "$method" --ipc "$ipc" --seed 0 --resume \
          --quiet --out "$RUNDIR/$cell" $ITER_FLAG
      fi
      # shellcheck disable=SC2086
      "$DDKIT" evaluate "$RUNDIR/$cell" --runs "$RUNS" --seed 0 --quiet --out "$OUT/$cell.json" \
        $EPOCHS_FLAG
    done
  done
done

"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

def cell(r):
    return f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"

lines = ["| set | nodes | GCN on the set (%) | random real nodes (%) | full graph (%) |",
         "|---|---|---|---|---|"]
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    report = json.loads(f.read_text())
    rows = report["results"]
    lines.append(f"| {f.stem} | {report['num_train_images']} | "
                 + " | ".join(cell(r) for r in rows[:3]) + " |")
text = "\n".join(lines)
(Path(sys.argv[1]) / "graph.md").write_text(text + "\n")
print(text)
PY
