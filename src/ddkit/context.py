"""The run context: every ``DDKIT_*`` environment variable, read and parsed in this one module.

Each variable is defined once in :data:`VARIABLES` (its name, what it means, its parser and its
default); the rest of ddkit asks this module for a value (:func:`memory_budget`,
:func:`exact_from_environment`, :func:`folder_cache`, :func:`data_cache`, :func:`data_root`,
:func:`allowed_roots`, :func:`autoencoder_cache`), never ``os.environ`` itself. The values are
read when asked, so a variable set while the process runs (a test's ``monkeypatch``) counts.
A value that cannot be parsed is a one-line :class:`~ddkit.errors.ConfigError` naming the
variable and the fix.

:func:`run_context` resolves them all at once, with the levers a command resolves from its
flags (device, exact mode, processes), into a frozen :class:`RunContext`; ``ddkit distill``
saves its :meth:`~RunContext.to_dict` in the run's ``config.json`` under ``"context"``, so a
run records what the environment changed.

Variables that belong to other programs -- torchrun's launch (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), the experiment trackers' settings (``WANDB_*``, ``MLFLOW_*``, ``NETRC``) and
Python's ``PYTHONUNBUFFERED`` -- are not ddkit's to define, but they are read and set here too,
each named in :data:`OTHER_PROGRAMS` with the program it belongs to (:func:`other_variable`,
:func:`launch_environment`, :func:`default_for_started_programs`): one module holds every
environment variable ddkit consults.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddkit.errors import ConfigError

__all__ = [
    "ALLOW_ROOT_ENV",
    "AUTOENCODER_CACHE_ENV",
    "BUDGET_ENV",
    "DATA_CACHE_ENV",
    "DATA_ENV",
    "EXACT_ENV",
    "FOLDER_CACHE_ENV",
    "FOLDER_CACHE_MODES",
    "OTHER_PROGRAMS",
    "VARIABLES",
    "RunContext",
    "Variable",
    "allowed_roots",
    "autoencoder_cache",
    "data_cache",
    "data_root",
    "default_for_started_programs",
    "exact",
    "exact_from_environment",
    "exact_mode",
    "export",
    "folder_cache",
    "launch_environment",
    "memory_budget",
    "other_variable",
    "run_context",
]

EXACT_ENV = "DDKIT_EXACT"
BUDGET_ENV = "DDKIT_MEMORY_BUDGET"
FOLDER_CACHE_ENV = "DDKIT_FOLDER_CACHE"
DATA_CACHE_ENV = "DDKIT_DATA_CACHE"
DATA_ENV = "DDKIT_DATA"
ALLOW_ROOT_ENV = "DDKIT_DATA_ALLOW_ROOT"
AUTOENCODER_CACHE_ENV = "DDKIT_AUTOENCODER_CACHE"

FOLDER_CACHE_MODES = ("auto", "always", "never")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_BUDGET_FORMS = (
    "bytes, or with a binary suffix K, M, G or T (2**10, 2**20, ...), e.g. 100M, 2G or 1.5e9"
)


def _parse_switch(text: str) -> bool:
    word = text.lower()
    if word not in _TRUE + _FALSE:
        raise ConfigError(
            f"${EXACT_ENV}={text!r} is not a switch: use 1, true, yes or on (exact mode), or "
            "0, false, no or off"
        )
    return word in _TRUE


def _parse_budget(text: str) -> int:
    """A memory size: bytes, optionally with a binary suffix (see :func:`memory_budget`)."""
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].isalpha() else (text, "")
    try:
        value = float(number) if unit in _SUFFIXES and number.strip() else math.nan
    except ValueError:
        value = math.nan
    nbytes = value * _SUFFIXES.get(unit, 1)
    if not (math.isfinite(nbytes) and nbytes >= 1):
        raise ConfigError(f"${BUDGET_ENV}={text!r} is not a memory size: use {_BUDGET_FORMS}")
    return int(nbytes)


def _half_the_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _parse_folder_cache(text: str) -> str:
    mode = text.lower()
    if mode not in FOLDER_CACHE_MODES:
        raise ConfigError(
            f"${FOLDER_CACHE_ENV}={mode!r}: use one of {', '.join(FOLDER_CACHE_MODES)}"
        )
    return mode


def _folder(text: str) -> Path:
    return Path(text).expanduser()


def _folders(text: str) -> tuple[Path, ...]:
    return tuple(Path(p.strip()).expanduser() for p in text.split(os.pathsep) if p.strip())


def _user_data_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "ddkit"


@dataclass(frozen=True)
class Variable:
    """One ``DDKIT_*`` environment variable: its ``name``, what it ``means``, the ``parse`` of
    its text (stripped; refuses a bad one in one line) and the ``default`` when it is unset or
    blank (a function: a default may depend on the machine), described by ``default_text``."""

    name: str
    means: str
    parse: Callable[[str], Any]
    default: Callable[[], Any]
    default_text: str

    def text(self) -> str:
        """The variable's text, stripped (``""``: unset or blank)."""
        return os.environ.get(self.name, "").strip()

    def value(self) -> Any:
        """The resolved value: the parsed text, else the default."""
        text = self.text()
        return self.parse(text) if text else self.default()


#: Every variable ddkit reads, by name.
VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(EXACT_ENV, "exact mode: the speed levers set to auto (bf16, compile) stay off",
                 _parse_switch, lambda: False, "off"),
        Variable(BUDGET_ENV, "the bytes one allocation that ddkit checks beforehand may take",
                 _parse_budget, _half_the_memory, "half of this machine's memory"),
        Variable(FOLDER_CACHE_ENV, "when image folders load through the memory-mapped cache "
                 "(auto, always or never)", _parse_folder_cache, lambda: "auto",
                 "auto: folders of at least 1 GiB of decoded images"),
        Variable(DATA_CACHE_ENV, "the folder that holds image-folder caches", _folder,
                 lambda: None, "beside the data, else ~/.cache/ddkit/folders"),
        Variable(DATA_ENV, "the data root: where downloadable datasets are kept", _folder,
                 _user_data_root, "$XDG_DATA_HOME/ddkit, else ~/.local/share/ddkit"),
        Variable(ALLOW_ROOT_ENV, "more folders (:-separated) a data folder's paths may lead to",
                 _folders, lambda: (), "none: paths stay inside the data's own folder"),
        Variable(AUTOENCODER_CACHE_ENV, "where trained autoencoders (latent codecs) are kept",
                 Path, lambda: Path("runs/autoencoders"), "runs/autoencoders"),
    )
}  # fmt: skip


def memory_budget() -> int:
    """The bytes one allocation that ddkit checks beforehand may take: ``$DDKIT_MEMORY_BUDGET``,
    else half of this machine's memory (16 GiB where it is unknown).

    The variable is a positive number of bytes (``4096``, ``1.5e9``), optionally with a binary
    suffix ``K``, ``M``, ``G`` or ``T`` (2**10, 2**20, 2**30, 2**40 bytes; ``100M``, ``2G``);
    anything else (``abc``, ``nan``, ``inf``, ``-5``, ``0``, under one byte) is a one-line
    :class:`ConfigError`. A tiny budget such as ``1K`` is valid: checked allocations are then
    refused."""
    return VARIABLES[BUDGET_ENV].value()


def exact_from_environment() -> bool:
    """Whether ``$DDKIT_EXACT`` asks for exact mode (1, true, yes, on; 0, false, no, off or
    unset: no; any other word is refused in one line)."""
    return VARIABLES[EXACT_ENV].value()


_exact_override: ContextVar[bool | None] = ContextVar("ddkit_exact", default=None)


def exact_mode() -> bool:
    """Whether exact mode is on (:func:`exact` inside, else ``DDKIT_EXACT`` in the environment)."""
    override = _exact_override.get()
    return exact_from_environment() if override is None else override


@contextlib.contextmanager
def exact(on: bool = True) -> Iterator[None]:
    """Exact mode (``on=True``) or fast mode (``on=False``) inside the ``with`` block, whatever
    the environment says (also :func:`ddkit.levers.exact`)."""
    token = _exact_override.set(on)
    try:
        yield
    finally:
        _exact_override.reset(token)


def folder_cache() -> str:
    """``$DDKIT_FOLDER_CACHE``: ``"auto"`` (the default), ``"always"`` or ``"never"``."""
    return VARIABLES[FOLDER_CACHE_ENV].value()


def data_cache() -> Path | None:
    """``$DDKIT_DATA_CACHE``: the folder for image-folder caches, or ``None`` (beside the data)."""
    return VARIABLES[DATA_CACHE_ENV].value()


def data_root() -> Path:
    """The folder that holds downloadable datasets: ``$DDKIT_DATA``, else
    ``$XDG_DATA_HOME/ddkit``, else ``~/.local/share/ddkit``."""
    return VARIABLES[DATA_ENV].value()


def allowed_roots() -> tuple[Path, ...]:
    """The folders ``$DDKIT_DATA_ALLOW_ROOT`` names (``:``-separated; not resolved)."""
    return VARIABLES[ALLOW_ROOT_ENV].value()


def autoencoder_cache() -> Path:
    """Where autoencoders are kept: ``$DDKIT_AUTOENCODER_CACHE``, else ``runs/autoencoders``."""
    return VARIABLES[AUTOENCODER_CACHE_ENV].value()


def export(name: str, value: str) -> None:
    """Set variable ``name`` (one of :data:`VARIABLES`) for this process and the processes it
    starts (bench units, torchrun ranks), as a command's flag does (``--exact``)."""
    if name not in VARIABLES:
        raise ConfigError(f"{name!r} is not a ddkit variable; use one of {', '.join(VARIABLES)}")
    VARIABLES[name].parse(value)
    os.environ[name] = value


#: The other programs' variables that ddkit reads or sets, with what they belong to.
OTHER_PROGRAMS: dict[str, str] = {
    "RANK": "torchrun: this process's rank",
    "WORLD_SIZE": "torchrun: how many processes run",
    "LOCAL_RANK": "torchrun: this process's rank on its machine",
    "WANDB_API_KEY": "Weights & Biases: a configured key (whether one is set)",
    "WANDB_IDENTITY_TOKEN_FILE": "Weights & Biases: an identity token (whether one is set)",
    "WANDB_BASE_URL": "Weights & Biases: its server",
    "WANDB_MODE": "Weights & Biases: online, offline or disabled",
    "WANDB_DIR": "Weights & Biases: where it writes",
    "WANDB_ERROR_REPORTING": "Weights & Biases: its service's error reports (off by default)",
    "NETRC": "the netrc file holding a tracker's credentials",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "MLflow: retries of a request (none by default)",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "MLflow: seconds before a request fails (30 by default)",
    "PYTHONUNBUFFERED": "Python: unbuffered output of the processes ddkit starts",
}
_LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _other(name: str) -> str:
    if name not in OTHER_PROGRAMS:
        raise ConfigError(f"{name!r} is not a variable ddkit consults; add it to OTHER_PROGRAMS")
    return name


def other_variable(name: str) -> str | None:
    """The value of another program's variable ``name`` (one of :data:`OTHER_PROGRAMS`), or
    ``None`` where it is unset."""
    return os.environ.get(_other(name))


def launch_environment() -> dict[str, str]:
    """torchrun's launch variables that are set (:func:`ddkit.distributed.from_env`)."""
    return {name: os.environ[name] for name in _LAUNCH if name in os.environ}


def default_for_started_programs(name: str, value: str) -> None:
    """Set another program's variable ``name`` to ``value`` unless the user set it: for the
    processes ddkit starts or drives (a tracker's service, a launched rank)."""
    os.environ.setdefault(_other(name), value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class RunContext:
    """What a run's environment and levers resolved to: every variable's value (``values``, by
    name) and the names of those that were set (``given``); the ``device`` the run computes on,
    whether exact mode is on (``exact``: the flag, the variable or
    :func:`ddkit.levers.exact`) and how many ``processes`` run it (torchrun's world size).

    Precision and compilation are not here: ``"auto"`` resolves per network and run length,
    and each method and protocol records what it resolved (``method_config``, the set's meta).
    """

    values: dict[str, Any] = field(hash=False)
    given: frozenset[str]
    device: str = "cpu"
    exact: bool = False
    processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The context as JSON: each variable's resolved value and whether it was set."""
        return {
            "variables": {
                name: {"value": _jsonable(value), "set": name in self.given}
                for name, value in self.values.items()
            },
            "device": self.device,
            "exact": self.exact,
            "processes": self.processes,
        }


def run_context(device: Any = "cpu", processes: int = 1) -> RunContext:
    """Every variable resolved now (a bad one refused in one line), with the run's ``device``
    and ``processes``, as one frozen :class:`RunContext`."""
    return RunContext(
        values={name: v.value() for name, v in VARIABLES.items()},
        given=frozenset(name for name, v in VARIABLES.items() if v.text()),
        device=str(device),
        exact=exact_mode(),
        processes=int(processes),
    )
