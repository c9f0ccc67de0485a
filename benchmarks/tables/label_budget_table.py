"""Label budgets (issue 69): one distilled set relabelled under every soft-label budget. The
mnist5k tables put a column per method (``bench_label_budget.py``'s ``combined_table``); the
first study, rded on digits, one column with two decimals."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from _campaigns import RESULTS, campaign, results


def mnist5k(suffix: str = "") -> str:
    files = results(*(f"label_budget_mnist5k_{m}{suffix}.json" for m in ("sre2l", "rded", "edc")))
    return campaign("bench_label_budget").combined_table(files)


#: the methods of the seeded table, and the seeds their images were distilled with
SEEDED_METHODS = ("sre2l", "rded", "edc")
SEEDS = (0, 1)
RANDOM = "random real, "


def seeded(dataset: str = "mnist5k") -> str:
    """Issue 85's table: a row per label budget, its label bytes, a column per method's images
    and one for random real images given the same labels (rded's files relabel them with the
    same teacher), each cell the mean ± std over every network of both image seeds. Random
    real images of one seed relabelled under one budget are the same set in every method's
    file (the same teacher, temperature and views), so a row measured again (the same
    accuracies) counts once per seed."""
    runs = {
        (m, seed): json.loads(path.read_text())
        for m in SEEDED_METHODS
        for seed in SEEDS
        if (path := RESULTS / f"label_budget_{dataset}_{m}_s{seed}.json").exists()
    }
    rows: dict[str, dict[str, list[float]]] = {}
    label_bytes: dict[str, int] = {}
    counted: set[tuple[int, str, tuple[float, ...]]] = set()  # random rows already counted
    for (method, seed), run in runs.items():
        for r in run["rows"]:
            random = r["row"].startswith(RANDOM)
            key = (seed, r["row"], tuple(r["accuracy"]["accuracies"]))
            if random and key in counted:  # the same set measured again in another file
                continue
            counted.add(key)
            budget = r["row"][len(RANDOM) :] if random else r["row"]
            column = "random real" if random else method
            rows.setdefault(budget, {}).setdefault(column, []).extend(r["accuracy"]["accuracies"])
            label_bytes.setdefault(budget, r["bytes"]["labels"])
    columns = [*SEEDED_METHODS, "random real"]
    out = [
        "| labels | label bytes | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for budget, cells in rows.items():
        text = []
        for c in columns:
            acc = cells.get(c)
            text.append(
                f"{100 * statistics.mean(acc):.1f} ± {100 * statistics.pstdev(acc):.1f} "
                f"({len(acc)})"
                if acc
                else "–"
            )
        out.append(f"| {budget} | {label_bytes[budget]:,} | " + " | ".join(text) + " |")
    return "\n".join(out)


def one_method(path: Path) -> str:
    """A row per label budget: label bytes, the teacher's bytes counted at evaluation, accuracy."""
    rows = json.loads(path.read_text())["rows"]
    out = [
        "| labels | label bytes | teacher bytes counted | accuracy (%) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        a = r["accuracy"]
        out.append(
            f"| {r['row']} | {r['bytes']['labels']:,} | {r['evaluation_bytes']['teacher']:,} | "
            f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f} |"
        )
    return "\n".join(out)


TABLES = {
    "label-budget:digits": lambda: one_method(RESULTS / "label_budget.json"),
    "label-budget": mnist5k,
    "label-budget:preset": lambda: mnist5k("_preset"),
    "label-budget:seeds": seeded,
}
