"""A time budget for a distillation (``ddkit distill --budget 30m``, ``fit(callbacks=[...])``).

:class:`TimeBudget` times the first steps of a fit, works out how many of the planned iterations
fit in the time left, says so once, and asks the fit to stop there: the run ends with a valid
set of the iterations made and a checkpoint from which ``--resume`` continues towards the
planned total. The schedule is the planned run's (a method whose schedule depends on the total
follows it as far as it gets), so the set is that run stopped early, not a shorter run.
A step that would end past the deadline is not started, whatever the first estimate said; and
where the steps turn out faster than the estimate (lazy set-up or other jobs behind them), the
run goes on past the stated count while the time left fits more steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ddkit.errors import ConfigError
from ddkit.methods.base import Callback
from ddkit.progress import clock, to_stderr

if TYPE_CHECKING:
    from ddkit.methods.base import Distiller

#: Steps after the first (which carries lazy set-up) timed before the budget is planned...
MEASURED_STEPS = 2
#: ...or at least this share of the budget spent on steps, whichever comes first.
MEASURED_SHARE = 0.05


class TimeBudget(Callback):
    """Stop a fit so that it ends within ``seconds`` of ``started`` (a reading of ``now``,
    default: when the callback is made), after at least one step. One process only: under
    :mod:`ddkit.distributed` the ranks could stop at different steps.

    ``say`` receives the one line that states the plan (default: standard error); ``now`` is
    the clock (default :func:`time.monotonic`)."""

    def __init__(
        self,
        seconds: float,
        *,
        started: float | None = None,
        say: Callable[[str], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigError(f"a time budget must be a positive number of seconds, got {seconds}")
        self.seconds, self.now = float(seconds), now
        self.deadline = (now() if started is None else started) + self.seconds
        self.say = say or to_stderr
        self.stop_at: int | None = None  # the iteration count planned to fit
        self.done = 0
        self.total = 0
        self._steps: list[float] = []
        self._last = 0.0

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        self.method, self.total, self.done = method, total, start
        self._last = self.now()

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        now = self.now()
        self._steps.append(now - self._last)
        self._last, self.done = now, iteration + 1
        if self.stop_at is None and self._measured():
            self._plan(method, now)

    def _measured(self) -> bool:
        later = self._steps[1:]
        return len(later) >= MEASURED_STEPS or sum(self._steps) >= MEASURED_SHARE * self.seconds

    def _pace(self) -> float:
        """Seconds per step: the mean of the steps after the first where there are any."""
        later = self._steps[1:] or self._steps
        return sum(later) / len(later) if later else 0.0

    def _plan(self, method: Distiller, now: float) -> None:
        pace = self._pace()
        self._stop_where_time_ends(now, pace)
        timed = f"{pace:.3g} s each over {len(self._steps)} steps"
        if self.stop_at >= self.total:
            self.say(
                f"{method.name}: time budget {clock(self.seconds)}: all {self.total:,} "
                f"iterations fit ({timed})"
            )
        else:
            self.say(
                f"{method.name}: time budget {clock(self.seconds)}: {self.stop_at:,} of "
                f"{self.total:,} iterations fit ({timed}); the run stops there with a valid "
                "set, and --resume (with --budget or without) continues it"
            )

    def stop_requested(self) -> bool:
        if self.done >= self.total:
            return False
        now, pace = self.now(), self._pace()
        if now + pace > self.deadline:  # the next step would overrun
            return True
        if self.stop_at is not None and self.done >= self.stop_at:
            self._stop_where_time_ends(now, pace)  # faster steps than planned: more fit
        return False

    def _stop_where_time_ends(self, now: float, pace: float) -> None:
        """Plan to stop after the steps of ``pace`` seconds that fit between ``now`` and the
        deadline (the progress report counts the time left to there)."""
        fit = int(max(0.0, self.deadline - now) // max(pace, 1e-9))
        self.stop_at = min(self.total, self.done + fit)
        self.method.stop_at_ = self.stop_at
