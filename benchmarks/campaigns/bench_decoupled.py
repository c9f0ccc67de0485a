"""Decoupled distillation and fair soft-label accounting, measured.

For each dataset and IPC: SRe2L, RDED, random real images (and DM, the best hard-label method on
digits, for comparison) are distilled, then each set and a random real subset of the same size
(a different seed) are evaluated under

* the hard-label recipe ``dsa`` (SGD, DSA augmentation),
* the soft-label recipe ``teacher-kd`` (AdamW, cosine, CutMix, KD from the teacher, T = 20),
* ``teacher-kd`` without augmentation and mixing (for ARS),

and the full training set under ``dsa`` (for HLR). Reported: final-epoch test accuracy
(mean +- std over runs), IOR / HLR / LRS / ARS (DD-Ranking), the storage each protocol needs
(images, labels, per-view labels, teacher) against the real training set, and distillation
time (the teacher is trained once per dataset, reported separately). Nothing is chosen on the
test split.

    python benchmarks/campaigns/bench_decoupled.py                       # digits, IPC 10 and 50
    python benchmarks/campaigns/bench_decoupled.py --ipcs 10 --runs 2 --soft-epochs 10:300 --hard-epochs 300

Markdown goes to stdout, JSON to ``benchmarks/results/decoupled.json`` (rewritten after every
cell, so an interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ddkit.io import atomic_write_json


def _parse_map(text: str) -> dict[int, int]:
    out = {}
    for item in text.split(","):
        k, v = item.split(":")
        out[int(k)] = int(v)
    return out


def _pct(d: dict | None) -> str:
    if not d:
        return "–"
    std = d.get("std")
    if std is None and len(d.get("accuracies", ())) > 1:  # older results with given runs
        std = statistics.pstdev(d["accuracies"])
    return f"{100 * d['mean']:.1f} ± {100 * (std or 0.0):.1f}"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def render_ipc(
    ds: str, ipc: int, rows: dict, settings: dict, soft_epochs: int, train_bytes: int
) -> list[str]:
    """The accuracy/score table and the storage table of one (dataset, IPC) as Markdown lines."""
    out: list[str] = []
    full = next(iter(rows.values()))["scores"]["accuracy"]["full_hard"] if rows else None
    full_epochs = settings.get("full_epochs") or settings["hard_epochs"]
    out += [
        "",
        f"### {ds}, IPC {ipc} — accuracy (%), {settings['runs']} runs; dsa {settings['hard_epochs']} epochs, "
        f"teacher-kd {soft_epochs} epochs; full data (dsa, {full_epochs} epochs): {_pct(full)}",
        "",
    ]
    out += [
        "| method | distill s | hard (dsa) | teacher-kd | kd no-aug | random hard | random kd | "
        "IOR (kd) | IOR (hard) | HLR | LRS | ARS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for meth, row in rows.items():
        sc, a = row["scores"], row["scores"]["accuracy"]
        out.append(
            f"| {meth} | {row['distill_seconds']:.1f} | {_pct(a['syn_hard'])} | {_pct(a['syn_soft'])} | "
            f"{_pct(a['syn_soft_noaug'])} | {_pct(a['random_hard'])} | {_pct(a['random_soft'])} | "
            f"{100 * sc['IOR']['mean']:+.1f} | {100 * sc['IOR_hard']['mean']:+.1f} | "
            f"{100 * sc['HLR']['mean']:.1f} | {100 * sc['LRS']['mean']:.1f} | {100 * sc['ARS']['mean']:.1f} |"
        )
    out += [
        "",
        f"### {ds}, IPC {ipc} — storage (KB) and ratio to the real train set ({_kb(train_bytes)} KB)",
        "",
    ]
    out += [
        "| method | evaluation needs | images | labels | per-view labels | teacher | total | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[str]] = {}  # methods whose storage is identical share rows
    for meth, row in rows.items():
        groups.setdefault(json.dumps(row["storage"], sort_keys=True), []).append(meth)
    shown = {", ".join(meths): json.loads(key) for key, meths in groups.items()}
    for meth, storage in shown.items():
        for what, r in storage.items():
            out.append(
                f"| {meth} | {what} | {_kb(r['images'])} | {_kb(r['labels'])} | {_kb(r['view_labels'])} | "
                f"{_kb(r['teacher'])} | {_kb(r['total'])} | {r['ratio']:.3f} |"
            )
    return out


def render_files(paths: list[str]) -> str:
    """Markdown for every (dataset, IPC, method) found in result files; a later file's cell
    replaces an earlier one's (re-runs), and each table names the settings it ran under."""
    cells: dict[tuple[str, int], dict] = {}
    for path in paths:
        res = json.loads(Path(path).read_text())
        settings = res["settings"]
        for ds, dres in res.get("datasets", {}).items():
            for ipc, rows in dres.get("ipc", {}).items():
                cell = cells.setdefault(
                    (ds, int(ipc)), {"rows": {}, "train_bytes": dres["train_bytes"]}
                )
                cell["settings"] = settings
                cell["teacher"] = dres["teacher"]
                cell["rows"].update(rows)
    lines: list[str] = []
    for (ds, ipc), cell in sorted(cells.items()):
        settings, t = cell["settings"], cell["teacher"]
        soft = settings.get("soft_epochs", {})
        es = int(soft.get(str(ipc), soft.get(ipc, settings["soft_protocol"]["epochs"])))
        lines += [
            "",
            f"Teacher for {ds}: {t['model']} ({t['epochs']} epochs, {_kb(t['bytes'])} KB, "
            f"test accuracy {100 * t['test_accuracy']:.1f}%).",
        ]
        lines += render_ipc(ds, ipc, cell["rows"], settings, es, cell["train_bytes"])
    return "\n".join(lines).strip() + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits")
    ap.add_argument("--ipcs", default="10,50")
    ap.add_argument("--methods", default="sre2l,rded,random,dm")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--hard-epochs", type=int, default=300, help="dsa recipe epochs (published: 1000)"
    )
    ap.add_argument(
        "--full-epochs",
        type=int,
        default=None,
        help="dsa epochs for the full-data row behind HLR (default: --hard-epochs)",
    )
    ap.add_argument(
        "--full-accuracy",
        default=None,
        help="known per-run full-data accuracies (comma-separated fractions) instead of training",
    )
    ap.add_argument(
        "--soft-epochs",
        default="10:300,50:150",
        help="teacher-kd epochs per IPC (published: 300; IPC 50 halved for CPU, still 1500 steps)",
    )
    ap.add_argument(
        "--models", default=None, help="student model(s), comma-separated (default: the protocols')"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--random-draws",
        type=int,
        default=1,
        help="random real subsets averaged for the baseline (more draws: less noisy IOR)",
    )
    ap.add_argument(
        "--set", action="append", default=[], help="method option METHOD.key=value (JSON value)"
    )
    ap.add_argument("--out", default="benchmarks/results/decoupled.json")
    ap.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="only print the Markdown tables of these result files (later files' cells win)",
    )
    return ap.parse_args(argv)


@dataclasses.dataclass
class Run:
    """What every cell of one benchmark run shares: settings, recipes, results, report lines."""

    args: argparse.Namespace
    ipcs: list[int]
    methods: list[str]
    options: dict[str, dict]
    soft_epochs: dict[int, int]
    hard: object
    soft: object
    hard_only: object
    results: dict
    lines: list[str] = dataclasses.field(default_factory=list)

    def dump(self) -> None:
        atomic_write_json(self.args.out, self.results)

    def emit(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def method_options(items: list[str]) -> dict[str, dict]:
    """``--set METHOD.OPTION=VALUE`` items as ``{method: {option: value}}``."""
    from ddkit.methods.config import parse_options

    out: dict[str, dict] = {}
    for key, val in parse_options(items).items():
        if "." not in key:
            raise SystemExit(f"--set {key}=...: expected METHOD.OPTION=VALUE, e.g. rded.lr=0.1")
        meth, opt = key.split(".", 1)
        out.setdefault(meth, {})[opt] = val
    return out


def prepare(args: argparse.Namespace) -> Run:
    """Resolve the methods, IPCs and recipes of a run and its settings record."""
    from ddkit.eval import get_protocol
    from ddkit.methods import METHODS, load_all

    load_all()
    ipcs = [int(i) for i in args.ipcs.split(",")]
    methods = [m for m in args.methods.split(",") if m and (m in METHODS)]
    options = method_options(args.set)
    soft_epochs = _parse_map(args.soft_epochs)
    models = tuple(args.models.split(",")) if args.models else None
    hard = get_protocol("dsa").with_(runs=args.runs, models=models)
    soft = get_protocol("teacher-kd").with_(runs=args.runs, models=models)
    hard_only = hard.with_(targets="hard")
    settings = {
        "datasets": args.datasets,
        "ipcs": ipcs,
        "methods": methods,
        "runs": args.runs,
        "hard_protocol": hard.to_dict(),
        "hard_epochs": args.hard_epochs,
        "full_epochs": args.full_epochs or args.hard_epochs,
        "soft_protocol": soft.to_dict(),
        "soft_epochs": soft_epochs,
        "seed": args.seed,
        "random_baseline_seeds": [args.seed + 10_000 + 7919 * d for d in range(args.random_draws)],
        "method_options": options,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "note": "CPU-scaled epochs; accuracies are final-epoch test accuracy; nothing chosen on test",
    }
    results = {"settings": settings, "datasets": {}}
    return Run(args, ipcs, methods, options, soft_epochs, hard, soft, hard_only, results)


def teacher_record(run: Run, ds: str, splits) -> tuple[object, Path, dict]:
    """Load (or train and cache) the dataset's teacher; return it, its folder and its record."""
    from ddkit.eval.teacher import cached_teacher, teacher_bytes
    from ddkit.eval.train import accuracy
    from ddkit.methods import create_method

    probe = create_method("sre2l", dataset=ds, ipc=run.ipcs[0], **run.options.get("sre2l", {}))
    cfg = probe.config
    t0 = time.perf_counter()
    teacher, tdir = cached_teacher(
        splits.train,
        cfg.teacher_model,
        cache_root=cfg.teacher_cache,
        epochs=cfg.teacher_epochs,
        lr=cfg.teacher_lr,
        seed=cfg.teacher_seed,
    )
    seconds = time.perf_counter() - t0
    meta = teacher.teacher_meta_
    record = {
        "dir": str(tdir),
        "model": meta["model"],
        "epochs": meta["epochs"],
        "bytes": teacher_bytes(tdir),
        "train_seconds": meta.get("train_seconds"),
        "load_or_train_seconds": seconds,
        "test_accuracy": accuracy(teacher, splits.test.images, splits.test.labels),
    }
    return teacher, tdir, record


def full_reference(run: Run, splits, dres: dict) -> list[float] | None:
    """Per-run full-data accuracies behind HLR: given, trained here, or left to ranking_scores."""
    args = run.args
    if args.full_accuracy:
        accs = [float(v) for v in args.full_accuracy.split(",")]
        dres["full_hard"] = {
            "epochs": args.full_epochs or args.hard_epochs,
            "accuracies": accs,
            "given": True,
        }
        return accs
    if not args.full_epochs or args.full_epochs == args.hard_epochs:
        return None
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.eval import evaluate

    rep = evaluate(
        SyntheticSet.from_real(splits.train),
        splits.test,
        run.hard_only,
        epochs=args.full_epochs,
        seed=args.seed,
    )
    accs = list(rep.results[0].accuracies)
    dres["full_hard"] = {"epochs": args.full_epochs, "accuracies": accs, "seconds": rep.seconds}
    return accs


def storage_rows(run: Run, syn, teacher, epochs_soft: int, train_bytes: int) -> dict:
    """Bytes an evaluation must be given, per way of delivering the labels."""
    from ddkit.eval.accounting import storage_report
    from ddkit.eval.relabel import relabel

    per_image = relabel(syn, teacher, 4.0)
    views = torch.Generator().manual_seed(0)
    fkd = relabel(syn, teacher, 4.0, views=epochs_soft, generator=views)
    return {
        "hard (dsa)": storage_report(syn, train_size_bytes=train_bytes, protocol=run.hard_only),
        "stored soft labels (soft)": storage_report(
            per_image, train_size_bytes=train_bytes, protocol="soft"
        ),
        f"FKD views, {epochs_soft} per image (soft)": storage_report(
            fkd, train_size_bytes=train_bytes, protocol="soft"
        ),
        "teacher on the fly (teacher-kd)": storage_report(
            syn, train_size_bytes=train_bytes, protocol="teacher-kd"
        ),
    }


def run_method(run: Run, cell: dict, meth: str) -> dict:
    """Distil with ``meth``, score it against the cell's random baseline, account its storage."""
    from ddkit.eval.accounting import RankingBaselines, RankingSettings, random_like, ranking_scores
    from ddkit.methods import create_method

    args, ds, ipc, splits, tdir = run.args, cell["ds"], cell["ipc"], cell["splits"], cell["tdir"]
    opts = dict(run.options.get(meth, {}))
    if meth in ("sre2l", "rded"):
        opts.setdefault("teacher", str(tdir))
    t0 = time.perf_counter()
    syn = create_method(meth, dataset=ds, ipc=ipc, **opts).fit(splits.train, ipc, seed=args.seed)
    secs = time.perf_counter() - t0
    syn.meta.setdefault("teacher_dir", str(tdir))
    if cell["baseline"] is None:
        cell["baseline"] = [
            random_like(syn, splits.train, seed)
            for seed in run.results["settings"]["random_baseline_seeds"]
        ]
    scores = ranking_scores(
        syn,
        splits,
        RankingSettings.of(
            run.hard, run.soft, epochs_hard=args.hard_epochs, epochs_soft=cell["epochs_soft"]
        ),
        seed=args.seed,
        teacher=str(tdir),
        baselines=RankingBaselines(
            full_accuracy=cell["full_accuracy"], random_set=cell["baseline"]
        ),
        cache=cell["cache"],
    )
    return {
        "distill_seconds": secs,
        "iterations": syn.meta.get("iterations"),
        "config": syn.meta.get("config"),
        "label_agreement": syn.meta.get("label_agreement"),
        "scores": scores,
        "storage": storage_rows(
            run, syn, cell["teacher"], cell["epochs_soft"], cell["train_bytes"]
        ),
    }


def run_dataset(run: Run, ds: str) -> None:
    """Every (IPC, method) cell of one dataset, saved after each cell."""
    from ddkit.data import load_dataset
    from ddkit.eval.accounting import dataset_bytes

    splits = load_dataset(ds)
    train_bytes = dataset_bytes(splits.train)
    teacher, tdir, trec = teacher_record(run, ds, splits)
    dres: dict = {
        "train_images": len(splits.train),
        "train_bytes": train_bytes,
        "teacher": trec,
        "ipc": {},
    }
    run.results["datasets"][ds] = dres
    run.emit(
        f"## {ds}: {len(splits.train)} train images ({_kb(train_bytes)} KB as float32), "
        f"teacher {trec['model']} ({trec['epochs']} epochs, {_kb(trec['bytes'])} KB, "
        f"test accuracy {100 * trec['test_accuracy']:.1f}%)"
    )
    cache: dict = {}
    full_accuracy = full_reference(run, splits, dres)
    for ipc in run.ipcs:
        epochs_soft = run.soft_epochs.get(ipc, run.soft.epochs)
        rows: dict = {}
        dres["ipc"][str(ipc)] = rows
        cell = {
            "ds": ds,
            "ipc": ipc,
            "splits": splits,
            "teacher": teacher,
            "tdir": tdir,
            "train_bytes": train_bytes,
            "epochs_soft": epochs_soft,
            "full_accuracy": full_accuracy,
            "cache": cache,
            "baseline": None,
        }
        for meth in run.methods:
            rows[meth] = sc = run_method(run, cell, meth)
            run.dump()
            acc = sc["scores"]["accuracy"]
            print(
                f"  [{ds} ipc {ipc}] {meth}: distilled in {sc['distill_seconds']:.1f} s; "
                f"hard {_pct(acc['syn_hard'])}, kd {_pct(acc['syn_soft'])}, "
                f"LRS {100 * sc['scores']['LRS']['mean']:.1f}",
                file=sys.stderr,
                flush=True,
            )
        for line in render_ipc(ds, ipc, rows, run.results["settings"], epochs_soft, train_bytes):
            run.emit(line)
        run.results["markdown"] = "\n".join(run.lines)
        run.dump()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render_files(args.render), end="")
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run = prepare(args)
    for ds in args.datasets.split(","):
        run_dataset(run, ds)
    run.results["markdown"] = "\n".join(run.lines)
    run.dump()
    return 0


if __name__ == "__main__":
    from ddkit.errors import run_script

    run_script(main, "bench_decoupled")
