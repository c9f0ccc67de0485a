"""Dry runs of long set-ups: inside :func:`estimating`, what trains an artifact a method needs
(expert trajectories, a teacher) trains none; it times a part of one epoch (:func:`time_part`),
scales it to the whole artifact, records that cost (:class:`SetupCost`) and hands back a
stand-in of the right shape, so that the method's steps can be timed after it. Outside, nothing
changes. :func:`ddkit.runs.estimate_distill` is the one caller of :func:`estimating`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: A timed part grows until one pass over it takes this long (a rate, not a start-up) ...
PART_MIN_SECONDS = 2.0
#: ... unless the next, larger pass would bring the timing of one artifact past this.
PART_MAX_SECONDS = 12.0


@dataclass(frozen=True)
class SetupCost:
    """What an artifact the dry run did not make would cost: ``seconds`` for ``what``, scaled
    from ``timed`` (``""`` when cached: nothing to make); ``spent``: the seconds the dry run
    spent timing it, which its wall-clock set-up already counts."""

    what: str
    seconds: float
    timed: str = ""
    spent: float = 0.0

    def text(self) -> str:
        """The estimate line's words for it."""
        if not self.timed:
            return f"{self.what}: cached, no cost"
        return f"{self.what}: about {self.seconds:.3g} s, from {self.timed}"


_COSTS: ContextVar[list[SetupCost] | None] = ContextVar("ddkit_setup_costs", default=None)


@contextmanager
def estimating() -> Iterator[list[SetupCost]]:
    """Within: artifacts are timed in part and stood in for, not trained; yields the list that
    collects their :class:`SetupCost` records."""
    costs: list[SetupCost] = []
    token = _COSTS.set(costs)
    try:
        yield costs
    finally:
        _COSTS.reset(token)


def is_estimating() -> bool:
    """Whether a dry run is under way here (:func:`estimating`)."""
    return _COSTS.get() is not None


def record(cost: SetupCost) -> None:
    """Add ``cost`` to the dry run under way (nothing outside one)."""
    costs = _COSTS.get()
    if costs is not None:
        costs.append(cost)


@dataclass(frozen=True)
class PartTiming(Generic[T]):
    """A pass over ``rows`` of ``total`` rows took ``seconds``; ``result`` is the last pass's
    output, ``spent`` the seconds of every pass."""

    result: T
    rows: int
    total: int
    seconds: float
    spent: float

    @property
    def pass_seconds(self) -> float:
        """One whole pass over the ``total`` rows, at the timed pace."""
        return self.seconds * self.total / max(self.rows, 1)

    def text(self) -> str:
        """What was timed, in words."""
        share = "all" if self.rows >= self.total else f"{self.rows:,} of {self.total:,}"
        return f"one pass over {share} rows in {self.seconds:.3g} s"


def time_part(
    run: Callable[[int], T],
    total: int,
    batch: int,
    *,
    min_seconds: float = PART_MIN_SECONDS,
    max_seconds: float = PART_MAX_SECONDS,
) -> PartTiming[T]:
    """Time ``run(n)``, one pass over the first ``n`` of ``total`` rows in batches of
    ``batch``: one batch first (it carries lazy start-up), then twice the rows each time,
    until two passes after the first were made and the last took ``min_seconds``, or one
    covered every row, unless the next pass would bring the timing past ``max_seconds`` at
    this pace. The pace is that of the fastest pass after the first (on a shared machine a
    pass may be slowed by other work; none is sped up by it), or the first's where it was
    the only one."""
    n = max(1, min(int(batch), int(total)))
    took, result = _timed(run, n)
    passes, spent = [(took, n)], took
    while n < total and (len(passes) < 3 or took < min_seconds):
        bigger = min(int(total), 2 * n)
        if spent + took * bigger / n > max_seconds:
            break
        n = bigger
        took, result = _timed(run, n)
        passes.append((took, n))
        spent += took
    seconds, rows = min(passes[1:] or passes, key=lambda p: p[0] / p[1])
    return PartTiming(result, rows, int(total), seconds, spent)


def _timed(run: Callable[[int], T], n: int) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = run(n)
    return time.perf_counter() - t0, result
