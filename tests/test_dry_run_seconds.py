"""Issue 82, estimates in seconds: a dry run never trains expert trajectories or a teacher (it
times a part of one epoch, scales it, and says what it timed); expert and teacher training
report their epochs as progress, and nothing when asked to be quiet."""

from __future__ import annotations

import pytest
import torch

from ddkit.eval import dry_run
from ddkit.eval.dry_run import SetupCost, estimating, time_part
from ddkit.testing import tiny_digits

EXPERTS = {"model": "convnet2-w8", "num_experts": 2, "expert_train_epochs": 3,
           "expert_batch": 32, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2,
           "iterations": 2}  # fmt: skip
TEACHER = {"teacher_model": "convnet2-bn-w8", "teacher_epochs": 3, "iterations": 2}


def test_time_part_grows_the_part_and_scales_the_fastest_pass(monkeypatch):
    """Passes of 1, 2, 4 batches: the first carries start-up, the pace is the fastest later
    pass, scaled to every row; a pass that would overrun the limit is not run."""
    seconds = {8: 5.0, 16: 1.0, 32: 1.5}  # per pass: the first slow, then 1/16 and 1.5/32 s a row
    monkeypatch.setattr(dry_run, "_timed", lambda run, n: (seconds[n], run(n)))
    part = time_part(lambda n: n, total=100, batch=8, min_seconds=1.2, max_seconds=60.0)
    assert (part.rows, part.seconds, part.result) == (32, 1.5, 32)
    assert part.pass_seconds == pytest.approx(1.5 * 100 / 32)
    assert part.spent == pytest.approx(7.5) and "32 of 100 rows" in part.text()
    # a slowed pass is not the last word: a second pass after the first is made and the
    # fastest taken (here the pass of 16 rows ran at a fifth of the pace of the next)
    slowed = {8: 5.0, 16: 2.5, 32: 1.0, 64: 2.0}
    monkeypatch.setattr(dry_run, "_timed", lambda run, n: (slowed[n], run(n)))
    fast = time_part(lambda n: n, total=100, batch=8, min_seconds=1.2, max_seconds=60.0)
    assert (fast.rows, fast.seconds) == (32, 1.0)
    monkeypatch.setattr(dry_run, "_timed", lambda run, n: (seconds[n], run(n)))
    # the second pass would bring the timing to 5 + 10 s, past a 12 s limit: the first stands
    one = time_part(lambda n: n, total=100, batch=8, min_seconds=1.2, max_seconds=12.0)
    assert (one.rows, one.pass_seconds) == (8, pytest.approx(5.0 * 100 / 8))
    # a part that is the whole data is timed whole
    whole = time_part(lambda n: n, total=16, batch=8, min_seconds=9.0, max_seconds=60.0)
    assert (whole.rows, whole.pass_seconds, whole.text()) == (
        16,
        1.0,
        "one pass over all rows in 1 s",
    )


def test_expert_epochs_left_and_group_rounds(tmp_path):
    from ddkit.methods.trajectory import experts as ex

    (tmp_path / "expert_001").mkdir()
    (tmp_path / "expert_001" / "epoch_002.safetensors").touch()
    assert ex._epochs_left(tmp_path, [0, 1, 2], 5) == [5, 3, 5]
    # experts trained 2 at a time: a group lasts as long as its slowest member
    assert ex._group_rounds([5, 3, 5], 2) == 5 + 5
    assert ex._group_rounds([5, 0, 4], 1) == 9 and ex._group_rounds([0, 0], 1) == 0


def test_mtt_dry_run_trains_no_expert_and_names_what_it_timed(tmp_path, monkeypatch):
    from ddkit import runs
    from ddkit.methods.trajectory import experts as ex

    epochs = []
    real_epoch = ex._train_epoch

    def counted(recipe, *args, **kwargs):
        epochs.append(len(recipe.images))
        return real_epoch(recipe, *args, **kwargs)

    monkeypatch.setattr(ex, "_train_epoch", counted)
    cache = tmp_path / "experts"
    splits = tiny_digits()
    options = {**EXPERTS, "experts_cache": str(cache)}
    cost = runs.estimate_distill(dataset="digits", method="mtt", ipc=1, options=options,
                                 splits=splits)  # fmt: skip
    assert not cache.exists()  # nothing trained, nothing written
    assert epochs and all(n <= len(splits.train) for n in epochs)
    assert len(epochs) < EXPERTS["num_experts"] * EXPERTS["expert_train_epochs"]
    line = cost.line("mtt")
    assert "2 expert trajectories x 3 epochs: about" in line
    assert "from one epoch of 1 expert(s), one pass over" in line and "x 6 epoch rounds" in line
    assert cost.steps_timed >= 1 and cost.seconds_per_iteration > 0
    # the artifact's cost stands in the set-up, the time spent timing it does not
    assert cost.setup_seconds > 0


def test_a_cached_expert_buffer_costs_nothing_and_is_used(tmp_path):
    from ddkit import runs
    from ddkit.methods.trajectory.methods import MTT, _auto_cache_dir, obtain_experts

    splits = tiny_digits()
    options = {**EXPERTS, "experts_cache": str(tmp_path)}
    obtain_experts(MTT(**options).config, splits.train, progress=False)
    folder = _auto_cache_dir(MTT(**options).config, splits.train)
    before = sorted(p.name for p in folder.rglob("*"))
    cost = runs.estimate_distill(dataset="digits", method="mtt", ipc=1, options=options,
                                 splits=splits)  # fmt: skip
    assert "2 expert trajectories x 3 epochs: cached, no cost" in cost.line("mtt")
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_the_stand_in_buffer_has_the_real_shapes(tmp_path):
    from ddkit.methods.trajectory.experts import ExpertSettings, StandInBuffer, train_experts

    train = tiny_digits().train
    with estimating() as costs:
        buf = train_experts(
            train, "convnet2-w8", 3, 4, tmp_path / "x", ExpertSettings(batch_size=32)
        )
    assert isinstance(buf, StandInBuffer) and not (tmp_path / "x").exists()
    assert (len(buf), buf.epochs, buf.model) == (3, 4, "convnet2-w8")
    first, last = buf.params(0, 0), buf.params(2, 4)
    assert first.shape == last.shape == (int(buf.meta["num_params"]),)
    assert torch.isfinite(last).all() and not torch.equal(first, last)
    assert [c.what for c in costs] == ["3 expert trajectories x 4 epochs"]
    assert costs[0].seconds > 0 and "x 12 epoch rounds" in costs[0].timed


def test_decoupled_dry_run_trains_no_teacher(tmp_path):
    from ddkit import runs

    cache = tmp_path / "teachers"
    options = {**TEACHER, "teacher_cache": str(cache)}
    cost = runs.estimate_distill(dataset="digits", method="sre2l", ipc=1, options=options,
                                 splits=tiny_digits())  # fmt: skip
    assert not cache.exists()
    line = cost.line("sre2l")
    assert "teacher convnet2-bn-w8 x 3 epochs: about" in line
    assert "from one epoch, one pass over" in line and "and its accuracy pass" in line


def test_setup_cost_words():
    assert SetupCost("teacher t x 3 epochs", 0.0).text() == "teacher t x 3 epochs: cached, no cost"
    timed = SetupCost("teacher t x 3 epochs", 12.0, "one epoch", 1.0).text()
    assert timed == "teacher t x 3 epochs: about 12 s, from one epoch"
    assert not dry_run.is_estimating()
    with estimating() as costs:
        assert dry_run.is_estimating()
        dry_run.record(SetupCost("a", 1.0))
    dry_run.record(SetupCost("b", 1.0))  # outside a dry run: nowhere
    assert [c.what for c in costs] == ["a"] and not dry_run.is_estimating()


@pytest.mark.parametrize("setting", ["lines", False])
def test_expert_training_reports_epochs_as_progress(tmp_path, capsys, setting):
    from ddkit.methods.trajectory.experts import ExpertSettings, train_experts

    settings = ExpertSettings(batch_size=64)
    train_experts(tiny_digits().train, "convnet2-w8", 2, 2, tmp_path, settings, progress=setting)
    out = capsys.readouterr()
    if setting:
        assert "expert trajectories: 4/4 epochs (100%)" in out.err
    else:
        assert out.err == "" and out.out == ""


@pytest.mark.filterwarnings("ignore:.*looks untrained")
@pytest.mark.parametrize("setting", ["lines", False])
def test_teacher_training_reports_epochs_as_progress(tmp_path, capsys, setting):
    from ddkit.eval.teacher import TeacherRecipe, train_teacher

    train_teacher(tiny_digits().train, TeacherRecipe("convnet2-bn-w8", epochs=2),
                  out_dir=tmp_path / "t", progress=setting)  # fmt: skip
    err = capsys.readouterr().err
    if setting:
        assert "teacher convnet2-bn-w8: 2/2 epochs (100%)" in err
    else:
        assert "epochs" not in err


@pytest.mark.parametrize("setting", ["lines", False])
def test_a_fit_reports_its_experts_as_its_iterations(tmp_path, capsys, setting):
    """The set-up reports as the fit's ``progress`` (or its ProgressReport) says."""
    from ddkit.methods import ProgressReport, create_method

    m = create_method("mtt", **{**EXPERTS, "experts_cache": str(tmp_path)})
    report = [ProgressReport("mtt", setting)] if setting else []
    m.fit(tiny_digits().train, 1, progress=False, callbacks=report)
    err = capsys.readouterr().err
    assert ("expert trajectories: 6/6 epochs (100%)" in err) == bool(setting)


def test_a_warm_up_past_its_limit_after_one_step_times_a_second(monkeypatch) -> None:
    """The first step pays for lazy set-up (compilation): past the limit after it alone, the
    warm-up times one more step, unless that first step already took too long."""
    import ddkit.runs as runs

    def ends(step_ends: list[float]) -> int:
        clock = iter([0.0, *step_ends])
        monkeypatch.setattr(runs, "step_clock", lambda: next(clock))
        timer = runs.StepTimer(limit=runs.WARMUP_SECONDS, min_steps=3, min_seconds=3.0, since=0.0)
        timer.on_start(None, 100, 0)
        for i in range(len(step_ends)):
            try:
                timer.on_step_end(None, i, {})
            except runs._WarmedUp:
                return i + 1
        return -1

    first = runs.WARMUP_SECONDS + 1  # past the limit, short of the one-step limit
    assert ends([first, first + 1, first + 2]) == 2
    assert ends([runs.WARMUP_ONE_STEP_SECONDS + 1, 99.0]) == 1


def test_the_first_steps_lazy_set_up_counts_once_in_the_set_up() -> None:
    from ddkit.runs import setup_and_pace

    setup, pace = setup_and_pace(3.0, [36.0, 5.0, 7.0], [])
    assert pace == 6.0 and setup == 3.0 + 30.0
    assert setup_and_pace(3.0, [36.0], []) == (3.0, 36.0)
