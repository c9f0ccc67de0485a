"""``--method auto`` against the tables it must match (issue 87), from
``benchmarks/results/auto/DATASET-ipcK.json`` (``benchmarks/campaigns/bench_auto.py``).

mnist5k: the auto set beside the best set of the ``standard`` suite whose distillation or
selection took no longer than the budget (``benchmarks/results/standard.json``, the same
evaluation recipe). Tables and series: the auto set beside random real rows and the better
coreset (herding, k-center) of ``benchmarks/results/tabular`` / ``timeseries``, per learner."""

from __future__ import annotations

import json
import math
import statistics

from _campaigns import RESULTS

AUTO = RESULTS / "auto"
IMAGES = ("mnist5k",)
OTHER = {"letter": "tabular", "gunpoint": "timeseries"}
CORESETS = ("herding", "kcenter")


def _cells() -> list[dict]:
    return sorted(
        (json.loads(p.read_text()) for p in AUTO.glob("*-ipc*.json") if "-auto-" not in p.name),
        key=lambda c: (c["dataset"], c["ipc"]),
    )


def _pct(values: list[float]) -> str:
    return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.pstdev(values):.2f}"


def _choice(cell: dict) -> str:
    a = cell["auto"]
    its = cell["winner_iterations"]
    return f"{a['winner']}" + (f" ({its:,} it)" if its else "")


def _budget(cell: dict) -> str:
    wall, budget = cell["wall_seconds"], cell["budget_seconds"]
    return f"{wall:,.0f} s of {budget:,.0f} s ({100 * wall / budget:.0f} %)"


def images() -> str:
    """mnist5k: the auto set against the best standard-table set that fits the budget."""
    rows = json.loads((RESULTS / "standard.json").read_text())["rows"]
    out = [
        "| dataset | IPC | budget used | chosen | tournament (s) | auto set | best standard set "
        "within the budget | difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in (c for c in _cells() if c["dataset"] in IMAGES):
        accs = cell["evaluation"]["results"][0]["accuracies"]
        fits = [
            r
            for r in rows
            if r["dataset"] == cell["dataset"]
            and r["ipc"] == cell["ipc"]
            and r["method"] != "full"
            and "mean" in r  # a cell that failed holds its error instead
            and (r.get("distill_seconds") or 0.0) <= cell["budget_seconds"]
        ]
        best = max(fits, key=lambda r: r["mean"])
        gap = 100 * (statistics.fmean(accs) - best["mean"])
        out.append(
            f"| {cell['dataset']} | {cell['ipc']} | {_budget(cell)} | {_choice(cell)} | "
            f"{cell['auto']['spent_seconds']:,.0f} | {_pct(accs)} | {best['method']} "
            f"{_pct(best['accuracies'])} ({best['distill_seconds']:,.0f} s) | {gap:+.2f} |"
        )
    return "\n".join(out)


def _learners(cell: dict, method: str) -> dict[str, list[float]]:
    """``{learner: accuracies}`` of ``method``'s set in the table ``cell`` is compared with."""
    folder = RESULTS / OTHER[cell["dataset"]]
    report = json.loads((folder / f"{cell['dataset']}-{method}-ipc{cell['ipc']}.json").read_text())
    return {r["model"]: r["accuracies"] for r in report["results"]}


def _mean_of_learners(runs: dict[str, list[float]], learners: list[str]) -> str:
    """The mean over ``learners`` of each one's mean accuracy, ± the root mean square of their
    standard deviations (the spread of one learner's runs, not shrunk by the learners' count)."""
    means = [statistics.fmean(runs[k]) for k in learners]
    spread = math.sqrt(statistics.fmean([statistics.pstdev(runs[k]) ** 2 for k in learners]))
    return f"{100 * statistics.fmean(means):.2f} ± {100 * spread:.2f}"


def other_rows() -> str:
    """Tables and series: the auto set against random real rows and the better coreset, per
    learner, then over the learners (:func:`_mean_of_learners`; the better coreset by that
    mean)."""
    out = [
        "| dataset | IPC | budget used | chosen | learner | auto set | random real | best "
        "coreset |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in (c for c in _cells() if c["dataset"] in OTHER):
        random = _learners(cell, "random")
        coresets = {m: _learners(cell, m) for m in CORESETS}
        for r in cell["evaluation"]["results"]:
            learner = r["model"]
            better = max(CORESETS, key=lambda m: statistics.fmean(coresets[m][learner]))
            out.append(
                f"| {cell['dataset']} | {cell['ipc']} | {_budget(cell)} | {_choice(cell)} | "
                f"{learner} | {_pct(r['accuracies'])} | {_pct(random[learner])} | {better} "
                f"{_pct(coresets[better][learner])} |"
            )
        auto = {r["model"]: r["accuracies"] for r in cell["evaluation"]["results"]}
        learners = list(auto)
        better = max(CORESETS, key=lambda m: statistics.fmean(
            statistics.fmean(coresets[m][k]) for k in learners
        ))  # fmt: skip
        out.append(
            f"| {cell['dataset']} | {cell['ipc']} | {_budget(cell)} | {_choice(cell)} | "
            f"**mean of the {len(learners)}** | {_mean_of_learners(auto, learners)} | "
            f"{_mean_of_learners(random, learners)} | {better} "
            f"{_mean_of_learners(coresets[better], learners)} |"
        )
    return "\n".join(out)


TABLES = {"auto:images": images, "auto:other": other_rows}
