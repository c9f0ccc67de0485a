"""Which DP-SGD learning rate should `ddkit audit privacy` default to (its reference networks)?

The privacy audit trains its DP-SGD networks on a class-stratified half of the training split
(the target's members). This study trains them the same way on a stratified half of the
*training* rows that remain after a validation split is held out (20 % of train, seed 0), and
scores each learning rate on that validation split; the test split is never read. Every other
setting is the audit's default (ddkit.audits.dp_sgd.DPRecipe) unless given. Writes
``benchmarks/results/tune_dp_sgd_<dataset>.json`` (validation accuracy per epsilon and lr, the
epsilon the accountant reports, seconds).

Usage: python benchmarks/studies/tune_dp_sgd.py [--dataset mnist5k] [--lrs 0.25,0.5,1,2]
       [--epsilons 1,8] [--epochs 30] [--model convnet-w32]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from ddkit.audits.dp_sgd import DPRecipe, train_dp_sgd
from ddkit.audits.privacy import membership_masks, pool_rows
from ddkit.commands import number_list
from ddkit.data import load_dataset
from ddkit.eval.train import accuracy
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--lrs", default="0.25,0.5,1,2")
    parser.add_argument("--epsilons", default="1,8")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--model", default="convnet-w32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_dataset(args.dataset, val_fraction=0.2, seed=0)
    rows = pool_rows(splits.train.labels, None, seed=args.seed)
    members = rows[membership_masks(splits.train.labels[rows], 0, seed=args.seed)[0]]
    data = splits.train.subset(members)
    val = splits.val
    cells = []
    for eps in number_list(args.epsilons, "--epsilons", above=0):
        for lr in number_list(args.lrs, "--lrs", above=0):
            recipe = replace(DPRecipe(epsilon=eps), lr=lr, epochs=args.epochs)
            t0 = time.perf_counter()
            res = train_dp_sgd(data, args.model, recipe, seed=args.seed)
            acc = accuracy(res.network, val.images, val.labels)
            cells.append({"epsilon": eps, "lr": lr, "val_accuracy": acc,
                          "epsilon_spent": res.epsilon_spent,
                          "noise_multiplier": res.noise_multiplier, "steps": res.steps,
                          "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"eps {eps:g} lr {lr:g}: val {100 * acc:.2f} % "
                  f"(sigma {res.noise_multiplier:.2f}, eps spent {res.epsilon_spent:.2f})")  # fmt: skip
    out = args.out or Path(f"benchmarks/results/tune_dp_sgd_{args.dataset}.json")
    atomic_write_json(out, {
        "question": "DP-SGD learning rate for the privacy audit's reference (validation split)",
        "dataset": args.dataset, "members": len(members), "validation": len(val),
        "model": args.model, "epochs": args.epochs, "seed": args.seed,
        "recipe": {k: v for k, v in vars(DPRecipe(epsilon=1.0)).items() if k != "epsilon"},
        "cells": cells, "machine": machine_info(),
    })  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
