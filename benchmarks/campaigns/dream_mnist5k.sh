#!/bin/sh
# DREAM (representative real batches; Liu et al., ICCV 2023) against random real batches at
# mnist5k IPC 10 (issue 40, "Convergence at CPU budgets"): validation accuracy per distillation
# iteration and per CPU second for dc, dsa and dm, each with real_batch=random (the published
# sampling) and with real_batch=dream + init=dream (DREAM's batches and start; interval 10, one
# cluster per batch row, as the authors' code). Method options are the mnist5k presets (ConvNet-3
# width 32, the published loops, lr and batch sizes). Every milestone's set is evaluated on a
# stratified 20 % validation split carved from the train split (seed 0; the test split is never
# read): protocol dsa, 300 epochs, 3 networks of the distillation model, final-epoch accuracy.
#
# Results: benchmarks/results/dream_mnist5k.json (rows: method, batch, iteration, cpu_seconds,
# wall_seconds, val_mean, val_std). Resumable: per-cell rows and checkpoints in
# runs/dream-mnist5k/; a finished milestone is skipped, a run continues from its last milestone.
# METHODS, BATCHES, MATCH_STOPS (dc and dsa) and DM_STOPS select a part, e.g.
#   METHODS=dm BATCHES=dream sh benchmarks/campaigns/dream_mnist5k.sh
set -eu
# exact mode (ddkit.levers): float32, eager, as every row already in the results was measured;
# DDKIT_EXACT=0 to measure the fast defaults instead
export DDKIT_EXACT="${DDKIT_EXACT:-1}"
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
DATASET=${DATASET:-mnist5k}
METHODS=${METHODS:-dc,dsa,dm}
BATCHES=${BATCHES:-random,dream}
MATCH_STOPS=${MATCH_STOPS:-1,2,5,10,20,40}  # dc / dsa outer iterations (the suites run 20)
DM_STOPS=${DM_STOPS:-50,100,200,500,1000}  # dm iterations (the standard suite runs 1000)
RUNS=${RUNS:-3}
EPOCHS=${EPOCHS:-300}
OUT=${OUT:-benchmarks/results/dream_mnist5k.json}
WORK=${WORK:-runs/dream-mnist5k}
exec "$PYTHON" benchmarks/studies/dream_curve.py --dataset "$DATASET" --ipc "${IPC:-10}" \
  --methods "$METHODS" --batches "$BATCHES" \
  --milestones "dc=$MATCH_STOPS" --milestones "dsa=$MATCH_STOPS" --milestones "dm=$DM_STOPS" \
  --runs "$RUNS" --epochs "$EPOCHS" --work "$WORK" --out "$OUT"
