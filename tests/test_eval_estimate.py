"""Evaluation estimated before it runs (``ddkit evaluate --dry-run``, the long-recipe notice)
and tiny batches trained on one CPU thread (issue 70)."""

from __future__ import annotations

import pytest
import torch

import ddkit.eval.estimate as estimate_module
from ddkit.cli import main
from ddkit.eval.estimate import (
    EvalEstimate,
    ModelCost,
    estimate_evaluation,
    long_recipe_notice,
    scaled_estimate,
)
from ddkit.eval.protocol import get_protocol
from ddkit.levers import SINGLE_THREAD_MAX_BATCH_VALUES, exact, threads_for
from ddkit.methods import create_method
from ddkit.testing import method_test_overrides, tiny_digits


@pytest.fixture(autouse=True)
def _short_warmup(monkeypatch):
    monkeypatch.setattr(estimate_module, "WARMUP_MIN_SECONDS", 0.0)


def test_the_estimate_counts_every_model_run_and_epoch_of_the_protocol():
    splits = tiny_digits()
    syn = create_method("random").fit(splits.train, 1, seed=0)
    est = estimate_evaluation(
        syn, splits.test, "smoke", models=["convnet2-w8", "mlp"], runs=3, epochs=7
    )
    assert [(m.model, m.runs, m.epochs) for m in est.models] == [
        ("convnet2-w8", 3, 7),
        ("mlp", 3, 7),
    ]
    for m in est.models:
        assert m.seconds_per_epoch > 0 and m.test_seconds > 0 and m.setup_seconds >= 0
    assert est.total_seconds == pytest.approx(
        sum(m.setup_seconds + (7 * m.seconds_per_epoch + m.test_seconds) * 3 for m in est.models)
    )
    assert "evaluation under protocol smoke: 3 x convnet2-w8 x 7 epochs" in est.line()


def _cost(per_epoch: float, protocol) -> EvalEstimate:
    model = ModelCost("convnet", 1.0, per_epoch, 0.5, protocol.epochs, protocol.runs)
    return EvalEstimate(protocol, (model,))


def test_a_long_recipe_is_announced_with_the_quicker_protocol_and_a_short_one_is_not():
    dsa = get_protocol("dsa").with_(models=("convnet",))
    long = _cost(1.0, dsa)  # 5 x 1,000 epochs at 1 s
    quicker = scaled_estimate(long, get_protocol("fast").with_(models=("convnet",)))
    assert quicker is not None and quicker.total_seconds == pytest.approx(1 + 3 * (100 + 0.5))
    note = long_recipe_notice(long, quicker)
    assert note.startswith("the set's recipe will take about 1h23m here")
    assert "--protocol fast (3 x 100 epochs) takes about 5m02s" in note
    assert long_recipe_notice(_cost(0.001, dsa), quicker) is None
    # an epoch of another augmentation costs something else: no carried-over estimate
    assert scaled_estimate(long, get_protocol("dc").with_(models=("convnet",))) is None


def test_ddkit_evaluate_dry_run_prints_the_estimate_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    distill = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet"]
    assert (
        main([*distill, "--iterations", "1", "--set", "model=convnet2-w8", "--out", str(run)]) == 0
    )
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--dry-run", "--runs", "2", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "evaluation under protocol dsa: 2 x convnet2-w8 x 3 epochs" in out
    assert "about" in out and sorted(p.name for p in run.iterdir()) == before


def test_tiny_batches_train_on_one_thread_outside_exact_mode_and_restore_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with exact(False):  # the suite runs in exact mode (tests/conftest.py)
            with threads_for(640):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 2
            with threads_for(SINGLE_THREAD_MAX_BATCH_VALUES):
                assert torch.get_num_threads() == 2
            with pytest.raises(RuntimeError), threads_for(640):
                raise RuntimeError("the count comes back after an error too")
            assert torch.get_num_threads() == 2
        with threads_for(640):  # exact mode: as many threads as before, as in every release
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_estimate_refuses_sets_evaluated_by_learners_in_one_line():
    from ddkit.errors import ConfigError
    from ddkit.eval.dispatch import EvalSettings, estimate_set

    splits = tiny_digits()
    syn = create_method("dm", **method_test_overrides("dm")).fit(splits.train, 1, progress=False)
    with pytest.raises(ConfigError, match="--dry-run estimates evaluation by networks"):
        estimate_set(syn, splits.test, EvalSettings(learners="knn"))


def test_the_commands_start_up_is_part_of_the_estimate():
    from dataclasses import replace

    from ddkit.meter import process_seconds

    est = _cost(0.5, get_protocol("fast").with_(models=("convnet",)))
    started = replace(est, startup_seconds=12.0)
    assert started.total_seconds == pytest.approx(est.total_seconds + 12.0)
    assert "12 s start-up and loading" in started.line()
    assert process_seconds() > 0  # this process has been running a while
