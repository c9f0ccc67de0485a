"""dc and dsa at MNIST IPC 1 at the published budget on a lent H200 (docs/benchmarks/scale-out.md;
``benchmarks/gpu/check.py --stages paper``): each seed, the seeds pooled, and random real
images, beside the published figures (the ``paper`` suite's). Files under
``benchmarks/results/gpu/``: ``h200_paper_mnist_ipc1.json`` (the sets and their evaluation on
the GPU), ``h200_before_fixes.json`` (the five random draws, evaluated by the first run),
``dc-seed1_eval_cpu.json`` (dc's second set, whose evaluation the time limit stopped, evaluated
on the CPU)."""

from __future__ import annotations

import json
import statistics
from typing import Any

from _campaigns import RESULTS

from ddkit.bench.suites import SUITES

GPU = RESULTS / "gpu"
#: what set a seed's row apart from the others
NOTES = {("dc", 1): "networks trained on this CPU", ("dsa", 1): "a later session"}


def _read(name: str) -> dict[str, Any]:
    return json.loads((GPU / name).read_text())


def _pm(accuracies: list[float]) -> str:
    return f"{100 * statistics.fmean(accuracies):.2f} ± {100 * statistics.pstdev(accuracies):.2f}"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def _seed_rows(method: str, cells: dict[str, Any], published: float) -> list[str]:
    rows, pooled = [], []
    for seed in (0, 1):
        name = f"{method}, seed {seed}" + (
            f" ({NOTES[(method, seed)]})" if (method, seed) in NOTES else ""
        )
        cell = cells.get(f"{method}/seed{seed}")
        if cell is None:  # evaluated on the CPU from the set the GPU distilled
            res = _read(f"{method}-seed{seed}_eval_cpu.json")["results"][0]
            accs, cost = res["accuracies"], "on the GPU, not timed"
            evaluation = f"{_minutes(res['train_seconds'])} of training on the CPU"
        else:
            accs = cell["accuracies"]
            per = f" ({cell['step_seconds_median']:.3f} s per iteration)" if seed == 0 else ""
            cost, evaluation = f"{cell['distill_seconds']:.1f} s{per}", (
                f"{cell['eval_seconds']:.1f} s" if seed == 0 else "")  # fmt: skip
        budget = f"{cell['iterations']:,} iterations, width 128" if seed == 0 else "the same"
        line = f"| {name} | {published:g} | {_pm(accs)} | {budget} | {cost} | {evaluation} |"
        rows.append(line.replace("|  |", "| |"))
        pooled += accs
    rows.append(
        f"| {method}, both seeds | {published:g} | **{_pm(pooled)}** ({len(pooled)} networks) | | | |"
    )
    return rows


def gpu_paper() -> str:
    published = SUITES.get("paper").published
    cells = _read("h200_paper_mnist_ipc1.json")["paper"]
    draws = [v["accuracies"] for k, v in _read("h200_before_fixes.json")["paper"].items()
             if k.startswith("random/")]  # fmt: skip
    random = published[("mnist", "random", 1)]
    first = cells["random/seed0"]
    out = [
        "| MNIST IPC 1 | published | ours (GPU) | budget | distillation | evaluation (3 networks) |",
        "|---|---|---|---|---|---|",
        f"| random real, draw 0 | {random:g} † (average of draws) | {_pm(first['accuracies'])} | "
        f"one draw | - | {first['eval_seconds']:.1f} s |",
        f"| random real, draws 0-{len(draws) - 1} | {random:g} † | "
        f"{_pm([a for d in draws for a in d])} ({sum(map(len, draws))} networks) | "
        f"{len(draws)} draws | - | - |",
    ]
    for method in ("dc", "dsa"):
        out += _seed_rows(method, cells, published[("mnist", method, 1)])
    return "\n".join(out)


TABLES = {"gpu:paper-mnist-ipc1": gpu_paper}
