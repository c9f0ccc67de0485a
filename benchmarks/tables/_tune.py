"""Rows of ``benchmarks/studies/tune_val.py``'s results files (and files of its shape) for the
tables of the lab history: each table names the rows it shows and labels them; every figure is
read from the file."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from _campaigns import RESULTS


@cache
def read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def tune_row(name: str, run: int, row: int) -> dict[str, Any]:
    """Row ``row`` of run ``run`` of a tune_val results file (``{"runs": [{"rows": ...}]}``)."""
    return read(name)["runs"][run]["rows"][row]


def find(name: str, **match: Any) -> dict[str, Any]:
    """The one row of a results file (its runs' rows, or its ``rows``) whose keys (``fixed``
    values included) equal ``match``."""
    data = read(name)
    rows = [r for run in data.get("runs", []) for r in run["rows"]] or data["rows"]
    hits = [
        r for r in rows if all({**r.get("fixed", {}), **r}.get(k) == v for k, v in match.items())
    ]
    if len(hits) != 1:
        raise LookupError(f"{name}: {len(hits)} rows match {match}")
    return hits[0]


def pm(r: dict[str, Any], prefix: str = "val", digits: int = 2) -> str:
    """``mean ± std`` in % of the row's ``<prefix>_mean`` and ``<prefix>_std``."""
    mean, std = 100 * r[f"{prefix}_mean"], 100 * r[f"{prefix}_std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def loss(r: dict[str, Any], spec: str = ".3g") -> str:
    """The distillation loss over the first and the last 10 % of the iterations."""
    return f"{r['loss_first']:{spec}} → {r['loss_last']:{spec}}"


def table(
    head: Sequence[str],
    rows: Sequence[tuple[Sequence[str], dict[str, Any] | None]],
    cells: Callable[[dict[str, Any]], Sequence[str]],
    best: Callable[[dict[str, Any]], float] | None = None,
    group: Callable[[Sequence[str]], Any] = lambda labels: None,
) -> str:
    """A Markdown table: per row its label cells, then ``cells(result)`` (dashes where the row has
    no result). With ``best``, the last cell of the best result of each ``group`` (of labels) is
    bold."""
    width = len(head) - len(rows[0][0])
    tops: dict[Any, float] = {}
    if best is not None:
        for labels, r in rows:
            if r is not None:
                tops[group(labels)] = max(tops.get(group(labels), float("-inf")), best(r))
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for labels, r in rows:
        values = list(cells(r)) if r is not None else ["–"] * width
        if best is not None and r is not None and best(r) == tops[group(labels)]:
            values[-1] = f"**{values[-1]}**"
        out.append("| " + " | ".join([*labels, *values]) + " |")
    return "\n".join(out)
