"""Experiment logs (ddkit.trackers): a distillation's config, metrics and grid read back from
TensorBoard's event files, MLflow's store and W&B's offline run files; resume continues the same
MLflow and W&B run; W&B runs offline unless a key is configured; bad or unavailable targets are
refused in one line before the run folder exists."""

from __future__ import annotations

import json
import os
import struct
import sys
import time

import pytest

from ddkit.cli import main
from ddkit.errors import ConfigError
from ddkit.io import read_json
from ddkit.runs import DistillRequest, distill_run
from ddkit.testing import method_test_overrides, tiny_digits
from ddkit.trackers import WandbLog, check_log_targets

ITERATIONS = 3


def _distill(out, log, iterations=ITERATIONS, resume=False):
    return distill_run(
        DistillRequest(
            "tiny-digits", "dm", 1, iterations=iterations, options=method_test_overrides("dm")
        ),
        out,
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
        (
            "neptune",
            "--log takes tensorboard:DIR, mlflow or mlflow:URI, wandb or wandb:PROJECT; "
            "got 'neptune'",
        ),
        (
            "tensorboard",
            "--log takes tensorboard:DIR, mlflow or mlflow:URI, wandb or "
            "wandb:PROJECT; got 'tensorboard'",
        ),
    ],
)
def test_a_bad_target_is_refused_before_the_run_folder_exists(tmp_path, target, message):
    with pytest.raises(ConfigError, match=message):
        _distill(tmp_path / "run", [target])
    assert not (tmp_path / "run").exists()


def test_a_store_mlflow_refuses_is_one_line_and_the_corrected_command_runs(tmp_path):
    """mlflow:FOLDER (MLflow's file store, which it refuses) was an 'unexpected
    MlflowException' after config.json was written, so the corrected command was refused as
    'already holds a run' (issue 42)."""
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^--log mlflow:.*MLflow refused the store \("):
        _distill(run, [f"mlflow:{tmp_path / 'mlruns'}"])
    assert not run.exists()
    _distill(run, [f"mlflow:sqlite:///{tmp_path / 'mlflow.db'}"])
    assert read_json(run / "mlflow.json")["run_id"]


@pytest.mark.parametrize("kept", ['["run"]', '{"uri": 3, "run_id": "x"}', "{not json", '""'])
def test_a_stale_or_edited_tracker_file_is_refused_in_one_line(tmp_path, kept):
    """Issue 75: a run folder's mlflow.json that is not the run ddkit kept (a list, a number,
    broken JSON) gave a traceback on resume; it is refused in one line naming the file."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    _distill(tmp_path / "run", [f"mlflow:{uri}"])
    (tmp_path / "run" / "mlflow.json").write_text(kept)
    with pytest.raises(ConfigError, match="is not the tracker run ddkit kept there"):
        _distill(tmp_path / "run", [f"mlflow:{uri}"], iterations=ITERATIONS + 1, resume=True)


def test_an_unreachable_mlflow_server_is_refused_within_seconds(tmp_path):
    """Issue 75: an MLflow http URI nobody serves was retried with back-off for minutes; it is
    now refused in one line before the run folder exists, and the corrected command runs."""
    import socket
    import time

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = tmp_path / "run"
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"no MLflow server answers at 127.0.0.1:{port} "):
        _distill(run, [f"mlflow:http://127.0.0.1:{port}"])
    assert time.monotonic() - start < 30 and not run.exists()
    _distill(run, [f"mlflow:sqlite:///{tmp_path / 'mlflow.db'}"])
    assert read_json(run / "mlflow.json")["run_id"]


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


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """No key, no mode chosen, W&B's own folders under tmp_path."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_DIR",
                 "WANDB_BASE_URL", "WANDB_ERROR_REPORTING"):  # fmt: skip
        monkeypatch.setenv(name, "")  # restored at teardown, whether it was set or not
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


def _wandb_records(run_dir):
    """The protobuf records of an offline run's ``run-ID.wandb`` (a LevelDB-style log: a 7-byte
    file header, 32 KiB blocks, each record chunk led by crc32, length and type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    pos, block, chunk = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk, pos = chunk + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            yield pb.Record.FromString(chunk)
            chunk = b""


def _finished_records(run_dir, wait=60.0):
    """The records of an offline run once its ``exit`` record is on disk: W&B's service process
    writes the file, and under load it may still be flushing when ``finish()`` has returned."""
    deadline = time.monotonic() + wait
    while True:
        records = list(_wandb_records(run_dir))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            kinds = [r.WhichOneof("record_type") for r in records]
            raise AssertionError(f"no exit record after {wait} s; records: {kinds}")
        time.sleep(0.2)


def _wandb_run(run_dir):
    """(config, history rows) of an offline W&B run folder; the config merged over every run and
    config record, in order, as W&B itself applies them."""
    config, history = {}, []
    for record in _finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            changes = record.run.config if kind == "run" else record.config
            config.update({i.key: json.loads(i.value_json) for i in changes.update})
            for item in changes.remove:
                config.pop(item.key, None)
        elif kind == "history":
            items = record.history.item
            history.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
            )
    return config, history


def test_wandb_writes_an_offline_run_with_config_metrics_and_grid(tmp_path, offline_wandb):
    run = tmp_path / "run"
    _distill(run, ["wandb:dd-test"])
    run_id = read_json(run / "wandb.json")["run_id"]
    assert read_json(run / "wandb.json")["project"] == "dd-test"
    (folder,) = (run / "wandb").glob(f"offline-run-*-{run_id}")  # offline: no key configured
    config, history = _wandb_run(folder)
    assert config["method"] == "dm" and config["ipc"] == 1 and "method_config" in config
    steps = [row["iteration"] for row in history if "distill/loss" in row]
    assert steps == list(range(ITERATIONS))
    final = history[-1]
    assert final["synthetic/images"] == 10 and final["iteration"] == ITERATIONS
    assert (folder / "files" / final["synthetic/path"]).is_file()  # the grid, as a PNG
    assert os.environ["WANDB_ERROR_REPORTING"] == "false"


def test_a_resumed_distillation_continues_its_wandb_run(tmp_path, offline_wandb):
    run = tmp_path / "run"
    _distill(run, ["wandb"])
    first = read_json(run / "wandb.json")["run_id"]
    _distill(run, ["wandb"], iterations=ITERATIONS + 2, resume=True)
    assert read_json(run / "wandb.json") == {"project": "ddkit", "run_id": first}
    folders = sorted((run / "wandb").glob(f"offline-run-*-{first}*"))
    assert len(folders) == 2  # offline, a resumed run is a second folder of the same run id
    steps = [row["iteration"] for row in _wandb_run(folders[1])[1] if "distill/loss" in row]
    assert steps == list(range(ITERATIONS, ITERATIONS + 2))


def test_wandb_runs_offline_unless_a_key_is_configured_or_a_mode_chosen(
    tmp_path, offline_wandb, monkeypatch
):
    assert WandbLog.mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password KEY\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert WandbLog.mode() is None  # W&B decides: it has a key
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "KEY")
    assert WandbLog.mode() is None
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert WandbLog.mode() is None  # the user's choice


def test_without_wandb_the_target_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"--log wandb needs .*pip install 'ddkit\[wandb\]'"):
        check_log_targets(["wandb:proj"])
