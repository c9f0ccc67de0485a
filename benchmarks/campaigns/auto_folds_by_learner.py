"""Each learner's validation accuracy of a set over ``--method auto``'s folds, beside its test
accuracy (issue 87): does the validation of a small dataset see what the test split sees?

For each method, the set is made on every fold's fit rows as the tournament makes it (the
method's defaults, ``--iterations`` for a distiller) and scored on that fold's held-out rows by
every learner of the modality under the tournament's recipe (2 runs of 100 epochs); then made on
the whole training split and scored on the test split by the same learners and recipe. The test
split is read only for that last row; nothing here is chosen on it.

    python benchmarks/campaigns/auto_folds_by_learner.py --dataset gunpoint --ipc 1 \\
        --methods random,kip --out benchmarks/results/auto/diagnostics/gunpoint-ipc1-folds-by-learner.json
"""

from __future__ import annotations

import argparse
import statistics
import warnings

from resume import results_header

from ddkit.data.builtin import load_dataset
from ddkit.eval.dispatch import EvalSettings, evaluate_set
from ddkit.eval.learners import learner_names
from ddkit.io import atomic_write_json
from ddkit.methods.auto import runner as scoring
from ddkit.methods.auto.validation import carve_folds
from ddkit.methods.base import create_method


def scores(syn, rows, learners: str) -> dict[str, float]:
    """Each learner's mean accuracy of ``syn`` on ``rows`` under the tournament's recipe."""
    settings = EvalSettings(runs=scoring.VAL_RUNS, epochs=scoring.VAL_EPOCHS, seed=0,
                            learners=learners)  # fmt: skip
    return {r.model: r.mean for r in evaluate_set(syn, rows, settings).report.results}


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--dataset", default="gunpoint")
    a.add_argument("--ipc", type=int, default=1)
    a.add_argument("--methods", default="random,kip")
    a.add_argument("--iterations", type=int, default=100, help="a distiller's")
    a.add_argument("--out", required=True)
    args = a.parse_args(argv)
    warnings.filterwarnings("ignore")
    data = load_dataset(args.dataset)
    splits = carve_folds(data.train, args.ipc, seed=0)
    learners = ",".join(learner_names(None, data.train.spec.kind.name))
    result = results_header("campaigns/auto_folds_by_learner.py", argv, vars(args))
    result["folds"], result["val_rows"] = len(splits), sum(len(s.val) for s in splits)
    result["rows"] = []
    for name in args.methods.split(","):

        def make(train, name=name):
            method = create_method(name, dataset=args.dataset, ipc=args.ipc,
                                   modality=train.spec.kind.name)  # fmt: skip
            its = (
                {} if name in ("random", "herding", "kcenter") else {"iterations": args.iterations}
            )
            return method.fit(train, args.ipc, seed=0, progress=False, **its)

        folds = [scores(make(s.fit), s.val, learners) for s in splits]
        val = {k: statistics.fmean(f[k] for f in folds) for k in folds[0]}
        test = scores(make(data.train), data.test, learners)
        result["rows"].append({
            "method": name,
            "validation": val | {"mean": statistics.fmean(val.values())},
            "test": test | {"mean": statistics.fmean(test.values())},
        })  # fmt: skip
        print(name, {k: round(100 * v, 1) for k, v in result["rows"][-1]["validation"].items()},
              {k: round(100 * v, 1) for k, v in result["rows"][-1]["test"].items()})  # fmt: skip
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
