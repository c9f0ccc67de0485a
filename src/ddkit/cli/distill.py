"""``ddkit distill``: distil a dataset into a run folder (or, with ``--dry-run``, only estimate
the cost)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from ddkit.commands import Command, add_common, defaults_of, device_option, register_command
from ddkit.errors import ConfigError
from ddkit.methods.config import parse_options

HELP = "distil a dataset into a synthetic set"


def add_arguments(d: argparse.ArgumentParser) -> None:
    from ddkit.runs import distill_run

    d.add_argument("--dataset", required=True)
    d.add_argument(
        "--method",
        required=True,
        help="a method (`ddkit list methods`), `recommended`: the path ddkit recommends for "
        "image folders of any size, fitted to --budget (default 1h), or `auto`: a tournament "
        "on a validation split of the training data picks the method within --budget "
        "(required), and the table says why",
    )
    d.add_argument(
        "--ipc", type=int, required=True, help="images per class (pairs, on a paired dataset)"
    )
    d.add_argument("--target", default=None, help="label column of a csv / parquet --dataset")
    d.add_argument("--iterations", type=int, default=None, help="default: the method's preset")
    d.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)"
    )
    d.add_argument(
        "--teacher",
        default=None,
        metavar="SOURCE",
        help="the teacher of a decoupled method (sre2l, rded, ...): a `ddkit teacher` folder, "
        "file:PATH (a checkpoint of a ddkit model; file:PATH#MODEL names it) or hf:PATH_OR_NAME "
        "(a Hugging Face model, offline); default: trained and cached",
    )
    d.add_argument(
        "--checkpoint-every", type=int, default=defaults_of(distill_run)["checkpoint_every"]
    )
    d.add_argument(
        "--dry-run",
        action="store_true",
        help="only print the estimated cost (set-up and a few iterations, measured here)",
    )
    d.add_argument(
        "--budget",
        default=None,
        metavar="TIME",
        help="a time budget (90s, 30m, 1.5h) counted from the command's start: the run stops "
        "within it with a valid set, and --resume continues it",
    )
    add_common(
        d,
        "seed",
        "root",
        "quiet",
        "resume",
        "log",
        "device",
        out="run folder (default runs/<dataset>-<method>-ipc<K>-s<seed>)",
    )


def run(args: argparse.Namespace) -> int:
    from ddkit.commands import command_started
    from ddkit.data.table import dataset_with_target
    from ddkit.eval.dispatch import arithmetic
    from ddkit.io import check_out
    from ddkit.runs import AUTO, DistillRequest, distill_run, record_table

    dataset = dataset_with_target(args.dataset, args.target)
    out = args.out or f"runs/{dataset}-{args.method}-ipc{args.ipc}-s{args.seed}"
    check_out(out, folder=True, run_ok=True)  # its own run folder: resumed, or refused there
    if args.dry_run:
        return _estimate(args, dataset, out)
    request = DistillRequest(
        dataset,
        args.method,
        args.ipc,
        iterations=args.iterations,
        seed=args.seed,
        options=_options(args),
        root=args.root,
        device=device_option(args),
        budget=args.budget,
    )
    syn = distill_run(
        request,
        out,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        progress=not args.quiet,
        log=args.log or (),
        started=command_started(),  # the budget counts the command's start-up too
    )
    if AUTO in syn.meta:
        print(record_table(syn.meta[AUTO]))
    stored = syn.storage_bytes()["total"]
    kind = syn.spec.kind  # what ipc counts: rows per class, or (pairs) the set's rows
    planned = syn.meta.get("planned_iterations")
    if planned is not None:
        print(f"stopped at the time budget after {syn.meta['iterations']:,} of {planned:,} "
              f"iterations; --resume continues it")  # fmt: skip
    print(
        f"wrote {len(syn)} {kind.noun} ("
        + (f"{syn.meta.get('ipc', syn.ipc)} per class; " if kind.classes else "")
        + f"{stored:,} bytes of distilled content"
        + (f"; {arithmetic(syn.meta)}" if "precision" in syn.meta else "")
        + f") to {out}/synthetic, grid {out}/grid.png"
    )
    return 0


def _options(args: argparse.Namespace) -> dict:
    """The method options: ``--set`` pairs, and ``--teacher`` as the option ``teacher``."""
    options = parse_options(args.set)
    if args.teacher is not None:
        if options.get("teacher", args.teacher) != args.teacher:
            raise ConfigError("--teacher and --set teacher=... disagree; give only --teacher")
        options["teacher"] = args.teacher
    return options


def _estimate(args: argparse.Namespace, dataset: str, out: str) -> int:
    """``--dry-run``: the estimated cost, measured here; nothing is written."""
    from ddkit.commands import command_started
    from ddkit.methods.recommended import RECOMMENDED, run_budget
    from ddkit.progress import parse_duration
    from ddkit.runs import AUTO, check_request, estimate_distill, load_splits

    if args.budget is not None:
        parse_duration(args.budget)  # refused before any work
    if args.method == AUTO:
        check_request(_options(args), args.budget)
    if not args.quiet:  # the set-up and a step may take minutes at scale: say what runs
        print(
            f"--dry-run: timing {args.method}'s set-up and its first iterations on {dataset} "
            f"at IPC {args.ipc}, here, in memory ...",
            file=sys.stderr,
            flush=True,
        )
    splits = load_splits(dataset, args.root)  # the data, read at the door
    if args.method == AUTO:
        return _plan(args, dataset, out, splits)
    startup = time.monotonic() - command_started()  # the real command starts and loads as this did
    cost = estimate_distill(
        dataset=dataset,
        method=args.method,
        ipc=args.ipc,
        iterations=args.iterations,
        seed=args.seed,
        options=_options(args),
        splits=splits,
        device=device_option(args),
    )
    cost = dataclasses.replace(cost, startup_seconds=startup + cost.startup_seconds)
    if cost.recommended is not None:
        print(f"--method {RECOMMENDED}: {cost.recommended}")
    print(
        cost.line(f"{args.method} on {dataset} at IPC {args.ipc}") + f"; nothing written to {out}"
    )
    budget = run_budget(args.method, args.budget)
    if budget is not None:
        print(cost.budget_line(parse_duration(budget)))
    return 0


def _plan(args: argparse.Namespace, dataset: str, out: str, splits: object) -> int:
    """``--dry-run --method auto``: the tournament's plan (every candidate costed, the rounds,
    what round 0 buys each); nothing is written."""
    from ddkit.progress import parse_duration
    from ddkit.runs import plan_auto, record_table

    seconds = None if args.budget is None else parse_duration(args.budget)
    plan = plan_auto(dataset, args.ipc, seconds, seed=args.seed, options=_options(args),
                     splits=splits, device=device_option(args))  # fmt: skip
    plan["why"] = (
        f"the winner then distils on the whole training split in what is left of "
        f"{args.budget}; nothing written to {out}"
    )
    print(record_table(plan))
    return 0


register_command(Command("distill", HELP, add_arguments, run, describe=False))
