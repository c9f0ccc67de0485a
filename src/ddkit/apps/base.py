"""The application contract: a registered class with a name, one line of help, its CLI
arguments and its run (``ddkit app NAME``), plus the pieces every application's command shares.
The measuring itself is a plain function of the application's module, usable from Python."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, ClassVar

from ddkit.errors import ConfigError
from ddkit.registry import Registry, import_submodules


class App:
    """One application. Subclasses set ``name`` and ``help`` and implement
    :meth:`add_arguments` (options beyond the shared ``--dataset``, ``--seed``, ``--root`` and
    ``--out``, which :meth:`add_shared` adds) and :meth:`run` (writes JSON and a PNG into
    ``--out``, returns the exit code)."""

    name: ClassVar[str] = "app"
    help: ClassVar[str] = ""

    @classmethod
    def add_shared(cls, parser: argparse.ArgumentParser) -> None:
        """The options every application takes."""
        parser.add_argument("--dataset", default="digits")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--root", default=None)
        parser.add_argument("--out", default=f"runs/app-{cls.name}")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        cls.add_shared(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise NotImplementedError


APPS: Registry[Any] = Registry("application")


#: class decorator: register an application under its ``name``
register_app = APPS.add_class


def load_all() -> None:
    """Import every module of :mod:`ddkit.apps`, so that each registers its application."""
    import_submodules("ddkit.apps")


def method_names(text: str) -> list[str]:
    """Comma-separated method / selector names, each checked (unknown names fail before any
    work)."""
    from ddkit.methods import METHODS, load_all

    load_all()
    names = [m for m in text.split(",") if m]
    for m in names:
        METHODS.get(m)
    return names


def positive_floats(text: str, what: str) -> list[float]:
    """Comma-separated positive numbers (an option named ``what``), or a one-line error."""
    try:
        values = [float(v) for v in text.split(",") if v]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise ConfigError(f"{what} must be positive numbers, got {text!r}")
    return values


def finished_rows(path: Path) -> list[dict]:
    """The rows of an earlier run's results file, or none if it is absent or unreadable."""
    try:
        return list(json.loads(path.read_text())["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
