"""What a finished run folder made, as a results row (issue 82): the method the run resolved
to, its settings that set a step's cost, the iterations made of those planned, the fit's
seconds and the set's bytes, read from ``RUN/config.json`` and ``RUN/synthetic/meta.json``;
appended to ``benchmarks/results/scale/sets.json`` under ``--label`` (its last word names the
set's evaluation file, ``--command-label`` the command's row in ``commands.json``).

    python benchmarks/scale/set_rows.py --label "fashionmnist rec10" RUN
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from record import append_row

KEPT = ("model", "batch_real")


def set_row(run: Path, label: str, command_label: str | None = None) -> dict:
    config = json.loads((run / "config.json").read_text())
    meta = json.loads((run / "synthetic" / "meta.json").read_text())
    made = meta["provenance"]
    return {
        "label": label,
        "command_label": command_label,
        "dataset": config["dataset"],
        "asked": "recommended" if "recommended" in config else config["method"],
        "method": made["method"],
        "ipc": made["ipc"],
        "settings": {k: made["config"][k] for k in KEPT if k in made.get("config", {})},
        "iterations": made.get("iterations"),
        "planned_iterations": made.get("planned_iterations", made.get("iterations")),
        "fit_seconds": round(made.get("fit_seconds", 0.0), 1),
        "bytes": meta["bytes"]["total"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True, help="ends in the name of its evaluation file")
    p.add_argument("--command-label", default=None, help="its command's row in commands.json")
    p.add_argument("run", type=Path)
    a = p.parse_args()
    append_row("sets.json", set_row(a.run, a.label, a.command_label))


if __name__ == "__main__":
    main()
