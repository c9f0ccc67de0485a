"""Image-text retrieval of distilled pairs (issues 71, 86): recall@1/5/10 both ways at a few sizes.

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

**Towers** (``--towers``, issue 86): ``scratch`` trains the towers with the heads; ``pretrained``
pretrains them here on the data's attributes (``--tower-epochs``, cached in ``--tower-cache``,
:mod:`ddkit.eval.towers`) and freezes them, heads trained. The choice holds for every cell's
distillation and for every row's evaluation (random pairs and full data included), so a file
compares like with like; ``--text-encoder`` likewise.

**Cells** (``--cells``, ``;``-separated; default: every cell the towers allow): ``vl-mtt`` and
``vl-mtt + learned similarity`` (ddkit's defaults); ``vl-mtt published`` (:data:`PUBLISHED`:
synthetic text in the frozen text tower's output space, expert windows of one epoch starting
before epoch 2, as LoRS's scripts at 100 pairs; real initialisation of both sides and a learned
student lr, as every vl-mtt run) and ``vl-mtt published, learned`` (LoRS), which need
``--towers pretrained``; and one ingredient off at a time: ``vl-mtt published, input text``
(text as token embeddings), ``vl-mtt published, long windows`` (ddkit's ``match_epochs=2`` from
before epoch 3). Towers off is ``vl-mtt published, input text`` run with ``--towers scratch``
(output-space text needs frozen towers), compared with the same cell under ``pretrained``, each
over its own random row. ``--set KEY=VALUE`` (repeatable) gives every vl-mtt cell an option over
its own (e.g. ``--set max_start_epoch=3``, LoRS's at 500 pairs); the script's own flags are
refused there. Each vl-mtt row records RepBlend's collapse diagnostics of its set at the start
and the end (``collapse``) and its learned student lr; the table prints, per size, each vl-mtt
cell's R@1 over random pairs' both ways (ratio of the means; in brackets mean - std over random's
mean + std) beside those diagnostics.

    nice python benchmarks/campaigns/bench_vl_recall.py                          # captioned-mnist5k
    nice python benchmarks/campaigns/bench_vl_recall.py --sizes 100 --iterations 20 --runs 1   # quick

The published form on ``scenes-mnist5k`` (issue 86's acceptance and its ablation), one process
per size (one thread each); start the second once the first has written its towers and experts
to the caches (a few minutes), or both make them:

    S="--dataset scenes-mnist5k --towers pretrained --iterations 1000 --runs 3 --threads 1"
    nice python benchmarks/campaigns/bench_vl_recall.py $S --sizes 100 \\
        --cells "vl-mtt published;vl-mtt published, learned;vl-mtt published, input text;vl-mtt published, long windows;vl-herding" \\
        --out benchmarks/results/vl_scenes5k_100.json
    nice python benchmarks/campaigns/bench_vl_recall.py $S --sizes 500 \\
        --cells "vl-mtt published;vl-mtt published, learned;vl-herding" \\
        --out benchmarks/results/vl_scenes5k_500.json
    nice python benchmarks/campaigns/bench_vl_recall.py --dataset scenes-mnist5k --towers scratch \\
        --iterations 1000 --runs 3 --threads 1 --sizes 100 --cells "vl-mtt published, input text" \\
        --out benchmarks/results/vl_scenes5k_100_scratch.json                    # towers off
    nice python benchmarks/campaigns/bench_vl_recall.py --table \\
        benchmarks/results/vl_scenes5k_100.json benchmarks/results/vl_scenes5k_500.json

``--eval-optimizer learned`` trains every row (the set, random pairs, the full data) as the
papers evaluate a distilled set: SGD with momentum 0.9 and weight decay
:data:`PAPERS_WEIGHT_DECAY` at the set's learned student rates, divided by 10 after half the
epochs (``RetrievalRecipe(optimizer="learned")``), instead of ddkit's Adam recipe; it needs a
``vl-mtt`` cell (the rates are its set's).

``--eval-optimizer learned-plain`` is the same at the learned rates without momentum or weight
decay, as the experts and the student train (the rates were learned for such steps).
``--sets DIR`` keeps each cell's set (and its measured seconds) in ``DIR`` and reuses it for the
same cell, size and settings, so that recipes of evaluation are compared on one set.

``--towers-output standardized`` (the method's default) or ``raw``: whether the pretrained
towers' outputs are standardised per feature (``ddkit.eval.towers``); files from before the
option hold raw towers and record no value.

``--val-fraction F`` judges every row on a seeded share ``F`` of the train pairs instead of the
test split (the sets, towers and experts never see it), to choose a setting before the test
split is read; its files say so (``val_fraction``).

The data is a synthetic benchmark (``captioned-mnist5k``: captions composed from each image's
digit, colour and background, :mod:`ddkit.data.captioned`; ``scenes-*``: compositions of real
objects described by a grammar, :mod:`ddkit.data.scenes`), not COCO or Flickr30k. Markdown goes
to stdout, JSON to ``--out``, rewritten after every cell; a rerun with the same settings keeps
the cells the file holds (resumable); one with other settings (``--set`` and the towers among
them) starts the file over, so give each its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from resume import joined_results, kept_entries, results_header

from ddkit.data.paired import load_paired_splits
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.retrieval import METRICS, RetrievalRecipe, evaluate_retrieval
from ddkit.eval.towers import TOWERS, TowerRecipe
from ddkit.io import atomic_write_json, json_sha256
from ddkit.methods import create_method
from ddkit.methods.config import parse_options

#: The published form of vl-mtt (issue 86; Wu et al., LoRS): synthetic text in the frozen text
#: tower's output space, expert windows of one epoch starting before epoch 2 (LoRS's scripts at
#: 100 pairs: ``expert_epochs=1 --max_start_epoch=2``); it needs ``--towers pretrained``.
PUBLISHED = {"text_space": "output", "match_epochs": 1, "max_start_epoch": 2}
#: (cell name, method, options)
CELLS = (
    ("vl-mtt", "vl-mtt", {}),
    ("vl-mtt + learned similarity", "vl-mtt", {"similarity": "learned"}),
    ("vl-mtt published", "vl-mtt", PUBLISHED),
    ("vl-mtt published, learned", "vl-mtt", {**PUBLISHED, "similarity": "learned"}),
    ("vl-mtt published, input text", "vl-mtt", {**PUBLISHED, "text_space": "input"}),
    ("vl-mtt published, long windows", "vl-mtt",
     {**PUBLISHED, "match_epochs": 2, "max_start_epoch": 3}),
    ("vl-herding", "vl-herding", {}),
)  # fmt: skip
#: the settings a kept cell must share with this run to be kept
SETTINGS = ("dataset", "image_encoder", "text_encoder", "iterations", "batch_syn", "runs",
            "epochs", "seed", "towers", "tower_epochs", "vl_mtt_set", "val_fraction",
            "eval_optimizer", "standardize_towers")  # fmt: skip
#: the settings a set depends on (``--sets`` reuses a set made under the same ones): those of
#: SETTINGS but the evaluation's
SET_SETTINGS = ("dataset", "image_encoder", "text_encoder", "iterations", "batch_syn", "seed",
                "towers", "tower_epochs", "vl_mtt_set", "val_fraction",
                "standardize_towers")  # fmt: skip
#: the weight decay and momentum of the papers' evaluation of a distilled set (LoRS's code)
PAPERS_WEIGHT_DECAY = 5e-4
PAPERS_MOMENTUM = 0.9
#: what the script's own flags set for every cell (``--set`` may not name them)
SCRIPT_OPTIONS = {"image_encoder": "--image-encoder", "text_encoder": "--text-encoder",
                  "towers": "--towers", "standardize_towers": "--towers-output",
                  "tower_epochs": "--tower-epochs", "tower_cache": "--tower-cache",
                  "expert_cache": "--expert-cache", "batch_syn": "--batch-syn",
                  "iterations": "--iterations"}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--dataset", default="captioned-mnist5k")
    a.add_argument("--sizes", default="100,500", help="pairs per set, comma-separated")
    a.add_argument("--iterations", type=int, default=0, help="vl-mtt's (0: its default)")
    a.add_argument("--batch-syn", type=int, default=100, help="vl-mtt's pairs per student step")
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--epochs", type=int, default=0, help="retrieval epochs (0: the recipe's)")
    a.add_argument(
        "--eval-optimizer", choices=("learned", "learned-plain"), default=None,
        help="learned: every row trains at the set's learned rates, as the papers evaluate; "
        "learned-plain: the same without momentum or weight decay, as the experts train",
    )  # fmt: skip
    a.add_argument("--sets", default="", help="keep each cell's set here and reuse it")
    a.add_argument(
        "--no-full", action="store_true",
        help="no full-data row (its 10 epochs over 20,000 pairs take hours on a CPU)",
    )  # fmt: skip
    a.add_argument(
        "--towers-output", choices=("standardized", "raw"), default=None,
        help="pretrained towers' outputs (default: the method's, standardized)",
    )  # fmt: skip
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--val-fraction", type=float, default=0.0,
        help="judge every row on this seeded share of the train pairs, held out from the sets, "
        "the towers and the experts, instead of the test split (to choose settings)",
    )  # fmt: skip
    a.add_argument("--cells", default="", help="cell names separated by ; (default: all)")
    a.add_argument(
        "--no-baselines", action="store_true",
        help="train no random or full row (another process's file holds them)",
    )  # fmt: skip
    a.add_argument("--table", nargs="+", help="only print the cells of these result files")
    a.add_argument("--image-encoder", default="convnet3-w32", help="every set's image tower")
    a.add_argument("--text-encoder", default="bag", help="every set's text tower (bag | gru)")
    a.add_argument(
        "--towers", choices=TOWERS, default="scratch",
        help="every set's towers and every row's evaluation: trained from scratch, or "
        "pretrained here on the data's attributes and frozen (heads trained)",
    )  # fmt: skip
    a.add_argument("--tower-epochs", type=int, default=TowerRecipe().epochs,
                   help="pretraining epochs of the towers (--towers pretrained)")  # fmt: skip
    a.add_argument("--tower-cache", default="benchmarks/.cache/vl_towers")
    a.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="set_items",
        help="a vl-mtt option for every vl-mtt cell, over the cell's own (repeatable)",
    )  # fmt: skip
    a.add_argument("--expert-cache", default="benchmarks/.cache/vl_experts")
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: up to 2)")
    a.add_argument("--out", default="benchmarks/results/vl_recall.json")
    args = a.parse_args(argv)
    args.vl_mtt_set = parse_options(args.set_items)
    # None (a file from before the option: raw towers) unless given
    args.standardize_towers = None if args.towers_output is None else args.towers_output != "raw"
    for key in args.vl_mtt_set:
        if key in SCRIPT_OPTIONS:
            raise SystemExit(f"--set {key}=...: use {SCRIPT_OPTIONS[key]} (it sets every cell)")
    return args


def cell_options(args, method: str, options: dict) -> dict:
    """A cell's options as its method is made with them: the cell's, then (vl-mtt) ``--set``'s,
    then the script's encoders and towers (every cell's alike)."""
    opts = {**options, **(args.vl_mtt_set if method == "vl-mtt" else {})}
    opts |= {"image_encoder": args.image_encoder, "text_encoder": args.text_encoder,
             "towers": args.towers, "tower_epochs": args.tower_epochs,
             "tower_cache": args.tower_cache}  # fmt: skip
    if args.standardize_towers is not None:
        opts["standardize_towers"] = args.standardize_towers
    if method == "vl-mtt":
        opts |= {"expert_cache": args.expert_cache, "batch_syn": args.batch_syn}
    return opts


def chosen_cells(args) -> list[tuple[str, str, dict]]:
    """The cells to run: ``--cells`` (every one checked now: an unknown name or options its
    method refuses end the run in one line), else every cell the towers allow (output-space
    text needs ``--towers pretrained``)."""
    wanted = [s.strip() for s in args.cells.split(";") if s.strip()]
    known = {c[0]: c for c in CELLS}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"unknown cell {unknown[0]!r}; cells: {'; '.join(known)}")
    cells = [known[w] for w in wanted] or [
        c for c in CELLS
        if args.towers == "pretrained" or c[2].get("text_space") != "output"
    ]  # fmt: skip
    if args.eval_optimizer and any(c[1] != "vl-mtt" for c in cells):
        raise SystemExit(
            "--eval-optimizer learned trains at a vl-mtt set's rates: vl-mtt cells only"
        )
    for name, method, options in cells:
        try:
            create_method(method, **cell_options(args, method, options))
        except ConfigError as e:
            raise SystemExit(f"cell {name!r}: {e}") from None
    return cells


def distil(args, train, name: str, method: str, options: dict, pairs: int) -> tuple:
    """The set of one cell, its seconds, and the seconds its set-up took (pretrained towers
    when not cached; vl-mtt's experts); with ``--sets``, a set kept there for the same cell,
    size and settings is read back instead (its seconds as they were measured)."""
    opts = cell_options(args, method, options)
    kept = set_folder(args, name, pairs, opts)
    if kept is not None and (kept / "seconds.json").exists():
        syn = SyntheticSet.load(kept / "set")
        seconds = json.loads((kept / "seconds.json").read_text())
        return syn, seconds["distill"], seconds["setup"]
    t0 = time.perf_counter()
    syn = create_method(method, **opts).fit(
        train, pairs, seed=args.seed, iterations=args.iterations or None, progress=False
    )
    seconds = float(syn.meta["fit_seconds"])  # the iterations, without the experts
    syn.meta["method"] = name
    setup = time.perf_counter() - t0 - seconds
    if kept is not None:
        syn.save(kept / "set")
        atomic_write_json(kept / "seconds.json", {"distill": seconds, "setup": setup})
    return syn, seconds, setup


def set_folder(args, name: str, pairs: int, options: dict) -> Path | None:
    """Where ``--sets`` keeps one cell's set: named by the cell, its size and a digest of
    everything the set depends on (the data's settings and the method's options)."""
    if not args.sets:
        return None
    depends = {k: getattr(args, k) for k in SET_SETTINGS} | {"options": options, "pairs": pairs}
    digest = json_sha256(depends)[:12]
    slug = "".join(c if c.isalnum() else "-" for c in name)
    return Path(args.sets) / f"{slug}-{pairs}-{digest}"


def recipe_of(args) -> RetrievalRecipe:
    """The retrieval recipe every row trains under: ddkit's, or the papers' (``learned``)."""
    if args.eval_optimizer == "learned":
        return RetrievalRecipe(runs=args.runs, optimizer="learned",
                               momentum=PAPERS_MOMENTUM, weight_decay=PAPERS_WEIGHT_DECAY)  # fmt: skip
    if args.eval_optimizer == "learned-plain":
        return RetrievalRecipe(runs=args.runs, optimizer="learned", momentum=0.0, weight_decay=0.0)
    return RetrievalRecipe(runs=args.runs)


def cell_row(
    args, train, judged, name: str, method: str, options: dict, pairs: int,
    random_pairs: bool, full_data: bool,
):  # fmt: skip
    """Distil one cell from ``train`` and judge it on ``judged`` (the test split, or a
    validation split), with the rows of ``random_pairs`` and the ``full_data`` where asked,
    under the same recipe and towers."""
    syn, seconds, setup = distil(args, train, name, method, options, pairs)
    report = evaluate_retrieval(
        syn, judged, train, recipe=recipe_of(args),
        epochs=args.epochs or None, seed=args.seed, random_pairs=random_pairs,
        full_data=full_data, towers=args.towers, tower_cache=args.tower_cache,
    )  # fmt: skip
    row = {
        "cell": name,
        "pairs": pairs,
        "method": method,
        "options": {**options, **(args.vl_mtt_set if method == "vl-mtt" else {})},
        "towers": report.meta["towers"],
        "distill_seconds": seconds,
        "setup_seconds": setup,
        "bytes": syn.storage_bytes(),
        "report": report.to_dict(),
    }
    if "collapse" in syn.meta:  # vl-mtt: RepBlend's diagnostics at the start and the end
        row["collapse"] = {"start": syn.meta["collapse"]["history"][0],
                           "final": syn.meta["collapse"]["final"]}  # fmt: skip
        row["student_lr"] = syn.meta["student_lr"]
    return row


def render(cells: list[dict]) -> str:
    """One Markdown table per size: a row per set and baseline, recall both ways; then each
    vl-mtt cell's R@1 over random pairs' and its collapse diagnostics (:func:`versus_random`)."""
    out = []
    for pairs in sorted({c["pairs"] for c in cells}):
        head = "| pairs of | n | " + " | ".join(METRICS) + " | distil s |"
        out += [f"### {pairs} pairs", "", head, "|---|---|" + "---|" * (len(METRICS) + 1)]
        sized = [c for c in cells if c["pairs"] == pairs]
        for c in sized:
            for r in c["report"]["results"]:
                own = r["model"] == c["cell"]
                recalls = " | ".join(
                    f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}" for m in METRICS
                )
                cost = f"{c['distill_seconds']:.0f}" if own else "–"
                out.append(f"| {r['model']} | {r['pairs']} | {recalls} | {cost} |")
        out += ["", *versus_random(sized)]
    return "\n".join(out)


#: RepBlend's collapse diagnostics as the table names them
COLLAPSE_COLUMNS = {"image_cosine": "img cos", "text_cosine": "txt cos",
                    "image_concentration": "img conc", "text_concentration": "txt conc",
                    "modality_gap": "gap"}  # fmt: skip


def versus_random(cells: list[dict]) -> list[str]:
    """For the vl-mtt cells of one size: R@1 both ways as a multiple of random pairs' (the
    ratio of the means, and in brackets the ratio beyond the spreads, (mean - std) over random's
    (mean + std)), and the collapse diagnostics at the start -> the end; ``[]`` without a
    random row or a vl-mtt cell."""
    random = [r for c in cells for r in c["report"]["results"] if r["model"] == "random pairs"]
    mtt = [c for c in cells if "collapse" in c]
    if not random or not mtt:
        return []
    base = random[0]
    names = list(COLLAPSE_COLUMNS.values())
    out = ["| cell | i2t R@1 / random | t2i R@1 / random | " + " | ".join(names) + " |",
           "|---|---|---|" + "---|" * len(names)]  # fmt: skip
    for c in mtt:
        own = next(r for r in c["report"]["results"] if r["model"] == c["cell"])
        ratios = []
        for m in ("i2t_r1", "t2i_r1"):
            mean, std = own[m]["mean"], own[m]["std"]
            rmean, rstd = base[m]["mean"], base[m]["std"]
            ratios.append(f"{_ratio(mean, rmean)} ({_ratio(mean - std, rmean + rstd)})")
        start, final = c["collapse"]["start"], c["collapse"]["final"]
        diag = [f"{start[k]:.2f} → {final[k]:.2f}" for k in COLLAPSE_COLUMNS]
        out.append(f"| {c['cell']} | " + " | ".join(ratios + diag) + " |")
    return [*out, ""]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b > 0 else "–"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        runs = joined_results(args.table, SETTINGS)
        print(render([c for r in runs for c in r["cells"]]))
        return 0
    cells = chosen_cells(args)
    torch.set_num_threads(args.threads or max(1, min(2, os.cpu_count() or 1)))
    splits = load_paired_splits(args.dataset, seed=args.seed, val_fraction=args.val_fraction)
    judged = splits.val if args.val_fraction else splits.test
    settings = {key: getattr(args, key) for key in SETTINGS}
    result = results_header("bench_vl_recall.py", argv, settings)
    result["cells"] = kept_entries(args.out, settings, "cells")
    sizes = [int(s) for s in args.sizes.split(",")]
    order = [(c, p) for c in cells if c[1] == "vl-mtt" for p in sizes]  # the methods first,
    order += [(c, p) for c in cells if c[1] != "vl-mtt" for p in sizes]  # then the coresets
    for (name, method, options), pairs in order:
        done = {(c["cell"], c["pairs"]) for c in result["cells"]}
        if (name, pairs) in done:
            continue
        rows = [r["model"] for c in result["cells"] for r in c["report"]["results"]]
        sized = any(c["pairs"] == pairs for c in result["cells"])
        random_pairs = not (args.no_baselines or sized)
        full_data = not (args.no_baselines or args.no_full or "full data" in rows)
        row = cell_row(
            args, splits.train, judged, name, method, options, pairs, random_pairs, full_data
        )
        result["cells"].append(row)
        atomic_write_json(args.out, result)
    atomic_write_json(args.out, result)
    print(render(result["cells"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
