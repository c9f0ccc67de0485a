"""The tournament of ``--method auto``: successive halving (Jamieson & Talwalkar, AISTATS 2016;
Li et al., Hyperband, JMLR 2018) on validation accuracy, under a stated cost model.

1. Every candidate is costed before it runs (:meth:`Runner.estimate`: a distiller by the
   ``--dry-run`` warm-up, its set-up and seconds per iteration; a selector by timing its
   selection on a part of the rows; a scoring by a short timed one). A selector, which has no
   steps to buy, is then made and scored at once, where its estimate fits. The costing counts
   against the tournament's time.
2. Rounds share the time left equally; in a round, each distiller still in the tournament gets
   an equal share, which buys it iterations at its estimated pace (its set-up in its first
   round), up to its planned count; it continues from where it stopped, and is scored on the
   validation split. Since the survivors halve each round and the rounds are equal, a
   survivor's share doubles. A survivor whose share no longer fits the time left (the rows
   before it ran past their estimates) goes as far as the time left buys, or keeps the score
   it has. The distillers that enter are the most, cheapest entry first (its
   set-up, :data:`MIN_ITERATIONS` iterations and a scoring), whose round-0 shares each buy its
   entry, with as many rounds as halving them takes; the others are left out (the reason
   recorded). A candidate whose estimate no longer fits the time left is stopped, never
   started. A selector's score (and a distiller's at its planned count) carries to later rounds.
3. After each round but the last the better half of the distillers still training (by
   validation accuracy; ties: the earlier candidate, cheaper first) goes on; a finished
   candidate (a selector, or a distiller at its planned count) takes no place in the halving
   and keeps its score, since more time would not change its set. The rounds are as many as
   halving the distillers takes. The winner is the best of every candidate still in at the
   end, finished or not, with one exception: a distiller short of its planned count beats
   the best finished candidate only by more than one standard error of a validation accuracy
   (:func:`standard_error`, binomial over the validation rows). Its score was taken at fewer
   iterations than its final set will have, and more iterations can lower a set's accuracy
   (idm at 50 images per class on mnist5k), so a tie within the noise goes to the set that is
   known. Then a set of synthetic rows (a distiller's) wins over the best set of real rows (a
   selection: random rows or a coreset) only by more than one standard error of the
   difference of their validation accuracies (:func:`difference_error`): the one-standard-error
   rule of model selection (Breiman et al., CART, 1984; Hastie et al., The Elements of
   Statistical Learning, 2009, 7.10), which takes the simpler model where the better one's lead
   is within the noise. Real rows are the simpler set here: they need no distillation, and
   they hold under learners the scoring did not use, where a synthetic set can be at chance
   (gunpoint at one series per class: docs/benchmarks/choosing.md).

Every result is kept in a :class:`Memo` (a file in the run folder, written atomically), and the
time the tournament counts is the recorded seconds, not the clock: a resumed tournament replays
the same decisions and reuses every finished costing and round instead of running it again.
Nothing here reads data; the :class:`Runner` does (tests pass a fake one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ddkit.errors import ConfigError
from ddkit.io import atomic_write_json, read_json
from ddkit.methods.auto.candidates import Candidate

#: a distiller's first round must buy at least this many iterations, else it is left out
MIN_ITERATIONS = 10
#: a round may run past its estimate by this share before it is cut (the budget's tolerance)
SLACK = 0.1


@dataclass(frozen=True)
class Cost:
    """A candidate's estimated cost: ``setup_seconds`` once, ``seconds_per_iteration`` per
    step, up to ``planned_iterations``; ``spent_seconds``: what costing it took;
    ``scoring_seconds``: what scoring a set will take (``0``: not timed; the tournament costs a
    scoring by the longest one timed or measured)."""

    setup_seconds: float
    seconds_per_iteration: float
    planned_iterations: int
    spent_seconds: float
    scoring_seconds: float = 0.0  # a scoring's estimate, where the costing timed one

    def seconds(self, done: int, target: int, first: bool) -> float:
        """Estimated seconds to go from ``done`` to ``target`` iterations (with the set-up
        where it is the candidate's ``first`` round)."""
        return (self.setup_seconds if first else 0.0) + self.seconds_per_iteration * (target - done)


@dataclass(frozen=True)
class Trained:
    """One round of a candidate: the iterations it reached, its validation accuracy, and the
    measured seconds of distilling and scoring it (``eval_seconds`` of them scoring)."""

    iterations: int
    val_accuracy: float
    seconds: float
    eval_seconds: float


class Runner(Protocol):
    """What the tournament asks of the machinery that distils and scores."""

    def estimate(self, candidate: Candidate) -> Cost:
        """The candidate's cost (for a selector: its set made, measured)."""

    def train(self, candidate: Candidate, iterations: int, seconds: float) -> Trained:
        """Continue ``candidate`` to ``iterations`` (a selector: 0), then score it on the
        validation split, within about ``seconds`` together."""


class Memo:
    """The tournament's finished costings and rounds, kept in ``path`` (written atomically
    after each; ``None``: in memory) under ``settings``; a file kept under other settings is
    refused in one line."""

    def __init__(self, path: str | Path | None, settings: dict[str, Any]) -> None:
        self.path, self.settings, self.items = path, settings, {}
        if path is not None and Path(path).exists():
            old = read_json(path)
            if not isinstance(old, dict) or old.get("settings") != settings:
                raise ConfigError(
                    f"cannot resume the --method auto tournament in {str(path)!r}: it ran with "
                    "other settings (dataset, IPC, seed, candidates or validation); choose "
                    "another --out"
                )
            self.items = dict(old.get("items", {}))

    def get(self, key: str) -> dict[str, Any] | None:
        return self.items.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.items[key] = value
        if self.path is not None:
            atomic_write_json(self.path, {"settings": self.settings, "items": self.items})


@dataclass(eq=False)
class Row:
    """A candidate's line in the tournament: its cost, each round's result, the last round it
    reached and why it stopped (empty while it goes on)."""

    candidate: Candidate
    cost: Cost | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    reached: int | None = None
    stopped: str = ""

    @property
    def accuracy(self) -> float | None:
        return self.rounds[-1]["val_accuracy"] if self.rounds else None

    @property
    def done(self) -> int:
        return self.rounds[-1]["iterations"] if self.rounds else 0

    @property
    def trainable(self) -> bool:
        """Whether more iterations would change its set."""
        return (
            self.cost is not None
            and not self.candidate.selector
            and self.done < self.cost.planned_iterations
        )

    def measured_seconds(self) -> float:
        costing = self.cost.spent_seconds if self.cost is not None else 0.0
        return costing + sum(r["seconds"] for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.candidate.to_dict(),
            "cost": None if self.cost is None else asdict(self.cost),
            "rounds": list(self.rounds),
            "val_accuracy": self.accuracy,
            "iterations": self.done,
            "measured_seconds": self.measured_seconds(),
            "round": self.reached,
            "why": self.stopped,
        }


@dataclass
class Outcome:
    """The tournament's rows (every candidate), its winner, the seconds it counted and its
    number of rounds."""

    rows: list[Row]
    winner: Row
    spent_seconds: float
    rounds: int
    tie: str = ""  # why a finished candidate was preferred to a leader within the noise


class Tournament:
    """Successive halving of ``candidates`` within ``seconds`` (see the module's docstring), of
    which ``spent`` went before it; ``say`` receives one line per finished step."""

    def __init__(
        self,
        candidates: list[Candidate],
        runner: Runner,
        seconds: float,
        memo: Memo | None = None,
        say: Callable[[str], Any] = lambda _line: None,
        val_rows: int | None = None,
        spent: float = 0.0,
    ) -> None:
        self.rows = [Row(c) for c in candidates]
        self.runner, self.seconds, self.say = runner, float(seconds), say
        self.val_rows = val_rows  # the validation rows a score is taken on (None: no margin)
        self.memo = memo or Memo(None, {})
        self.spent = spent  # what the tournament's time paid for before it (choosing learners)
        self.eval_seconds = 0.0  # the longest scoring measured so far

    def left(self) -> float:
        return self.seconds - self.spent

    def _costed(self) -> tuple[list[Row], int]:
        """Cost every candidate and admit the distillers (:meth:`_admit`); the rows still in
        and the number of rounds."""
        for row in self.rows:
            self._cost(row)
        pool = [r for r in self.rows if not r.stopped and r.cost is not None]
        total = self._admit([r for r in pool if r.trainable])
        return [r for r in pool if not r.stopped], total

    def _entry(self, row: Row) -> float:
        """A distiller's least first round: its set-up, :data:`MIN_ITERATIONS` iterations (or
        its planned count, if fewer) and a scoring."""
        least = min(MIN_ITERATIONS, row.cost.planned_iterations)
        return row.cost.setup_seconds + least * row.cost.seconds_per_iteration + self.eval_seconds

    def _admit(self, rows: list[Row]) -> int:
        """Admit the most distillers of ``rows``, cheapest entry first, whose equal shares of
        round 0 (the time left over as many rounds as halving them takes) each buy their entry;
        stop the others with the reason. The number of rounds."""
        ranked = sorted(rows, key=lambda r: (self._entry(r), self.rows.index(r)))
        for k in range(len(ranked), 0, -1):
            total = _rounds(k)
            share = self.left() / total / k
            if all(self._entry(r) <= share for r in ranked[:k]):
                break
        else:
            k, total, share = 0, 1, self.left()
        for place, r in enumerate(ranked[k:], start=k + 1):
            # entering, it would be the place-th cheapest: the share it would get with as many
            with_it = self.left() / _rounds(place) / place
            r.stopped = (
                f"round 0: entering as the {_ordinal(place)} cheapest, its share of {with_it:.1f} s "
                f"({place} distillers, {_rounds(place)} round(s)) does not buy its entry:"
                f" its set-up ({r.cost.setup_seconds:.1f} s), "
                f"{min(MIN_ITERATIONS, r.cost.planned_iterations)} iterations at "
                f"{r.cost.seconds_per_iteration:.3g} s and the scoring ({self.eval_seconds:.1f} s)"
            )
        return total

    def plan(self) -> tuple[int, dict[Row, int]]:
        """Cost every candidate (a selector's set is made and scored: that is its cost) and
        return the number of rounds and the iterations round 0 would give each distiller,
        training none (``--dry-run``)."""
        pool, total = self._costed()
        return total, self._targets([r for r in pool if r.trainable], self.left() / total)

    def run(self) -> Outcome:
        pool, total = self._costed()
        for rnd in range(total):
            self._play(pool, rnd, total)
            pool = [r for r in pool if not r.stopped and r.rounds]
            if rnd < total - 1:
                pool = self._halve(pool, rnd)
        if not pool:
            costed = [r for r in self.rows if r.cost is not None]
            cheapest = min(costed, key=lambda r: r.cost.setup_seconds, default=None)
            need = (
                ""
                if cheapest is None
                else f"; the cheapest, {cheapest.candidate.label}, needs about "
                f"{cheapest.cost.setup_seconds + self.eval_seconds:.0f} s with its scoring"
            )
            raise ConfigError(
                f"--method auto: no candidate fits a tournament of {self.seconds:.0f} s (half "
                f"the budget){need}; give a larger --budget or name a method"
            )
        winner, tie = self._winner(pool)
        for r in pool:
            r.stopped = "the winner" if r is winner else "lost the last round"
        for r in self.rows:
            r.stopped = r.stopped or "not scored"
        return Outcome(self.rows, winner, self.spent, total, tie)

    def _winner(self, pool: list[Row]) -> tuple[Row, str]:
        """The best of ``pool`` (ties: the earlier candidate), unless it is a distiller short of
        its planned count that leads the best finished candidate by no more than a standard
        error (then that finished candidate), and then unless it is a synthetic set that leads
        the best set of real rows by no more than a standard error of the difference (then
        those real rows); with the reason (module docstring)."""
        best = self._best(pool)
        if not self.val_rows:
            return best, ""
        why = ""
        finished = [r for r in pool if not r.trainable]
        if best.trainable and finished:
            known = self._best(finished)
            margin = standard_error(known.accuracy, self.val_rows)
            lead = best.accuracy - known.accuracy
            if lead <= margin:
                why = (
                    f"{best.candidate.label} led by {100 * lead:.2f} points at {best.done:,} of "
                    f"its {best.cost.planned_iterations:,} iterations, within one standard error "
                    f"({100 * margin:.2f} points on {self.val_rows:,} validation rows), so the "
                    f"finished {known.candidate.label} was preferred"
                )
                best = known
        real = [r for r in pool if r.candidate.selector]
        if best.candidate.selector or not real:
            return best, why
        rows = self._best(real)
        margin = difference_error(best.accuracy, rows.accuracy, self.val_rows)
        lead = best.accuracy - rows.accuracy
        if lead > margin:
            return best, why
        return rows, (why + "; then " if why else "") + (
            f"{best.candidate.label}'s synthetic set led the best real rows, "
            f"{rows.candidate.label}, by {100 * lead:.2f} points, within one standard error of "
            f"the difference ({100 * margin:.2f} points on {self.val_rows:,} validation rows), "
            f"so the real rows were preferred"
        )

    def _best(self, rows: list[Row]) -> Row:
        """The row of the best validation accuracy (ties: the earlier candidate)."""
        return max(rows, key=lambda r: (r.accuracy, -self.rows.index(r)))

    # ------------------------------------------------------------------ steps
    def _cost(self, row: Row) -> None:
        key = f"cost:{row.candidate.label}"
        kept = self.memo.get(key)
        if kept is None and self.left() <= 0:
            row.stopped = "no time left in the tournament to cost it"
            return
        if kept is None:
            kept = asdict(self.runner.estimate(row.candidate))
            self.memo.put(key, kept)
        row.cost = Cost(**kept)
        self.spent += row.cost.spent_seconds
        self.eval_seconds = max(self.eval_seconds, row.cost.scoring_seconds)
        self.say(f"auto: costed {row.candidate.label} in {row.cost.spent_seconds:.1f} s")
        if row.candidate.selector or not row.cost.planned_iterations:  # no steps: made and
            # scored now, as its round 0 (a selection, or a method of no iterations: rded)
            need = row.cost.setup_seconds + self.eval_seconds
            if need > self.left():
                row.stopped = (
                    f"its estimate {need:.1f} s exceeds the {self.left():.1f} s left, so it "
                    "was not started"
                )
                return
            self._train(row, 0, 0, need * (1 + SLACK))

    def _play(self, pool: list[Row], rnd: int, total: int) -> None:
        """Round ``rnd`` of ``total``: each trainable row gets its share's iterations."""
        budget = self.left() / (total - rnd)
        trainable = [r for r in pool if r.trainable]
        targets = self._targets(trainable, budget)
        share = budget / len(trainable) if trainable else 0.0
        for row in pool:
            if row.stopped:
                continue
            if row not in targets:  # a selector, or at its planned count: its score carries
                row.reached = rnd
                continue
            first = not row.rounds
            target = min(targets[row], self._reach(row, self.left()))  # what the time left buys
            if target <= row.done:  # the time left buys none: a scored row's score carries
                if not row.rounds:
                    row.stopped = (
                        f"round {rnd}: its set-up, an iteration and a scoring exceed the "
                        f"{self.left():.1f} s left, so it was not started"
                    )
                row.reached = rnd
                continue
            need = row.cost.seconds(row.done, target, first) + self.eval_seconds
            # its share of the round at least: a fit's fixed costs are not in its pace, and a
            # cut at its estimate alone stops a quick distiller after an iteration or so
            self._train(row, rnd, target, min(max(need * (1 + SLACK), share), self.left()))

    def _reach(self, row: Row, seconds: float) -> int:
        """The iterations ``row`` reaches in ``seconds`` (its set-up, if it has not run, and a
        scoring counted)."""
        room = seconds - self.eval_seconds - (0.0 if row.rounds else row.cost.setup_seconds)
        return row.done + int(max(0.0, room) // max(row.cost.seconds_per_iteration, 1e-9))

    def _targets(self, rows: list[Row], budget: float) -> dict[Row, int]:
        """The iterations each of ``rows`` reaches in a round of ``budget`` seconds shared
        equally (a row whose share buys none is not trained this round)."""
        share = budget / len(rows) if rows else 0.0
        targets = {}
        for r in rows:
            target = min(r.cost.planned_iterations, self._reach(r, share))
            if target > r.done:
                targets[r] = target
        return targets

    def _train(self, row: Row, rnd: int, target: int, seconds: float) -> None:
        key = f"round:{row.candidate.label}:{target}"
        kept = self.memo.get(key)
        if kept is None:
            kept = asdict(self.runner.train(row.candidate, target, max(seconds, 1e-3)))
            self.memo.put(key, kept)
        got = Trained(**kept)
        self.spent += got.seconds
        self.eval_seconds = max(self.eval_seconds, got.eval_seconds)
        row.rounds.append({"round": rnd, **asdict(got)})
        row.reached = rnd
        self.say(
            f"auto: round {rnd}: {row.candidate.label} at {got.iterations:,} iterations: "
            f"validation accuracy {100 * got.val_accuracy:.2f} % ({got.seconds:.1f} s)"
        )

    def _halve(self, pool: list[Row], rnd: int) -> list[Row]:
        """The pool after round ``rnd``: the better half of the rows still training, and every
        finished row (its score carries)."""
        training = [r for r in pool if r.trainable]
        ranked = sorted(training, key=lambda r: (-r.accuracy, self.rows.index(r)))
        keep = math.ceil(len(ranked) / 2)
        for place, r in enumerate(ranked[keep:], start=keep + 1):
            r.stopped = (
                f"round {rnd}: ranked {place} of {len(ranked)} distillers by validation accuracy "
                f"(the best {keep} go on)"
            )
        return [r for r in pool if not r.stopped]


def standard_error(accuracy: float, rows: int) -> float:
    """The binomial standard error of an ``accuracy`` measured on ``rows`` rows."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / max(rows, 1))


def difference_error(first: float, second: float, rows: int) -> float:
    """The standard error of the difference of two accuracies measured on ``rows`` rows each,
    taken as independent binomials (conservative where the two sets err on the same rows)."""
    return math.hypot(standard_error(first, rows), standard_error(second, rows))


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _rounds(distillers: int) -> int:
    """The rounds of successive halving that take ``distillers`` down to one."""
    return max(1, math.ceil(math.log2(distillers))) if distillers > 1 else 1
