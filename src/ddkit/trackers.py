"""Experiment logs outside the run folder: TensorBoard, MLflow and W&B, as distillation
callbacks.

``ddkit distill ... --log tensorboard:DIR --log mlflow[:URI] --log wandb[:PROJECT]`` (or
``distill_run(log=[...])``) adds, beside the run folder's own ``log.jsonl``, one
:class:`~ddkit.methods.Callback` per target that writes the run's config at the start, every
iteration's metrics, and at the end the synthetic set's image grid and size. The packages are
optional extras (``ddkit[tensorboard]``, ``ddkit[mlflow]``, ``ddkit[wandb]``); a target whose
package is missing is refused in one line before the run starts.

* ``tensorboard:DIR`` -- an event file under ``DIR`` (:class:`torch.utils.tensorboard.
  SummaryWriter`); on resume, events past the checkpoint are purged, so the curves match an
  uninterrupted run.
* ``mlflow`` / ``mlflow:URI`` -- a run in the MLflow tracking store ``URI`` (default
  :data:`DEFAULT_MLFLOW_URI`, an SQLite file in the working directory; artifacts beside it). The
  run's id is kept in the run folder (``mlflow.json``), so a resumed distillation continues the
  same MLflow run.
* ``wandb`` / ``wandb:PROJECT`` -- a Weights & Biases run in project ``PROJECT`` (default
  ``ddkit``), named after the run folder, its local files under ``RUN/wandb/`` (or
  ``$WANDB_DIR``). Where no API key is configured (``$WANDB_API_KEY`` or a ``.netrc`` entry for
  the W&B host) and ``$WANDB_MODE`` is unset, the run is written offline, so nothing touches the
  network; ``wandb sync RUN/wandb/offline-run-*`` uploads it later. The run's id is kept in the
  run folder (``wandb.json``), so a resumed distillation continues the same W&B run.
"""

from __future__ import annotations

import json
import netrc
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ddkit.context import default_for_started_programs, other_variable
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError, require_extra
from ddkit.io import atomic_write_json, read_json
from ddkit.methods import Callback, Distiller

__all__ = [
    "DEFAULT_MLFLOW_URI",
    "MLflowLog",
    "TensorBoardLog",
    "WandbLog",
    "check_log_targets",
    "tracker_callbacks",
]

DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
DEFAULT_WANDB_PROJECT = "ddkit"
TARGETS = "tensorboard:DIR, mlflow or mlflow:URI, wandb or wandb:PROJECT"


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``: nested config values as MLflow parameters."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)[:500]  # MLflow's parameter length limit
    return out


def _grid_png(result: SyntheticSet, folder: str) -> Path:
    return result.save_grid(Path(folder) / "grid.png")


class TensorBoardLog(Callback):
    """Writes the config (as text), each iteration's metrics (scalars ``distill/<name>``) and
    the final grid (image ``synthetic``) and image count to a TensorBoard log in ``folder``."""

    def __init__(self, folder: str | os.PathLike, config: dict[str, Any]) -> None:
        require_extra("tensorboard", "tensorboard", "--log tensorboard")
        self.folder, self.config, self._writer = Path(folder), config, None

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.folder), purge_step=start or None)
        text = json.dumps(self.config, indent=2, default=str)
        self._writer.add_text("config", f"```\n{text}\n```", global_step=start)

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(f"distill/{name}", float(value), iteration)

    def on_end(self, method: Distiller, result: SyntheticSet) -> None:
        import numpy as np
        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            grid = np.asarray(Image.open(_grid_png(result, tmp)).convert("RGB"))
        step = int(self.config.get("iterations", 0))
        self._writer.add_image("synthetic", grid, step, dataformats="HWC")
        self._writer.add_scalar("synthetic/images", len(result), step)
        self._writer.close()


class MLflowLog(Callback):
    """Logs the config (flattened parameters and ``config.json``), each iteration's metrics and
    the final grid (``grid.png``) to an MLflow run in the store ``uri``, experiment
    ``experiment``; ``run_file`` keeps the run's id so a resumed distillation continues it."""

    def __init__(
        self,
        uri: str,
        config: dict[str, Any],
        *,
        experiment: str = "ddkit",
        run_name: str | None = None,
        run_file: str | os.PathLike | None = None,
    ) -> None:
        require_extra("mlflow", "mlflow", "--log mlflow")
        self.uri, self.config, self.experiment = uri, config, experiment
        self.run_name, self.run_file = run_name, Path(run_file) if run_file else None
        self._client, self.run_id = None, None

    def _experiment_id(self) -> str:
        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
            db = Path(self.uri.removeprefix("sqlite:///")).resolve()
            location = (db.parent / f"{db.stem}-artifacts").as_uri()
        return self._client.create_experiment(self.experiment, artifact_location=location)

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._open(start)
        except MlflowException as e:  # a store MLflow refuses (e.g. a plain folder): one line
            reason = str(e).strip().split(". ")[0].splitlines()[0]
            raise ConfigError(
                f"--log mlflow:{self.uri}: MLflow refused the store ({reason}); give a database "
                f"URI such as {DEFAULT_MLFLOW_URI}"
            ) from None

    def _open(self, start: int) -> None:
        """Connect to the store and create this distillation's run (or find the resumed one)."""
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        kept = _kept_run(self.run_file, "uri")
        if start > 0 and kept.get("uri") == self.uri:
            self.run_id = kept["run_id"]  # the resumed distillation's own run
            return
        run = self._client.create_run(self._experiment_id(), run_name=self.run_name)
        self.run_id = run.info.run_id
        for key, value in _flat(self.config).items():
            self._client.log_param(self.run_id, key, value)
        self._client.log_dict(self.run_id, self.config, "config.json")
        if self.run_file is not None:
            atomic_write_json(self.run_file, {"uri": self.uri, "run_id": self.run_id})

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._client.log_metric(self.run_id, name, float(value), step=iteration)

    def on_end(self, method: Distiller, result: SyntheticSet) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self._client.log_artifact(self.run_id, str(_grid_png(result, tmp)))
        self._client.log_metric(self.run_id, "synthetic_images", float(len(result)))
        self._client.set_terminated(self.run_id)


def wandb_key_configured() -> bool:
    """Whether W&B would find an API key without asking: ``$WANDB_API_KEY``,
    ``$WANDB_IDENTITY_TOKEN_FILE``, or a ``.netrc`` entry (``$NETRC``, ``~/.netrc``,
    ``~/_netrc``) for the W&B host (``$WANDB_BASE_URL``, default ``api.wandb.ai``)."""
    if other_variable("WANDB_API_KEY") or other_variable("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(other_variable("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    for name in [other_variable("NETRC")] if other_variable("NETRC") else ["~/.netrc", "~/_netrc"]:
        path = Path(name).expanduser()
        try:
            if path.is_file() and netrc.netrc(path).authenticators(host or ""):
                return True
        except (OSError, netrc.NetrcParseError):
            continue
    return False


class WandbLog(Callback):
    """Logs the config, each iteration's metrics (``distill/<name>`` against ``iteration``) and
    the final grid (image ``synthetic``) and image count to a W&B run in ``project``, its local
    files under ``folder`` (``$WANDB_DIR`` when set); offline where no API key is configured
    and ``$WANDB_MODE`` is unset; ``run_file`` keeps the run's id so a resumed distillation
    continues it."""

    def __init__(
        self,
        project: str,
        config: dict[str, Any],
        *,
        folder: str | os.PathLike | None = None,
        run_name: str | None = None,
        run_file: str | os.PathLike | None = None,
    ) -> None:
        require_extra("wandb", "wandb", "--log wandb")
        self.project, self.config, self.folder = project, config, folder
        self.run_name, self.run_file = run_name, Path(run_file) if run_file else None
        self._run, self.run_id = None, None

    @staticmethod
    def mode() -> str | None:
        """``"offline"`` unless the user chose (``$WANDB_MODE``) or configured an API key;
        ``None`` leaves the choice to W&B. Offline, W&B's error reports are off too
        (``$WANDB_ERROR_REPORTING=false`` unless the user set it), so nothing leaves the
        machine."""
        if other_variable("WANDB_MODE") or wandb_key_configured():
            return None
        default_for_started_programs(
            "WANDB_ERROR_REPORTING", "false"
        )  # read by W&B's service process
        return "offline"

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        import wandb

        kept = _kept_run(self.run_file, "project")
        resumed = kept.get("run_id") if start > 0 and kept.get("project") == self.project else None
        folder = other_variable("WANDB_DIR") or self.folder
        self._run = wandb.init(
            project=self.project,
            name=self.run_name,
            config=self.config,
            dir=str(folder) if folder else None,
            mode=self.mode(),
            id=resumed,
            resume="allow" if resumed else None,
            reinit="create_new",  # beside, not instead of, a run the caller has open
            settings=wandb.Settings(quiet=True, console="off"),  # ddkit's output stays as is
        )
        self.run_id = self._run.id
        self._run.define_metric("iteration")
        self._run.define_metric("distill/*", step_metric="iteration")
        self._run.define_metric("synthetic*", step_metric="iteration")
        if self.run_file is not None:
            atomic_write_json(self.run_file, {"project": self.project, "run_id": self.run_id})

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        logged = {f"distill/{name}": float(value) for name, value in metrics.items()}
        self._run.log({"iteration": iteration, **logged})

    def on_end(self, method: Distiller, result: SyntheticSet) -> None:
        import wandb

        step = int(self.config.get("iterations", 0))
        with tempfile.TemporaryDirectory() as tmp:
            grid = wandb.Image(str(_grid_png(result, tmp)))
            self._run.log({"iteration": step, "synthetic": grid, "synthetic/images": len(result)})
        self._run.finish()


def _kept_run(path: Path | None, where_key: str) -> dict[str, str]:
    """The tracker run a run folder keeps (``mlflow.json`` / ``wandb.json``: ``run_id`` and
    ``where_key``), ``{}`` where there is none; a file that is not such a small JSON object of
    strings is refused in one line (it would resume a run that is not this one's)."""
    if path is None or not path.exists():
        return {}
    try:
        kept = read_json(path, max_bytes=2**16)
    except (OSError, ValueError, ConfigError, FileFormatError) as err:
        kept = err
    keys = {"run_id", where_key}
    if not (
        isinstance(kept, dict) and set(kept) == keys and all(isinstance(kept[k], str) for k in keys)
    ):
        raise ConfigError(
            f"{str(path)!r} is not the tracker run ddkit kept there ({' and '.join(sorted(keys))} "
            "as text); delete it to start a new tracker run"
        )
    return kept


def _parse(target: str) -> tuple[str, str]:
    """``"tensorboard:DIR"`` -> ``("tensorboard", "DIR")``; ``"mlflow"`` -> ``("mlflow",
    DEFAULT_MLFLOW_URI)``; ``"wandb"`` -> ``("wandb", DEFAULT_WANDB_PROJECT)``; anything else
    is a one-line :class:`ConfigError`."""
    kind, _, where = target.partition(":")
    if kind == "tensorboard" and where:
        return kind, where
    if kind == "mlflow":
        return kind, where or DEFAULT_MLFLOW_URI
    if kind == "wandb":
        return kind, where or DEFAULT_WANDB_PROJECT
    raise ConfigError(f"--log takes {TARGETS}; got {target!r}")


def check_log_targets(targets: Sequence[str]) -> None:
    """Refuse, in one line each, a malformed target, one whose optional package is missing, or
    an MLflow server that does not answer (called before anything is written)."""
    for target in targets:
        kind, where = _parse(target)
        require_extra(kind, kind, f"--log {kind}")
        if kind == "mlflow" and where.startswith(("http://", "https://")):
            _check_server(where)


#: Seconds to wait for an MLflow server's port before refusing (MLflow's own client retries
#: an unreachable server with back-off for minutes).
SERVER_SECONDS = 5.0


def _check_server(uri: str) -> None:
    """Refuse (:class:`ConfigError`) an MLflow ``http(s)`` URI whose host does not accept a
    connection within :data:`SERVER_SECONDS`; later requests fail fast too (no retries)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=SERVER_SECONDS):
            pass
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"--log mlflow:{uri}: no MLflow server answers at {parts.hostname}:{port} "
            f"({getattr(err, 'strerror', None) or err}); start it, or log to a local store "
            f"such as {DEFAULT_MLFLOW_URI}"
        ) from None
    default_for_started_programs("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    default_for_started_programs("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def tracker_callbacks(
    targets: Sequence[str], config: dict[str, Any], run_folder: str | os.PathLike
) -> list[Callback]:
    """One callback per ``--log`` target (:func:`check_log_targets` first), for the run in
    ``run_folder`` whose ``config`` they record."""
    check_log_targets(targets)
    name = Path(run_folder).name
    callbacks: list[Callback] = []
    for target in targets:
        kind, where = _parse(target)
        if kind == "tensorboard":
            callbacks.append(TensorBoardLog(where, config))
        elif kind == "wandb":
            run_file = Path(run_folder) / "wandb.json"
            callbacks.append(
                WandbLog(where, config, folder=run_folder, run_name=name, run_file=run_file)
            )
        else:
            run_file = Path(run_folder) / "mlflow.json"
            callbacks.append(MLflowLog(where, config, run_name=name, run_file=run_file))
    return callbacks
