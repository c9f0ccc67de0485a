"""Evaluation by learners (tables and series, and any set whose evaluator gives way to named
``--learners``): learners trained on the set's rows (:func:`ddkit.eval.learners.
evaluate_learners`; :data:`~ddkit.eval.learners.DEFAULT_LEARNERS` on tables, their series kin on
series)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.evaluators.base import (
    EvalRequest,
    Evaluation,
    Evaluator,
    register_evaluator,
)
from ddkit.eval.learners import evaluate_learners

#: This evaluator's name, which a modality names to be judged by it, and which named
#: ``--learners`` call for.
LEARNERS = "learners"


@dataclass(frozen=True)
class LearnerSettings:
    """``learners`` (names, or comma-separated; ``None``: the modality's own), the runs of the
    random ones (``None``: five), the ``mlp`` learner's epochs and the seed."""

    learners: str | Sequence[str] | None = None
    runs: int | None = None
    epochs: int | None = None
    seed: int = 0


def by_learners(
    syn: SyntheticSet, test: ImageDataset, s: LearnerSettings, request: EvalRequest
) -> Evaluation:
    """Learners trained on the set's rows, tested on the real ``test`` split."""
    runs = {} if s.runs is None else {"runs": s.runs}
    report = evaluate_learners(syn, test, s.learners, seed=s.seed, epochs=s.epochs, **runs)
    heading = (
        f"{syn.meta.get('method', '?')} on {request.test_name}, {len(syn)} rows, learners "
        "trained on them (mean ± std over seeds where the learner is random), test accuracy:"
    )
    return Evaluation(report, heading)


register_evaluator(
    Evaluator(
        LEARNERS,
        "learners",
        LearnerSettings,
        by_learners,
        fixes={"models": "name networks in --learners"},
    )  # fmt: skip
)
