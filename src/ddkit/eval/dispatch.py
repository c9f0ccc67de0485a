"""One entry for every set: :func:`evaluate_set` looks up the evaluator a set's modality names
(:attr:`~ddkit.data.modalities.base.Modality.evaluator`, one of :data:`EVALUATORS`) and returns
its report, with the line that says what was measured:

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

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ddkit import distributed
from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.estimate import (
    LONG_EVALUATION_SECONDS,
    EvalEstimate,
    budget_cut,
    estimate_evaluation,
    long_recipe_notice,
    scaled_estimate,
)
from ddkit.eval.evaluate import EvalReport, RunPlan, evaluate
from ddkit.eval.graph import GCN
from ddkit.eval.groups import require_groups
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.recipe import network_mismatch, set_recipe
from ddkit.eval.retrieval import RETRIEVAL
from ddkit.progress import ProgressSetting


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate a set; ``None`` leaves a choice to the set and its evaluator.

    ``protocol`` (a protocol, resolved at the door: :func:`~ddkit.eval.protocol.get_protocol`
    turns a name into one; default: the set's recipe), ``models`` (names, or comma-separated),
    ``groups``, ``precision``, ``compile``, ``device`` (a torch device or its name; default:
    the session's) and ``progress`` are for evaluation by networks; ``learners`` (names, or
    comma-separated) evaluates by learners instead. ``runs`` and ``epochs`` override the
    evaluator's; the same ``seed`` gives the same report. ``teacher`` (a module, a folder or a
    network source such as ``file:PATH``; default: the set's) serves protocols whose targets
    come from a teacher. ``budget`` (seconds, or ``"30m"``), counted from ``started`` (a
    :func:`time.monotonic` reading; default: when the evaluation begins), cuts the networks'
    protocol to what fits (:func:`ddkit.eval.evaluate`).
    """

    protocol: EvalProtocol | None = None
    models: str | Sequence[str] | None = None
    learners: str | Sequence[str] | None = None
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


@dataclass
class Evaluation:
    """An evaluation's report and the heading that says what it measured."""

    report: EvalReport
    heading: str

    def text(self) -> str:
        """The heading above the report's table, as ``ddkit evaluate`` prints them."""
        return f"{self.heading}\n{self.report.table()}"


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
    that train baselines on real data beside the set (image-text retrieval). Flags of the
    networks' evaluation given to learners are refused in one line, before any training."""
    s = settings or EvalSettings()
    name = test_name or test.spec.name
    evaluator = evaluator_for(syn, s)
    if s.budget is not None and evaluator != NETWORKS:
        raise ConfigError(
            "--budget cuts evaluation by networks of image sets; this set is evaluated by "
            "learners, a GCN or retrieval, whose runs and epochs --runs and --epochs set: drop "
            "--budget"
        )
    return EVALUATORS[evaluator].run(syn, test, s, name, train, say or _silent)


def _silent(_note: str) -> None:
    pass


def _by_networks(
    syn: SyntheticSet,
    test: ImageDataset,
    s: EvalSettings,
    name: str,
    train: Any,
    say: Callable[[str], Any],
) -> Evaluation:
    """Fresh networks under the set's recipe (said) or ``s.protocol``; a note when they are not
    the network the set was distilled with."""
    recipe = set_recipe(syn)
    protocol = _network_protocol(syn, s)
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
        f"{syn.meta.get('method', '?')} on {name}, {len(syn)} images "
        f"({report.meta['bytes']['total']:,} bytes), protocol {p.name} "
        f"({p.epochs} epochs, lr {report.lr:g}, {arithmetic(report.meta)}{_cut(report.meta)}), "
        "final-epoch test accuracy:"
    )
    return Evaluation(report, heading)


def _network_protocol(syn: SyntheticSet, s: EvalSettings) -> EvalProtocol:
    """The protocol networks train under: the set's recipe or ``s.protocol``, with the models,
    runs, epochs and levers ``s`` names."""
    models = [m for m in s.models.split(",") if m] if isinstance(s.models, str) else s.models
    protocol = set_recipe(syn).protocol if s.protocol is None else s.protocol
    return protocol.with_(
        models=tuple(models) if models else None, runs=s.runs, epochs=s.epochs,
        precision=s.precision, compile=True if s.compile else None,
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
    s: EvalSettings,
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
    quicker = get_protocol(QUICKER_PROTOCOL).with_(models=est.protocol.models)
    note = long_recipe_notice(est, scaled_estimate(est, quicker))
    if note:
        say(note)


#: The protocol a long recorded recipe's notice suggests instead.
QUICKER_PROTOCOL = "fast"


def estimate_set(
    syn: SyntheticSet, test: ImageDataset, settings: EvalSettings | None = None
) -> EvalEstimate:
    """What :func:`evaluate_set` with ``settings`` will cost here, from a warm-up
    (:func:`ddkit.eval.estimate.estimate_evaluation`; ``ddkit evaluate --dry-run``): only for
    evaluation by networks, refused in one line for the others."""
    s = settings or EvalSettings()
    if evaluator_for(syn, s) != NETWORKS:
        raise ConfigError(
            "--dry-run estimates evaluation by networks of image sets; this set is evaluated by "
            "learners or a GCN, which take seconds: run it without --dry-run"
        )
    return estimate_evaluation(
        syn, test, _network_protocol(syn, s), seed=s.seed, teacher=s.teacher,
        device=distributed.named_device(s.device),
    )  # fmt: skip


def _by_learners(
    syn: SyntheticSet, test: ImageDataset, s: EvalSettings, name: str, train: Any, say: Any
) -> Evaluation:
    """Learners trained on the set's rows (:data:`~ddkit.eval.learners.DEFAULT_LEARNERS` on
    tables, their series kin on series)."""
    from ddkit.eval.learners import evaluate_learners

    _refuse_network_settings(s, syn.spec.modality)
    runs = {} if s.runs is None else {"runs": s.runs}
    report = evaluate_learners(syn, test, s.learners, seed=s.seed, epochs=s.epochs, **runs)
    heading = (
        f"{syn.meta.get('method', '?')} on {name}, {len(syn)} rows, learners trained on them "
        "(mean ± std over seeds where the learner is random), test accuracy:"
    )
    return Evaluation(report, heading)


def _by_gcn(
    syn: SyntheticSet, test: ImageDataset, s: EvalSettings, name: str, train: Any, say: Any
) -> Evaluation:
    """A GCN on the set's nodes, beside random real nodes and the full graph."""
    from ddkit.eval.graph import evaluate_graph

    runs = {"runs": s.runs} if s.runs else {}  # 0 runs: the evaluator's default, as unset
    report = evaluate_graph(syn, test, seed=s.seed, epochs=s.epochs, **runs)
    heading = (
        f"{syn.meta.get('method', '?')} on {name}, {len(syn)} nodes (adjacency: "
        f"{report.meta['adjacency']}), a GCN trained on them and tested on the real graph's "
        f"test nodes ({report.meta['epochs']} epochs, final-epoch accuracy, mean ± std over "
        "seeds), beside random real nodes of the same size and the full graph:"
    )
    return Evaluation(report, heading)


def _by_retrieval(
    syn: SyntheticSet, test: Any, s: EvalSettings, name: str, train: Any, say: Any
) -> Evaluation:
    """Dual encoders trained on the set's image-text pairs, recall@1/5/10 both ways on the test
    pairs, beside random real pairs and the full data."""
    from ddkit.eval.retrieval import evaluate_retrieval

    flags = {"--protocol": s.protocol, "--models": s.models, "--learners": s.learners,
             "--groups": s.groups, "--precision": s.precision, "--compile": s.compile}  # fmt: skip
    given = [flag for flag, value in flags.items() if value]
    if given:
        raise ConfigError(
            f"{given[0]} does not apply to a paired set, which is judged by image-text retrieval "
            "(--runs, --epochs and --seed do); drop it"
        )
    report = evaluate_retrieval(syn, test, train, runs=s.runs, epochs=s.epochs, seed=s.seed)
    heading = (
        f"{syn.meta.get('method', '?')} on {name}, {len(syn)} image-text pairs, dual encoders "
        f"trained on them ({report.recipe.epochs} epochs, lr {report.recipe.lr:g}), recall@k "
        "(%) on the test pairs both ways (i2t: image to text), mean ± std over seeds"
        + (", beside random real pairs and the full data:" if train is not None else ":")
    )
    return Evaluation(report, heading)


def _refuse_network_settings(s: EvalSettings, modality: str) -> None:
    """Settings of the networks' evaluation that learners would ignore are refused, in one
    line, named by their flags."""
    flags = {"--protocol": s.protocol, "--models": s.models, "--groups": s.groups,
             "--precision": s.precision, "--compile": s.compile,
             "--teacher": s.teacher}  # fmt: skip
    given = [flag for flag, value in flags.items() if value]
    if given:
        fix = "name networks in --learners" if given[0] == "--models" else "drop it"
        raise ConfigError(
            f"{given[0]} is for evaluation by networks, but learners evaluate this {modality} "
            f"set (--learners, the default on rows other than images); {fix}"
        )


@dataclass(frozen=True)
class Evaluator:
    """How :func:`evaluate_set` runs one evaluator: ``run(syn, test, settings, test_name,
    train, say)`` (``train``: the real train split, for evaluators that train baselines on it;
    ``say``: receives the notes given before training); ``gives_way``: named ``--learners``
    evaluate the set instead."""

    run: Callable[..., Evaluation]
    gives_way: bool = True


#: The evaluator a set's rows call for is named by its modality
#: (:attr:`~ddkit.data.modalities.base.Modality.evaluator`).
NETWORKS, LEARNERS = "networks", "learners"
#: The evaluators by name.
EVALUATORS: dict[str, Evaluator] = {
    NETWORKS: Evaluator(_by_networks),
    LEARNERS: Evaluator(_by_learners),
    GCN: Evaluator(_by_gcn),
    RETRIEVAL: Evaluator(_by_retrieval, gives_way=False),
}


def evaluator_for(syn: SyntheticSet, settings: EvalSettings) -> str:
    """The name of the evaluator that judges ``syn`` under ``settings``: its modality's, or
    the learners where they are named and that evaluator gives way to them."""
    name = syn.spec.kind.evaluator
    if name not in EVALUATORS:
        raise ConfigError(f"modality {syn.spec.modality!r} names unknown evaluator {name!r}")
    return LEARNERS if settings.learners is not None and EVALUATORS[name].gives_way else name


def arithmetic(meta: dict[str, Any]) -> str:
    """How a run computed (:mod:`ddkit.levers`), as its meta records it: e.g. "bf16, compiled"."""
    words = [str(meta.get("precision", "fp32"))] + (["compiled"] if meta.get("compile") else [])
    return ", ".join(words)
