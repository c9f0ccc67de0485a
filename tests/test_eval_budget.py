"""Time budgets for evaluation (issue 82): ``evaluate(..., plan=RunPlan(budget=...))`` and ``ddkit evaluate
--budget`` cut runs, then epochs, to what a warm-up says fits, say so once and record the cut;
a budget too short for one epoch, or misspelt, is refused in one line; a recorded recipe
estimated past ten minutes is announced with how to shorten it. The estimate is faked where the
test is about the choice (its cost is the test's to set), and real where it is about the
warm-up."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import ddkit.eval.estimate as estimate_module
import ddkit.eval.evaluators.networks as networks_evaluator
from ddkit.cli import main
from ddkit.errors import ConfigError
from ddkit.eval import RunPlan, evaluate
from ddkit.eval.dispatch import EvalSettings, evaluate_set
from ddkit.eval.estimate import (
    LONG_EVALUATION_SECONDS,
    EvalEstimate,
    ModelCost,
    estimate_evaluation,
    fit_budget,
)
from ddkit.eval.protocol import get_protocol
from ddkit.methods import create_method
from ddkit.testing_data import tiny_digits

# ``ddkit.eval.evaluate`` is the function; its module is where evaluate() finds the estimator
evaluate_module = importlib.import_module("ddkit.eval.evaluate")

MODEL = "convnet2-w8"
# a few epochs of tiny networks: under-trained, and told so, which is not what is tested here
pytestmark = pytest.mark.filterwarnings("ignore:.*under-trained:UserWarning")


def _faked(per_epoch: float, setup: float = 0.0, test: float = 0.0):
    """An estimator whose every network-epoch costs ``per_epoch`` seconds."""

    def estimate(syn, test_split, protocol, *, models=None, runs=None, epochs=None, **_):  # noqa: ANN001, ANN003, ANN202
        p = get_protocol(protocol).with_(
            models=tuple(models) if models else None, runs=runs, epochs=epochs
        )
        costs = (ModelCost(m, setup, per_epoch, test, p.epochs, p.runs) for m in p.models)
        return EvalEstimate(p, tuple(costs))

    return estimate


def _estimate(runs: int, epochs: int, per_epoch: float, setup: float, test: float):
    p = get_protocol("dc").with_(models=("convnet",), runs=runs, epochs=epochs)
    return EvalEstimate(p, (ModelCost("convnet", setup, per_epoch, test, epochs, runs),))


def test_a_budget_keeps_all_it_can_then_fewer_runs_then_fewer_epochs() -> None:
    est = _estimate(runs=5, epochs=300, per_epoch=1.0, setup=1.0, test=0.5)  # 300.5 s a run
    whole = fit_budget(est, 2000.0)
    assert (
        not whole.cut and whole.chosen.runs == 5 and "all 5 runs of 300 epochs fit" in whole.line()
    )
    runs = fit_budget(est, 1000.0)
    assert (runs.chosen.runs, runs.chosen.epochs) == (3, 300) and runs.cut
    assert "3 of 5 runs of 300 epochs fit" in runs.line()
    assert runs.estimate.total_seconds <= 1000.0
    # what the start-up and warm-up spent is not there to spend: 2 runs then
    assert fit_budget(est, 1000.0, spent=300.0).chosen.runs == 2
    epochs = fit_budget(est, 200.0)
    assert (epochs.chosen.runs, epochs.chosen.epochs) == (1, 198)
    assert "1 of 5 runs, 198 of 300 epochs fit" in epochs.line()
    # the cut protocol keeps the original's schedule, stretched over its own epochs
    assert epochs.chosen.schedule == est.protocol.schedule


def test_a_budget_short_of_one_run_of_one_epoch_is_refused_in_one_line() -> None:
    est = _estimate(runs=5, epochs=300, per_epoch=1.0, setup=1.0, test=0.5)  # 2.5 s the least
    with pytest.raises(ConfigError, match=r"--budget 2s is too short") as err:
        fit_budget(est, 2.0)
    assert "\n" not in str(err.value) and "or more, or drop it" in str(err.value)
    with pytest.raises(ConfigError, match="too short"):
        fit_budget(est, 100.0, spent=98.0)  # the warm-up took what was left


def test_evaluate_under_a_budget_trains_what_fits_says_it_once_and_records_the_cut(
    monkeypatch,
) -> None:
    monkeypatch.setattr(evaluate_module, "estimate_evaluation", _faked(per_epoch=10.0))
    splits = tiny_digits()
    syn = create_method("random").fit(splits.train, 1, seed=0)
    said: list[str] = []
    # smoke: 2 runs of 5 epochs, 50 s a run here: 80 s fit one run of all epochs
    plan = RunPlan(budget="80s", say=said.append)
    report = evaluate(syn, splits.test, "smoke", models=[MODEL], plan=plan, progress=False)
    assert len(said) == 1 and "1 of 2 runs of 5 epochs fit" in said[0]
    assert (report.protocol.runs, report.protocol.epochs) == (1, 5)
    assert len(report.results[0].accuracies) == 1
    record = json.loads(json.dumps(report.to_dict()))["meta"]["budget"]
    assert record["cut"] is True and record["seconds"] == 80
    assert record["original"] == {"runs": 2, "epochs": 5}
    assert record["chosen"] == {"runs": 1, "epochs": 5}
    # 35 s fit one run of 3 epochs: the networks are those of a 3-epoch protocol (its schedule)
    plan = RunPlan(budget=35, say=said.append)
    cut = evaluate(syn, splits.test, "smoke", models=[MODEL], plan=plan, progress=False)
    assert (cut.protocol.runs, cut.protocol.epochs) == (1, 3)
    assert cut.meta["budget"]["chosen"] == {"runs": 1, "epochs": 3}
    same = evaluate(syn, splits.test, "smoke", models=[MODEL], runs=1, epochs=3, progress=False)
    assert cut.results[0].accuracies == same.results[0].accuracies
    assert "budget" not in same.meta
    with pytest.raises(ConfigError, match="too short"):
        evaluate(syn, splits.test, "smoke", models=[MODEL], plan=RunPlan(budget="5s"),
                 progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("budget") / "run"
    distill = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet",
               "--iterations", "1", "--set", f"model={MODEL}", "--out", str(run)]  # fmt: skip
    assert main(distill) == 0
    return run


def test_ddkit_evaluate_budget_prints_the_choice_and_eval_json_records_it(
    saved_run, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(evaluate_module, "estimate_evaluation", _faked(per_epoch=10.0))
    capsys.readouterr()
    args = ["evaluate", str(saved_run), "--protocol", "smoke", "--budget", "1m20s", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("budget 1m20s: 1 of 2 runs of 5 epochs fit") == 1
    assert "cut to fit a budget: 1 of 2 runs of 5 epochs" in out  # the table's heading
    report = json.loads((saved_run / "eval.json").read_text())
    assert report["meta"]["budget"]["original"] == {"runs": 2, "epochs": 5}
    assert report["protocol"]["runs"] == 1
    assert main([*args[:-1], "--budget", "1s"]) == 2  # start-up alone is more
    assert "too short" in capsys.readouterr().err


def test_a_misspelt_budget_is_refused_before_any_work(tmp_path) -> None:
    missing = tmp_path / "no-such-run"  # the budget is refused before the set is looked for
    cmd = [sys.executable, "-m", "ddkit", "evaluate", str(missing), "--budget", "30 minutes"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "--budget '30 minutes' is not a duration" in done.stderr


def test_a_recorded_recipe_estimated_past_ten_minutes_is_announced_with_ways_to_shorten_it(
    monkeypatch,
) -> None:
    splits = tiny_digits()
    syn = create_method("random").fit(splits.train, 1, seed=0)
    settings = EvalSettings(models=MODEL, runs=1, epochs=2)  # no protocol: the set's recipe
    monkeypatch.setattr(networks_evaluator, "estimate_evaluation", _faked(LONG_EVALUATION_SECONDS))
    said: list[str] = []
    evaluate_set(syn, splits.test, settings, say=said.append)
    notes = [s for s in said if s.startswith("the set's recipe will take about")]
    assert len(notes) == 1
    for way in ("--protocol fast", "--budget 10m00s", "--runs", "--epochs"):
        assert way in notes[0]
    monkeypatch.setattr(
        networks_evaluator, "estimate_evaluation", _faked(LONG_EVALUATION_SECONDS / 10)
    )
    said.clear()
    evaluate_set(syn, splits.test, settings, say=said.append)  # 2 epochs of a tenth: short
    assert said and not any(s.startswith("the set's recipe") for s in said)


def _counting_epochs(monkeypatch) -> list[int]:
    """Count the epochs the estimator's warm-up trains."""
    epochs: list[int] = []
    real = estimate_module.train_model

    def counted(*args, progress, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def tick(n: int) -> None:
            epochs.append(n)
            progress(n)

        return real(*args, progress=tick, **kwargs)

    monkeypatch.setattr(estimate_module, "train_model", counted)
    monkeypatch.setattr(estimate_module, "WARMUP_MIN_SECONDS", 1e9)  # never enough by itself
    return epochs


def test_the_notices_warm_up_stops_after_one_epoch_when_that_says_the_recipe_is_short(
    monkeypatch,
) -> None:
    epochs = _counting_epochs(monkeypatch)
    splits = tiny_digits()
    syn = create_method("random").fit(splits.train, 1, seed=0)
    est = estimate_evaluation(syn, splits.test, "smoke", models=[MODEL], epochs=40,
                              short_below=LONG_EVALUATION_SECONDS)  # fmt: skip
    assert len(epochs) == 1 and est.total_seconds < LONG_EVALUATION_SECONDS


def test_the_warm_up_is_capped_in_seconds(monkeypatch) -> None:
    epochs = _counting_epochs(monkeypatch)
    monkeypatch.setattr(estimate_module, "WARMUP_MAX_SECONDS", 0.0)
    splits = tiny_digits()
    syn = create_method("random").fit(splits.train, 1, seed=0)
    est = estimate_evaluation(syn, splits.test, "smoke", models=[MODEL], epochs=40)
    assert len(epochs) == 1  # the first epoch stands for all
    assert est.models[0].seconds_per_epoch > 0 and est.models[0].epochs == 40
