"""The newest family leaders beside their predecessors (issue 37), from a suite's results (the
`standard` suite's by default; the `paper` suite's for full MNIST): accuracy (mean ± std over the
cell's networks), the gain over the predecessor and whether it holds beyond both spreads, random
real images of the same size, seconds per distillation iteration, peak memory, and what the ±
spans and where it was computed (distillation seeds, or random draws, × networks; CPU or GPU).

Every figure is read from the results file; nothing is trained or timed here. A cell not run yet
shows "–".

Usage: python benchmarks/tables/leaders_table.py [--dataset mnist5k] [--ipcs 1,10] [--results FILE]
       [--methods m3d,ncfm]  (only these new methods)
       [--more FILE ...]  (results of the same cells at other distillation seeds, e.g. from
                           `ddkit bench --seed 1 --results DIR`: pooled into the rows)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

#: each new method and the method it improves on (issue 37)
PREDECESSOR = {
    "m3d": "dm",
    "ncfm": "dm",
    "pad": "datm",
    "cda": "sre2l",
    "edc": "sre2l",
    "latent-prototypes": "dim",
}


def finished_rows(results: Path, dataset: str) -> dict[tuple[str, int], dict[str, Any]]:
    """(method, ipc) -> the results row of a finished cell of ``dataset``."""
    rows = json.loads(results.read_text())["rows"]
    return {
        (r["method"], int(r["ipc"])): r
        for r in rows
        if r.get("dataset") == dataset
        and isinstance(r.get("ipc"), int)
        and isinstance(r.get("mean"), float)
        and "error" not in r
    }


def pooled(
    rows: dict[tuple[str, int], dict[str, Any]], more: dict[tuple[str, int], dict[str, Any]]
) -> dict[tuple[str, int], dict[str, Any]]:
    """``rows`` with each cell that ``more`` also holds at other distillation seeds pooled in:
    the networks of every seed, their mean and (population) std, as a suite row with several
    seeds has them. A cell that ran with other options or another budget, or at a seed ``rows``
    already has, is refused: pooling it would mix two recipes or count one set twice."""
    out = dict(rows)
    for key, extra in more.items():
        row = out.get(key)
        if row is None:
            continue
        for field in ("options", "iterations", "epochs", "protocol", "model", "num_images"):
            # rows written before rows recorded their options ran with none
            default = {} if field == "options" else None
            if row.get(field, default) != extra.get(field, default):
                raise SystemExit(f"{key}: the extra seed's {field} differs; it cannot be pooled")
        seeds = [*(row.get("distill_seeds") or [0]), *(extra.get("distill_seeds") or [0])]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"{key}: distillation seed {seeds} given twice; it cannot be pooled")
        accuracies = [*row["accuracies"], *extra["accuracies"]]
        out[key] = {
            **row,
            "accuracies": accuracies,
            "distill_seeds": seeds,
            "mean": statistics.fmean(accuracies),
            "std": statistics.pstdev(accuracies),
            "devices": sorted(
                {*(row.get("devices") or ["cpu"]), *(extra.get("devices") or ["cpu"])}
            ),
        }
    return out


def accuracy_cell(row: dict[str, Any] | None) -> str:
    return "–" if row is None else f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}"


def gain_cell(new: dict[str, Any] | None, old: dict[str, Any] | None) -> str:
    """The new method's gain over the old in points, starred when it holds beyond both spreads
    (new mean − std above old mean + std, or below it the other way round)."""
    if new is None or old is None:
        return "–"
    gain = 100 * (new["mean"] - old["mean"])
    beyond = abs(new["mean"] - old["mean"]) > new["std"] + old["std"]
    return f"{gain:+.2f}{' *' if beyond else ''}"


def _per_iteration(row: dict[str, Any] | None) -> str:
    if row is None or not row.get("iterations"):
        return "–"
    return f"{row['distill_seconds'] / row['iterations']:.2f}"


def _peak(row: dict[str, Any] | None) -> str:
    peak = None if row is None else row.get("peak_distill_mb")
    return "–" if peak is None else f"{peak:.0f}"


def spread_cell(row: dict[str, Any] | None) -> str:
    """What a row's ± spans and where it ran: distillation seeds (random rows: draws) × networks
    each, then ``cpu`` / ``cuda`` (a row written before rows named devices: the CPU)."""
    if row is None:
        return "–"
    sets = len(row.get("distill_seeds") or [0])
    devices = ", ".join(row.get("devices") or ["cpu"])
    return f"{sets} × {len(row['accuracies']) // sets}, {devices}"


def table(
    rows: dict[tuple[str, int], dict[str, Any]], ipcs: list[int], methods: list[str] | None = None
) -> str:
    """The Markdown table, one line per (IPC, new method); ``methods``: only these new ones."""
    head = (
        "| IPC | method | accuracy (%) | predecessor | its accuracy (%) | gain (points) | "
        "random real (%) | s / iteration | peak MB | seeds × nets, where (new / predecessor / "
        "random) |"
    )
    lines = [head, "|" + "---|" * 10]
    for ipc in ipcs:
        random = rows.get(("random", ipc))
        for new, old in PREDECESSOR.items():
            if methods is not None and new not in methods:
                continue
            n, o = rows.get((new, ipc)), rows.get((old, ipc))
            spans = " / ".join(spread_cell(r) for r in (n, o, random))
            lines.append(
                f"| {ipc} | {new} | {accuracy_cell(n)} | {old} | {accuracy_cell(o)} | {gain_cell(n, o)} | "
                f"{accuracy_cell(random)} | {_per_iteration(n)} | {_peak(n)} | {spans} |"
            )
    return "\n".join(lines)


def leaders(
    results: str, dataset: str, ipcs: list[int], methods: list[str] | None = None, more=()
) -> str:
    """The table from ``results`` (relative to ``benchmarks/results/``), other seeds' files
    ``more`` pooled in."""
    rows = finished_rows(RESULTS / results, dataset)
    for name in more:
        rows = pooled(rows, finished_rows(RESULTS / name, dataset))
    return table(rows, ipcs, methods)


RESULTS = Path(__file__).resolve().parents[1] / "results"
TABLES = {
    "leaders:mnist5k-ipc10": lambda: leaders(
        "standard.json", "mnist5k", [10], more=["standard_seed1/standard.json"]
    ),
    "leaders:mnist5k-ipc1": lambda: leaders("standard.json", "mnist5k", [1]),
    "leaders:mnist": lambda: leaders("paper.json", "mnist", [1, 10], ["m3d", "ncfm"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--results", default=str(RESULTS / "standard.json"))
    ap.add_argument("--methods", default="", help="only these new methods (comma-separated)")
    ap.add_argument(
        "--more",
        action="append",
        default=[],
        help="results file of the same cells at other distillation seeds, pooled in (repeatable)",
    )
    args = ap.parse_args(argv)
    ipcs = [int(i) for i in args.ipcs.split(",") if i]
    methods = [m for m in args.methods.split(",") if m] if args.methods else None
    rows = finished_rows(Path(args.results), args.dataset)
    for more in args.more:
        rows = pooled(rows, finished_rows(Path(more), args.dataset))
    print(table(rows, ipcs, methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
