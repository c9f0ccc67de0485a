"""``ddkit teacher``: train a BatchNorm teacher for SRe2L / RDED / relabeling and save it.

ddkit teacher --dataset digits --model convnet3-bn --epochs 30 --out runs/teachers/digits
(interrupted? run the same command again: it resumes from runs/teachers/digits/checkpoint/)
torchrun --nproc-per-node 2 -m ddkit teacher ...   (data-parallel: each rank its share of a batch)
ddkit distill --dataset digits --method sre2l --ipc 10 --teacher runs/teachers/digits
"""

from __future__ import annotations

import argparse

from ddkit.commands import Command, add_common, defaults_of, register_command
from ddkit.errors import ConfigError

TEACHER_HELP = (
    "train a (BatchNorm) teacher on a dataset and save it (safetensors + JSON); re-running an "
    "interrupted command resumes after its last finished epoch"
)


def add_teacher_arguments(t: argparse.ArgumentParser) -> None:
    """The options of ``ddkit teacher``; defaults are those of
    :class:`~ddkit.eval.teacher.TeacherRecipe`."""
    from ddkit.eval.teacher import DEFAULT_MODEL, TeacherRecipe

    default = defaults_of(TeacherRecipe)
    t.description = (
        "Train a (BatchNorm) teacher and save it to --out. A checkpoint is kept in "
        "OUT/checkpoint/ after every epoch: re-running the same command after an interruption "
        "resumes after the last finished epoch (same result as an uninterrupted run). A "
        "checkpoint of other options or data is refused: delete it or pick another --out."
    )
    t.add_argument("--dataset", default="digits")
    t.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a model with BatchNorm for SRe2L (default {DEFAULT_MODEL})",
    )
    t.add_argument("--epochs", type=int, default=default["epochs"])
    t.add_argument("--lr", type=float, default=default["lr"])
    t.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="held-out part of train for the reported validation accuracy (0: none)",
    )
    add_common(
        t, "seed", "root", out="output folder (default runs/teachers/<dataset>-<model>-s<seed>)"
    )


def run_teacher(args: argparse.Namespace) -> int:
    """Train, save and summarise a teacher. The teacher is trained on the train split minus the
    validation part (so its validation accuracy is honest); the test split is not touched."""
    from ddkit import distributed
    from ddkit.data import load_dataset
    from ddkit.eval.teacher import TeacherRecipe, train_teacher
    from ddkit.io import check_out
    from ddkit.models import create_model, has_batchnorm

    out = args.out or f"runs/teachers/{args.dataset}-{args.model}-s{args.seed}"
    check_out(out, folder=True)  # before any work: never into a set or a run folder
    splits = load_dataset(
        args.dataset, root=args.root, val_fraction=args.val_fraction, seed=args.seed
    )
    probe = create_model(
        args.model,
        num_classes=splits.spec.num_classes,
        in_channels=splits.spec.channels,
        image_size=splits.spec.image_size,
    )
    if not has_batchnorm(probe):
        print(
            f"note: {args.model!r} has no BatchNorm; SRe2L needs BN statistics (use e.g. convnet3-bn)"
        )
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    net = train_teacher(
        splits.train,
        TeacherRecipe(args.model, epochs=args.epochs, lr=args.lr, seed=args.seed),
        val=splits.val,
        out_dir=out,
        device=distributed.device(),
    )
    m = net.teacher_meta_
    val = "" if m["val_accuracy"] is None else f", val accuracy {100 * m['val_accuracy']:.2f}%"
    resumed = (
        f", resumed after epoch {m['resumed_after_epoch']}" if m["resumed_after_epoch"] else ""
    )
    print(
        f"teacher {args.model} on {args.dataset}: train accuracy {100 * m['train_accuracy']:.2f}%{val} "
        f"({m['train_seconds']:.1f} s{resumed}); wrote {out}"
    )
    return 0


register_command(Command("teacher", TEACHER_HELP, add_teacher_arguments, run_teacher))
