"""Accuracy against label bytes: one decoupled method's set under every label budget.

One method (default ``rded``; its plain defaults, or its preset for the data with ``--preset``) is
distilled once, with hard labels; every labelled row relabels
those same images with the method's own teacher and temperature (:func:`ddkit.eval.relabel.relabel`)
under one label budget, the views drawn from one seed, so only the stored labels differ between
rows: hard labels, full per-image labels, and per-view (FKD-style) labels stored ``full``,
``fp16``, ``int8``, ``topk:k`` (k = 5, 2, 1, and 2 with fp16 / int8; k = K is ``full``), ``regen`` (only crops
and flips; the teacher recomputes the labels before evaluation, so its row must equal the
``full`` per-view row, which the script checks), LPLD's random label pruning (``prune:R``: a
random 1/R of each image's views kept, alone and with int8 / top-k) and LPQLD's stored top-k
logits (``logits:5+fp16``, pruned and not; trained at the set's label temperature), and FKD's
own walk (``fkd views``: protocol ``soft-fkd`` for ``--views`` times the epochs, one view per
image stored for each of them and epoch ``e`` training on view ``e``: the steps of the other
rows, which walk all ``--views`` views every epoch, each step on a fresh view), and no stored
labels at all (``teacher on every batch``: protocol ``teacher-kd``, the teacher labelling
every augmented, mixed batch; nothing stored). Beside
them, random real images (the same count, one seed) with hard labels and with the same
teacher's full and pruned per-view labels. ``--views`` views are drawn per image (prune:R
needs R <= views). Every set is
evaluated under the ``soft`` protocol (stored labels; epochs scaled down for the CPU and said
so). Reported per row: the set's label bytes, its total bytes, the teacher bytes an evaluation
must also ship (``regen`` only), and final-epoch test accuracy (mean +- std over runs). Nothing
is chosen on the test split.

    python benchmarks/campaigns/bench_label_budget.py                      # rded, digits, IPC 10
    python benchmarks/campaigns/bench_label_budget.py --method sre2l --iterations 200 --epochs 100

Markdown goes to stdout, JSON to ``benchmarks/results/label_budget.json``, rewritten after every
row; a rerun with the same settings keeps the rows the file already holds (resumable): it distils
again and stops, writing nothing, if its images differ from those the kept rows measured (each
row records their SHA-256).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from typing import Any

import torch
from resume import joined_results, kept_entries, results_header

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.eval.accounting import dataset_bytes, storage_report
from ddkit.eval.relabel import regenerate_labels, relabel
from ddkit.io import atomic_write_json
from ddkit.methods import create_method

#: (row name, images, labels, label_budget): images "distilled" or "random" (random real)
ROWS = (
    ("hard", "distilled", "hard", None),
    ("per image, full", "distilled", "soft", "full"),
    ("views, full", "distilled", "views", "full"),
    ("views, fp16", "distilled", "views", "fp16"),
    ("views, int8", "distilled", "views", "int8"),
    ("views, topk:5", "distilled", "views", "topk:5"),
    ("views, topk:2", "distilled", "views", "topk:2"),
    ("views, topk:2+fp16", "distilled", "views", "topk:2+fp16"),
    ("views, topk:2+int8", "distilled", "views", "topk:2+int8"),
    ("views, topk:1", "distilled", "views", "topk:1"),
    ("views, regen", "distilled", "views", "regen"),
    ("views, prune:2", "distilled", "views", "prune:2"),
    ("views, prune:4", "distilled", "views", "prune:4"),
    ("views, prune:2+int8", "distilled", "views", "prune:2+int8"),
    ("views, prune:2+topk:2+fp16", "distilled", "views", "prune:2+topk:2+fp16"),
    ("views, logits:5+fp16", "distilled", "views", "logits:5+fp16"),
    ("views, prune:2+logits:5+fp16", "distilled", "views", "prune:2+logits:5+fp16"),
    ("fkd views, full", "distilled", "fkd", "full"),
    ("teacher on every batch", "distilled", "kd", None),
    ("random real, hard", "random", "hard", None),
    ("random real, views, full", "random", "views", "full"),
    ("random real, views, prune:2", "random", "views", "prune:2"),
    ("random real, views, prune:4", "random", "views", "prune:4"),
    ("random real, views, prune:2+logits:5+fp16", "random", "views", "prune:2+logits:5+fp16"),
    ("random real, fkd views, full", "random", "fkd", "full"),
    ("random real, teacher on every batch", "random", "kd", None),
)
#: the settings a kept row must share with this run to be kept
SETTINGS = ("dataset", "method", "preset", "ipc", "iterations", "views", "epochs", "runs", "seed")


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
    a.add_argument(
        "--preset", action="store_true",
        help="the method's preset for the dataset and IPC (default: its plain defaults)",
    )  # fmt: skip
    a.add_argument("--rows", default="", help="row names separated by ; (default: all)")
    a.add_argument("--out", default="benchmarks/results/label_budget.json")
    a.add_argument("--table", nargs="+", help="only print one table of these result files")
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: up to 2)")
    return a.parse_args(argv)


def base_sets(args, splits) -> tuple[SyntheticSet, SyntheticSet, Any, float]:
    """The method's images (hard labels), random real images of the same count, the method's
    teacher and label temperature, and the distillation's seconds."""
    t0 = time.perf_counter()
    preset = {"dataset": args.dataset, "ipc": args.ipc} if args.preset else {}
    method = create_method(args.method, labels="hard", **preset)
    distilled = method.fit(splits.train, args.ipc, seed=args.seed, iterations=args.iterations)
    seconds = time.perf_counter() - t0
    real = create_method("random").fit(splits.train, args.ipc, seed=args.seed)
    teacher_keys = ("teacher_dir", "teacher", "teacher_model")
    real.meta |= {k: distilled.meta[k] for k in teacher_keys if k in distilled.meta}
    return distilled, real, method, seconds


def fingerprint(syn: SyntheticSet) -> str:
    """SHA-256 of a set's images and labels: a resumed run re-distils, and keeps the rows it
    finds only when it gets the same set back."""
    digest = hashlib.sha256(syn.images.contiguous().numpy().tobytes())
    digest.update(syn.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def labelled(
    syn: SyntheticSet, method, labels: str, budget: str | None, seed: int, views: int
) -> SyntheticSet:
    """``syn`` relabelled by ``method``'s teacher under ``budget`` (``views`` views drawn from
    ``seed``, the same in every row)."""
    if labels in ("hard", "kd"):  # kd: the teacher labels every batch at evaluation
        return syn
    temperature = method.config.label_temperature
    if labels == "soft":
        return relabel(syn, method.teacher_, temperature, budget=budget)
    g = torch.Generator().manual_seed(seed)
    return relabel(syn, method.teacher_, temperature, views=views, generator=g, budget=budget)


#: the protocol a row's labels are evaluated under, and whether its epochs are ``--views``
#: times the others' (FKD's walk: the same steps)
PROTOCOLS = {"fkd": ("soft-fkd", True), "kd": ("teacher-kd", False)}


def measure_row(
    args, splits, syn: SyntheticSet, name: str, budget: str | None, labels: str = "views"
) -> dict:
    """Evaluate one labelled set under ``soft`` (or its row's :data:`PROTOCOLS`) and count its
    bytes."""
    trained = regenerate_labels(syn) if budget == "regen" else syn
    protocol, longer = PROTOCOLS.get(labels, ("soft", False))
    epochs = args.epochs * args.views if longer else args.epochs
    rep = evaluate(
        trained, splits.test, protocol, runs=args.runs, epochs=epochs, seed=args.seed,
        progress=False,
    )  # fmt: skip
    accs = list(rep.results[0].accuracies)
    acc = {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs), "accuracies": accs}
    report = storage_report(syn, train_size_bytes=dataset_bytes(splits.train), protocol=protocol)
    return {
        "row": name,
        "label_budget": syn.meta.get("label_budget", "hard"),
        "bytes": syn.storage_bytes(),
        "evaluation_bytes": report,
        "label_storage": syn.meta.get("label_storage"),
        "accuracy": acc,
        "protocol": protocol,
        "epochs": epochs,
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


def combined_table(paths: list[str]) -> str:
    """One Markdown table of several methods' result files (same dataset, IPC and views): a row
    per label budget with its label bytes (and the teacher's, for ``regen``), a column per
    method's accuracy."""
    runs = joined_results(paths, ("dataset", "ipc", "views", "epochs", "runs"))
    methods = [r["method"] for r in runs]
    by = [{row["row"]: row for row in r["rows"]} for r in runs]
    out = [
        "| labels | label bytes | + teacher | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for name, *_ in ROWS:
        have = [b[name] for b in by if name in b]
        if not have:
            continue
        cells = []
        for b in by:
            a = b[name]["accuracy"] if name in b else None
            cells.append(f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}" if a else "–")
        first = have[0]
        teacher = first["evaluation_bytes"]["teacher"]
        out.append(
            f"| {name} | {first['bytes']['labels']:,} | {teacher:,} | " + " | ".join(cells) + " |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(combined_table(args.table))
        return 0
    torch.set_num_threads(args.threads or max(1, min(2, os.cpu_count() or 1)))
    splits = load_dataset(args.dataset, seed=args.seed)
    wanted = {s.strip() for s in args.rows.split(";") if s.strip()}
    settings = {key: getattr(args, key) for key in SETTINGS}
    result = results_header("bench_label_budget.py", argv, settings) | {"protocol": "soft"}
    result["rows"] = kept_entries(args.out, settings, "rows")
    done = {r["row"] for r in result["rows"]}
    todo = [row for row in ROWS if row[0] not in done and (not wanted or row[0] in wanted)]
    if todo:
        distilled, real, method, seconds = base_sets(args, splits)
        result["distill_seconds"] = seconds
        sets = {"distilled": distilled, "random": real}
        prints = {kind: fingerprint(syn) for kind, syn in sets.items()}
        images_of = {name: images for name, images, *_ in ROWS}
        for row in result["rows"]:  # rows from before fingerprints carry none and are kept
            kind = images_of[row["row"]]
            if row.get("images_sha256", prints[kind]) != prints[kind]:
                raise SystemExit(
                    f"{args.out}: row {row['row']!r} measured other {kind} images than this run "
                    "distils (another machine or torch?); give --out a new file"
                )
    for name, images, labels, budget in todo:
        # FKD's walk stores a view for every one of its epochs (measure_row)
        views = args.epochs * args.views if labels == "fkd" else args.views
        syn = labelled(sets[images], method, labels, budget, args.seed, views)
        row = measure_row(args, splits, syn, name, budget, labels)
        result["rows"].append(row | {"images_sha256": prints[images]})
        atomic_write_json(args.out, result)
    order = [row[0] for row in ROWS]
    result["rows"].sort(key=lambda r: order.index(r["row"]) if r["row"] in order else len(order))
    by_name = {r["row"]: r for r in result["rows"]}
    if "views, regen" in by_name and "views, full" in by_name:
        same = by_name["views, regen"]["accuracy"] == by_name["views, full"]["accuracy"]
        result["regen_equals_full"] = same
    atomic_write_json(args.out, result)
    print(render(result["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
