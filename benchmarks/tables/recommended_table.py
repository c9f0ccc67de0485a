"""The recommended path for large image data against random real images of the same bytes
(docs/benchmarks/data-at-scale.md, issue 82): each set's distillation (iterations made of those
planned within the time budget, the fit's and the command's seconds, the command's peak memory)
and its test accuracy under one recipe, from ``results/scale/sets.json``,
``results/scale/commands.json`` and the evaluations in ``results/scale/fashion_recommended/``
(``benchmarks/scale/fashion_recommended.sh``)."""

from __future__ import annotations

import json
from pathlib import Path

from _campaigns import RESULTS, _script

EVALUATIONS = RESULTS / "scale" / "fashion_recommended"
_rows = _script("scale", "scale_table")._results  # a results file of results/scale/


def _accuracy(path: Path) -> str:
    if not path.exists():
        return "–"
    (result,) = json.loads(path.read_text())["results"]
    runs = len(result["accuracies"])
    return f"{100 * result['mean']:.2f} ± {100 * result['std']:.2f} ({runs} networks)"


def _distillation(made: dict) -> str:
    if made["iterations"] == 0:
        return "selected (no iterations)"
    settings = ", ".join(f"{k} {v}" for k, v in made["settings"].items())
    return (
        f"{made['method']} ({settings}): {made['iterations']:,} of "
        f"{made['planned_iterations']:,} iterations in {made['fit_seconds']:,.0f} s"
    )


def recommended() -> str:
    """One row per set that a results row names: sets.json labels end in ``<set><ipc>``, the
    name of its evaluation file. A label measured again shows its latest row (in the place of
    its first); the earlier rows stay in the results files."""
    commands = {r["label"]: r for r in _rows("commands.json")}
    latest = {r["label"]: r for r in _rows("sets.json")}
    lines = [
        "| data | IPC | set | bytes | distillation | command: seconds, peak RSS (GiB) "
        "| test accuracy (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for made in latest.values():
        command = commands.get(made.get("command_label", ""))
        ran = f"{command['seconds']:,.0f}, {command['peak_rss_gib']:.2f}" if command else "–"
        evaluation = EVALUATIONS / f"{made['label'].split()[-1]}.json"
        lines.append(
            f"| {made['dataset']} | {made['ipc']} | {made['asked']} | {made['bytes']:,} "
            f"| {_distillation(made)} | {ran} | {_accuracy(evaluation)} |"
        )
    return "\n".join(lines)


TABLES = {"scale:recommended": recommended}
