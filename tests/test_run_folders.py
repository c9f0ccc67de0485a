"""Run folders are protected: no silent replacement, nothing written by a rejected command,
one process per folder."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pytest

from ddkit.cli import main
from ddkit.errors import ConfigError
from ddkit.runs import DistillRequest, distill_run, run_lock

RUN = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _cli(args, capsys):
    code = main(args)
    _, err = capsys.readouterr()
    return code, err


def test_a_finished_run_is_not_replaced_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli([*RUN, "--out", str(out)], capsys)[0] == 0
    before = _snapshot(out)
    code, err = _cli([*RUN, "--out", str(out), "--seed", "3"], capsys)
    assert code == 2 and err.count("\n") == 1 and "already holds a run" in err
    assert "--resume" in err and _snapshot(out) == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "lr_img=abc"], "unknown option 'lr_img'"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
        (["--seed", "5"], "config differs in seed"),
        (["--ipc", "1000"], "larger than class"),
    ],
)
def test_a_rejected_command_leaves_the_run_folder_as_it_was(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert _cli([*RUN, "--out", str(out)], capsys)[0] == 0
    before = _snapshot(out)
    code, err = _cli([*RUN, "--out", str(out), "--resume", *extra], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert _snapshot(out) == before


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    request = DistillRequest("digits", "random", 1, seed=0)
    with run_lock(out):  # this process holds the folder
        with pytest.raises(ConfigError, match="is in use by process"):
            distill_run(request, out)
    assert not (out / ".lock").exists()
    distill_run(request, out)  # released: it runs


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (out / ".lock").write_text(dead.stdout.strip())
    distill_run(DistillRequest("digits", "random", 1, seed=0), out)
    assert (out / "synthetic").is_dir() and not (out / ".lock").exists()
    assert int(dead.stdout) != os.getpid()


def test_resume_with_more_iterations_extends_a_finished_run(tmp_path):
    import torch

    from ddkit.testing import method_test_overrides, tiny_digits

    splits = tiny_digits()
    opts = method_test_overrides("dm")

    def run(out, iterations, resume=False):
        request = DistillRequest("digits", "dm", 2, iterations=iterations, seed=1, options=opts)
        return distill_run(request, out, splits=splits, checkpoint_every=2, resume=resume)

    run(tmp_path / "short", 4)
    extended = run(tmp_path / "short", 7, resume=True)
    straight = run(tmp_path / "straight", 7)
    assert torch.equal(extended.images, straight.images)
    log = (tmp_path / "short" / "log.jsonl").read_text().splitlines()
    assert len(log) == 7 and log == (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    with pytest.raises(ConfigError, match="set up for 7; pass a larger count"):
        run(tmp_path / "short", 5, resume=True)


@pytest.mark.parametrize("existed", [False, True])
def test_a_command_refused_by_the_method_writes_nothing_and_the_corrected_one_runs(
    tmp_path, capsys, existed
):
    out = tmp_path / "run"
    if existed:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = _snapshot(out) if existed else None
    dm = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet"]
    bad = [*dm, "--iterations", "1", "--set", "codec=haba:3", "--out", str(out)]
    code, err = _cli(bad, capsys)  # refused once the method sees the data, not when created
    assert code == 2 and "does not fit the bytes of IPC 1" in err
    assert (_snapshot(out) == before) if existed else not out.exists()
    code, err = _cli([*dm, "--iterations", "1", "--out", str(out)], capsys)
    assert code == 0, err


@pytest.mark.parametrize("existed", [False, True])
def test_an_unexpected_error_before_the_first_checkpoint_leaves_the_folder_as_found(
    tmp_path, capsys, monkeypatch, existed
):
    """An unexpected error in a fresh run's first step (such as KIP's unfold on too deep a
    kernel, an MLflow store refusal) left config.json behind, so the corrected command was
    refused as 'already holds a run' (issue 42); a run with a checkpoint keeps its folder."""
    from ddkit.methods import create_method

    out, kept = tmp_path / "run", tmp_path / "kept"
    if existed:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = _snapshot(out) if existed else None
    dm = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet"]
    dm += ["--iterations", "2", "--checkpoint-every", "1"]
    cls = type(create_method("dm"))
    step = cls.step

    def fails_at(iteration_that_fails):
        def patched(self, iteration):
            if iteration == iteration_that_fails:
                raise RuntimeError("boom")
            return step(self, iteration)

        monkeypatch.setattr(cls, "step", patched)

    fails_at(1)  # after one checkpointed step: the run is kept for --resume
    code, err = _cli([*dm, "--out", str(kept)], capsys)
    assert code == 2 and "RuntimeError: boom" in err
    assert (kept / "checkpoint" / "state.json").exists()
    fails_at(0)  # before any checkpoint: nothing to resume, nothing left
    code, err = _cli([*dm, "--out", str(out)], capsys)
    assert code == 2 and "RuntimeError: boom" in err
    assert (_snapshot(out) == before) if existed else not out.exists()
    monkeypatch.setattr(cls, "step", step)
    assert _cli([*dm, "--out", str(out)], capsys)[0] == 0


@pytest.mark.parametrize("content", ["[]", '"x"', '{"method_config": 3, "iterations": "x"}'])
def test_a_config_json_of_the_wrong_shape_is_refused_in_one_line(tmp_path, capsys, content):
    out = tmp_path / "run"
    assert _cli([*RUN, "--out", str(out)], capsys)[0] == 0
    (out / "config.json").write_text(content)
    code, err = _cli([*RUN, "--out", str(out), "--resume"], capsys)
    assert code == 2 and err.count("\n") == 1 and "config" in err, err
    code, err = _cli(
        ["evaluate", str(out), "--protocol", "smoke", "--runs", "1", "--quiet"], capsys
    )
    assert "Traceback" not in err and err.count("\n") <= 1


def test_a_log_line_of_the_wrong_shape_ends_the_kept_log_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    dm = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet"]
    dm += ["--set", "batch_real=8", "--checkpoint-every", "2", "--out", str(out)]
    assert _cli([*dm, "--iterations", "2"], capsys)[0] == 0
    with open(out / "log.jsonl", "a") as f:
        f.write('[1, 2]\n{"iteration": "x"}\n')
    code, err = _cli([*dm, "--iterations", "4", "--resume"], capsys)
    assert code == 0, err
    from ddkit.plots import read_log

    assert [r["iteration"] for r in read_log(out / "log.jsonl")] == [0, 1, 2, 3]
    packed = out / "log.jsonl.gz"  # as a finished bench cell keeps its log
    packed.write_bytes(gzip.compress((out / "log.jsonl").read_bytes()))
    assert read_log(packed) == read_log(out / "log.jsonl")


def test_the_cost_estimate_times_a_warm_up_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import ddkit.runs as runs
    from ddkit.testing import tiny_digits

    calls = []
    real_fit = runs.Distiller.fit

    def counting_fit(self, *args, **kwargs):
        calls.append(kwargs["iterations"])
        return real_fit(self, *args, **kwargs)

    steps = []
    real_end = runs.StepTimer.on_step_end

    def counting_end(self, *args):
        steps.append(1)
        return real_end(self, *args)

    monkeypatch.setattr(runs.Distiller, "fit", counting_fit)
    monkeypatch.setattr(runs.StepTimer, "on_step_end", counting_end)
    monkeypatch.setattr(runs, "WARMUP_MIN_SECONDS", 0.0)
    cost = runs.estimate_distill(
        dataset="digits", method="dm", ipc=2, iterations=40, splits=tiny_digits()
    )
    monkeypatch.undo()
    # the real schedule (40 iterations), ended after three warm-up steps that stand for forty
    assert calls == [40] and len(steps) == 3 and cost.iterations == 40
    assert cost.seconds_per_iteration > 0 and cost.setup_seconds >= 0
    assert cost.total_seconds == pytest.approx(
        cost.startup_seconds + cost.setup_seconds + 40 * cost.seconds_per_iteration
    )
    assert "40 iterations" in cost.line("dm") and "about" in cost.line("dm")
    with pytest.raises(ConfigError, match="warmup must be >= 2"):
        runs.estimate_distill(dataset="digits", method="dm", ipc=2, splits=tiny_digits(), warmup=1)
    # past the limit after the first step (which may compile), a second step is timed ...
    steps.clear()
    monkeypatch.setattr(runs, "WARMUP_SECONDS", 0.0)
    monkeypatch.setattr(runs.StepTimer, "on_step_end", counting_end)
    runs.estimate_distill(dataset="digits", method="dm", ipc=2, iterations=40, splits=tiny_digits())
    monkeypatch.undo()
    assert len(steps) == 2
    # ... unless one step took too long: it stands for all (as at Tiny-ImageNet scale)
    steps.clear()
    monkeypatch.setattr(runs, "WARMUP_SECONDS", 0.0)
    monkeypatch.setattr(runs, "WARMUP_ONE_STEP_SECONDS", 0.0)
    monkeypatch.setattr(runs.StepTimer, "on_step_end", counting_end)
    short = runs.estimate_distill(
        dataset="digits", method="dm", ipc=2, iterations=40, splits=tiny_digits()
    )
    monkeypatch.undo()
    assert len(steps) == 1 and short.seconds_per_iteration > 0 and short.iterations == 40

    out = tmp_path / "run"
    argv = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "7"]
    assert main([*argv, "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7 iterations x" in printed and "nothing written" in printed
    assert not out.exists()
