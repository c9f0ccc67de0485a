"""Resuming a benchmark script: what its results file already holds for the same settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def kept_entries(path: str | Path, settings: dict[str, Any], key: str) -> list[dict]:
    """The list ``key`` of the JSON results file ``path`` when every one of ``settings`` equals
    the file's value (a missing setting reads as None); ``[]`` when the file is absent or any
    setting differs, so a run with other settings starts over."""
    path = Path(path)
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    if any(old.get(name) != value for name, value in settings.items()):
        return []
    return list(old.get(key, []))
