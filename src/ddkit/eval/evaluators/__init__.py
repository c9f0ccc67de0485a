"""The evaluators, one module each, registered in :data:`~ddkit.eval.evaluators.base.EVALUATORS`
(:mod:`ddkit.eval.evaluators.base` gives the contract): ``networks`` (images), ``learners``
(tables, series, and any set when ``--learners`` are named), ``gcn`` (graphs) and ``retrieval``
(image-text pairs). A modality names the one that judges its sets
(:attr:`~ddkit.data.modalities.base.Modality.evaluator`); :func:`ddkit.eval.dispatch.
evaluate_set` looks it up. A new evaluator is one module here that registers itself, found by
walking this package."""

from ddkit.eval.evaluators.base import (
    AMBIENT,
    EVALUATORS,
    EvalRequest,
    EvalSettings,
    Evaluation,
    Evaluator,
    SeededRuns,
    own_settings,
    register_evaluator,
)
from ddkit.registry import import_submodules

import_submodules(__name__)  # each module registers its evaluator

__all__ = [
    "AMBIENT",
    "EVALUATORS",
    "EvalRequest",
    "EvalSettings",
    "Evaluation",
    "Evaluator",
    "SeededRuns",
    "own_settings",
    "register_evaluator",
]
