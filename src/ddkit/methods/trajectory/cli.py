"""``ddkit experts``: train (or resume, or join) a folder of expert trajectories."""

from __future__ import annotations

import argparse


def add_experts_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``experts`` sub-command to the ``ddkit`` parser; returns it (the caller sets
    ``func=run_experts``)."""
    p = subparsers.add_parser(
        "experts",
        help="train expert trajectories for MTT/TESLA/DATM (resumable; several processes may share --out)",
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="convnet", help="network without BatchNorm (default convnet)")
    p.add_argument("--num-experts", type=int, required=True)
    p.add_argument(
        "--epochs", type=int, required=True, help="epochs per expert (a snapshot after each)"
    )
    p.add_argument("--out", default=None, help="folder (default runs/experts/<dataset>-<model>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue unfinished experts left by an earlier run in --out",
    )
    p.add_argument(
        "--lr", type=float, default=0.01, help="SGD learning rate (default 0.01, as MTT)"
    )
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0, as MTT)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-augment", action="store_true", help="train without DSA augmentation")
    p.add_argument(
        "--zca", action="store_true", help="ZCA-whiten the data (recorded in every file)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="data folder/file for on-disk datasets")
    p.add_argument("--quiet", action="store_true")
    return p


def run_experts(args: argparse.Namespace) -> int:
    from ddkit.data import load_dataset
    from ddkit.methods.trajectory.experts import train_experts

    splits = load_dataset(args.dataset, root=args.root)
    out = args.out or f"runs/experts/{args.dataset}-{args.model}"
    buf = train_experts(
        splits,
        args.model,
        args.num_experts,
        args.epochs,
        out,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        augment=None if args.no_augment else "dsa",
        zca=args.zca,
        seed=args.seed,
        resume=args.resume,
        progress=not args.quiet,
    )
    missing = args.num_experts - len(buf)
    print(
        f"{len(buf)} complete expert(s) of {buf.epochs} epochs in {out}"
        + (f"; {missing} still being trained by other processes" if missing > 0 else "")
    )
    print(
        f"use them with: ddkit distill --dataset {args.dataset} --method mtt --set experts_dir={out}"
        + (" --set zca=true" if args.zca else "")
    )
    return 0
