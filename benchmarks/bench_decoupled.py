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

    python benchmarks/bench_decoupled.py                       # digits, IPC 10 and 50
    python benchmarks/bench_decoupled.py --ipcs 10 --runs 2 --soft-epochs 10:300 --hard-epochs 300

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


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)
    if args.render:
        print(render_files(args.render), end="")
        return 0

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from ddkit.data import load_dataset
    from ddkit.eval import get_protocol
    from ddkit.eval.accounting import (
        dataset_bytes,
        random_like,
        ranking_scores,
        storage_report,
    )
    from ddkit.eval.train import accuracy
    from ddkit.methods import METHODS, create_method, load_all
    from ddkit.methods.config import parse_options
    from ddkit.methods.decoupled.relabel import relabel
    from ddkit.methods.decoupled.teacher import cached_teacher, teacher_bytes

    load_all()
    soft_epochs = _parse_map(args.soft_epochs)
    ipcs = [int(i) for i in args.ipcs.split(",")]
    methods = [m for m in args.methods.split(",") if m and (m in METHODS)]
    extra: dict[str, dict] = {}
    for key, val in parse_options(args.set).items():
        if "." not in key:
            raise SystemExit(f"--set {key}=...: expected METHOD.OPTION=VALUE, e.g. rded.lr=0.1")
        meth, opt = key.split(".", 1)
        extra.setdefault(meth, {})[opt] = val
    models = tuple(args.models.split(",")) if args.models else None
    hard = get_protocol("dsa").with_(runs=args.runs, models=models)
    soft = get_protocol("teacher-kd").with_(runs=args.runs, models=models)
    hard_only = dataclasses.replace(hard, label_mode="hard")
    out_path = Path(args.out)
    results: dict = {
        "settings": {
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
            "random_baseline_seeds": [
                args.seed + 10_000 + 7919 * d for d in range(args.random_draws)
            ],
            "method_options": extra,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "python": sys.version.split()[0],
            "note": "CPU-scaled epochs; accuracies are final-epoch test accuracy; nothing chosen on test",
        },
        "datasets": {},
    }

    def dump() -> None:
        atomic_write_json(out_path, results)

    lines: list[str] = []

    def emit(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    for ds in args.datasets.split(","):
        splits = load_dataset(ds)
        train_b = dataset_bytes(splits.train)
        probe = create_method("sre2l", dataset=ds, ipc=ipcs[0], **extra.get("sre2l", {})).config
        t0 = time.perf_counter()
        teacher, tdir = cached_teacher(
            splits.train,
            probe.teacher_model,
            cache_root=probe.teacher_cache,
            epochs=probe.teacher_epochs,
            lr=probe.teacher_lr,
            seed=probe.teacher_seed,
        )
        t_teacher = time.perf_counter() - t0
        tmeta = teacher.teacher_meta_
        dres: dict = {
            "train_images": len(splits.train),
            "train_bytes": train_b,
            "teacher": {
                "dir": str(tdir),
                "model": tmeta["model"],
                "epochs": tmeta["epochs"],
                "bytes": teacher_bytes(tdir),
                "train_seconds": tmeta.get("train_seconds"),
                "load_or_train_seconds": t_teacher,
                "test_accuracy": accuracy(teacher, splits.test.images, splits.test.labels),
            },
            "ipc": {},
        }
        results["datasets"][ds] = dres
        emit(
            f"## {ds}: {len(splits.train)} train images ({_kb(train_b)} KB as float32), "
            f"teacher {tmeta['model']} ({tmeta['epochs']} epochs, {_kb(dres['teacher']['bytes'])} KB, "
            f"test accuracy {100 * dres['teacher']['test_accuracy']:.1f}%)"
        )
        cache: dict = {}
        full_acc = None
        if args.full_accuracy:
            full_acc = [float(v) for v in args.full_accuracy.split(",")]
            dres["full_hard"] = {
                "epochs": args.full_epochs or args.hard_epochs,
                "accuracies": full_acc,
                "given": True,
            }
        elif args.full_epochs and args.full_epochs != args.hard_epochs:
            from ddkit.data.synthetic import SyntheticSet
            from ddkit.eval import evaluate

            rep = evaluate(
                SyntheticSet.from_real(splits.train),
                splits.test,
                hard_only,
                epochs=args.full_epochs,
                seed=args.seed,
            )
            full_acc = list(rep.results[0].accuracies)
            dres["full_hard"] = {
                "epochs": args.full_epochs,
                "accuracies": full_acc,
                "seconds": rep.seconds,
            }
        for ipc in ipcs:
            es = soft_epochs.get(ipc, soft.epochs)
            rows = {}
            dres["ipc"][str(ipc)] = rows
            baseline = None
            for meth in methods:
                opts = dict(extra.get(meth, {}))
                if meth in ("sre2l", "rded"):
                    opts.setdefault("teacher_dir", str(tdir))
                m = create_method(meth, dataset=ds, ipc=ipc, **opts)
                t0 = time.perf_counter()
                syn = m.fit(splits.train, ipc, seed=args.seed)
                secs = time.perf_counter() - t0
                syn.meta.setdefault("teacher_dir", str(tdir))
                if baseline is None:
                    baseline = [
                        random_like(syn, splits.train, args.seed + 10_000 + 7919 * d)
                        for d in range(args.random_draws)
                    ]
                sc = ranking_scores(
                    syn,
                    splits,
                    hard,
                    soft,
                    seed=args.seed,
                    teacher=str(tdir),
                    random_set=baseline,
                    epochs_hard=args.hard_epochs,
                    epochs_soft=es,
                    full_accuracy=full_acc,
                    cache=cache,
                )
                per_image = relabel(syn, teacher, 4.0)
                fkd = relabel(
                    syn, teacher, 4.0, views=es, generator=torch.Generator().manual_seed(0)
                )
                storage = {
                    "hard (dsa)": storage_report(syn, train_size_bytes=train_b, protocol=hard_only),
                    "stored soft labels (soft)": storage_report(
                        per_image, train_size_bytes=train_b, protocol="soft"
                    ),
                    f"FKD views, {es} per image (soft)": storage_report(
                        fkd, train_size_bytes=train_b, protocol="soft"
                    ),
                    "teacher on the fly (teacher-kd)": storage_report(
                        syn, train_size_bytes=train_b, protocol="teacher-kd"
                    ),
                }
                rows[meth] = {
                    "distill_seconds": secs,
                    "iterations": syn.meta.get("iterations"),
                    "config": syn.meta.get("config"),
                    "label_agreement": syn.meta.get("label_agreement"),
                    "scores": sc,
                    "storage": storage,
                }
                dump()
                print(
                    f"  [{ds} ipc {ipc}] {meth}: distilled in {secs:.1f} s; hard {_pct(sc['accuracy']['syn_hard'])}, "
                    f"kd {_pct(sc['accuracy']['syn_soft'])}, LRS {100 * sc['LRS']['mean']:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
            for line in render_ipc(ds, ipc, rows, results["settings"], es, train_b):
                emit(line)
        results["markdown"] = "\n".join(lines)
        dump()
    results["markdown"] = "\n".join(lines)
    dump()
    return 0


if __name__ == "__main__":
    from ddkit.errors import DDKitError

    try:
        raise SystemExit(main())
    except DDKitError as exc:
        raise SystemExit(f"bench_decoupled: {exc}") from None
