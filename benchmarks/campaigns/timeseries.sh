#!/bin/sh
# Time series (issue 39; BENCHMARKS.md "Other kinds of data"): does a distilled set of series beat
# a coreset of the same size? For each UCR dataset (gunpoint: 50 / 150 series of 150 steps, 2
# classes; italypowerdemand: 67 / 1,029 of 24 steps, 2 classes; arrowhead: 36 / 175 of 251 steps,
# 3 classes; read from sktime's wheel, extra 'timeseries') and IPC (1, 10; arrowhead's classes
# hold 12 training series each, gunpoint's 24 and 26): random real series, herding,
# k-center (coresets) and dm, dc, kip, mtt (distillation), all on conv1d (the series default,
# with the series augmentation where the method augments), beside the full training split.
# Every set is evaluated by the learners time-series users use (ddkit evaluate --learners:
# MiniRocket + ridge, the 1-D nets conv1d and resnet1d under the 'series' protocol, k-NN), 5
# seeds where the learner is random. Distillation budgets: each method's default scaled to the
# data (the warning says how many), ITERATIONS=N to force one.
#
# The loop is benchmarks/campaigns/tabular.sh's with series defaults: results in
# benchmarks/results/timeseries/<dataset>-<method>-ipc<K>.json and <dataset>-full.json, the
# markdown table printed at the end and written to timeseries.md, run folders in
# runs/timeseries/; resumable. DATASETS, IPCS, METHODS, RUNS, EPOCHS, LEARNERS select a part or
# a smoke run, e.g.
#   DATASETS=italypowerdemand IPCS=1 METHODS="full random dm" RUNS=1 EPOCHS=5 ITERATIONS=2 LEARNERS=knn,conv1d OUT=/tmp/t RUNDIR=/tmp/r sh benchmarks/campaigns/timeseries.sh
# (the first rocket evaluation compiles MiniRocket with numba: a few minutes, cached after).
set -eu
export OUT="${OUT:-benchmarks/results/timeseries}"
export RUNDIR="${RUNDIR:-runs/timeseries}"
export DATASETS="${DATASETS:-gunpoint italypowerdemand arrowhead}"
export LEARNERS="${LEARNERS:-rocket,conv1d,resnet1d,knn}"
export REPORT=timeseries.md
unset DEB
exec sh "$(dirname "$0")/tabular.sh"
