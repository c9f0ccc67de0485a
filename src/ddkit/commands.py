"""Sub-commands of ``ddkit``, registered by the packages that own them.

The core command line (:mod:`ddkit.cli`) imports no method family, application or audit: a
package that adds sub-commands keeps them in a module named ``cli`` inside its own folder, and
that module registers each one here (the core commands too, one module each in ``ddkit/cli/``)::

    from ddkit.commands import Command, register_command

    def add_arguments(parser): parser.add_argument("--dataset", required=True)
    def run(args): ...; return 0

    register_command(Command("experts", "train expert trajectories", add_arguments, run))

:func:`discover` imports every ``cli`` module under the ``ddkit`` package, so a new family's
sub-command is found without an edit elsewhere. A package whose members form one command with
sub-commands of their own (``ddkit app NAME``, ``ddkit audit NAME``) registers a
:class:`Group` over its registry instead.

The flags that several sub-commands share are defined once here (:data:`COMMON_FLAGS`,
:func:`add_common`), and CLI defaults are read from the API (:func:`defaults_of`).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import math
import numbers
import pkgutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ddkit.errors import ConfigError
from ddkit.registry import Registry

Runner = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One sub-command: its name, one line of help, a function that adds its arguments to its
    parser, and the function that runs it (returns the exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Runner
    #: whether the command's own ``--help`` repeats its help line as a description (the core
    #: commands' pages start with their usage)
    describe: bool = True

    def install(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = self.help if self.describe else None
        parser = subparsers.add_parser(self.name, help=self.help, description=description)
        self.add_arguments(parser)
        parser.set_defaults(func=self.run)
        return parser


class Group:
    """``ddkit NAME MEMBER ...``: one sub-command per member of a registry whose members are
    :class:`Command`-like (``name``, ``help``, ``add_arguments``, ``run``)."""

    def __init__(self, name: str, help: str, members: Registry[Any], load: Callable[[], None]):
        self.name, self.help, self.members, self.load = name, help, members, load

    def install(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        self.load()
        parser = subparsers.add_parser(self.name, help=self.help, description=self.help)
        inner = parser.add_subparsers(dest=self.name, required=True, metavar="NAME")
        for key in self.members.names():
            member = self.members.get(key)
            sub = inner.add_parser(key, help=member.help, description=member.help)
            member.add_arguments(sub)
            sub.set_defaults(func=functools.partial(_checked_run, member))
        return parser


def _checked_run(member: Any, args: argparse.Namespace) -> int:
    """``member.run(args)`` once every option named in its ``limits`` is in range."""
    for dest, limit in getattr(member, "limits", {}).items():
        limit.check(f"--{dest.replace('_', '-')}", getattr(args, dest))
    return member.run(args)


@dataclass(frozen=True)
class Limit:
    """The valid values of a numeric option: finite numbers in ``[low, high]`` (``open``: in
    ``(low, high)``); an integer option with ``integer``. Text is read as comma-separated
    numbers (:func:`number_list`); ``None`` (an option left unset) passes."""

    low: float = -math.inf
    high: float = math.inf
    open: bool = False
    integer: bool = False

    def check(self, what: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            values = number_list(value, what, kind=int if self.integer else float)
        else:
            values = [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v:
                raise ConfigError(f"{what} must be a number, got {v!r}")
            if self.open and math.isinf(self.high) and not self.low < v < self.high:
                raise ConfigError(f"{what} must be > {self.low:g} and finite, got {v}")
            if self.open and not self.low < v < self.high:
                raise ConfigError(
                    f"{what} must be a number in ({self.low:g}, {self.high:g}), got {v}"
                )
            if math.isinf(v):
                raise ConfigError(f"{what} must be finite, got {v}")
            if self.integer and v != int(v):
                raise ConfigError(f"{what} must be a whole number, got {v}")
            if not self.open and v < self.low:
                raise ConfigError(f"{what} must be >= {self.low:g}, got {v}")
            if not self.open and v > self.high:
                raise ConfigError(f"{what} must be <= {self.high:g}, got {v}")


#: a count of at least one (rounds, steps, epochs, terms, ...)
COUNT = Limit(1, integer=True)
#: a fraction strictly between 0 and 1 (a validation split)
FRACTION = Limit(0, 1, open=True)


class Member:
    """A member of a :class:`Group` (an application, an audit): subclasses set ``name`` and
    one line of ``help`` and implement :meth:`run` (validate every option in one line, load the
    data, only then create ``--out``; write results there; return the exit code). Their
    :meth:`add_arguments` starts with :meth:`add_shared`: ``--dataset``, ``--seed``, ``--root``
    and ``--out`` (default ``runs/<group>-<name>``). The measuring itself is a plain function of
    the member's module, usable from Python."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    group: ClassVar[str] = ""
    #: numeric options (argparse dests) and their valid values, checked before :meth:`run`
    limits: ClassVar[dict[str, Limit]] = {}

    @classmethod
    def add_shared(cls, parser: argparse.ArgumentParser) -> None:
        """The options every member of a group takes."""
        parser.add_argument("--dataset", default="digits")
        parser.add_argument("--root", default=COMMON_FLAGS["root"]["default"],
                            help=COMMON_FLAGS["root"]["help"])  # fmt: skip
        parser.add_argument("--seed", **COMMON_FLAGS["seed"])
        parser.add_argument("--out", default=f"runs/{cls.group}-{cls.name}", help="output folder")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        cls.add_shared(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise NotImplementedError


COMMANDS: Registry[Command | Group] = Registry("command")


def register_command(command: Command | Group) -> Command | Group:
    """Register a sub-command (or a group of them) under its name."""
    COMMANDS.add(command.name, command, help=command.help)
    return command


def discover() -> None:
    """Import every module of the core command line (``ddkit.cli.*``, one per core command) and
    every ``cli`` module below the ``ddkit`` package (each registers its sub-commands). Packages
    are imported to be walked; other leaf modules are not."""
    import ddkit

    for info in pkgutil.walk_packages(ddkit.__path__, prefix="ddkit.", onerror=_raise):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf == "cli" or (info.name.startswith("ddkit.cli.") and leaf != "__main__"):
            importlib.import_module(info.name)


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while looking for sub-commands")


#: Flags shared by sub-commands, defined once: ``add_common(parser, "seed", "root", ...)``.
COMMON_FLAGS: dict[str, dict[str, Any]] = {
    "seed": {"type": int, "default": 0, "help": "random seed: the same seed gives the same result"},
    "root": {"default": None, "help": "data folder or file for on-disk datasets"},
    "quiet": {"action": "store_true", "help": "no progress output"},
    "resume": {
        "action": "store_true",
        "help": "continue the run folder's checkpoint (refused when its settings differ)",
    },
    "log": {
        "action": "append",
        "default": None,
        "metavar": "TARGET",
        "help": "also log the config, metrics and final grid to tensorboard:DIR, mlflow[:URI] or "
        "wandb[:PROJECT] (offline without an API key; repeatable; extras 'tensorboard' / "
        "'mlflow' / 'wandb')",
    },
    "device": {
        "default": None,
        "help": "where to compute, e.g. cuda or cuda:1 (default: the CPU; under torchrun with "
        "nccl, each rank's GPU)",
    },
}


def device_option(args: argparse.Namespace) -> Any:
    """The ``torch.device`` that ``--device`` names: :func:`ddkit.distributed.named_device`."""
    from ddkit import distributed

    return distributed.named_device(getattr(args, "device", None))


def add_common(parser: argparse.ArgumentParser, *names: str, out: str | None = None) -> None:
    """Add the shared flags ``names`` (keys of :data:`COMMON_FLAGS`) and, with ``out``, an
    ``--out`` flag whose help text is ``out``."""
    for name in names:
        parser.add_argument(f"--{name}", **COMMON_FLAGS[name])
    if out is not None:
        parser.add_argument("--out", default=None, help=out)


def defaults_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``fn``: CLI defaults are read from the API, not restated."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _number(token: str, kind: type) -> float:
    """``token`` as ``kind``; a float may be a fraction such as ``8/255``."""
    if kind is float and "/" in token:
        top, _, bottom = token.partition("/")
        return float(top) / float(bottom)
    return kind(token)


def number_list(
    text: str | Sequence[float],
    what: str,
    *,
    kind: type = float,
    minimum: float | None = None,
    above: float | None = None,
) -> list[Any]:
    """Numbers given as comma-separated text (floats may be fractions such as ``8/255``) or as a
    list, each of type ``kind``, at least ``minimum`` and greater than ``above``; anything else
    is a one-line :class:`ConfigError` naming the option ``what``."""
    tokens = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = [_number(t, kind) if isinstance(t, str) else kind(t) for t in tokens if t != ""]
    except (ValueError, ZeroDivisionError, TypeError):
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} needs at least one value")
    if any(v != v for v in values):
        raise ConfigError(f"{what} must be numbers, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what} must be finite numbers, got {text!r}")
    if minimum is not None and min(values) < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {min(values)}")
    if above is not None and min(values) <= above:
        raise ConfigError(f"{what} must be > {above}, got {min(values)}")
    return values


_COMMAND_STARTED: list[float] = []  # the monotonic time the running command began


def mark_command_start(whole_process: bool) -> None:
    """Record when the command now starting began: when its process started where the process
    runs only this command (``ddkit ...``, ``python -m ddkit ...``: the start-up counts), else
    now (``main([...])`` called inside a longer-lived Python process)."""
    from ddkit.meter import process_seconds

    began = time.monotonic() - (process_seconds() if whole_process else 0.0)
    _COMMAND_STARTED[:] = [began]


def command_started() -> float:
    """The :func:`time.monotonic` reading at which the running command began (a time budget
    counts from it); the process's start where no command marked one."""
    from ddkit.meter import process_seconds

    return _COMMAND_STARTED[0] if _COMMAND_STARTED else time.monotonic() - process_seconds()
