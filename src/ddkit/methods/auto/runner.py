"""Distil and score the candidates of ``--method auto`` (the tournament's
:class:`~ddkit.methods.auto.tournament.Runner`).

A distiller runs in its own folder under the tournament's (checkpointed, so the next round and
a resumed run continue it), on the validation split's ``fit`` rows, within the time its round
gives it (:class:`~ddkit.methods.time_budget.TimeBudget`). It is costed by the ``--dry-run``
warm-up, passed in as ``estimate`` (a run folder's machinery, one floor up). A selector is
costed by timing its selection on a stratified :data:`PART` of the rows, scaled to all (where
that part would be most of the rows, or the part's selection took under :data:`QUICK`
seconds, the set is made on all rows, and not made again); the first costing also scores its
set in full, timed, so the first scoring is costed before any distiller's round (a scoring's
time does not scale with its epochs: building the networks and judging the validation rows
take a fixed part); before it, one run of :data:`SCORING_PART` of the epochs is timed and
scaled up (an overestimate), and a scoring estimated past the whole tournament is refused in
one line instead of run. Herding and k-center share their embedding
(:func:`~ddkit.methods.coreset.selectors.shared_embeddings`, entered by the tournament's
caller).

Scoring: the set's own evaluator (:func:`ddkit.eval.dispatch.evaluate_set`: networks for
images, learners for tables and series, a GCN for graphs) on the validation rows, with a short
recipe: :data:`VAL_RUNS` runs of :data:`VAL_EPOCHS` epochs, and for networks the ``fast``
protocol (DSA augmentation) on one network for every candidate: the one the distillers among
them train with (:func:`~ddkit.methods.auto.candidates.scoring_network`; the protocol's where
there is none). Sets judged by learners (tables, series) are scored by the learners
:func:`scoring_learners` chooses once, before the tournament: that network where it is a
learner (``mlp`` on tables, ``conv1d`` on series) and :data:`ROW_LEARNER` always, then the
modality's other learners, cheapest first, while scoring every candidate on every fold stays
within :data:`SCORING_SHARE` of the tournament (the evaluation judges a set by all of them, and
a set fitted to one learner can be at chance under another). The score is the mean accuracy of
the report's rows for the set (a GCN's report adds random real nodes and the full graph beside
it: :data:`BASELINE_ROWS`, left out).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddkit.data.dataset import stratified_split
from ddkit.errors import ConfigError
from ddkit.eval.dispatch import EvalSettings, evaluate_set, evaluator_for
from ddkit.eval.evaluators import EVALUATORS
from ddkit.eval.learners import LEARNERS, NETWORK_LEARNERS, learner_names, warm_up
from ddkit.eval.protocol import get_protocol
from ddkit.methods.auto.candidates import Candidate
from ddkit.methods.auto.tournament import Cost, Trained
from ddkit.methods.auto.validation import ValidationSplit
from ddkit.methods.base import Distiller, create_method
from ddkit.methods.time_budget import TimeBudget

#: the short validation recipe: runs, epochs, and the protocol of sets judged by networks
VAL_RUNS = 2
VAL_EPOCHS = 100
VAL_PROTOCOL = get_protocol("fast")
#: the learners that score sets judged by learners, pinned (``None``: :func:`scoring_learners`
#: chooses them by their cost)
VAL_LEARNERS: str | None = None
#: the learner that scores a table's or a series' set beside the distillers' network, whatever
#: the cost: nearest neighbours read the rows as they are, so a set fitted to that network
#: alone, whose rows are not like its class's, does not win on the network's score (on gunpoint
#: at one series per class, dm's set led random real rows under ``conv1d`` on validation and
#: fell to chance under every other learner on the test split); it costs next to nothing
ROW_LEARNER = "knn"
#: the share of the tournament that scoring every candidate once on every fold may take: the
#: modality's learners beyond the network and :data:`ROW_LEARNER` are added while it holds
SCORING_SHARE = 0.5

#: rows of an evaluation report that are baselines beside the set, not the set (a GCN's)
BASELINE_ROWS = frozenset({"random nodes", "full graph"})
#: the share of the rows a selection is timed on before it is made; a selection of the part
#: quicker than :data:`QUICK` seconds is made on all rows at once (its estimate is that)
PART = 0.1
QUICK = 1.0
#: the share of the epochs (one run) the first scoring is timed on before it runs in full
SCORING_PART = 0.1
#: what a fit checkpoints between rounds: its last step only
_CHECKPOINT_EVERY = 10**9

#: ``estimate(method, train, ipc, seed) -> (set-up seconds, seconds per iteration, planned
#: iterations)``: the ``--dry-run`` warm-up of a built method on ``train``
Estimate = Callable[[Distiller, Any, int, int], tuple[float, float, int]]


@dataclasses.dataclass(frozen=True)
class RunnerSetup:
    """Where a :class:`FitRunner` works: ``dataset`` (its name: presets), ``ipc``, ``seed``,
    the candidates' ``folder`` (each in its own sub-folder), the ``device`` they compute on
    (``None``: where the data is), the ``network`` that scores them (``None``: the protocol's)
    the tournament's ``seconds`` (a first scoring estimated past them is refused) and the
    ``learners`` that score sets judged by learners (:func:`scoring_learners`; ``None``: the
    network and :data:`ROW_LEARNER`)."""

    dataset: str
    ipc: int
    seed: int
    folder: Path
    device: Any = None
    network: str | None = None
    seconds: float = math.inf
    learners: str | None = None


def validation_score(
    syn: Any,
    val: Any,
    device: Any = None,
    network: str | None = None,
    share: float = 1.0,
    learners: str | None = None,
) -> tuple[float, float]:
    """``(accuracy, seconds)``: ``syn`` scored on the validation rows ``val`` by the short
    recipe (the module's docstring), by ``network`` (``None``: the protocol's) or, for a set
    judged by learners, by ``learners`` (``None``: ``network`` beside :data:`ROW_LEARNER` where
    it is a learner, else :data:`VAL_LEARNERS`); with ``share`` below 1, one run of that share
    of the epochs (a timing). An evaluation's own time budget is not used: its warm-up costs
    more than this recipe."""
    runs, epochs = (VAL_RUNS, VAL_EPOCHS) if share >= 1 else (1, _epochs_of(share))
    settings = EvalSettings(runs=runs, epochs=epochs, seed=0, device=device)
    accepts = evaluator_for(syn, settings).accepts
    if "protocol" in accepts:
        settings = dataclasses.replace(settings, protocol=VAL_PROTOCOL, models=network)
    if "learners" in accepts:
        settings = dataclasses.replace(settings, learners=learners or _floor(network))
    t0 = time.perf_counter()
    report = evaluate_set(syn, val, settings).report
    accuracies = [r.mean for r in report.results if r.model not in BASELINE_ROWS]
    return statistics.fmean(accuracies), time.perf_counter() - t0


def scoring_learners(
    split: ValidationSplit,
    ipc: int,
    network: str | None,
    scorings: int,
    seconds: float,
    device: Any = None,
) -> dict[str, Any]:
    """The learners that score the tournament's sets where they are judged by learners
    (tables, series), chosen once on ``split``: ``network`` (where it is a learner) and
    :data:`ROW_LEARNER`, then the modality's other learners, cheapest first, each while
    ``scorings`` scorings by all chosen fit in :data:`SCORING_SHARE` of ``seconds`` (the
    tournament's); :data:`VAL_LEARNERS` where it pins them. Each learner is timed on ``ipc``
    random real rows per class of ``split.fit`` scored on ``split.val``: one run, a network's at
    one and at :data:`SCORING_PART` of the epochs (its fixed part and its rate per epoch),
    scaled to the recipe. Returns ``learners`` (comma-separated; ``None`` for a set judged by
    networks or a GCN), each learner's ``estimates`` (seconds per scoring), the ``allowance``
    per scoring and the ``seconds`` the choice took."""
    judged = "learners" in EVALUATORS.get(split.fit.spec.kind.evaluator).accepts
    if not judged or VAL_LEARNERS is not None:
        return {"learners": VAL_LEARNERS if judged else None, "seconds": 0.0}
    t0 = time.perf_counter()
    syn = create_method("random").fit(split.fit, ipc, seed=0, progress=False)
    own = learner_names(None, split.fit.spec.kind.name)
    chosen = _always(network)
    estimates = {
        n: _learner_seconds(syn, split.val, n, device) for n in dict.fromkeys(chosen + own)
    }
    allowance = SCORING_SHARE * seconds / max(scorings, 1)
    for name in sorted(set(own) - set(chosen), key=lambda n: (estimates[n], own.index(n))):
        if sum(estimates[n] for n in chosen) + estimates[name] <= allowance:
            chosen.append(name)
    return {
        "learners": ",".join(chosen),
        "estimates": estimates,
        "allowance": allowance,
        "seconds": time.perf_counter() - t0,
    }


def _learner_seconds(syn: Any, val: Any, name: str, device: Any) -> float:
    """A scoring's seconds by the learner ``name`` alone under the recipe, estimated from one
    run (a network's: from one at one epoch and one at :data:`SCORING_PART` of them), after its
    one-time cost (:func:`~ddkit.eval.learners.warm_up`)."""
    warm_up([name])

    def timed(epochs: int) -> float:
        settings = EvalSettings(runs=1, epochs=epochs, seed=0, device=device, learners=name)
        t0 = time.perf_counter()
        with _quiet(_UNDER_TRAINED):
            evaluate_set(syn, val, settings)
        return time.perf_counter() - t0

    if name not in NETWORK_LEARNERS:
        return timed(VAL_EPOCHS) * (VAL_RUNS if LEARNERS.get(name).random else 1)
    part = _epochs_of(SCORING_PART)
    if part < 2 or part >= VAL_EPOCHS:
        return timed(VAL_EPOCHS) * VAL_RUNS
    one, more = timed(1), timed(part)
    per_epoch = max(more - one, 0.0) / (part - 1)
    return VAL_RUNS * (one + per_epoch * (VAL_EPOCHS - 1))


def _always(network: str | None) -> list[str]:
    """The learners that score a table's or a series' sets whatever they cost: ``network``
    where it is a learner, and :data:`ROW_LEARNER`."""
    return [network, ROW_LEARNER] if network in NETWORK_LEARNERS else [ROW_LEARNER]


def _floor(network: str | None) -> str | None:
    """The learners that score where none were chosen: :func:`_always` where ``network`` is a
    learner, else :data:`VAL_LEARNERS`."""
    return ",".join(_always(network)) if network in NETWORK_LEARNERS else VAL_LEARNERS


class FitRunner:
    """Distils candidates on ``split.fit`` and scores them on ``split.val`` (module docstring);
    ``estimate`` costs a distiller."""

    def __init__(self, split: ValidationSplit, setup: RunnerSetup, estimate: Estimate) -> None:
        self.split, self.setup, self.estimate_fn = split, setup, estimate
        self.fit_rows = split.fit if setup.device is None else split.fit.to(setup.device)
        # the rows every selector is timed on (one object, so that they share its embedding)
        self.part_rows = _part(self.fit_rows, setup.ipc)
        self._made: dict[str, Any] = {}  # selectors' sets, made when costed
        self._scored: dict[str, tuple[float, float]] = {}  # their scores, where scored then
        self._eval_seconds = 0.0  # the last scoring's
        self._scoring_timed = False

    def method(self, candidate: Candidate) -> Distiller:
        s = self.setup
        return create_method(
            candidate.method, dataset=s.dataset, ipc=s.ipc,
            modality=self.split.fit.spec.kind.name, **dict(candidate.options),
        )  # fmt: skip

    def estimate(self, candidate: Candidate) -> Cost:
        t0 = time.perf_counter()
        with _quiet(_NO_PRESET):
            if candidate.selector:
                return self._estimate_selection(candidate)
            setup, pace, planned = self.estimate_fn(
                self.method(candidate), self.fit_rows, self.setup.ipc, self.setup.seed
            )
        return Cost(setup, pace, int(planned), time.perf_counter() - t0)

    def train(self, candidate: Candidate, iterations: int, seconds: float) -> Trained:
        t0 = time.perf_counter()
        if candidate.selector:
            syn = self._made.pop(candidate.label, None)
            syn = syn if syn is not None else self._select(candidate)
        else:  # the scoring's share: what the last one took
            syn = self._distil(candidate, iterations, max(seconds - self._eval_seconds, 1e-3))
        kept = self._scored.pop(candidate.label, None)
        accuracy, eval_seconds = kept or self._score(syn)
        self._eval_seconds = eval_seconds
        done = int(syn.meta.get("iterations", 0))
        return Trained(done, accuracy, time.perf_counter() - t0, eval_seconds)

    def _estimate_selection(self, candidate: Candidate) -> Cost:
        """A selection's cost: timed on a stratified :data:`PART` of the rows and scaled to
        all of them (a selection's work grows with the rows it ranks); where the part would be
        most of the rows, or its selection is quicker than :data:`QUICK`, the set is made on
        all rows, and that is its cost."""
        t0 = time.perf_counter()
        part = self.part_rows
        made = self._select(candidate, part)
        selecting = time.perf_counter() - t0
        if part is not None and selecting < QUICK:
            part, made = None, self._select(candidate)
            selecting = time.perf_counter() - t0
        if part is None:
            self._made[candidate.label] = made
        scoring = self._time_scoring(candidate, made, made_on_all=part is None)
        spent = time.perf_counter() - t0
        scale = 1.0 if part is None else len(self.fit_rows) / len(part)
        return Cost(selecting * scale, 0.0, 0, spent, scoring)

    def _time_scoring(self, candidate: Candidate, syn: Any, made_on_all: bool) -> float:
        """A scoring's cost, once: ``syn`` (the first set made; its size is every set's) scored
        in full and timed, its score kept where it is the candidate's set (``made_on_all``);
        ``0`` after the first (the tournament costs later scorings by the ones it measured)."""
        if self._scoring_timed:
            return 0.0
        self._scoring_timed = True
        warm_up(self.setup.learners)  # a resumed tournament's learners, chosen before
        with _quiet(_UNDER_TRAINED):
            _, part = validation_score(
                syn, self.split.val, self.setup.device, self.setup.network, SCORING_PART,
                self.setup.learners,
            )  # fmt: skip
        estimate = part * VAL_RUNS * VAL_EPOCHS / _epochs_of(SCORING_PART)
        if estimate > self.setup.seconds:
            raise ConfigError(
                f"--method auto: scoring one set on the validation rows would take about "
                f"{estimate:.0f} s here, more than the tournament's {self.setup.seconds:.0f} s "
                "(half the budget); give a larger --budget or name a method"
            )
        scored = self._score(syn)
        if made_on_all:
            self._scored[candidate.label] = scored
        return scored[1]

    def _score(self, syn: Any) -> tuple[float, float]:
        s = self.setup
        return validation_score(syn, self.split.val, s.device, s.network, learners=s.learners)

    def _select(self, candidate: Candidate, rows: Any = None) -> Any:
        s = self.setup
        rows = self.fit_rows if rows is None else rows
        with _quiet(_NO_PRESET):
            return self.method(candidate).fit(rows, s.ipc, seed=s.seed, progress=False)

    def _distil(self, candidate: Candidate, iterations: int, seconds: float) -> Any:
        s = self.setup
        budget = TimeBudget(seconds, say=lambda _line: None)
        with _quiet(_NO_PRESET):
            return self.method(candidate).fit(
                self.fit_rows, s.ipc, iterations=iterations, seed=s.seed, callbacks=[budget],
                checkpoint_dir=s.folder / candidate.label / "checkpoint",
                checkpoint_every=_CHECKPOINT_EVERY, resume=True, progress=False,
            )  # fmt: skip


class FoldRunner:
    """The runners of the validation's folds as one (:func:`~ddkit.methods.auto.validation.
    carve_folds`): a candidate is costed, distilled and scored on every fold; its cost is the
    folds' summed, its score their mean, its iterations the fewest a fold reached."""

    def __init__(self, runners: list[FitRunner]) -> None:
        self.runners = runners

    def estimate(self, candidate: Candidate) -> Cost:
        costs = [r.estimate(candidate) for r in self.runners]
        return Cost(
            sum(c.setup_seconds for c in costs),
            sum(c.seconds_per_iteration for c in costs),
            min(c.planned_iterations for c in costs),
            sum(c.spent_seconds for c in costs),
            sum(c.scoring_seconds for c in costs),
        )

    def train(self, candidate: Candidate, iterations: int, seconds: float) -> Trained:
        share = seconds / len(self.runners)
        got = [r.train(candidate, iterations, share) for r in self.runners]
        return Trained(
            min(t.iterations for t in got),
            statistics.fmean(t.val_accuracy for t in got),
            sum(t.seconds for t in got),
            sum(t.eval_seconds for t in got),
        )


def _epochs_of(share: float) -> int:
    """The epochs of a timing run of ``share`` of the recipe's (at least one)."""
    return max(1, int(share * VAL_EPOCHS))


def _part(rows: Any, ipc: int) -> Any:
    """A stratified :data:`PART` of ``rows`` (at least ``ipc`` per class), or ``None`` where
    that would be more than half of them."""
    smallest = min(rows.class_counts)
    share = max(PART, (ipc + 1) / smallest)
    if share > 0.5:
        return None
    _, held = stratified_split(rows.labels.cpu(), share, 0)
    return rows.subset(held.to(rows.labels.device))


#: a method's note that it scaled its iterations to data without a preset: not repeated for
#: every candidate (the record states each one's planned count)
_NO_PRESET = r".*no preset for dataset"
#: the warning that a scoring network is under-trained: the timing run of a part of the
#: epochs is short on purpose
_UNDER_TRAINED = r".*under-trained"


@contextmanager
def _quiet(message: str) -> Iterator[None]:
    """A block in which the warnings whose text matches ``message`` are not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=message)
        yield
