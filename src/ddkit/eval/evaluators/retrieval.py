"""Evaluation by image-text retrieval (image-text pairs): dual encoders trained on the set's
pairs, recall@1/5/10 both ways on the test pairs, beside random real pairs and the full data
(:func:`ddkit.eval.retrieval.evaluate_retrieval`)."""

from __future__ import annotations

from typing import Any

from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.evaluators.base import (
    EvalRequest,
    Evaluation,
    Evaluator,
    SeededRuns,
    register_evaluator,
)
from ddkit.eval.retrieval import RETRIEVAL, evaluate_retrieval


def _frozen(meta: dict[str, Any]) -> str:
    return (
        " (towers pretrained and frozen, heads trained)"
        if meta.get("towers") == "pretrained"
        else ""
    )


def by_retrieval(syn: SyntheticSet, test: Any, s: SeededRuns, request: EvalRequest) -> Evaluation:
    """Dual encoders trained on the set's image-text pairs, recall@1/5/10 both ways on the test
    pairs, beside random real pairs and the full data where ``request.train`` is given."""
    train = request.train
    report = evaluate_retrieval(syn, test, train, runs=s.runs, epochs=s.epochs, seed=s.seed)
    heading = (
        f"{syn.meta.get('method', '?')} on {request.test_name}, {len(syn)} image-text pairs, "
        f"dual encoders trained on them{_frozen(report.meta)} ({report.recipe.epochs} epochs, lr "
        f"{report.recipe.lr:g}), recall@k (%) on the test pairs both ways (i2t: image to text), "
        "mean ± std over seeds"
        + (", beside random real pairs and the full data:" if train is not None else ":")
    )
    return Evaluation(report, heading)


#: Named ``--learners`` do not judge pairs: a pair is no class.
register_evaluator(
    Evaluator(RETRIEVAL, "image-text retrieval", SeededRuns, by_retrieval, gives_way=False)
)
