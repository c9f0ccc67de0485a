"""`evaluate`: the one honest evaluation protocol for every synthetic set.

R fresh networks per model are trained on the set and tested once, at the final epoch, on the
real test split. The report holds every run's accuracy and seed, mean and standard deviation.
"""

from __future__ import annotations

import statistics
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ddkit import distributed
from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, warn_at_caller
from ddkit.eval.estimate import BudgetFit, estimate_evaluation, fit_budget
from ddkit.eval.groups import GROUP_METRICS, group_accuracy, require_groups
from ddkit.eval.prepare import (  # noqa: F401  (re-exported: their home before ddkit.eval.prepare)
    TrainingData,
    run_seeds,
    test_in_set_space,
    train_model,
    training_data,
    with_changes,
)
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.recipe import set_recipe
from ddkit.eval.train import (
    TrainRecipe,
    TrainResult,
    accuracy,
    fraction_correct,
    predicted_classes,
)
from ddkit.progress import Progress, ProgressSetting, parse_duration, to_stderr


class Report(ABC):
    """What every evaluator returns (:mod:`ddkit.eval.evaluators`): ``ddkit evaluate`` prints
    :meth:`table` below its heading and writes :meth:`to_dict` to ``eval.json``."""

    @abstractmethod
    def table(self) -> str:
        """The results as the fixed-width table ``ddkit evaluate`` prints."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The results as JSON-ready values (``eval.json``)."""


@dataclass
class ModelResult:
    model: str
    accuracies: list[float]
    seeds: list[int]
    train_seconds: float
    images_per_second: float
    vectorized: bool
    train_accuracies: list[float] = field(default_factory=list)
    # per-group accuracies on a biased dataset (evaluate(groups=True)): metric -> one per run
    groups: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return _std(self.accuracies)

    def group_summary(self) -> dict[str, dict[str, Any]]:
        """Per group metric: the runs' accuracies, their mean and standard deviation."""
        return {
            name: {"accuracies": accs, "mean": statistics.fmean(accs), "std": _std(accs)}
            for name, accs in self.groups.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "accuracies": self.accuracies,
            "seeds": self.seeds,
            "mean": self.mean,
            "std": self.std,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second,
            "vectorized": self.vectorized,
            "train_accuracies": self.train_accuracies,
            **({"groups": self.group_summary()} if self.groups else {}),
        }


def _std(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


@dataclass
class EvalReport(Report):
    """Per-model accuracies of fresh networks (or learners, or a GCN) trained on a set."""

    protocol: EvalProtocol
    lr: float
    num_train_images: int
    results: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def result(self, model: str) -> ModelResult:
        for r in self.results:
            if r.model == model:
                return r
        raise KeyError(model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.to_dict(),
            "lr": self.lr,
            "num_train_images": self.num_train_images,
            "seconds": self.seconds,
            "results": [r.to_dict() for r in self.results],
            "meta": self.meta,
        }

    def table(self) -> str:
        lines = [f"{'model':<16} {'accuracy (%)':>16}  runs", "-" * 40]
        for r in self.results:
            lines.append(
                f"{r.model:<16} {100 * r.mean:>8.2f} ± {100 * r.std:<5.2f}  {len(r.accuracies)}"
            )
            for name, g in r.group_summary().items():
                lines.append(f"  {name:<14} {100 * g['mean']:>8.2f} ± {100 * g['std']:.2f}")
        return "\n".join(lines)


def _test_model(
    name: str,
    res: TrainResult,
    syn: SyntheticSet,
    fresh: FreshNetworks,
    precision: str,
    groups: bool = False,
) -> ModelResult:
    """Test each of the ``name`` networks once on the real test split (and on their own
    training images, to see whether they fit them); with ``groups``, per group of the test
    split's bias attributes too."""
    test, p = fresh.test, fresh.protocol
    preds = [predicted_classes(net, test.images, precision=precision) for net in res.models]
    accs = [fraction_correct(pred, test.labels) for pred in preds]
    fits = [accuracy(net, syn.images, syn.hard_labels, precision=precision) for net in res.models]
    _warn_if_underfit(name, fits, p)
    ips = res.images_seen / max(res.seconds, 1e-9)
    result = ModelResult(name, accs, fresh.seeds, res.seconds, ips, res.vectorized, fits)
    if groups:
        per_run = [group_accuracy(pred, test.labels, require_groups(test)) for pred in preds]
        result.groups = {m: [run[m] for run in per_run] for m in GROUP_METRICS}
    return result


UNDERFIT_TRAIN_ACCURACY = 0.5
"""Below this mean accuracy on their own (unaugmented) training images, the trained networks
are reported as under-trained: their test accuracy then measures the recipe, not the set."""


def _warn_if_underfit(model: str, train_accuracies: list[float], p: EvalProtocol) -> None:
    fit = statistics.fmean(train_accuracies)
    if fit < UNDERFIT_TRAIN_ACCURACY:
        other = "" if model.startswith("convnet") else " or a model with normalisation (convnet)"
        warn_at_caller(
            f"{model} fits only {100 * fit:.0f} % of its own training images after "
            f"{p.epochs} epochs of protocol '{p.name}': it is under-trained, so its test "
            f"accuracy says more about the recipe than the set; give it more epochs "
            f"(--protocol dc, or epochs=N){other}"
        )


@dataclass
class FreshNetworks:
    """Networks trained on a set as an evaluation protocol trains them, before any test: per
    model of the protocol, its :class:`TrainResult` (``protocol.runs`` networks, or those of
    ``run_indices``), with what they were trained from and the real test split in the set's
    space (its normalisation and recorded transform), which is what the networks expect."""

    protocol: EvalProtocol
    lr: float
    data: TrainingData
    test: ImageDataset
    seeds: list[int]
    results: dict[str, TrainResult] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class RunPlan:
    """Which of an evaluation's runs one call trains, and how.

    By default all of them. ``run_indices``: only those of the protocol's runs, each from the
    seed it has in the whole evaluation: networks trained one after another (the CPU default)
    then reach the accuracies they reach there, so an evaluation can be split over processes
    or sessions. ``budget``: as many as fit a time budget (seconds, or ``"30m"``:
    :func:`ddkit.progress.parse_duration`, parsed here, before any work) counted from
    ``started`` (a :func:`time.monotonic` reading; default: when the evaluation begins): a
    warm-up measures the cost here (:func:`ddkit.eval.estimate.estimate_evaluation`) and the
    protocol is cut to what fits, fewer runs first, then fewer epochs
    (:func:`~ddkit.eval.estimate.fit_budget`); ``say`` (default: standard error) gets the one
    line that says what was chosen and why. A budget chooses the runs itself: beside
    ``run_indices`` it is refused in one line. ``vectorize``: ``True`` trains a model's
    networks together with ``vmap``, ``False`` one after another, ``None`` by device
    (:func:`~ddkit.eval.train.train_networks`).
    """

    run_indices: Sequence[int] | None = None
    budget: float | str | None = None
    started: float | None = None
    say: Callable[[str], Any] | None = None
    vectorize: bool | None = None

    def __post_init__(self) -> None:
        if self.budget is not None:
            object.__setattr__(self, "budget", parse_duration(self.budget))
        if self.run_indices is not None:
            if self.budget is not None:
                raise ConfigError(
                    "budget= chooses the runs itself; pass budget= or run_indices=, not both"
                )
            object.__setattr__(self, "run_indices", tuple(self.run_indices))


def train_fresh_networks(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol = "dsa",
    *,
    seed: int = 0,
    teacher: Any = None,
    device: torch.device | str = "cpu",
    progress: ProgressSetting = "auto",
    plan: RunPlan | None = None,
    **changes: Any,
) -> FreshNetworks:
    """Train the fresh networks :func:`evaluate` tests (the arguments are :func:`evaluate`'s;
    of a ``plan``, its ``run_indices`` and ``vectorize``: a budget cuts an evaluation, and is
    refused here) and return them untested, e.g. to attack them (``ddkit.audits``)."""
    plan = plan or RunPlan()
    if plan.budget is not None:
        raise ConfigError(
            "a budget cuts an evaluation (ddkit.eval.evaluate); train_fresh_networks trains the "
            "runs its plan names: drop budget="
        )
    p = with_changes(get_protocol(protocol), changes)
    return _train_fresh(syn, test, p, seed, teacher, device, progress, plan)


def _train_fresh(
    syn: SyntheticSet,
    test: ImageDataset,
    p: EvalProtocol,
    seed: int,
    teacher: Any,
    device: torch.device | str,
    progress: ProgressSetting,
    plan: RunPlan,
) -> FreshNetworks:
    """:func:`train_fresh_networks` under the resolved protocol ``p``."""
    lr = syn.lr if (p.use_learned_lr and syn.lr is not None) else p.lr
    data = training_data(syn, p, teacher, device)
    seeds = run_seeds(seed, p.runs)
    run_indices = plan.run_indices
    if run_indices is not None:
        bad = [i for i in run_indices if not 0 <= i < p.runs]
        if bad or not run_indices:
            raise ConfigError(
                f"run_indices must be a non-empty list of runs in 0..{p.runs - 1}, got "
                f"{list(run_indices)}; raise runs= or pass fewer indices"
            )
        seeds = [seeds[i] for i in run_indices]
    fresh = FreshNetworks(p, lr, data, test_in_set_space(syn, test), seeds)
    t0 = time.perf_counter()
    for name in p.models:
        # counted over all the networks: 3 networks of 100 epochs are 300 network-epochs
        bar = Progress(
            f"eval {len(seeds)} x {name}", p.epochs * len(seeds), setting=progress,
            unit="network-epochs",
        )  # fmt: skip
        fresh.results[name] = train_model(
            name, syn, data, p, seeds, lr, vectorize=plan.vectorize, device=device,
            progress=bar.update if bar.kind else None,
        )  # fmt: skip
        bar.close()
    fresh.seconds = time.perf_counter() - t0
    return fresh


def evaluate(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol | None = None,
    *,
    seed: int = 0,
    teacher: Any = None,
    device: torch.device | str = "cpu",
    progress: ProgressSetting = "auto",
    groups: bool = False,
    plan: RunPlan | None = None,
    **changes: Any,
) -> EvalReport:
    """Train fresh networks on ``syn`` and report final-epoch accuracy on the real ``test`` split.

    ``protocol``: a protocol or its name; ``None`` takes the recipe the set records (the
    protocol it was made for, with the network it was distilled with: :mod:`ddkit.eval.recipe`),
    or for a set that records none the protocol its labels call for (``dsa`` for hard labels).
    ``**changes`` change fields of the protocol: ``models``/``runs``/``epochs``, or any other
    field of :class:`~ddkit.eval.protocol.EvalProtocol` (``None`` leaves a field as it is;
    :func:`~ddkit.eval.prepare.with_changes`). What the networks learn from is the
    protocol's ``targets`` (see :func:`training_data`); protocols whose targets come from a
    teacher take it from ``teacher`` (a module or a folder) or ``syn.meta['teacher_dir']``, and
    the report's ``meta`` records the folder. ``progress``: ``"auto"`` (the default: once the
    training has run a few seconds, a bar on a terminal, lines elsewhere), ``True`` (from the
    first epoch), ``"bar"``, ``"lines"`` or ``False`` (silent). The same seed gives the
    same report. ``groups``: also report, per run, the unbiased, bias-aligned,
    bias-conflicting and worst-group accuracy (:func:`ddkit.eval.groups.group_accuracy`) of a
    test split with bias attributes (a biased dataset, :mod:`ddkit.data.biased`); a split
    without them is refused before any network is trained.
    ``plan``: which of the protocol's runs are trained (:class:`RunPlan`): all of them (the
    default), a share of them (``run_indices``: an evaluation split over processes or
    sessions), or as many as fit a time ``budget``; the report's ``meta["budget"]`` then
    records the original and the chosen runs and epochs. A budget too short for one run of one
    epoch is refused in one line.
    """
    plan = plan or RunPlan()
    base = set_recipe(syn).protocol if protocol is None else get_protocol(protocol)
    p = with_changes(base, changes)  # resolved once
    if groups:
        require_groups(test)
    fit = None
    if plan.budget is not None:
        _check_budget_alone()
        fit = _fit_budget(syn, test, p, plan, seed, teacher, device)
        (plan.say or to_stderr)(fit.line())
        p = fit.chosen
    if distributed.active() is not None and plan.run_indices is None:
        return _evaluate_sharded(
            syn, test, p, plan.vectorize, seed=seed, teacher=teacher, device=device,
            progress=progress, groups=groups,
        )  # fmt: skip
    t0 = time.perf_counter()
    fresh = _train_fresh(syn, test, p, seed, teacher, device, progress, plan)
    # the levers the training used (ddkit.levers; the vmap path compiles nothing)
    rows = fresh.data.images
    values = rows[0].numel() if len(rows) else None
    recipe = TrainRecipe.of_protocol(
        fresh.protocol, fresh.lr, device, fresh.data.rows_per_epoch, values
    )
    precision = recipe.precision
    compiled = recipe.compile and not any(r.vectorized for r in fresh.results.values())
    report = EvalReport(
        protocol=fresh.protocol,
        lr=fresh.lr,
        num_train_images=fresh.data.rows_per_epoch,
        meta={
            "seed": seed,
            "precision": precision,
            "compile": compiled,
            "bytes": syn.storage_bytes(),
            **fresh.data.meta,
        },
    )
    if fit is not None:
        report.meta["budget"] = fit.to_dict()
    for name, res in fresh.results.items():
        report.results.append(_test_model(name, res, syn, fresh, precision, groups))
    report.seconds = time.perf_counter() - t0
    return report


def _check_budget_alone() -> None:
    """A budget cuts the runs of one process: refused under :mod:`ddkit.distributed`, in one
    line (beside ``run_indices``: :class:`RunPlan`)."""
    if distributed.active() is not None:
        raise ConfigError(
            "--budget evaluates in one process (ranks would cut the runs apart); launch it "
            "without torchrun or drop --budget"
        )


def _fit_budget(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: EvalProtocol,
    plan: RunPlan,
    seed: int,
    teacher: Any,
    device: torch.device | str,
) -> BudgetFit:
    """What of ``protocol`` fits in the plan's budget from its ``started`` (default: now), from
    a warm-up here (its warnings are the evaluation's to give)."""
    started = time.monotonic() if plan.started is None else plan.started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate = estimate_evaluation(
            syn, test, protocol, seed=seed, teacher=teacher, device=device
        )
    return fit_budget(estimate, plan.budget, spent=time.monotonic() - started)


def _evaluate_sharded(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: EvalProtocol,
    vectorize: bool | None,
    **kwargs: Any,
) -> EvalReport:
    """:func:`evaluate` in a :mod:`ddkit.distributed` session: run ``r`` of the protocol is
    trained on rank ``r % WORLD_SIZE`` from the seed it has in the whole evaluation, the
    networks one after another (``vectorize=None`` means ``False`` here), and every rank gets
    the merged report. Each run's accuracies are those of the one-process evaluation with
    ``vectorize=False`` (the CPU default), bit for bit; ``train_seconds`` sum the ranks'."""
    t0 = time.perf_counter()
    mine = distributed.shard(range(protocol.runs))
    local = None
    if mine:
        share = RunPlan(run_indices=mine, vectorize=bool(vectorize))
        local = evaluate(syn, test, protocol, plan=share, **kwargs)
    shares = distributed.all_gather_json(
        None if local is None else {"report": local.to_dict(), "runs": mine}
    )
    first = next(s for s in shares if s is not None)
    report = _report_from_dict(first["report"])
    per_rank = [s["report"]["results"] if s is not None else None for s in shares]
    report.results = [
        _merged_result([None if r is None else r[i] for r in per_rank])
        for i in range(len(first["report"]["results"]))
    ]
    report.seconds = time.perf_counter() - t0
    report.meta["ranks"] = len(shares)
    return report


def _report_from_dict(d: dict[str, Any]) -> EvalReport:
    """An :class:`EvalReport` (without results) from :meth:`EvalReport.to_dict`."""
    return EvalReport(
        protocol=EvalProtocol.from_dict(d["protocol"]),
        lr=d["lr"],
        num_train_images=d["num_train_images"],
        meta=d["meta"],
    )


def _merged_result(parts: list[dict[str, Any] | None]) -> ModelResult:
    """One model's :class:`ModelResult` from every rank's share of its runs (``None``: a rank
    that trained none), runs back in the protocol's order (:func:`ddkit.distributed.merge_shards`)."""
    shares = [p for p in parts if p is not None]

    def merged(key: str) -> list[Any]:
        return distributed.merge_shards([p[key] if p else [] for p in parts])

    seconds = sum(p["train_seconds"] for p in shares)
    seen = sum(p["images_per_second"] * p["train_seconds"] for p in shares)
    result = ModelResult(
        shares[0]["model"],
        merged("accuracies"),
        merged("seeds"),
        seconds,
        seen / max(seconds, 1e-9),
        any(p["vectorized"] for p in shares),
        merged("train_accuracies"),
    )
    for name in shares[0].get("groups", {}):
        result.groups[name] = distributed.merge_shards(
            [p["groups"][name]["accuracies"] if p else [] for p in parts]
        )
    return result


def evaluate_with_teacher(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol = "teacher-kd",
    teacher: Any = None,
    **kwargs: Any,
) -> EvalReport:
    """Deprecated: :func:`ddkit.eval.evaluate` fetches the teacher itself (``teacher=``)."""
    warn_at_caller(
        "evaluate_with_teacher is deprecated; call ddkit.eval.evaluate(syn, test, protocol, "
        "teacher=...)",
        DeprecationWarning,
    )
    return evaluate(syn, test, protocol, teacher=teacher, **kwargs)
