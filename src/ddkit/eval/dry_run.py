"""Dry runs of long set-ups and long steps.

Inside :func:`estimating`, what trains an artifact a method needs (expert trajectories, a
teacher) trains none; it times a part of one epoch (:func:`time_part`), scales it to the whole
artifact, records that cost (:class:`SetupCost`) and hands back a stand-in of the right shape,
so that the method's steps can be timed after it.

A step can be long too (dm over 1,000 classes at 224 px: minutes). Where the caller scales the
steps' pace (``estimating(steps_in_part=True)``) and the method can narrow its steps to a part
of its classes (:meth:`ddkit.methods.base.Distiller.narrow_steps`), :func:`plan_steps` first
times a step over one class (eagerly, without compilation); where that says a whole step may
take longer than :data:`PART_STEP_SECONDS`, the warm-up's steps run over a part of the classes
(as many as that says take about that long), and their pace is scaled to every class along the
line through the two sizes: a step's work for all classes alike (drawing, the image update)
counts once, its work per class once per class (:class:`StepPart`, :func:`step_scale`).
Otherwise the steps are timed whole, as before.

Outside :func:`estimating`, nothing changes. :func:`ddkit.runs.estimate_distill` is its one
caller.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

T = TypeVar("T")

#: A timed part grows until one pass over it takes this long (a rate, not a start-up) ...
PART_MIN_SECONDS = 2.0
#: ... unless the next, larger pass would bring the timing of one artifact past this.
PART_MAX_SECONDS = 12.0
#: A step that may take longer than this many seconds (as many steps over one class as there are
#: classes: a bound) is timed in part, over as many classes as that bound says take this long.
PART_STEP_SECONDS = 12.0
#: A step over the part is scaled along the line through it and a step over one class where it
#: took at least this many times as long (else in proportion to the classes: the estimate errs
#: long rather than extrapolate a difference that noise may have made).
LINE_MIN_RATIO = 1.5


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


@dataclass
class StepPart:
    """How a dry run times the steps of a method over ``whole`` classes: first steps over one
    class (eagerly; ``probes``: their seconds, the fastest being :attr:`one`), then the
    warm-up's steps over ``part`` classes (``steps``: their seconds, appended as they run,
    :meth:`timing`), whose pace is scaled by :attr:`scale` to a step over every class along
    the line through the two sizes: a step's work for all classes alike (drawing, the image
    update) counts once, the rest per class. ``part == whole``: whole steps, scale 1.
    ``spent``: the first steps' seconds, which the set-up does not count (the real run makes
    none); ``seconds``: nothing to add to the set-up (the warm-up's own first-step excess,
    compilation, counts as for whole steps)."""

    part: int
    whole: int
    probes: tuple[float, ...]
    steps: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def spent(self) -> float:
        """The first steps' seconds (the set-up does not count them)."""
        return sum(self.probes)

    @property
    def one(self) -> float:
        """A step over one class: the fastest first step (the first pays lazy start-up)."""
        return min(self.probes)

    @property
    def pace(self) -> float | None:
        """Seconds of a step over the part: the mean of the warm-up's steps after the first
        (the first alone where there is no other; ``None`` before any)."""
        later = self.steps[1:] or self.steps
        return sum(later) / len(later) if later else None

    @property
    def per_class(self) -> float:
        """Seconds a class adds to a step: the slope of the line through a step over one class
        and the part's pace, where the part took at least :data:`LINE_MIN_RATIO` times the one
        class's step (else the two may differ by noise alone: all of the part's pace counts per
        class, and the estimate errs long); never more than the part's pace per class."""
        pace = self.pace
        if self.part >= self.whole or pace is None:
            return 0.0
        if pace < LINE_MIN_RATIO * self.one:
            return pace / self.part
        return min((pace - self.one) / (self.part - 1), pace / self.part)

    @property
    def scale(self) -> float:
        """The factor from a step over ``part`` classes to a step over all of them."""
        pace = self.pace
        if self.part >= self.whole or not pace:
            return self.whole / max(min(self.part, self.whole), 1)
        return (pace + self.per_class * (self.whole - self.part)) / pace

    def text(self) -> str:
        """The estimate line's words for it: what was timed and how it was scaled."""
        first = f"a first step over 1 of {self.whole:,} classes took {self.one:.3g} s"
        if self.part >= self.whole:
            return f"{first}, so whole steps were timed"
        return (
            f"steps over {self.part:,} of {self.whole:,} classes timed, scaled "
            f"x{self.scale:.3g} to all classes at {self.per_class:.3g} s a class ({first})"
        )

    def timing(self, step: Callable[[int], T]) -> Callable[[int], T]:
        """``step``, its seconds appended to :attr:`steps` at every call."""

        def timed(iteration: int) -> T:
            t0 = step_clock()
            out = step(iteration)
            self.steps.append(step_clock() - t0)
            return out

        return timed


def step_scale(costs: Sequence[SetupCost | StepPart]) -> float:
    """The factor a warm-up's pace is scaled by: that of the :class:`StepPart` among ``costs``
    (1 where the steps were timed whole)."""
    return math.prod(c.scale for c in costs if isinstance(c, StepPart))


def steps_in_part() -> bool:
    """Whether the dry run under way scales a partial step's pace (:func:`estimating`)."""
    return _COSTS.get() is not None and _STEPS_IN_PART.get()


def part_of_step(one: float, whole: int, target: float = PART_STEP_SECONDS) -> int:
    """How many of ``whole`` classes a dry run's steps run over, where a step over one class
    took ``one`` seconds: all of them where ``whole`` such steps take at most ``target``
    seconds (a bound of a whole step: its work for all classes alike counts once there);
    else as many as that bound says take ``target``, at least two (a line needs two sizes)."""
    if one * whole <= target:
        return whole
    return min(whole, max(2, int(target // max(one, 1e-12))))


def plan_steps(
    narrow: Callable[[int | None], bool],
    step: Callable[[], object],
    whole: int,
    target: float = PART_STEP_SECONDS,
) -> StepPart | None:
    """Under a dry run that scales partial steps (:func:`steps_in_part`), for a method whose
    steps ``narrow`` can restrict to their first N classes (``narrow(N)`` returns whether it
    can; ``narrow(None)``: all again): time ``step`` eagerly over one class, and again where
    that says a whole step may pass ``target`` seconds (the first paid lazy start-up) and
    there is time for it; leave the steps narrowed to :func:`part_of_step`'s part (every class
    where a whole step is short). Record and return the :class:`StepPart`; ``None`` (nothing
    done) outside such a dry run, for a method that cannot narrow, or for one class."""
    if not steps_in_part() or whole < 2 or not narrow(1):
        return None
    with _eager():
        probes = [_timed(lambda _n: step(), 1)[0]]
        if part_of_step(probes[0], whole, target) < whole and probes[0] < target / 2:
            probes.append(_timed(lambda _n: step(), 1)[0])
    part = part_of_step(min(probes), whole, target)
    narrow(None if part >= whole else part)
    planned = StepPart(part, whole, tuple(probes))
    record(planned)
    return planned


def step_clock() -> float:
    """``time.perf_counter()`` once the GPU's queued work has finished (where CUDA is in use:
    its kernels run asynchronously, so a step's wall time is only known after a sync)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def _eager() -> contextlib.AbstractContextManager[object]:
    """A context in which ``torch.compile``d functions run eagerly (a first step compiles
    nothing it would not keep), where torch can say so."""
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance is not None else contextlib.nullcontext()
