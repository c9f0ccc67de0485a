"""Evaluation by networks (image sets, whatever their codec and labels: hard, soft, learned,
per-view): fresh networks under the recipe the set records, or a named protocol
(:func:`ddkit.eval.evaluate`), with a note before a long recorded recipe and a time budget that
cuts the protocol to what fits."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ddkit import distributed
from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.estimate import (
    LONG_EVALUATION_SECONDS,
    EvalEstimate,
    budget_cut,
    estimate_evaluation,
    long_recipe_notice,
    scaled_estimate,
)
from ddkit.eval.evaluate import RunPlan, evaluate
from ddkit.eval.evaluators.base import EvalRequest, Evaluation, Evaluator, register_evaluator
from ddkit.eval.groups import require_groups
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.recipe import network_mismatch, set_recipe
from ddkit.progress import ProgressSetting

#: This evaluator's name, which a modality names to be judged by it.
NETWORKS = "networks"
#: The protocol a long recorded recipe's notice suggests instead (resolved once, at import).
QUICKER_PROTOCOL = get_protocol("fast")


@dataclass(frozen=True)
class NetworkSettings:
    """What evaluation by networks takes of :class:`~ddkit.eval.evaluators.base.EvalSettings`
    (the fields of the same names)."""

    protocol: EvalProtocol | None = None
    models: str | Sequence[str] | None = None
    runs: int | None = None
    epochs: int | None = None
    seed: int = 0
    groups: bool = False
    precision: str | None = None
    compile: bool = False
    device: Any = None
    progress: ProgressSetting = False
    teacher: Any = None
    budget: float | str | None = None
    started: float | None = None


def by_networks(
    syn: SyntheticSet, test: ImageDataset, s: NetworkSettings, request: EvalRequest
) -> Evaluation:
    """Fresh networks under the set's recipe (said) or ``s.protocol``; a note when they are not
    the network the set was distilled with."""
    say = request.say
    recipe = set_recipe(syn)
    protocol = network_protocol(syn, s)
    if s.groups:  # refused before anything is timed or trained
        require_groups(test)
    if s.protocol is None:
        say(recipe.describe())
        if s.budget is None:  # a budget says itself what it fits
            _say_if_long(syn, test, s, protocol, say)
    note = network_mismatch(recipe, protocol.models)
    if note:
        say(note)
    plan = RunPlan(budget=s.budget, started=s.started, say=say)
    report = evaluate(
        syn, test, protocol, seed=s.seed, progress=s.progress, groups=s.groups,
        device=distributed.named_device(s.device), teacher=s.teacher, plan=plan,
    )  # fmt: skip
    p = report.protocol
    heading = (
        f"{syn.meta.get('method', '?')} on {request.test_name}, {len(syn)} images "
        f"({report.meta['bytes']['total']:,} bytes), protocol {p.name} "
        f"({p.epochs} epochs, lr {report.lr:g}, {arithmetic(report.meta)}{_cut(report.meta)}), "
        "final-epoch test accuracy:"
    )
    return Evaluation(report, heading)


def network_protocol(syn: SyntheticSet, s: NetworkSettings) -> EvalProtocol:
    """The protocol networks train under: the set's recipe or ``s.protocol``, with the models,
    runs, epochs and levers ``s`` names."""
    models = [m for m in s.models.split(",") if m] if isinstance(s.models, str) else s.models
    protocol = set_recipe(syn).protocol if s.protocol is None else s.protocol
    return protocol.with_(
        models=tuple(models) if models else None, runs=s.runs, epochs=s.epochs,
        precision=s.precision, compile=True if s.compile else None,
    )  # fmt: skip


def estimate_networks(syn: SyntheticSet, test: ImageDataset, s: NetworkSettings) -> EvalEstimate:
    """What :func:`by_networks` will cost here, from a warm-up
    (:func:`ddkit.eval.estimate.estimate_evaluation`)."""
    return estimate_evaluation(
        syn, test, network_protocol(syn, s), seed=s.seed, teacher=s.teacher,
        device=distributed.named_device(s.device),
    )  # fmt: skip


def _cut(meta: dict[str, Any]) -> str:
    """The heading's words for a protocol cut to fit a budget (none where it was not)."""
    record = meta.get("budget")
    if not record or not record["cut"]:
        return ""
    return f"; cut to fit a budget: {budget_cut(record)}"


def _say_if_long(
    syn: SyntheticSet,
    test: ImageDataset,
    s: NetworkSettings,
    protocol: EvalProtocol,
    say: Callable[[str], Any],
) -> None:
    """Say before a recorded recipe estimated past :data:`~ddkit.eval.estimate.
    LONG_EVALUATION_SECONDS` how long it will take here and how to shorten it (what the quicker
    protocol, ``fast`` on the same networks, takes: :func:`ddkit.eval.estimate.
    long_recipe_notice`). The warm-up that tells is short: eager, capped, and one epoch where
    that says the recipe is short."""
    with warnings.catch_warnings():  # the evaluation itself warns of what the warm-up meets
        warnings.simplefilter("ignore")
        est = estimate_evaluation(
            syn, test, protocol, seed=s.seed, teacher=s.teacher,
            device=distributed.named_device(s.device), compile_as_run=False,
            short_below=LONG_EVALUATION_SECONDS,
        )  # fmt: skip
    quicker = QUICKER_PROTOCOL.with_(models=est.protocol.models)
    note = long_recipe_notice(est, scaled_estimate(est, quicker))
    if note:
        say(note)


def arithmetic(meta: dict[str, Any]) -> str:
    """How a run computed (:mod:`ddkit.levers`), as its meta records it: e.g. "bf16, compiled"."""
    words = [str(meta.get("precision", "fp32"))] + (["compiled"] if meta.get("compile") else [])
    return ", ".join(words)


register_evaluator(
    Evaluator(NETWORKS, "networks", NetworkSettings, by_networks, estimate=estimate_networks)
)
