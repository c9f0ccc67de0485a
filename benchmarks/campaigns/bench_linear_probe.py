"""Linear-probe distillation for frozen backbones (issue 69), measured on a small CPU scale.

Two small networks are trained by ddkit on the training split (``ddkit.eval.teacher``'s cached
teachers) and then frozen as backbones. ``lgm`` (Linear Gradient Matching, Cazenavette et al.,
NeurIPS 2025) distils a set with each backbone; every set is probed on both backbones
(``ddkit.eval.probe.evaluate_probes``: logistic regression on frozen features, one recipe for
every row), beside random real images of the same IPC, the real images nearest each class's mean
feature under each backbone, and the full training data.

    nice python benchmarks/campaigns/bench_linear_probe.py                        # digits, IPC 1
    nice python benchmarks/campaigns/bench_linear_probe.py --dataset mnist5k --backbones \
        convnet3-bn-w32,convnet2-w32 --ipcs 1,10 --iterations 300

A backbone is ``MODEL`` (trained with labels on the data distilled) or ``MODEL@DATASET`` (trained
on ``--backbone-rows`` rows of another dataset of the same image shape, e.g. Fashion-MNIST for
MNIST, then used frozen: features not made for the task, closer to the paper's setting). ddkit
trains no self-supervised backbone yet: these are not the paper's foundation models, and the
table says how LGM compares with real-image baselines for such backbones, not what the paper
measured. Markdown goes to
stdout, JSON to ``benchmarks/results/linear_probe.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "results" / "linear_probe.json"


def _cell(row: dict) -> str:
    return f"{row['mean']:.1f} ± {row['std']:.1f}"


def table(rows: list[dict], backbones: list[str], ipc: int) -> list[str]:
    """One Markdown table: a row per set, a column per probing backbone."""
    names = list(dict.fromkeys(r["set"] for r in rows))
    by = {(r["set"], r["backbone"]): r for r in rows}
    out = [
        f"### IPC {ipc}: linear-probe test accuracy (%), mean ± std over probe seeds",
        "",
        "| set | images | " + " | ".join(f"probed on {b}" for b in backbones) + " |",
        "|---|---|" + "---|" * len(backbones),
    ]
    for n in names:
        cells = [_cell(by[(n, b)]) if (n, b) in by else "–" for b in backbones]
        out.append(f"| {n} | {by[(n, backbones[0])]['images']} | " + " | ".join(cells) + " |")
    return out


def views_for(text: str, ipc: int) -> int:
    """``--views``: one count for every IPC, or ``IPC:N`` pairs (an IPC not listed: 10)."""
    if ":" not in text:
        return int(text)
    pairs = dict(item.split(":") for item in text.split(","))
    return int(pairs.get(str(ipc), 10))


def make_backbone(name: str, train, args, resolve, load):  # noqa: ANN001, ANN201 - script plumbing
    """``MODEL`` (trained on the data distilled) or ``MODEL@DATASET`` (trained on
    ``--backbone-rows`` rows (balanced) of another dataset's training split, then frozen)."""
    model, _, other = name.partition("@")
    data = train
    if other:
        source = load(other).train
        per_class = max(1, args.backbone_rows // source.spec.num_classes)
        rows = source.sample_per_class(per_class, torch.Generator().manual_seed(0)).flatten()
        data = source.subset(rows)
    out = resolve(model, data, teacher_epochs=args.teacher_epochs)
    out.name = name
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--backbones", default="convnet2-bn,convnet2")
    ap.add_argument("--teacher-epochs", type=int, default=15)
    ap.add_argument("--backbone-rows", type=int, default=5000, help="of a MODEL@DATASET backbone")
    ap.add_argument("--ipcs", default="1")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--views", default="10", help="views per synthetic image: N, or IPC:N,IPC:N")
    ap.add_argument("--lr-img", type=float, default=None, help="default: the dataset's preset")
    ap.add_argument("--init", default="noise", choices=("noise", "real"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    # one thread: on a shared, loaded CPU two spinning threads made each probe step ~50x slower
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.eval.probe import (
        ProbeBaselines,
        ProbeRecipe,
        evaluate_probes,
        nearest_to_centroids,
        resolve_backbone,
    )
    from ddkit.io import atomic_write_json
    from ddkit.methods import create_method

    torch.set_num_threads(args.threads)
    splits = load_dataset(args.dataset)
    train, test = splits.train, splits.test
    names = [b.strip() for b in args.backbones.split(",") if b.strip()]
    t0 = time.perf_counter()
    backbones = [make_backbone(n, train, args, resolve_backbone, load_dataset) for n in names]
    backbone_seconds = time.perf_counter() - t0
    recipe = ProbeRecipe()
    result: dict = {
        "dataset": args.dataset,
        "backbones": names,
        "settings": {**vars(args), "probe": recipe.__dict__},
        "note": "MODEL@DATASET: a backbone trained on that dataset's rows, used frozen here",
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "load_before": os.getloadavg(),
        },  # fmt: skip
        "backbone_seconds": backbone_seconds,
        "cells": [],
    }
    lines: list[str] = [f"## {args.dataset}: LGM with frozen backbones {', '.join(names)}", ""]
    for ipc in [int(x) for x in args.ipcs.split(",")]:
        sets, seconds, configs = {}, {}, {}
        for name, backbone in zip(names, backbones):
            method = create_method(
                "lgm", dataset=args.dataset, ipc=ipc, backbone=backbone.module,
                iterations=args.iterations, views=views_for(args.views, ipc), init=args.init,
                **({} if args.lr_img is None else {"lr_img": args.lr_img}),
            )  # fmt: skip
            configs[name] = method.config_dict()
            t = time.perf_counter()
            sets[f"lgm (distilled on {name})"] = method.fit(train, ipc, seed=args.seed)
            seconds[name] = time.perf_counter() - t
        for name, backbone in zip(names[1:], backbones[1:]):  # centroids under the others
            feats = backbone.features_of(train.images, train.spec)
            rows = nearest_to_centroids(feats, train.labels, ipc, train.spec.num_classes)
            sets[f"centroid nearest ({name})"] = SyntheticSet.from_real(train, rows)
        rows = evaluate_probes(
            sets, dict(zip(names, backbones)), train, test, runs=args.runs, seed=args.seed,
            recipe=recipe, baselines=ProbeBaselines(ipc=ipc, select_with=names[0]),
        )  # fmt: skip
        dicts = [r.to_dict() for r in rows]
        for d in dicts:
            if d["set"] == "centroid nearest":
                d["set"] = f"centroid nearest ({names[0]})"
        cell = {"ipc": ipc, "distill_seconds": seconds, "lgm_configs": configs, "rows": dicts}
        result["cells"].append(cell)
        result["machine"]["load_after"] = os.getloadavg()
        atomic_write_json(Path(args.out), result)
        lines += [*table(dicts, names, ipc), ""]
        lines.append(
            "distillation seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        )
        lines.append("")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
