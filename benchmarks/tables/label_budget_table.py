"""Label budgets (issue 69): one distilled set relabelled under every soft-label budget. The
mnist5k tables put a column per method (``bench_label_budget.py``'s ``combined_table``); the
first study, rded on digits, one column with two decimals."""

from __future__ import annotations

import json
from pathlib import Path

from _campaigns import RESULTS, campaign, results


def mnist5k(suffix: str = "") -> str:
    files = results(*(f"label_budget_mnist5k_{m}{suffix}.json" for m in ("sre2l", "rded", "edc")))
    return campaign("bench_label_budget").combined_table(files)


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
}
