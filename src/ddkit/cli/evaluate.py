"""``ddkit evaluate``: evaluate a saved set (:func:`ddkit.eval.dispatch.evaluate_set`), print
the report and write it to ``eval.json`` with the run's context
(:func:`ddkit.runs.current_context`), as ``ddkit distill`` saves it in ``config.json``."""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from pathlib import Path

from ddkit import distributed
from ddkit.commands import Command, add_common, register_command

HELP = "train fresh networks on a synthetic set, test on the real test split"


def add_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("path", help="run folder or synthetic-set folder")
    e.add_argument(
        "--protocol",
        default=None,
        help="evaluation protocol (default: the recipe the set records -- the protocol it was "
        "made for, with the network it was distilled with -- or, for a set without one, the "
        "protocol its labels call for: dsa for hard labels, mse for learned regression labels)",
    )
    e.add_argument("--runs", type=int, default=None)
    e.add_argument("--epochs", type=int, default=None)
    e.add_argument("--models", default=None, help="comma-separated model names")
    e.add_argument(
        "--learners",
        default=None,
        help="evaluate by learners instead: comma-separated logreg,knn,rf,gb,xgboost,mlp "
        "(the default on tables: all but xgboost)",
    )
    e.add_argument(
        "--teacher",
        default=None,
        metavar="SOURCE",
        help="the teacher of a protocol whose targets come from one (teacher-kd): a `ddkit "
        "teacher` folder, file:PATH or hf:PATH_OR_NAME (default: the one the set records)",
    )
    e.add_argument("--dataset", default=None, help="dataset of the test split (default: the set's)")
    e.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default=None,
        help="training arithmetic (default: the protocol's, fp32; auto: bf16 where the CPU has it)",
    )
    e.add_argument(
        "--compile", action="store_true", help="torch.compile the training step (eager fallback)"
    )
    e.add_argument(
        "--groups",
        action="store_true",
        help="also unbiased, bias-aligned, bias-conflicting and worst-group accuracy (a biased "
        "dataset such as colored-mnist5k-c5)",
    )
    e.add_argument(
        "--budget",
        default=None,
        metavar="TIME",
        help="a time budget (90s, 30m, 1.5h) counted from the command's start: a warm-up times "
        "the networks here, and the protocol is cut to fit (fewer runs first, then fewer "
        "epochs), said once and recorded in the report",
    )
    e.add_argument(
        "--dry-run",
        action="store_true",
        help="only print the estimated cost (a few epochs of one network per model, measured "
        "here); nothing is written",
    )
    add_common(
        e, "seed", "root", "quiet", "device", out="eval.json path (default: next to the set)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the evaluation and write its report to ``--out``, else ``eval.json`` in the run
    folder (rank 0 only, atomically), the run's context beside it under ``"context"``."""
    from ddkit.commands import command_started
    from ddkit.eval.dispatch import EvalSettings, estimate_set, evaluate_set
    from ddkit.eval.estimate import fit_budget
    from ddkit.eval.protocol import get_protocol
    from ddkit.io import atomic_write_json, check_out, json_with
    from ddkit.methods import load_all
    from ddkit.progress import parse_duration
    from ddkit.runs import current_context, open_saved_set

    started = command_started()  # a budget counts the command's start-up too
    budget = None if args.budget is None else parse_duration(args.budget)  # before any work
    if args.out:  # before any work: never over a set, a run's files or a file of the user's
        check_out(args.out, folder=False, own=json_with("results"), kind="an evaluate report")
    load_all()  # methods may register protocols
    saved = open_saved_set(args.path, dataset=args.dataset, root=args.root)
    protocol = None if args.protocol is None else get_protocol(args.protocol)
    settings = EvalSettings(
        protocol=protocol, models=args.models, learners=args.learners, runs=args.runs,
        epochs=args.epochs, seed=args.seed, groups=args.groups, precision=args.precision,
        compile=args.compile, device=args.device, progress=not args.quiet, teacher=args.teacher,
        budget=budget, started=started,
    )  # fmt: skip
    if args.dry_run:
        startup = time.monotonic() - started  # the real command starts and loads as this did
        estimate = estimate_set(saved.syn, saved.splits.test, settings)
        print(dataclasses.replace(estimate, startup_seconds=startup).line())
        if budget is not None:
            print(fit_budget(estimate, budget, spent=time.monotonic() - started).line())
        return 0
    context = current_context(args.device or distributed.device())  # the session's by default
    evaluation = evaluate_set(
        saved.syn, saved.splits.test, settings, say=print, test_name=saved.dataset,
        train=saved.splits.train,
    )  # fmt: skip
    print(evaluation.text())
    out = Path(args.out) if args.out else saved.folder / "eval.json"
    record = {**evaluation.report.to_dict(), "context": context.to_dict()}
    distributed.main_only(partial(atomic_write_json, out, record))
    print(f"wrote {out}")
    return 0


register_command(Command("evaluate", HELP, add_arguments, run, describe=False))
