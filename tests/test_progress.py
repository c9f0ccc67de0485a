"""Progress everywhere (bar on a terminal, lines elsewhere) and budgets that fit the data."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from ddkit.cli import main
from ddkit.data import from_arrays
from ddkit.methods import create_method
from ddkit.methods.base import scaled_iterations
from ddkit.progress import Progress, progress_kind
from ddkit.testing import method_test_overrides, tiny_digits


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_kind_follows_the_stream():
    assert progress_kind("auto", _Tty()) == "bar" and progress_kind(True, io.StringIO()) == "lines"
    assert progress_kind(False) is None and progress_kind("lines", _Tty()) == "lines"
    with pytest.raises(ValueError, match="progress must be"):
        progress_kind("loud")


def test_lines_report_the_first_step_with_time_left_and_the_end():
    out = io.StringIO()
    p = Progress("dm digits", 5, setting="lines", stream=out, every_seconds=3600)
    for _ in range(5):
        p.update(1, {"loss": 0.5})
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # after the first step and at the end, nothing in between
    assert lines[0].startswith("dm digits: 1/5 it (20%)") and "left" in lines[0]
    assert "loss=0.5" in lines[0] and lines[1].startswith("dm digits: 5/5 it (100%)")


def test_a_first_line_can_wait_for_the_start_up_to_pass(monkeypatch):
    """Decoding's first image carries the workers' start-up: its first line waits 3 s, so the
    estimate does not extrapolate that one image (it said "about 5h31m left" for 11 s)."""
    import ddkit.progress as progress_module

    clock = iter([0.0, 0.5, 1.0, 2.0, 3.5, 4.0, 5.0])
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    p = Progress("decoding", 6, setting="lines", stream=out, every_seconds=3600,
                 first_after_seconds=3.0)  # fmt: skip
    for _ in range(6):
        p.update(1)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[1].split(" (")[0] for line in lines] == [" 4/6 it", " 6/6 it"]
    assert "about 2s left" in lines[0]  # 3.5 s for 4 images, 2 to go


def test_time_left_goes_at_the_pace_of_the_steps_after_the_first(monkeypatch):
    """The first step carries lazy set-up (compiling, allocating): a 60 s first step of 1,000
    quick ones said "about 16h39m left"; its line now gives no time left, and the later steps'
    pace gives it within seconds."""
    import ddkit.progress as progress_module

    clock = iter([0.0, 60.0, 61.0, 62.0])
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    p = Progress("dm", 1000, setting="lines", stream=out, every_seconds=1.5)
    for _ in range(3):
        p.update(1)
    first, later = out.getvalue().splitlines()
    assert first.endswith("1m00s, time left from the next steps")
    assert later.startswith("dm: 3/1000 it") and "about 16m37s left" in later  # 1 s per step


def test_auto_is_silent_for_a_quick_loop_and_reports_a_long_one(monkeypatch):
    """The Python API's default (``"auto"``) says nothing for a loop that ends within
    QUIET_START_SECONDS and reports one that runs longer, from its first line past that time."""
    import ddkit.progress as progress_module

    quiet = progress_module.QUIET_START_SECONDS
    for times, expected in (([0.0, 0.1, 0.2, quiet / 2], []), ([0.0, 1.0, quiet + 1, quiet + 2],
                            [" 2/3 it", " 3/3 it"])):  # fmt: skip
        clock = iter(times)
        monkeypatch.setattr(progress_module.time, "perf_counter", lambda c=clock: next(c))
        out = io.StringIO()
        p = Progress("dm", 3, setting="auto", stream=out, every_seconds=3600)
        for _ in range(3):
            p.update(1)
        lines = out.getvalue().splitlines()
        assert [line.split(":")[1].split(" (")[0] for line in lines] == expected


def test_fit_and_evaluate_report_by_default_once_they_take_a_while(capsys, monkeypatch):
    import ddkit.progress as progress_module
    from ddkit.eval import evaluate

    monkeypatch.setattr(progress_module, "QUIET_START_SECONDS", 0.0)  # "a while" is now
    splits = tiny_digits()
    syn = create_method("dm", **method_test_overrides("dm")).fit(splits.train, 2, seed=0)
    evaluate(syn, splits.test, "smoke", models=["convnet2-w8"])
    err = capsys.readouterr().err
    assert "dm ipc=2: 1/" in err and "eval 2 x convnet2-w8: 1/10 network-epochs" in err
    create_method("dm", **method_test_overrides("dm")).fit(splits.train, 2, progress=False)
    evaluate(syn, splits.test, "smoke", models=["convnet2-w8"], progress=False)
    assert capsys.readouterr().err == ""


def test_fit_and_evaluate_report_progress_as_lines_off_a_terminal(capsys):
    from ddkit.eval import evaluate

    splits = tiny_digits()
    m = create_method("dm", **method_test_overrides("dm"))
    syn = m.fit(splits.train, 2, seed=0, progress=True)
    evaluate(syn, splits.test, "smoke", models=["convnet2-w8"], progress=True)
    err = capsys.readouterr().err
    assert (
        "dm ipc=2: 1/" in err
        and "eval 2 x convnet2-w8: 1/10 network-epochs" in err
        and "\r" not in err
    )


def test_cli_distill_prints_progress_lines_unless_quiet(capsys, tmp_path):
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "3"]
    assert main([*args, "--out", str(tmp_path / "a"), "--set", "batch_real=8"]) == 0
    assert "dm digits ipc=1: 3/3 it (100%)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--set", "batch_real=8", "--quiet"]) == 0
    assert "it (" not in capsys.readouterr().err


def test_scaled_iterations():
    """Published counts (CIFAR-10: 5,000 images per class) scaled by images per class."""
    assert scaled_iterations(20_000, 16) == 100 and scaled_iterations(20_000, 500) == 2_000
    assert scaled_iterations(20_000, 6_000) == 20_000 and scaled_iterations(50, 1) == 50
    assert scaled_iterations(1_000, 4_900) == 980


def test_a_dataset_without_presets_gets_a_budget_scaled_to_its_images_per_class():
    rng = np.random.default_rng(0)
    m = create_method("dm", model="convnet2-w8", batch_real=8)
    # 2,000 rows: 200 per class in 10 classes or in 100 classes alike: the number of classes
    # lengthens each step (a step matches every class), it does not add iterations
    for classes in (10, 100):
        rows = 200 * classes
        x, y = rng.random((rows, 2, 2), dtype=np.float32), np.arange(rows) % classes
        data = from_arrays(x, y, x[:classes], y[:classes], name="many")
        with pytest.warns(UserWarning, match=r"so 800 iterations for its 200 training images per"):
            assert m.budget_for(data.train) == 800
    x, y = rng.random((200, 8, 8), dtype=np.float32), np.arange(200) % 10  # 20 per class
    own = from_arrays(x, y, x[:10], y[:10], name="mine")
    with pytest.warns(UserWarning, match=r"no preset for dataset 'mine', so 100 iterations") as w:
        syn = m.fit(own.train, 1, seed=0)
    assert w[0].filename == __file__  # the warning points at the user's call, not inside ddkit
    assert syn.meta["iterations"] == 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chosen budget, or a dataset with presets: no change
        assert create_method("dm", iterations=3).budget_for(own.train) == 3
        digits = tiny_digits().train
        assert create_method("dm", dataset="digits").budget_for(digits) == 1000
