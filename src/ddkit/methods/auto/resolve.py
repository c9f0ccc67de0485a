"""What a run asks of ``--method auto``: :func:`choose` (carve the validation split from the
training split, run the tournament, return the winner's method and options and the decision
record) and :func:`plan` (``--dry-run``: the candidates, their costs and the rounds, nothing
distilled but what costing a candidate takes).

The budget: the tournament spends at most :data:`TOURNAMENT_SHARE` of the run's time budget
(its costings, rounds and scorings together, within :data:`~ddkit.methods.auto.tournament.SLACK`);
the run then distils the winner on the whole training split in the time left, stopped by its
time budget as any ``--budget`` run is. ``--method auto`` needs a ``--budget``: it has no
default, since the budget is what it fits the choice to.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ddkit.methods.auto.runner as scoring
from ddkit.errors import ConfigError
from ddkit.methods.auto.candidates import (
    Candidate,
    candidates_for,
    scoring_network,
    spec_modality,
)
from ddkit.methods.auto.record import rows_record
from ddkit.methods.auto.runner import Estimate, FitRunner, FoldRunner, RunnerSetup
from ddkit.methods.auto.tournament import Memo, Outcome, Runner, Tournament
from ddkit.methods.auto.validation import (
    ValidationSplit,
    carve_folds,
    held_out,
    validation_record,
)
from ddkit.methods.coreset.selectors import shared_embeddings

#: the name that asks for the tournament
AUTO = "auto"
#: the share of the time budget the tournament may spend; the winner's run gets the rest
TOURNAMENT_SHARE = 0.5
#: the tournament's file in its folder
MEMO_FILE = "tournament.json"
#: the memo's entry of the learners chosen to score tables and series
LEARNERS_KEY = "scoring learners"


@dataclass(frozen=True)
class AutoRequest:
    """A tournament for ``ipc`` rows per class of ``dataset`` (its name: presets) within a
    run's time budget of ``seconds``, from ``seed``; ``teacher`` (as ``--teacher`` takes it)
    admits the decoupled method; ``device``: where the candidates compute."""

    dataset: str
    ipc: int
    seconds: float
    seed: int = 0
    teacher: Any = None
    device: Any = None


@dataclass(frozen=True)
class AutoChoice:
    """The winner's ``method`` and ``options`` and the decision ``record`` (JSON-ready)."""

    method: str
    options: dict[str, Any]
    record: dict[str, Any]


def check_request(options: dict[str, Any] | None, budget: float | None) -> Any:
    """Refuse, in one line each, ``--method auto`` without a time budget, or with method options
    other than ``teacher``; return the teacher (or ``None``)."""
    if budget is None:
        raise ConfigError(
            f"--method {AUTO} fits its choice to a time budget: pass --budget (e.g. --budget 30m)"
        )
    other = sorted(set(options or {}) - {"teacher"})
    if other:
        raise ConfigError(
            f"--method {AUTO} chooses the options itself; drop --set {', '.join(other)} (or "
            "name a method to set them)"
        )
    return (options or {}).get("teacher")


def choose(
    train: Any,
    request: AutoRequest,
    estimate: Estimate,
    folder: str | Path | None = None,
    say: Callable[[str], Any] = lambda _line: None,
    runner: Callable[[ValidationSplit, list[Candidate]], Runner] | None = None,
) -> AutoChoice:
    """Run the tournament on ``train`` (the training split only: the validation rows are
    carved from it) and return the winner (:class:`AutoChoice`). ``estimate`` costs a
    distiller (the ``--dry-run`` warm-up); ``folder`` keeps the candidates' runs and the
    finished rounds (a resumed call reuses them; default: a temporary folder); ``say`` receives
    a line per step; ``runner`` builds the runner from the split and the candidates (default:
    :class:`~ddkit.methods.auto.runner.FitRunner`; tests pass a fake)."""
    splits, candidates, network = _split_and_candidates(train, request)
    with ExitStack() as stack:
        where = Path(folder) if folder is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory())
        )  # fmt: skip
        memo = Memo(where / MEMO_FILE if folder is not None else None,
                    _settings(request, splits, candidates, network))  # fmt: skip
        learners = _learners(splits, candidates, request, network, memo, runner)
        play = _runner(splits, candidates, request, where, estimate, runner, network, learners)
        stack.enter_context(shared_embeddings())
        tournament = Tournament(candidates, play, _seconds(request), memo, say, held_out(splits),
                                learners["seconds"])  # fmt: skip
        outcome = tournament.run()
    return AutoChoice(
        outcome.winner.candidate.method,
        dict(outcome.winner.candidate.options),
        _record(outcome, request, splits, network, learners),
    )


def plan(
    train: Any,
    request: AutoRequest,
    estimate: Estimate,
    say: Callable[[str], Any] = lambda _line: None,
    runner: Callable[[ValidationSplit, list[Candidate]], Runner] | None = None,
) -> dict[str, Any]:
    """The tournament's plan (``--dry-run``): every candidate costed (a selector's set made and
    scored, which is its cost), the number of rounds and the iterations round 0 gives each
    distiller; nothing is written."""
    splits, candidates, network = _split_and_candidates(train, request)
    learners = _learners(splits, candidates, request, network, Memo(None, {}), runner)
    with tempfile.TemporaryDirectory() as tmp, shared_embeddings():
        play = _runner(splits, candidates, request, Path(tmp), estimate, runner, network, learners)
        t = Tournament(candidates, play, _seconds(request), None, say, spent=learners["seconds"])
        rounds, targets = t.plan()
    rows = []
    for row in t.rows:
        d = row.to_dict()
        if row in targets:
            d["round0_iterations"] = targets[row]
            d["why"] = f"round 0 buys {targets[row]:,} iterations"
        elif not d["why"]:
            d["why"] = "made and scored as its costing" if row.rounds else "not scored"
        rows.append(d)
    return {**_frame(request, splits, rounds, t.spent, network, learners), "candidates": rows}


def _split_and_candidates(
    train: Any, request: AutoRequest
) -> tuple[list[ValidationSplit], list[Candidate], str | None]:
    """The validation split (or folds), the candidates and the network that scores them."""
    splits = carve_folds(train, request.ipc, seed=0)
    fit = splits[0].fit
    candidates = candidates_for(fit, request.dataset, request.ipc, request.teacher)
    modality = spec_modality(fit)
    return splits, candidates, scoring_network(candidates, request.dataset, request.ipc, modality)


def _seconds(request: AutoRequest) -> float:
    return TOURNAMENT_SHARE * request.seconds


def _learners(
    splits: list[ValidationSplit],
    candidates: list[Candidate],
    request: AutoRequest,
    network: str | None,
    memo: Memo,
    runner: Callable[[ValidationSplit, list[Candidate]], Runner] | None,
) -> dict[str, Any]:
    """The learners that score sets judged by learners (:func:`~ddkit.methods.auto.runner.
    scoring_learners`, on the first split, for every candidate on every split), kept in
    ``memo`` so that a resumed tournament scores as it did; none where a ``runner`` is
    passed (it scores)."""
    if runner is not None:
        return {"learners": None, "seconds": 0.0}
    kept = memo.get(LEARNERS_KEY)
    if kept is None:
        kept = scoring.scoring_learners(
            splits[0], request.ipc, network, len(candidates) * len(splits), _seconds(request),
            request.device,
        )  # fmt: skip
        memo.put(LEARNERS_KEY, kept)
    return kept


def _runner(
    splits: list[ValidationSplit],
    candidates: list[Candidate],
    request: AutoRequest,
    folder: Path,
    estimate: Estimate,
    runner: Callable[[ValidationSplit, list[Candidate]], Runner] | None,
    network: str | None,
    learners: dict[str, Any],
) -> Runner:
    if runner is not None:
        return runner(splits[0], candidates)
    chosen = learners["learners"]
    if len(splits) == 1:
        return FitRunner(splits[0], _setup(request, folder, network, chosen), estimate)
    # a fold's first scoring is refused where its estimate passes the whole tournament (that
    # estimate, a tenth of the epochs scaled up, is far above a small fold's scoring); the
    # tournament then counts every fold's measured scorings
    return FoldRunner([
        FitRunner(s, _setup(request, folder / f"fold{i}", network, chosen), estimate)
        for i, s in enumerate(splits)
    ])  # fmt: skip


def _setup(
    request: AutoRequest, folder: Path, network: str | None, learners: str | None
) -> RunnerSetup:
    return RunnerSetup(
        request.dataset, request.ipc, request.seed, folder, request.device, network,
        _seconds(request), learners,
    )  # fmt: skip


def _settings(
    request: AutoRequest,
    splits: list[ValidationSplit],
    candidates: list[Candidate],
    network: str | None,
) -> dict[str, Any]:
    """What the tournament's kept results depend on (a resumed run must match them)."""
    return {
        "dataset": request.dataset,
        "ipc": request.ipc,
        "seed": request.seed,
        "validation": validation_record(splits),
        "candidates": [c.to_dict() for c in candidates],
        "recipe": _recipe(network),
    }


def _recipe(network: str | None) -> dict[str, Any]:
    """The scoring recipe a resumed tournament must match (the learners' rule, not the
    learners it chose: those are kept in the memo)."""
    s = scoring
    recipe = {
        "runs": s.VAL_RUNS,
        "epochs": s.VAL_EPOCHS,
        "protocol (networks)": s.VAL_PROTOCOL.name,
        "learners (tables, series)": (
            f"pinned: {s.VAL_LEARNERS}" if s.VAL_LEARNERS is not None else
            f"the network and {s.ROW_LEARNER}, then the cheapest others within "
            f"{s.SCORING_SHARE:g} of the tournament"
        ),
    }  # fmt: skip
    return recipe | ({"network": network} if network is not None else {})


def _frame(
    request: AutoRequest,
    splits: list[ValidationSplit],
    rounds: int,
    spent: float,
    network: str | None,
    learners: dict[str, Any],
) -> dict[str, Any]:
    chosen = {"scoring learners": learners} if learners["learners"] is not None else {}
    return {
        "budget_seconds": request.seconds,
        "tournament_seconds": _seconds(request),
        "spent_seconds": spent,
        "rounds": rounds,
        "validation": validation_record(splits),
        "recipe": _recipe(network),
        **chosen,
    }


def _record(
    outcome: Outcome,
    request: AutoRequest,
    splits: list[ValidationSplit],
    network: str | None,
    learners: dict[str, Any],
) -> dict[str, Any]:
    w = outcome.winner
    scored = [r for r in outcome.rows if r.accuracy is not None and r is not w]
    runner_up = max(scored, key=lambda r: r.accuracy, default=None)
    if outcome.tie:
        because = f"validation accuracy {100 * w.accuracy:.2f} %; {outcome.tie}"
    else:
        because = f"the best validation accuracy ({100 * w.accuracy:.2f} %) after round {w.reached}"
        if runner_up is not None:
            because += (
                f"; next best {runner_up.candidate.label} at {100 * runner_up.accuracy:.2f} %"
            )
    then = "selects" if w.candidate.selector else "distils"
    why = (
        f"chose {w.candidate.label}: {because}; it {then} on the whole training split in the "
        f"time left of the {request.seconds:.0f} s budget"
    )
    return {
        **_frame(request, splits, outcome.rounds, outcome.spent_seconds, network, learners),
        "winner": w.candidate.label,
        "method": w.candidate.method,
        "options": dict(w.candidate.options),
        "why": why,
        "candidates": rows_record(outcome.rows),
    }
