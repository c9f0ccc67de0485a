"""Progress of long loops: a bar on a terminal, plain lines everywhere else (``nohup``, CI
logs, notebooks' captured output), behind one small interface."""

from __future__ import annotations

import math
import re
import sys
import time
from typing import IO, Literal

from ddkit.errors import ConfigError

ProgressSetting = bool | Literal["auto", "bar", "lines"] | None

#: A first line written before any step after the first (whose pace says nothing of the others)
#: is followed by one with the time left this soon.
FIRST_ESTIMATE_SECONDS = 2.0

#: ``"auto"`` (the Python API's default) shows nothing until a loop has run this long, so quick
#: calls stay silent and long ones report themselves; ``True`` reports from the first step.
QUIET_START_SECONDS = 5.0


def progress_kind(setting: ProgressSetting, stream: IO[str] | None = None) -> str | None:
    """``"bar"``, ``"lines"`` or ``None`` (silent) for a ``progress`` argument: ``True`` and
    ``"auto"`` mean a bar when ``stream`` (default stderr) is a terminal, else lines (``"auto"``
    after :data:`QUIET_START_SECONDS`)."""
    if setting in (False, None):
        return None
    if setting in (True, "auto"):
        stream = stream or sys.stderr
        return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    if setting in ("bar", "lines"):
        return setting
    raise ValueError(f"progress must be True, False, 'auto', 'bar' or 'lines', got {setting!r}")


def to_stderr(line: str) -> None:
    """Write one line of a long task's news on standard error, at once (the default ``say`` of
    time budgets and of expert training)."""
    print(line, file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``42s``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str | float, what: str = "--budget") -> float:
    """Seconds of a duration written as ``90`` or ``90s``, ``30m``, ``1.5h`` or ``1h30m``; zero,
    negative, infinite or other spellings raise one ``ConfigError`` line naming ``what``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(str(text).strip().lower())
        if not match or not any(match.groups()):
            raise ConfigError(
                f"{what} {text!r} is not a duration; write e.g. 90s, 30m, 1.5h or 1h30m"
            )
        h, m, sec = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * h + 60 * m + sec
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} must be a positive, finite duration, got {text!r}")
    return seconds


def _shown(value: float) -> str:
    """A metric in a progress line: 4 significant digits, whole numbers from 10,000 on."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


class Progress:
    """Counts ``total`` steps (from ``start``) and reports them as a bar or as lines.

    Lines are written after the first step (with the estimated time left, so a long run says
    how long it will take before it has taken it), then every ``every_seconds``, and at the end;
    the time left goes at the pace of the steps after the first, which carries lazy set-up (a
    line written after the first step alone says so, and the next comes within seconds).
    ``first_after_seconds``: write the first line only once that long has passed (for many tiny
    steps whose first one carries a start-up cost, e.g. decoding workers starting), so that its
    estimate rests on more than that step. Under ``setting="auto"`` nothing is shown before
    :data:`QUIET_START_SECONDS`. ``note`` (e.g. what dominates a step's cost and the option that
    changes it) is written once: at the start of a loop shown from the start, else with its first
    report.
    """

    def __init__(
        self,
        desc: str,
        total: int,
        *,
        start: int = 0,
        setting: ProgressSetting = "auto",
        stream: IO[str] | None = None,
        every_seconds: float = 30.0,
        first_after_seconds: float = 0.0,
        unit: str = "it",
        note: str | None = None,
    ) -> None:
        self.desc, self.total, self.done, self.unit = desc, total, start, unit
        self.stop = total  # where the loop ends: total, unless told otherwise (expect_stop)
        self.note = note
        self.stream = stream or sys.stderr
        self.kind = progress_kind(setting, self.stream)
        self.every = every_seconds
        self._first, self._t0 = start, time.perf_counter()
        self._first_step: tuple[float, int] | None = None  # (time, steps done) after the first
        quiet = QUIET_START_SECONDS if setting == "auto" else 0.0
        self._quiet_until = self._t0 + quiet  # a quick loop under "auto" says nothing at all
        self._next_line = self._t0 + max(first_after_seconds, quiet)  # once start-up has passed
        self._bar = None
        if self.kind == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=start, desc=desc, dynamic_ncols=True, file=self.stream,
                delay=quiet,
            )  # fmt: skip
        if not quiet:  # shown from the start: the note before a first step that may take long
            self._say_note()

    def _say_note(self) -> None:
        """Write the note once (a shown loop only)."""
        if self.note and self.kind is not None:
            self._write(f"{self.desc}: {self.note}")
        self.note = None

    def expect_stop(self, at: int) -> None:
        """The loop will stop after step ``at`` (of ``total``), e.g. at a time budget: the time
        left counts to there, and the bar ends there."""
        self.stop = min(int(at), self.total)
        if self._bar is not None:
            self._bar.total = self.stop
            self._bar.refresh()

    def rate(self, pending: int = 0) -> float:
        """Steps per second since the start, counting ``pending`` steps not yet reported."""
        made = self.done - self._first + pending
        return made / max(time.perf_counter() - self._t0, 1e-9)

    def update(self, n: int = 1, metrics: dict[str, float] | None = None) -> None:
        self.done += n
        if self.note and time.perf_counter() >= self._quiet_until:
            self._say_note()
        if self._bar is not None:
            self._bar.update(n)
            if metrics:
                shown = {k: f"{v:.4g}" for k, v in list(metrics.items())[:3]}
                self._bar.set_postfix(shown, refresh=False)
            return
        if self.kind != "lines":
            return
        now = time.perf_counter()
        if self._first_step is None:  # when the first step ended: the later ones set the pace
            self._first_step = (now, self.done)
        if now >= self._next_line or (self.done >= self.stop and now >= self._quiet_until):
            self._line(now, metrics)

    def _line(self, now: float, metrics: dict[str, float] | None) -> None:
        self._next_line = now + self.every
        elapsed = now - self._t0
        pct = 100.0 * self.done / max(self.total, 1)
        text = f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {clock(elapsed)}"
        # the time left at the pace of the steps after the first, which carries lazy set-up
        # (compiling, allocating, a process's first kernels); none is known before them
        since, done_then = self._first_step or (self._t0, self._first)
        if self.stop < self.total:
            text += f", stopping at {self.stop:,} (time budget)"
        if self.done < self.stop and self.done > done_then:
            left = (now - since) / (self.done - done_then) * (self.stop - self.done)
            text += f", about {clock(left)} left"
        elif self.done < self.stop:
            text += ", time left from the next steps"
            self._next_line = now + min(self.every, FIRST_ESTIMATE_SECONDS)
        if metrics:
            text += ", " + ", ".join(f"{k}={_shown(v)}" for k, v in list(metrics.items())[:3])
        self._write(text)

    def _write(self, text: str) -> None:
        """One line on the stream (above the bar where there is one)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
