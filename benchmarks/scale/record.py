"""One place for the scale benchmarks' rows: the child processes' peak memory and appending a
row, with the machine it ran on, to a results file (atomically)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from ddkit.io import atomic_write_json
from ddkit.meter import machine_info

RESULTS = Path(__file__).parents[1] / "results" / "scale"


def children_peak_gib() -> float:
    """The largest peak resident set size of the finished child processes, in GiB."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3)


def _commit() -> str | None:
    """The checkout's commit (``None`` outside a git checkout)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent, check=False)  # fmt: skip
    return done.stdout.strip() or None


def append_row(name: str, row: dict[str, Any]) -> None:
    """Append ``row`` (plus ``machine`` and ``commit``) to ``RESULTS/name`` and print it to
    stderr."""
    path = RESULTS / name
    rows = json.loads(path.read_text()) if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, [*rows, {**row, "machine": machine_info(), "commit": _commit()}])
    print(json.dumps(row), file=sys.stderr)
