"""Accuracy against label bytes: one decoupled method's set under every label budget.

One method (default ``rded``: no recovery loop, so a row costs only its evaluation) is distilled
once per label budget with the same seed, so the images and the views are the same in every row
and only the stored labels differ: hard labels, full per-image labels, and per-view (FKD-style)
labels stored ``full``, ``fp16``, ``int8``, ``topk:k`` (k = 5, 2, 1, and 2 with fp16 / int8) and
``regen`` (only crops and flips; the teacher recomputes the labels before evaluation, so its row
must equal the ``full`` per-view row, which the script checks). Every set is evaluated under the
``soft`` protocol (stored labels; epochs scaled down for the CPU and said so). Reported per row:
the set's label bytes, its total bytes, the teacher bytes an evaluation must also ship (``regen``
only), and final-epoch test accuracy (mean +- std over runs). Nothing is chosen on the test split.

    python benchmarks/bench_label_budget.py                      # rded, digits, IPC 10
    python benchmarks/bench_label_budget.py --method sre2l --iterations 200 --epochs 100

Markdown goes to stdout, JSON to ``benchmarks/results/label_budget.json`` (rewritten after every
row, so an interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.eval.accounting import dataset_bytes, storage_report
from ddkit.eval.relabel import regenerate_labels
from ddkit.io import atomic_write_json
from ddkit.methods import create_method

#: (row name, labels, label_budget)
ROWS = (
    ("hard", "hard", "auto"),
    ("per image, full", "soft", "full"),
    ("views, full", "views", "full"),
    ("views, fp16", "views", "fp16"),
    ("views, int8", "views", "int8"),
    ("views, topk:5", "views", "topk:5"),
    ("views, topk:2", "views", "topk:2"),
    ("views, topk:2+fp16", "views", "topk:2+fp16"),
    ("views, topk:2+int8", "views", "topk:2+int8"),
    ("views, topk:1", "views", "topk:1"),
    ("views, regen", "views", "regen"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--dataset", default="digits")
    a.add_argument("--method", default="rded")
    a.add_argument("--ipc", type=int, default=10)
    a.add_argument("--iterations", type=int, default=None, help="the method's (default: preset)")
    a.add_argument("--views", type=int, default=4, help="label views per image")
    a.add_argument("--runs", type=int, default=2)
    a.add_argument("--epochs", type=int, default=100, help="soft protocol epochs (300 in papers)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--rows", default="", help="row names separated by ; (default: all)")
    a.add_argument("--out", default="benchmarks/results/label_budget.json")
    return a.parse_args(argv)


def measure_row(args, splits, name: str, labels: str, budget: str) -> dict:
    """Distil under one budget, evaluate under ``soft``, and count the bytes."""
    t0 = time.perf_counter()
    options = {"labels": labels, "label_budget": budget, "label_views": args.views}
    syn = create_method(args.method, **options).fit(
        splits.train, args.ipc, seed=args.seed, iterations=args.iterations
    )
    seconds = time.perf_counter() - t0
    trained = regenerate_labels(syn) if budget == "regen" else syn
    rep = evaluate(
        trained, splits.test, "soft", runs=args.runs, epochs=args.epochs, seed=args.seed,
        progress=False,
    )  # fmt: skip
    accs = list(rep.results[0].accuracies)
    acc = {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs), "accuracies": accs}
    report = storage_report(syn, train_size_bytes=dataset_bytes(splits.train), protocol="soft")
    return {
        "row": name,
        "labels": labels,
        "label_budget": syn.meta.get("label_budget", budget),
        "bytes": syn.storage_bytes(),
        "evaluation_bytes": report,
        "label_storage": syn.meta.get("label_storage"),
        "accuracy": acc,
        "distill_seconds": seconds,
        "eval_seconds": rep.seconds,
    }


def render(rows: list[dict]) -> str:
    out = [
        "| labels | label bytes | set bytes | + teacher | accuracy (%) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["accuracy"]
        out.append(
            f"| {r['row']} | {r['bytes']['labels']:,} | {r['bytes']['total']:,} | "
            f"{r['evaluation_bytes']['teacher']:,} | {100 * a['mean']:.1f} ± {100 * a['std']:.1f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    splits = load_dataset(args.dataset, seed=args.seed)
    wanted = {s.strip() for s in args.rows.split(";") if s.strip()}
    result = {
        "command": "python benchmarks/bench_label_budget.py " + " ".join(argv or []),
        "dataset": args.dataset, "method": args.method, "ipc": args.ipc, "views": args.views,
        "protocol": "soft", "epochs": args.epochs, "runs": args.runs, "seed": args.seed,
        "machine": f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "rows": [],
    }  # fmt: skip
    for name, labels, budget in ROWS:
        if wanted and name not in wanted:
            continue
        result["rows"].append(measure_row(args, splits, name, labels, budget))
        atomic_write_json(args.out, result)
    by_name = {r["row"]: r for r in result["rows"]}
    if "views, regen" in by_name and "views, full" in by_name:
        same = by_name["views, regen"]["accuracy"] == by_name["views, full"]["accuracy"]
        result["regen_equals_full"] = same
        atomic_write_json(args.out, result)
    print(render(result["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
