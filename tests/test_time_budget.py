"""Time budgets (issue 82): a fit under ``TimeBudget`` says once how many iterations fit, stops
there with a valid set, and ``--resume`` continues it to the uninterrupted run's set."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.base import Callback
from ddkit.methods.time_budget import TimeBudget
from ddkit.progress import parse_duration
from ddkit.testing_data import tiny_digits


class FakeClock(Callback):
    """A clock that advances ``per_step`` seconds at each step's end (listed before the budget,
    so the budget sees the step's time)."""

    def __init__(self, per_step: float) -> None:
        self.t, self.per_step = 0.0, per_step

    def __call__(self) -> float:
        return self.t

    def on_step_end(self, method, iteration, metrics) -> None:  # noqa: ANN001
        self.t += self.per_step


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800),
                                               ("1.5h", 5400), ("1h30m", 5400), (45, 45)])  # fmt: skip
def test_durations_are_read_in_the_usual_spellings(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0", "-5", "inf", "nan", "", "1x", "m", float("nan")])
def test_other_durations_are_refused_in_one_line(text) -> None:
    with pytest.raises(ConfigError, match="--budget") as err:
        parse_duration(text)
    assert "\n" not in str(err.value)


def _dm():
    return create_method("dm", batch_real=8, augment="none")


def test_a_budget_stops_where_the_measured_pace_says_and_says_so_once(tmp_path) -> None:
    train, lines = tiny_digits().train, []
    clock = FakeClock(per_step=1.0)
    budget = TimeBudget(10.5, started=0.0, say=lines.append, now=clock)
    syn = _dm().fit(train, 1, iterations=40, seed=0, callbacks=[clock, budget], progress=False,
                    checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    assert syn.meta["iterations"] == 10 and syn.meta["planned_iterations"] == 40
    assert len(lines) == 1 and "10 of 40 iterations fit" in lines[0]
    assert torch.isfinite(syn.images).all()


def test_a_stopped_run_resumes_to_the_uninterrupted_set(tmp_path) -> None:
    train = tiny_digits().train
    whole = _dm().fit(train, 1, iterations=12, seed=0, progress=False)
    clock = FakeClock(per_step=1.0)
    budget = TimeBudget(5.5, started=0.0, say=lambda _: None, now=clock)
    ckpt = tmp_path / "ckpt"
    part = _dm().fit(train, 1, iterations=12, seed=0, callbacks=[clock, budget],
                     checkpoint_dir=ckpt, progress=False)  # fmt: skip
    assert part.meta["iterations"] == 5 and not torch.equal(part.images, whole.images)
    rest = _dm().fit(train, 1, iterations=12, seed=0, checkpoint_dir=ckpt, resume=True,
                     progress=False)  # fmt: skip
    assert rest.meta["iterations"] == 12 and "planned_iterations" not in rest.meta
    assert torch.equal(rest.images, whole.images)


def test_a_step_that_would_overrun_is_not_started() -> None:
    """The pace changes after the plan: the deadline still holds."""
    train, clock = tiny_digits().train, FakeClock(per_step=1.0)
    budget = TimeBudget(6.5, started=0.0, say=lambda _: None, now=clock)

    class Slower(Callback):
        def on_step_end(self, method, iteration, metrics) -> None:  # noqa: ANN001
            if iteration >= 3:
                clock.t += 2.0  # steps now take three seconds

    syn = _dm().fit(train, 1, iterations=40, seed=0, callbacks=[clock, Slower(), budget],
                    progress=False)  # fmt: skip
    assert clock.t <= 6.5 + 3.0 and syn.meta["iterations"] < 6


def test_steps_faster_than_planned_use_the_time_left() -> None:
    train, clock = tiny_digits().train, FakeClock(per_step=2.0)
    budget = TimeBudget(20.5, started=0.0, say=lambda _: None, now=clock)

    class Faster(Callback):
        def on_step_end(self, method, iteration, metrics) -> None:  # noqa: ANN001
            if iteration >= 3:
                clock.t -= 1.0  # steps now take one second

    syn = _dm().fit(train, 1, iterations=40, seed=0, callbacks=[clock, Faster(), budget],
                    progress=False)  # fmt: skip
    assert budget.stop_at is not None and syn.meta["iterations"] > 10  # 10 were planned
    assert clock.t <= 20.5


def test_a_budget_that_fits_everything_runs_everything() -> None:
    lines: list[str] = []
    clock = FakeClock(per_step=1.0)
    budget = TimeBudget(100.0, started=0.0, say=lines.append, now=clock)
    syn = _dm().fit(tiny_digits().train, 1, iterations=5, seed=0, callbacks=[clock, budget],
                    progress=False)  # fmt: skip
    assert syn.meta["iterations"] == 5 and "all 5 iterations fit" in lines[0]


def _distill(out, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ddkit", "distill", "--dataset", "digits", "--method", "dm",
           "--ipc", "1", "--iterations", "1000000", "--set", "batch_real=8", "--out", str(out),
           "--quiet", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_command_stops_at_its_budget_with_a_set_that_resumes(tmp_path) -> None:
    from ddkit.data.synthetic import SyntheticSet

    out = tmp_path / "run"
    started = time.monotonic()
    first = _distill(out, "--budget", "12s")
    assert first.returncode == 0, first.stderr
    assert time.monotonic() - started < 12 + 30  # a step, the save and the exit past it
    assert "iterations fit" in first.stderr and "stopped at the time budget" in first.stdout
    done = SyntheticSet.load(out / "synthetic").meta["iterations"]
    assert 0 < done < 1_000_000
    again = _distill(out, "--resume", "--budget", "12s")
    assert again.returncode == 0, again.stderr
    assert SyntheticSet.load(out / "synthetic").meta["iterations"] > done


def test_a_bad_budget_is_refused_before_any_work(tmp_path) -> None:
    bad = _distill(tmp_path / "run", "--budget", "soon")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--budget 'soon' is not a duration" in bad.stderr
    assert not (tmp_path / "run").exists()


def test_a_command_called_inside_python_counts_from_its_own_start() -> None:
    """``main([...])`` in a long-lived process (a notebook, a test session) must not count the
    process's age against a budget; a process run for one command counts its start-up."""
    from ddkit.commands import command_started, mark_command_start
    from ddkit.meter import process_seconds

    time.sleep(0.2)  # the process is older than the command about to start
    mark_command_start(whole_process=False)
    assert time.monotonic() - command_started() < 0.1
    mark_command_start(whole_process=True)
    assert abs((time.monotonic() - command_started()) - process_seconds()) < 1.0


def test_the_progress_report_counts_to_where_the_budget_stops(capsys) -> None:
    from ddkit.methods.base import ProgressReport

    clock = FakeClock(per_step=1.0)
    budget = TimeBudget(10.5, started=0.0, say=lambda line: None, now=clock)
    report = ProgressReport("dm", "lines")
    syn = _dm().fit(tiny_digits().train, 1, iterations=40, seed=0, progress=False,
                    callbacks=[clock, report, budget])  # fmt: skip
    assert syn.meta["iterations"] == 10
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "10/40" in last and "stopping at 10 (time budget)" in last
