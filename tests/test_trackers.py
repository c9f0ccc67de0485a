"""Experiment logs (ddkit.trackers): a distillation's config, metrics and grid read back from
TensorBoard's event files and MLflow's store; resume continues the same MLflow run; bad or
unavailable targets are refused in one line before the run folder exists."""

from __future__ import annotations

import sys

import pytest

from ddkit.cli import main
from ddkit.errors import ConfigError
from ddkit.io import read_json
from ddkit.runs import distill_run
from ddkit.testing import method_test_overrides, tiny_digits

ITERATIONS = 3


def _distill(out, log, iterations=ITERATIONS, resume=False):
    return distill_run(
        dataset="tiny-digits",
        method="dm",
        ipc=1,
        out=out,
        iterations=iterations,
        options=method_test_overrides("dm"),
        splits=tiny_digits(),
        checkpoint_every=1,
        resume=resume,
        log=log,
    )


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_tensorboard_and_mlflow_receive_config_metrics_and_grid(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    run = tmp_path / "run"
    _distill(run, [f"tensorboard:{tmp_path / 'tb'}", f"mlflow:{uri}"])

    events = _scalars(tmp_path / "tb")
    assert {"distill/loss", "synthetic/images"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("distill/loss")] == list(range(ITERATIONS))
    assert events.Scalars("synthetic/images")[0].value == 10  # 10 classes x IPC 1
    assert (
        "synthetic" in events.Tags()["images"] and "config/text_summary" in events.Tags()["tensors"]
    )

    client = MlflowClient(tracking_uri=uri)
    run_id = read_json(run / "mlflow.json")["run_id"]
    mlrun = client.get_run(run_id)
    assert mlrun.data.params["method"] == "dm" and mlrun.data.params["ipc"] == "1"
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "run"
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(ITERATIONS))
    logged = [a.path for a in client.list_artifacts(run_id)]
    assert {"config.json", "grid.png"} <= set(logged)
    assert (tmp_path / "store-artifacts").is_dir()  # artifacts beside the store, not in the cwd


def test_a_resumed_distillation_continues_its_mlflow_run_and_tensorboard_curve(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    log = [f"tensorboard:{tmp_path / 'tb'}", f"mlflow:{uri}"]
    _distill(tmp_path / "run", log)
    first = read_json(tmp_path / "run" / "mlflow.json")["run_id"]
    _distill(tmp_path / "run", log, iterations=ITERATIONS + 2, resume=True)
    assert read_json(tmp_path / "run" / "mlflow.json")["run_id"] == first
    client = MlflowClient(tracking_uri=uri)
    assert len(client.search_runs([client.get_experiment_by_name("ddkit").experiment_id])) == 1
    steps = sorted({m.step for m in client.get_metric_history(first, "loss")})
    assert steps == list(range(ITERATIONS + 2))
    loss = _scalars(tmp_path / "tb").Scalars("distill/loss")
    assert [e.step for e in loss] == list(range(ITERATIONS + 2))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("wandb", "--log takes tensorboard:DIR, mlflow or mlflow:URI; got 'wandb'"),
        ("tensorboard", "--log takes tensorboard:DIR, mlflow or mlflow:URI; got 'tensorboard'"),
    ],
)
def test_a_bad_target_is_refused_before_the_run_folder_exists(tmp_path, target, message):
    with pytest.raises(ConfigError, match=message):
        _distill(tmp_path / "run", [target])
    assert not (tmp_path / "run").exists()


def test_a_missing_extra_is_refused_in_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    code = main(
        ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--log", "mlflow"]
        + ["--out", str(tmp_path / "run"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "--log mlflow needs the optional package 'mlflow': pip install 'ddkit[mlflow]'" in err
    assert not (tmp_path / "run").exists()


def test_cli_distill_logs_to_tensorboard(tmp_path, capsys):
    code = main(
        ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2"]
        + ["--set", "model=convnet2-w8", "--quiet", "--out", str(tmp_path / "run")]
        + ["--log", f"tensorboard:{tmp_path / 'tb'}"]
    )
    assert code == 0, capsys.readouterr().err
    assert [e.step for e in _scalars(tmp_path / "tb").Scalars("distill/loss")] == [0, 1]
