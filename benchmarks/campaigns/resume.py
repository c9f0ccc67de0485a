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


def results_header(script: str, argv: list[str] | None, settings: dict[str, Any]) -> dict:
    """The fields every results file opens with: the command, ``settings``, the machine and
    torch's version."""
    import platform

    import torch

    return {
        "command": f"python benchmarks/{script} " + " ".join(argv or []),
        **settings,
        "machine": f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }


def joined_results(paths: list[str], keys: tuple[str, ...]) -> list[dict]:
    """The results files ``paths``, refused (exit with a one-line message) unless they agree on
    every one of ``keys``."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    # compared as JSON text: a setting may be a dict or a list (e.g. options given with --set)
    if len({json.dumps([r.get(k) for k in keys], sort_keys=True) for r in runs}) > 1:
        raise SystemExit(f"one table needs result files that agree on {', '.join(keys)}")
    return runs
