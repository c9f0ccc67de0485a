"""Markdown tables of the tabular and time-series benchmarks (docs/benchmarks/modalities.md,
"Tables" and "Time series"), read from their results files, with the coreset-vs-distillation count.

For every dataset and IPC: one row per set (random real, the coresets herding / kcenter, the
distillation methods), one column per learner, final test accuracy (%) mean ± std over the
learner's seeds (deterministic learners run once: ± 0.0), one distilled set per cell (seed 0).
Below each dataset: per (IPC, learner), whether the best distilled set beats the best coreset,
and by how much. The graph benchmark's table likewise (``graph_table``).

Usage: python benchmarks/tables/modality_tables.py [benchmarks/results/tabular ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CORESETS = ("herding", "kcenter")
DISTILLED = ("dm", "dc", "kip", "mtt")
ORDER = ("random", *CORESETS, *DISTILLED)


def load(folder: Path) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """``{cell name: {learner: (mean %, std %)}}`` of every results file in ``folder``."""
    cells = {}
    for f in sorted(folder.glob("*.json")):
        results = json.loads(f.read_text())["results"]
        cells[f.stem] = {r["model"]: (100 * r["mean"], 100 * r["std"]) for r in results}
    return cells


def dataset_table(cells: dict, dataset: str) -> list[str]:
    full = cells.get(f"{dataset}-full", {})
    learners = list(full) or sorted({m for c in cells.values() for m in c})
    lines = [f"**{dataset}** (full training split: "
             + ", ".join(f"{m} {full[m][0]:.1f}" for m in learners if m in full) + ")", "",
             "| IPC | set | " + " | ".join(learners) + " |",
             "|---|---|" + "---|" * len(learners)]  # fmt: skip
    verdicts = []
    for ipc in (1, 10):
        for method in ORDER:
            row = cells.get(f"{dataset}-{method}-ipc{ipc}")
            if row is None:
                continue
            cols = [f"{row[m][0]:.1f} ± {row[m][1]:.1f}" if m in row else "–" for m in learners]
            lines.append(f"| {ipc} | {method} | " + " | ".join(cols) + " |")
        for m in learners:
            best = {}
            for group in (CORESETS, DISTILLED):
                got = [(cells[c][m][0], n) for n in group
                       if m in cells.get(c := f"{dataset}-{n}-ipc{ipc}", {})]  # fmt: skip
                best[group] = max(got) if got else None
            if best[CORESETS] and best[DISTILLED]:
                (d, dn), (c, cn) = best[DISTILLED], best[CORESETS]
                verdicts.append((ipc, m, d - c, dn, cn))
    lines.append("")
    wins = sum(v[2] > 0 for v in verdicts)
    lines.append(
        f"Best distilled set against best coreset: ahead in {wins} of {len(verdicts)} "
        "(IPC, learner) pairs; "
        + "; ".join(f"IPC {i} {m}: {d:+.1f} ({dn} vs {cn})" for i, m, d, dn, cn in verdicts)
        + "."
    )
    return lines


def folder_tables(folder: Path) -> str:
    """Every dataset's table in ``folder``, the datasets by name."""
    cells = load(folder)
    datasets = sorted({name.rsplit("-", 1)[0] for name in cells if name.endswith("-full")})
    return "\n\n".join("\n".join(dataset_table(cells, ds)) for ds in datasets)


RESULTS = Path(__file__).resolve().parents[1] / "results"


def graph_table(folder: Path) -> str:
    """The graph benchmark (``campaigns/graph.sh``): per nodes per class and set, the GCN trained
    on the set beside random real nodes of the same size and the full graph."""
    cells = []
    for f in folder.glob("*.json"):
        data = json.loads(f.read_text())
        name, ipc = f.stem.rsplit("-ipc", 1)
        by = {r["model"]: r for r in data["results"]}
        cells.append((int(ipc), name.split("-", 1)[1], data["num_train_images"], by))
    out = [
        "| nodes per class | set | nodes | GCN on the set (%) | random real nodes (%) | "
        "full graph (%) |",
        "|---|---|---|---|---|---|",
    ]
    for ipc, method, nodes, by in sorted(cells, key=lambda c: c[:2]):
        acc = " | ".join(f"{100 * by[m]['mean']:.1f} ± {100 * by[m]['std']:.1f}"
                         for m in ("gcn", "random nodes", "full graph"))  # fmt: skip
        out.append(f"| {ipc} | {method} | {nodes} | {acc} |")
    return "\n".join(out)


TABLES = {
    "modalities:tabular": lambda: folder_tables(RESULTS / "tabular"),
    "modalities:series": lambda: folder_tables(RESULTS / "timeseries"),
    "modalities:graph": lambda: graph_table(RESULTS / "graph"),
}


def main() -> None:
    folders = [Path(a) for a in sys.argv[1:]] or [RESULTS / "tabular", RESULTS / "timeseries"]
    print("\n\n".join(folder_tables(folder) for folder in folders))


if __name__ == "__main__":
    main()
