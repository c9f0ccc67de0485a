"""Dry runs of long set-ups and long steps.

Inside :func:`estimating`, what trains an artifact a method needs (expert trajectories, a
teacher) trains none; it times a part of one epoch (:func:`time_part`), scales it to the whole
artifact, records that cost (:class:`SetupCost`) and hands back a stand-in of the right shape,
so that the method's steps can be timed after it.

A step can be long too (dm over 1,000 classes at 224 px: minutes). Where the caller scales the
steps' pace (``estimating(steps_in_part=True)``) and the method can narrow its steps to a part
of its classes (:meth:`ddkit.methods.base.Distiller.narrow_steps`), :func:`plan_steps` first
times one step over one class (eagerly, without compilation); where that says a whole step
would take longer than :data:`PART_STEP_SECONDS`, the warm-up's steps run over as many classes
as take about that long and their pace is scaled linearly to every class
(:class:`StepPart`, :func:`step_scale`); otherwise the steps are timed whole, as before.
Outside, nothing changes. :func:`ddkit.runs.estimate_distill` is the one caller of
:func:`estimating`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

T = TypeVar("T")

#: A timed part grows until one pass over it takes this long (a rate, not a start-up) ...
PART_MIN_SECONDS = 2.0
#: ... unless the next, larger pass would bring the timing of one artifact past this.
PART_MAX_SECONDS = 12.0
#: A step estimated past this many seconds (from a first step over one class) is timed in part:
#: over as many classes as take about this long, the pace scaled to every class.
PART_STEP_SECONDS = 6.0


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


_COSTS: ContextVar[list[SetupCost | StepPart] | None] = ContextVar(
    "ddkit_setup_costs", default=None
)
_STEPS_IN_PART: ContextVar[bool] = ContextVar("ddkit_steps_in_part", default=False)


@contextmanager
def estimating(*, steps_in_part: bool = False) -> Iterator[list[SetupCost | StepPart]]:
    """Within: artifacts are timed in part and stood in for, not trained; yields the list that
    collects their :class:`SetupCost` records. ``steps_in_part``: the caller scales the steps'
    pace by :func:`step_scale` of that list, so a method's long steps may be timed over a part
    of its classes (:func:`plan_steps`, which then records a :class:`StepPart` there)."""
    costs: list[SetupCost | StepPart] = []
    token, parts = _COSTS.set(costs), _STEPS_IN_PART.set(steps_in_part)
    try:
        yield costs
    finally:
        _STEPS_IN_PART.reset(parts)
        _COSTS.reset(token)


def is_estimating() -> bool:
    """Whether a dry run is under way here (:func:`estimating`)."""
    return _COSTS.get() is not None


def record(cost: SetupCost | StepPart) -> None:
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


@dataclass(frozen=True)
class StepPart:
    """How a dry run timed the steps of a method over ``whole`` classes: a first step over one
    class (eagerly) took ``probe`` seconds, then the warm-up's steps ran over ``part`` classes
    and their pace is scaled by :attr:`scale` (``part == whole``: whole steps, scale 1).
    ``spent``: the first step's seconds, which the set-up does not count (the real run makes no
    such step); ``seconds``: nothing to add to the set-up (the steps' own first-step excess,
    compilation, counts as for whole steps)."""

    part: int
    whole: int
    probe: float
    spent: float = 0.0
    seconds: float = 0.0

    @property
    def scale(self) -> float:
        """The factor from a step over ``part`` classes to a step over all of them."""
        return self.whole / max(self.part, 1)

    def text(self) -> str:
        """The estimate line's words for it: what was timed and how it was scaled."""
        first = f"a first step over 1 of {self.whole:,} classes took {self.probe:.3g} s"
        if self.part >= self.whole:
            return f"{first}, so whole steps were timed"
        return (
            f"{first}, so steps over {self.part:,} of {self.whole:,} classes were timed, "
            f"scaled x{self.scale:.3g} to a whole step"
        )


def step_scale(costs: Sequence[SetupCost | StepPart]) -> float:
    """The factor a warm-up's pace is scaled by: that of the :class:`StepPart` among ``costs``
    (1 where the steps were timed whole)."""
    return math.prod(c.scale for c in costs if isinstance(c, StepPart))


def steps_in_part() -> bool:
    """Whether the dry run under way scales a partial step's pace (:func:`estimating`)."""
    return _COSTS.get() is not None and _STEPS_IN_PART.get()


def part_of_step(probe: float, whole: int, target: float = PART_STEP_SECONDS) -> int:
    """How many of ``whole`` classes a dry run's steps run over, where one step over one class
    took ``probe`` seconds: all of them where a whole step, at that pace, takes at most
    ``target`` seconds; else as many as take about ``target`` (at least one). The probe's pace
    includes a step's work that does not follow the classes, so the part errs small and the
    linear scaling errs long."""
    if probe * whole <= target:
        return whole
    return max(1, min(whole, int(target // max(probe, 1e-12))))


def plan_steps(
    narrow: Callable[[int | None], bool],
    step: Callable[[], object],
    whole: int,
    target: float = PART_STEP_SECONDS,
) -> StepPart | None:
    """Under a dry run that scales partial steps (:func:`steps_in_part`), for a method whose
    steps ``narrow`` can restrict to their first N classes (``narrow(N)`` returns whether it
    can; ``narrow(None)``: all again): time ``step`` over one class, eagerly (a second time
    where the first, which pays lazy start-up, says a whole step is long), and leave the steps
    narrowed to :func:`part_of_step`'s part; record and return the :class:`StepPart`. ``None``
    (nothing done) outside such a dry run, for a method that cannot narrow, or for one class."""
    if not steps_in_part() or whole < 2 or not narrow(1):
        return None
    with _eager():
        probe, _ = _timed(lambda _n: step(), 1)
        spent = probe
        if probe * whole > target and probe < target:  # past lazy start-up: the pace
            again, _ = _timed(lambda _n: step(), 1)
            probe, spent = min(probe, again), spent + again
    part = part_of_step(probe, whole, target)
    narrow(None if part >= whole else part)
    planned = StepPart(part, whole, probe, spent=spent)
    record(planned)
    return planned


def _eager() -> contextlib.AbstractContextManager[object]:
    """A context in which ``torch.compile``d functions run eagerly (a first step compiles
    nothing it would not keep), where torch can say so."""
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance is not None else contextlib.nullcontext()
