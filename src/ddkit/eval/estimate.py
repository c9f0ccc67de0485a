"""What an evaluation will cost on this machine, measured before it runs.

:func:`estimate_evaluation` trains one network of each of the protocol's models for a few
epochs, exactly as the evaluation would train it (same data, targets, augmentation, batch size,
precision and compile decision as the full run), times every epoch, and times one pass over the
test split. The first epoch carries the set-up (building the network, compiling), so the cost
of an epoch is the rate of the epochs after it (timed for a few seconds: a tiny set's epochs
take milliseconds, with rare slow ones), and the evaluation's estimate is, per model,

    set-up + seconds per network-epoch x epochs x runs + seconds per test pass x runs.

``ddkit evaluate --dry-run`` prints it and trains nothing else; ``ddkit evaluate`` under a set's
recorded recipe says it before starting when it is past :data:`LONG_EVALUATION_SECONDS`, with how
to shorten it (:func:`long_recipe_notice`); ``ddkit evaluate --budget 30m`` cuts the protocol to
what the estimate says fits (:func:`fit_budget`). The warm-up is capped
(:data:`WARMUP_MAX_SECONDS` per model, an epoch being the least it times), and so is the timed
part of the test pass (:data:`TEST_TIMED_ROWS`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.prepare import (
    run_seeds,
    test_in_set_space,
    train_model,
    training_data,
    with_changes,
)
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import TrainRecipe, build_networks, predicted_classes
from ddkit.levers import resolve_precision
from ddkit.progress import clock

#: After its first epoch (the set-up), a warm-up trains epochs for at least this many seconds
#: (and at least :data:`WARMUP_MIN_EPOCHS`): tiny sets' epochs take milliseconds, with rare slow
#: ones, so their cost is a rate over many epochs ...
WARMUP_MIN_SECONDS = 3.0
WARMUP_MIN_EPOCHS = 2
#: ... and at most this many epochs, ...
WARMUP_MAX_EPOCHS = 1_000
#: ... ending after the epoch that brings it past this many seconds (a first epoch this long
#: stands for every epoch, its set-up included: the estimate then errs long).
WARMUP_MAX_SECONDS = 15.0
#: The test pass is timed on at most this many rows of the test split and scaled to all of them.
TEST_TIMED_ROWS = 2_048
#: The rule of ``ddkit evaluate`` under a set's recorded recipe: an evaluation estimated past
#: this many seconds (ten minutes) is announced before it starts, with how to shorten it.
LONG_EVALUATION_SECONDS = 600.0


class _WarmedUp(Exception):
    """Ends a warm-up that has timed enough epochs."""


@dataclass(frozen=True)
class ModelCost:
    """One model's measured costs: ``setup_seconds`` (the first epoch's excess over the others:
    building, compiling), ``seconds_per_epoch`` of one network, ``test_seconds`` of one pass
    over the test split, for ``epochs`` x ``runs`` networks-epochs."""

    model: str
    setup_seconds: float
    seconds_per_epoch: float
    test_seconds: float
    epochs: int
    runs: int

    @property
    def total_seconds(self) -> float:
        return (
            self.setup_seconds
            + self.seconds_per_epoch * self.epochs * self.runs
            + self.test_seconds * self.runs
        )


@dataclass(frozen=True)
class EvalEstimate:
    """An evaluation's estimated cost: one :class:`ModelCost` per model of ``protocol``, and
    the command's ``startup_seconds`` (its start and loading of the set and data)."""

    protocol: EvalProtocol
    models: tuple[ModelCost, ...]
    startup_seconds: float = 0.0  # the command's own start and loading, where one is counted

    @property
    def total_seconds(self) -> float:
        return self.startup_seconds + sum(m.total_seconds for m in self.models)

    def line(self) -> str:
        """One line: what would be trained and how long it takes here."""
        parts = [
            f"{m.runs} x {m.model} x {m.epochs:,} epochs at {m.seconds_per_epoch:.3g} s "
            f"+ {m.runs} test passes at {m.test_seconds:.3g} s + {m.setup_seconds:.3g} s set-up"
            for m in self.models
        ]
        if self.startup_seconds:
            parts.append(f"{self.startup_seconds:.3g} s start-up and loading")
        return (
            f"evaluation under protocol {self.protocol.name}: {'; '.join(parts)} = about "
            f"{clock(self.total_seconds)} on this machine (measured by a warm-up)"
        )


def estimate_evaluation(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol,
    *,
    seed: int = 0,
    teacher: Any = None,
    device: torch.device | str = "cpu",
    compile_as_run: bool = True,
    short_below: float | None = None,
    **changes: Any,
) -> EvalEstimate:
    """The cost of :func:`~ddkit.eval.evaluate` with these arguments (``**changes``: fields of
    the protocol to change, as there: ``models``, ``runs``, ``epochs``, ...), measured here by a
    warm-up of one network per model (its first epoch the set-up, then epochs for at least
    :data:`WARMUP_MIN_SECONDS`, at most :data:`WARMUP_MAX_SECONDS`; see the module's docstring).
    ``compile_as_run=False`` times the warm-up eagerly whatever the run would decide (no
    compilation paid for a mere notice). ``short_below`` (seconds): a model's warm-up ends after
    its first epoch where every epoch of its runs, at that first epoch's cost (its set-up
    included: an upper bound), would end within the model's share of ``short_below`` (all a
    notice needs to know of a short evaluation)."""
    p = with_changes(get_protocol(protocol), changes)
    lr = syn.lr if (p.use_learned_lr and syn.lr is not None) else p.lr
    data = training_data(syn, p, teacher, device)
    rows = data.images
    values = rows[0].numel() if len(rows) else None
    compiled = TrainRecipe.of_protocol(p, lr, device, data.rows_per_epoch, values).compile
    warm = p.with_(
        epochs=min(WARMUP_MAX_EPOCHS, p.epochs), compile=compiled and compile_as_run, runs=1
    )
    test_rows = test_in_set_space(syn, test).images
    (first_seed,) = run_seeds(seed, 1)
    costs = []
    for name in p.models:
        test_seconds = _test_pass_seconds(name, syn, test_rows, warm, device)
        short_epoch = None
        if short_below is not None:  # this model's share, less its test passes, per epoch
            share = short_below / len(p.models) - test_seconds * p.runs
            short_epoch = share / (p.epochs * p.runs)
        stamps = [time.perf_counter()]
        try:
            train_model(
                name, syn, data, warm, [first_seed], lr, device=device,
                progress=_warmup_clock(stamps, short_epoch),
            )  # fmt: skip
        except _WarmedUp:
            pass
        first, timed = stamps[1] - stamps[0], len(stamps) - 2
        per_epoch = (stamps[-1] - stamps[1]) / timed if timed else first
        setup = max(first - per_epoch, 0.0)
        costs.append(ModelCost(name, setup, per_epoch, test_seconds, p.epochs, p.runs))
    return EvalEstimate(p, tuple(costs))


def _warmup_clock(stamps: list[float], short_epoch: float | None) -> Callable[[int], None]:
    """The progress callback of one model's warm-up: it appends the time of every epoch's end
    to ``stamps`` (which holds the start) and ends the warm-up (:class:`_WarmedUp`) once enough
    is timed: epochs after the first for :data:`WARMUP_MIN_SECONDS` (and
    :data:`WARMUP_MIN_EPOCHS`), or :data:`WARMUP_MAX_SECONDS` in all, or a first epoch within
    ``short_epoch`` seconds."""

    def tick(_networks: int) -> None:
        stamps.append(time.perf_counter())
        timed = len(stamps) - 2  # epochs after the first
        if timed == 0 and short_epoch is not None and stamps[1] - stamps[0] <= short_epoch:
            raise _WarmedUp
        if timed >= WARMUP_MIN_EPOCHS and stamps[-1] - stamps[1] >= WARMUP_MIN_SECONDS:
            raise _WarmedUp
        if stamps[-1] - stamps[0] >= WARMUP_MAX_SECONDS:
            raise _WarmedUp

    return tick


def _test_pass_seconds(
    name: str,
    syn: SyntheticSet,
    test_rows: torch.Tensor,
    protocol: EvalProtocol,
    device: torch.device | str,
) -> float:
    """Seconds of one prediction pass over the test split by a ``name`` network, timed on its
    first :data:`TEST_TIMED_ROWS` rows and scaled to all (by a fresh network: the pass costs the
    same untrained)."""
    (net,) = build_networks(name, syn.spec, [0], torch.device(device))
    net.eval()
    timed = test_rows[:TEST_TIMED_ROWS].to(device)
    precision = resolve_precision(protocol.precision, device)
    predicted_classes(net, timed[:1], precision=precision)  # the first call's lazy set-up
    t0 = time.perf_counter()
    predicted_classes(net, timed, precision=precision)
    return (time.perf_counter() - t0) * len(test_rows) / max(len(timed), 1)


def long_recipe_notice(
    estimate: EvalEstimate,
    quicker: EvalEstimate | None,
    limit: float = LONG_EVALUATION_SECONDS,
) -> str | None:
    """The note ``ddkit evaluate`` gives before a recorded recipe that will take longer than
    ``limit`` seconds here, with the ways to shorten it (the quicker protocol and its estimate,
    a budget, fewer runs or epochs); ``None`` otherwise."""
    if estimate.total_seconds <= limit:
        return None
    ways = [f"--budget {clock(limit)} (cuts runs, then epochs, to fit)", "--runs N", "--epochs N"]
    if quicker is not None:
        q = quicker.protocol
        ways.insert(
            0,
            f"--protocol {q.name} ({q.runs} x {q.epochs:,} epochs) takes about "
            f"{clock(quicker.total_seconds)}",
        )
    return (
        f"the set's recipe will take about {clock(estimate.total_seconds)} here "
        f"({estimate.protocol.runs} x {estimate.protocol.epochs:,} epochs per model), past "
        f"{clock(limit)}; to shorten it: {', '.join(ways)}; --dry-run estimates any protocol "
        "without training"
    )


@dataclass(frozen=True)
class BudgetFit:
    """What a time budget of ``seconds`` fits of an evaluation under ``original``: ``estimate``,
    the estimated cost of the protocol cut to fit (fewer runs first, then fewer epochs; its
    schedule follows the new epoch count) in the ``left`` seconds after the start-up and the
    warm-up."""

    seconds: float
    left: float
    original: EvalProtocol
    estimate: EvalEstimate

    @property
    def chosen(self) -> EvalProtocol:
        return self.estimate.protocol

    @property
    def cut(self) -> bool:
        """Whether the chosen protocol trains less than the original."""
        return (self.chosen.runs, self.chosen.epochs) != (self.original.runs, self.original.epochs)

    def line(self) -> str:
        """The one line that says what was chosen and why."""
        o, models = self.original, self.estimate.models
        paces = ", ".join(f"{m.seconds_per_epoch:.3g} s per {m.model} epoch" for m in models)
        head = f"budget {clock(self.seconds)}: "
        if not self.cut:
            return (
                head + f"all {o.runs} runs of {o.epochs:,} epochs fit (about "
                f"{clock(self.estimate.total_seconds)}; {paces}, measured); evaluating them"
            )
        return (
            head + f"{budget_cut(self.to_dict())} fit in the {clock(self.left)} left ({paces}, "
            "measured); evaluating those, and the report records the cut"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report's record (``meta["budget"]``): the budget, the original and the chosen
        runs and epochs, and the estimate they rest on."""
        o, c = self.original, self.chosen
        return {
            "seconds": self.seconds,
            "left_seconds": self.left,
            "cut": self.cut,
            "original": {"runs": o.runs, "epochs": o.epochs},
            "chosen": {"runs": c.runs, "epochs": c.epochs},
            "estimated_seconds": self.estimate.total_seconds,
            "seconds_per_epoch": {m.model: m.seconds_per_epoch for m in self.estimate.models},
        }


def budget_cut(record: dict[str, Any]) -> str:
    """What a budget's record (:meth:`BudgetFit.to_dict`) kept of the protocol, e.g. "3 of 5
    runs of 300 epochs" or "1 of 5 runs, 120 of 300 epochs"."""
    o, c = record["original"], record["chosen"]
    if c["epochs"] == o["epochs"]:
        return f"{c['runs']} of {o['runs']} runs of {o['epochs']:,} epochs"
    return f"{c['runs']} of {o['runs']} runs, {c['epochs']:,} of {o['epochs']:,} epochs"


def fit_budget(estimate: EvalEstimate, seconds: float, spent: float = 0.0) -> BudgetFit:
    """The most of ``estimate``'s protocol that fits in a budget of ``seconds`` of which
    ``spent`` are gone (start-up, warm-up): all its runs if they fit, else fewer runs of all its
    epochs, else one run of fewer epochs. Less than one run of one epoch is refused in one line
    with the budget it needs."""
    p, models = estimate.protocol, estimate.models
    left = seconds - spent
    setup = sum(m.setup_seconds for m in models)
    epoch = sum(m.seconds_per_epoch for m in models)  # one epoch of one network per model
    tests = sum(m.test_seconds for m in models)
    runs = min(p.runs, _how_many(left - setup, epoch * p.epochs + tests))
    epochs = p.epochs if runs >= 1 else min(p.epochs, _how_many(left - setup - tests, epoch))
    if epochs < 1:
        least = spent + setup + epoch + tests
        raise ConfigError(
            f"--budget {clock(seconds)} is too short to evaluate here: one run of one epoch "
            f"takes about {_span(setup + epoch + tests)} (measured) after {_span(spent)} of "
            f"start-up and warm-up; give --budget {clock(math.ceil(least * 1.1) + 1)} or more, "
            "or drop it"
        )
    chosen = p.with_(runs=max(runs, 1), epochs=epochs)
    fitted = scaled_estimate(estimate, chosen)
    assert fitted is not None  # same models, batch, augmentation: only runs and epochs differ
    return BudgetFit(seconds, left, p, fitted)


def _how_many(room: float, each: float) -> int:
    """How many things of ``each`` seconds fit in ``room`` seconds (a free thing: any number)."""
    if each <= 0:
        return 1 << 62 if room >= 0 else 0
    return max(0, math.floor(room / each))


def _span(seconds: float) -> str:
    """A duration for a message: ``0.42 s`` below ten seconds, else as :func:`clock`."""
    return f"{seconds:.2g} s" if seconds < 10 else clock(seconds)


def scaled_estimate(estimate: EvalEstimate, protocol: EvalProtocol) -> EvalEstimate | None:
    """``estimate``'s measured costs carried over to ``protocol``'s epochs and runs, where an
    epoch costs the same under both (same models, batch size, augmentation, targets, precision
    and compile setting); ``None`` where it may not."""
    same = ("models", "batch_size", "augment", "targets", "precision", "compile")
    if any(getattr(protocol, k) != getattr(estimate.protocol, k) for k in same):
        return None
    costs = tuple(
        ModelCost(m.model, m.setup_seconds, m.seconds_per_epoch, m.test_seconds,
                  protocol.epochs, protocol.runs)
        for m in estimate.models
    )  # fmt: skip
    return EvalEstimate(protocol, costs)


__all__ = [
    "BudgetFit",
    "EvalEstimate",
    "ModelCost",
    "budget_cut",
    "estimate_evaluation",
    "fit_budget",
    "long_recipe_notice",
    "scaled_estimate",
]
