"""Throughput of evaluation training: R networks trained together (vmap) vs one after another.

Usage: python benchmarks/campaigns/bench_eval_throughput.py [--datasets digits,mnist5k] [--ipc 10] [--runs 5]
       [--epochs 50] [--augment dsa]
Prints a Markdown table and writes benchmarks/results/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ddkit.data import load_dataset
from ddkit.eval import EvalProtocol, accuracy, run_seeds, train_networks
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods import create_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="digits,mnist5k")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--augment", default="dsa")
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--out", default="benchmarks/results/eval_throughput.json")
    args = ap.parse_args()
    rows = []
    for ds in args.datasets.split(","):
        splits = load_dataset(ds)
        syn = create_method("random").fit(splits.train, args.ipc, seed=0)
        p = EvalProtocol(
            name="bench",
            epochs=args.epochs,
            augment=args.augment or None,
            runs=args.runs,
            models=(args.model,),
        )
        seeds = run_seeds(0, args.runs)
        row = {
            "dataset": ds,
            "ipc": args.ipc,
            "images": len(syn),
            "runs": args.runs,
            "epochs": args.epochs,
            "augment": args.augment,
            "model": args.model,
        }
        for mode in ("vectorized", "sequential"):
            t0 = time.perf_counter()
            res = train_networks(
                args.model,
                syn.spec,
                syn.images,
                syn.labels,
                p,
                seeds,
                lr=p.lr,
                vectorize=mode == "vectorized",
            )
            sec = time.perf_counter() - t0
            accs = [accuracy(m, splits.test.images, splits.test.labels) for m in res.models]
            row[f"{mode}_seconds"] = sec
            row[f"{mode}_images_per_s"] = res.images_seen / sec
            row[f"{mode}_mean_acc"] = sum(accs) / len(accs)
        row["speedup"] = row["sequential_seconds"] / row["vectorized_seconds"]
        rows.append(row)
        print(json.dumps(row))
    info = machine_info()
    print(
        f"\nMachine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads)\n"
    )
    print(
        "| dataset | images | runs x epochs | vectorised img/s | one-by-one img/s | speed-up | mean acc vec / seq |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['images']} | {r['runs']} x {r['epochs']} | {r['vectorized_images_per_s']:.0f} | "
            f"{r['sequential_images_per_s']:.0f} | {r['speedup']:.2f}x | "
            f"{100 * r['vectorized_mean_acc']:.1f} / {100 * r['sequential_mean_acc']:.1f} |"
        )
    atomic_write_json(args.out, {"machine": info, "rows": rows})


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
