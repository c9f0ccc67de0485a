"""One entry for every set: :func:`evaluate_set` looks up the evaluator a set's modality names
(:attr:`~ddkit.data.modalities.base.Modality.evaluator`, one of
:data:`~ddkit.eval.evaluators.EVALUATORS`, a module of :mod:`ddkit.eval.evaluators` each), takes
from the settings what that evaluator accepts (refusing in one line what it does not) and
returns its report, with the line that says what was measured:

- ``gcn`` (graphs): a GCN trained on the set's nodes and adjacency, beside random real nodes
  and the full graph (:func:`ddkit.eval.graph.evaluate_graph`);
- ``learners`` (tables, series), and any set whose evaluator gives way to them when learners
  are named: learners trained on its rows (:func:`ddkit.eval.learners.evaluate_learners`);
- ``networks`` (images, whatever their codec and labels: hard, soft, learned, per-view): fresh
  networks under the recipe the set records, or a named protocol (:func:`ddkit.eval.evaluate`);
- ``retrieval`` (image-text pairs): dual encoders, recall@k both ways
  (:func:`ddkit.eval.retrieval.evaluate_retrieval`).

``ddkit evaluate`` is this function over a saved set (:func:`ddkit.runs.open_saved_set`), its
flags being :class:`EvalSettings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.estimate import EvalEstimate
from ddkit.eval.evaluators import (
    EVALUATORS,
    EvalRequest,
    EvalSettings,
    Evaluation,
    Evaluator,
    own_settings,
)
from ddkit.eval.evaluators.learners import LEARNERS
from ddkit.eval.evaluators.networks import arithmetic

__all__ = [
    "EvalSettings",
    "Evaluation",
    "arithmetic",
    "estimate_set",
    "evaluate_set",
    "evaluator_for",
]


def evaluate_set(
    syn: SyntheticSet,
    test: ImageDataset,
    settings: EvalSettings | None = None,
    *,
    say: Callable[[str], Any] | None = None,
    test_name: str | None = None,
    train: Any = None,
) -> Evaluation:
    """Evaluate ``syn`` (any modality) on the real ``test`` split with the evaluator its rows
    call for (see the module's docstring). ``say`` receives the notes given before training (the
    recipe chosen, a network other than the set's own); ``test_name`` names the test data in
    the heading (default: its spec's name). ``train`` (the real train split) serves evaluators
    that train baselines on real data beside the set (image-text retrieval). A setting the
    evaluator does not take (a networks' flag given to learners) is refused in one line, before
    any training."""
    s = settings or EvalSettings()
    evaluator = evaluator_for(syn, s)
    name = test_name or test.spec.name
    request = EvalRequest(name, train) if say is None else EvalRequest(name, train, say)
    return evaluator.run(syn, test, own_settings(evaluator, s, _this_set(syn)), request)


def estimate_set(
    syn: SyntheticSet, test: ImageDataset, settings: EvalSettings | None = None
) -> EvalEstimate:
    """What :func:`evaluate_set` with ``settings`` will cost here, from a warm-up
    (``ddkit evaluate --dry-run``): for evaluators that give an estimate (networks:
    :func:`ddkit.eval.estimate.estimate_evaluation`), refused in one line for the others."""
    s = settings or EvalSettings()
    evaluator = evaluator_for(syn, s)
    own = own_settings(evaluator, s, _this_set(syn))
    if evaluator.estimate is None:
        which = " or ".join(e.judges for e in map(EVALUATORS.get, EVALUATORS) if e.estimate)
        raise ConfigError(
            f"--dry-run estimates evaluation by {which}; {_this_set(syn)} is judged by "
            f"{evaluator.judges}, which takes seconds: run it without --dry-run"
        )
    return evaluator.estimate(syn, test, own)


def evaluator_for(syn: SyntheticSet, settings: EvalSettings) -> Evaluator:
    """The evaluator that judges ``syn`` under ``settings``: its modality's, or the learners
    where they are named and that evaluator gives way to them."""
    name = syn.spec.kind.evaluator
    if name not in EVALUATORS:
        raise ConfigError(f"modality {syn.spec.modality!r} names unknown evaluator {name!r}")
    own = EVALUATORS.get(name)
    return EVALUATORS.get(LEARNERS) if settings.learners is not None and own.gives_way else own


def _this_set(syn: SyntheticSet) -> str:
    """How a refusal names the set: "this table set"."""
    return f"this {syn.spec.kind.name} set"
