"""Image-text retrieval of distilled pairs (issue 71): recall@1/5/10 both ways at a few set sizes.

For each size (pairs) the script distils ``vl-mtt`` (bi-trajectory matching, Wu et al., TMLR
2024) with one-hot contrastive targets and with LoRS's learned similarity (Xu et al., ICML 2024),
and selects ``vl-herding`` pairs; every set is judged by :func:`ddkit.eval.retrieval.
evaluate_retrieval`: fresh dual encoders trained on it under one recipe, recall over the whole
test split, mean ± std over runs. The first cell of each size also trains the ``random pairs``
row (as many real pairs, one random caption each, drawn per run) and the ``full data`` row
under the same recipe; later cells of that size are compared with those rows. The experts of
``vl-mtt`` are trained once (same seed, same experts) and kept in ``--expert-cache``; their
seconds are reported apart from the distillation's. Nothing is chosen on the test split: every
setting is the method's default or given on the command line, but the image tower: a ConvNet-3
of width 32 (``--image-encoder``) for every set and baseline, where the methods' default width
128 makes an expert epoch over MNIST-sized pairs about ten times slower on a CPU.

    nice python benchmarks/campaigns/bench_vl_recall.py                          # captioned-mnist5k
    nice python benchmarks/campaigns/bench_vl_recall.py --sizes 100 --iterations 20 --runs 1   # quick

The data is ddkit's synthetic caption benchmark (``captioned-mnist5k``: captions composed from
each image's digit, colour and background; :mod:`ddkit.data.captioned`), not COCO or
Flickr30k. Markdown goes to stdout, JSON to ``benchmarks/results/vl_recall.json``, rewritten
after every cell; a rerun with the same settings keeps the cells the file holds (resumable).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from resume import joined_results, kept_entries, results_header

from ddkit.data.paired import load_paired_splits
from ddkit.eval.retrieval import METRICS, RetrievalRecipe, evaluate_retrieval
from ddkit.io import atomic_write_json
from ddkit.methods import create_method

#: (cell name, method, options)
CELLS = (
    ("vl-mtt", "vl-mtt", {}),
    ("vl-mtt + learned similarity", "vl-mtt", {"similarity": "learned"}),
    ("vl-herding", "vl-herding", {}),
)
#: the settings a kept cell must share with this run to be kept
SETTINGS = ("dataset", "image_encoder", "iterations", "batch_syn", "runs", "epochs", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--dataset", default="captioned-mnist5k")
    a.add_argument("--sizes", default="100,500", help="pairs per set, comma-separated")
    a.add_argument("--iterations", type=int, default=0, help="vl-mtt's (0: its default)")
    a.add_argument("--batch-syn", type=int, default=100, help="vl-mtt's pairs per student step")
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--epochs", type=int, default=0, help="retrieval epochs (0: the recipe's)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--cells", default="", help="cell names separated by ; (default: all)")
    a.add_argument(
        "--no-baselines", action="store_true",
        help="train no random or full row (another process's file holds them)",
    )  # fmt: skip
    a.add_argument("--table", nargs="+", help="only print the cells of these result files")
    a.add_argument("--image-encoder", default="convnet3-w32", help="every set's image tower")
    a.add_argument("--expert-cache", default="benchmarks/.cache/vl_experts")
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: up to 2)")
    a.add_argument("--out", default="benchmarks/results/vl_recall.json")
    return a.parse_args(argv)


def distil(args, train, name: str, method: str, options: dict, pairs: int) -> tuple:
    """The set of one cell, its seconds, and (vl-mtt) the seconds its experts took or 0."""
    opts = {**options, "image_encoder": args.image_encoder}
    if method == "vl-mtt":
        opts |= {"expert_cache": args.expert_cache, "batch_syn": args.batch_syn}
    t0 = time.perf_counter()
    syn = create_method(method, **opts).fit(
        train, pairs, seed=args.seed, iterations=args.iterations or None, progress=False
    )
    seconds = float(syn.meta["fit_seconds"])  # the iterations, without the experts
    syn.meta["method"] = name
    return syn, seconds, time.perf_counter() - t0 - seconds


def cell_row(args, splits, name: str, method: str, options: dict, pairs: int, baselines: str):
    """Distil one cell and judge it, with the random row (``baselines`` "random") and the full
    data's ("random+full") or neither ("")."""
    syn, seconds, setup = distil(args, splits.train, name, method, options, pairs)
    report = evaluate_retrieval(
        syn, splits.test, splits.train if baselines else None,
        recipe=RetrievalRecipe(runs=args.runs), epochs=args.epochs or None, seed=args.seed,
        full_data="full" in baselines,
    )  # fmt: skip
    return {
        "cell": name,
        "pairs": pairs,
        "method": method,
        "options": options,
        "distill_seconds": seconds,
        "setup_seconds": setup,
        "bytes": syn.storage_bytes(),
        "report": report.to_dict(),
    }


def render(cells: list[dict]) -> str:
    """One Markdown table per size: a row per set and baseline, recall both ways."""
    out = []
    for pairs in sorted({c["pairs"] for c in cells}):
        head = "| pairs of | n | " + " | ".join(METRICS) + " | distil s |"
        out += [f"### {pairs} pairs", "", head, "|---|---|" + "---|" * (len(METRICS) + 1)]
        for c in (c for c in cells if c["pairs"] == pairs):
            for r in c["report"]["results"]:
                own = r["model"] == c["cell"]
                recalls = " | ".join(
                    f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}" for m in METRICS
                )
                cost = f"{c['distill_seconds']:.0f}" if own else "–"
                out.append(f"| {r['model']} | {r['pairs']} | {recalls} | {cost} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        runs = joined_results(args.table, SETTINGS)
        print(render([c for r in runs for c in r["cells"]]))
        return 0
    torch.set_num_threads(args.threads or max(1, min(2, os.cpu_count() or 1)))
    splits = load_paired_splits(args.dataset, seed=args.seed)
    wanted = {s.strip() for s in args.cells.split(";") if s.strip()}
    settings = {key: getattr(args, key) for key in SETTINGS}
    result = results_header("bench_vl_recall.py", argv, settings)
    result["cells"] = kept_entries(args.out, settings, "cells")
    sizes = [int(s) for s in args.sizes.split(",")]
    order = [(c, p) for c in CELLS if c[1] == "vl-mtt" for p in sizes]  # the methods first,
    order += [(c, p) for c in CELLS if c[1] != "vl-mtt" for p in sizes]  # then the coresets
    for (name, method, options), pairs in order:
        done = {(c["cell"], c["pairs"]) for c in result["cells"]}
        if (name, pairs) in done or (wanted and name not in wanted):
            continue
        rows = [r["model"] for c in result["cells"] for r in c["report"]["results"]]
        sized = any(c["pairs"] == pairs for c in result["cells"])
        baselines = ("" if sized else "random") + ("" if "full data" in rows else "+full")
        baselines = "" if args.no_baselines else baselines
        row = cell_row(args, splits, name, method, options, pairs, baselines.strip("+"))
        result["cells"].append(row)
        atomic_write_json(args.out, result)
    atomic_write_json(args.out, result)
    print(render(result["cells"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
