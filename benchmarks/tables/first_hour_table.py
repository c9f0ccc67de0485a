"""The first hour (issue 70; docs/benchmarks/first-hour.md): ``--dry-run`` estimates against the
real runs (``bench_dry_run.py``, ``dry_run.json``) and evaluation training on one thread against
the default count (``bench_eval_threads.py``, ``eval_threads.json``)."""

from __future__ import annotations

import json
import re
from typing import Any

from _campaigns import RESULTS

#: the scratch folder the dry-run cases wrote into, shown as an ellipsis
SCRATCH = re.compile(r"/tmp/ddkit-dry-run/")


def _rows(name: str) -> list[dict[str, Any]]:
    return json.loads((RESULTS / name).read_text())["rows"]


def dry_run() -> str:
    out = [
        "| command | estimate (s) | real (s) | real / estimate | load |",
        "|---|---|---|---|---|",
    ]
    for r in _rows("dry_run.json"):
        command = SCRATCH.sub("…/", r["command"])
        out.append(
            f"| `{command}` | {r['estimate_s']} | {r['real_wall_s']:.1f} | "
            f"{r['ratio_real_to_estimate']:.2f} | {r['load_average_before']:.1f} |"
        )
    return "\n".join(out)


def eval_threads() -> str:
    out = [
        "| images | input values per batch | threads | min (ms) | median (ms) | mean (ms) | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in _rows("eval_threads.json"):
        ms = " | ".join(f"{1000 * r[k]:.0f}" for k in ("min_s", "median_s", "mean_s"))
        out.append(
            f"| {r['images']:,} | {r['batch_values']:,} | {r['threads']} | {ms} | "
            f"{r['load_average_before']:.1f} |"
        )
    return "\n".join(out)


TABLES = {"first-hour:dry-run": dry_run, "first-hour:eval-threads": eval_threads}
