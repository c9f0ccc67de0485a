"""The application contract: a registered class with a name, one line of help, its CLI
arguments and its run (``ddkit app NAME``), plus the pieces every application's command shares.
The measuring itself is a plain function of the application's module, usable from Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ddkit.commands import Member
from ddkit.errors import FileFormatError
from ddkit.io import json_sha256
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


def kept_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the SHA-256 of its canonical JSON (:func:`ddkit.io.json_sha256`), as a
    results file keeps it for a re-run to reuse (:func:`finished_rows`)."""
    return {**row, "sha256": json_sha256(row)}


def finished_rows(path: Path) -> list[dict]:
    """The rows of an earlier run's results file, or none if it is absent or unreadable. A row
    edited after it was kept (:func:`kept_row`) is refused in one line, not reused; rows kept
    before checksums have none and are read as they are."""
    try:
        rows = list(json.loads(path.read_text())["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    for row in rows:
        kept = row.pop("sha256", None) if isinstance(row, dict) else None
        if kept is not None and kept != json_sha256(row):
            raise FileFormatError(
                f"a row of {str(path)!r} was edited after it was kept (its checksum does not "
                "match); delete the file, or that row, to compute it again"
            )
    return rows
