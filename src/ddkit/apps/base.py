"""The application contract: a registered class with a name, one line of help, its CLI
arguments and its run (``ddkit app NAME``), plus the pieces every application's command shares.
The measuring itself is a plain function of the application's module, usable from Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ddkit.commands import Member
from ddkit.registry import Registry, import_submodules


class App(Member):
    """One application (``ddkit app NAME``): the contract of :class:`ddkit.commands.Member`."""

    group = "app"


APPS: Registry[Any] = Registry("application")


#: class decorator: register an application under its ``name``
register_app = APPS.add_class


def load_all() -> None:
    """Import every module of :mod:`ddkit.apps`, so that each registers its application."""
    import_submodules("ddkit.apps")


def finished_rows(path: Path) -> list[dict]:
    """The rows of an earlier run's results file, or none if it is absent or unreadable."""
    try:
        return list(json.loads(path.read_text())["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
