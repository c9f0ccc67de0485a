"""``ddkit experts``: train (or resume, or join) a folder of expert trajectories."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ddkit.commands import Command, add_common, defaults_of, device_option, register_command


def add_experts_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ddkit experts``; defaults are those of :class:`ExpertSettings`."""
    from ddkit.methods.trajectory.experts import TOGETHER_ON_ACCELERATORS, ExpertSettings

    default = defaults_of(ExpertSettings)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="convnet", help="network without BatchNorm (default convnet)")
    p.add_argument("--num-experts", type=int, required=True)
    p.add_argument(
        "--epochs", type=int, required=True, help="epochs per expert (a snapshot after each)"
    )
    p.add_argument("--lr", type=float, default=default["lr"], help="SGD learning rate (MTT's)")
    p.add_argument("--momentum", type=float, default=default["momentum"], help="SGD momentum")
    p.add_argument("--batch-size", type=int, default=default["batch_size"])
    p.add_argument("--no-augment", action="store_true", help="train without DSA augmentation")
    p.add_argument(
        "--zca", action="store_true", help="ZCA-whiten the data (recorded in every file)"
    )
    p.add_argument(
        "--together",
        type=int,
        default=None,
        help="experts trained at once as one vmap-ed network (default: "
        f"{TOGETHER_ON_ACCELERATORS} on a GPU, 1 on the CPU)",
    )
    add_common(
        p,
        "seed",
        "root",
        "quiet",
        "resume",
        "device",
        out="folder (default runs/experts/<dataset>-<model>)",
    )


def run_experts(args: argparse.Namespace) -> int:
    from ddkit.data import load_dataset
    from ddkit.methods.trajectory.experts import ExpertSettings, train_experts

    splits = load_dataset(args.dataset, root=args.root)
    device = device_option(args)
    splits = replace(splits, train=splits.train.to(device), test=splits.test.to(device), val=None)
    out = args.out or f"runs/experts/{args.dataset}-{args.model}"
    settings = ExpertSettings(
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        augment=None if args.no_augment else "dsa",
        zca=args.zca,
        seed=args.seed,
    )
    buf = train_experts(
        splits,
        args.model,
        args.num_experts,
        args.epochs,
        out,
        settings,
        resume=args.resume,
        together=args.together,
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


register_command(
    Command(
        "experts",
        "train expert trajectories for MTT/TESLA/DATM (resumable; several processes may share "
        "--out)",
        add_experts_arguments,
        run_experts,
    )
)
