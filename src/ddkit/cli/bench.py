"""``ddkit bench``: run a benchmark suite, resumably, and update its Markdown table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ddkit.commands import Command, add_common, defaults_of, number_list, register_command

if TYPE_CHECKING:
    from ddkit.bench.selection import CellSelection

HELP = "run a benchmark suite (resumable: finished cells are kept)"


def add_arguments(b: argparse.ArgumentParser) -> None:
    from ddkit.bench.runner import run_suite

    b.add_argument("--suite", default="quick")
    b.add_argument(
        "--methods", default=None, help="only these methods (comma-separated; 'full': full data)"
    )
    b.add_argument("--datasets", default=None, help="only these datasets (comma-separated)")
    b.add_argument("--ipcs", default=None, help="only these IPCs of the suite (comma-separated)")
    b.add_argument(
        "--keeps",
        default=None,
        help="only these kept percentages of a pruning sweep (comma-separated, e.g. 10,30)",
    )
    b.add_argument("--results", default=defaults_of(run_suite)["results_dir"])
    b.add_argument(
        "--markdown",
        default=None,
        help="Markdown file whose table is updated (default: BENCHMARKS.md with the default "
        "--results; none with another --results folder)",
    )
    b.add_argument("--fresh", action="store_true", help="ignore earlier results of this suite")
    b.add_argument(
        "--rerun",
        action="store_true",
        help="run the selected finished cells again (after a preset changed, say); each old row "
        "and cell folder stays until its new run finishes",
    )
    b.add_argument(
        "--dry-run",
        action="store_true",
        help="only print what the cells left to run would cost here (warm-ups of each kind of "
        "unit); nothing is written",
    )
    add_common(b, "seed", "device")


def bench_markdown(results: str, markdown: str | None) -> str | None:
    """The Markdown file ``ddkit bench`` updates: ``--markdown`` if given; else BENCHMARKS.md
    when the results go to the default folder, and none for a side run into another folder (its
    rows must not replace the published table)."""
    from ddkit.bench import run_suite

    if markdown is not None:
        return markdown or None
    defaults = defaults_of(run_suite)
    return defaults["markdown"] if Path(results) == Path(defaults["results_dir"]) else None


def run(args: argparse.Namespace) -> int:
    from ddkit.bench import run_suite
    from ddkit.bench.selection import CellSelection

    select = CellSelection(
        methods=[m for m in args.methods.split(",") if m] if args.methods else None,
        datasets=[d for d in args.datasets.split(",") if d] if args.datasets else None,
        ipcs=number_list(args.ipcs, "--ipcs", kind=int, minimum=1) if args.ipcs else None,
        keeps=number_list(args.keeps, "--keeps", kind=int, minimum=1) if args.keeps else None,
    )
    if args.dry_run:
        return _estimate(args, select)
    run_suite(
        args.suite,
        results_dir=args.results,
        markdown=bench_markdown(args.results, args.markdown),
        seed=args.seed,
        select=select,
        fresh=args.fresh,
        rerun=args.rerun,
        device=args.device or "cpu",
    )
    return 0


def _estimate(args: argparse.Namespace, select: CellSelection) -> int:
    """``--dry-run``: each cell's left units and their cost, measured here; nothing written."""
    from ddkit.bench.estimate import estimate_cells, summary_line
    from ddkit.bench.suites import SUITES
    from ddkit.methods.config import check_device

    device = args.device or "cpu"
    check_device(device)
    suite = SUITES.get(args.suite)
    select.check(suite)
    todo = select.cells(suite)
    estimates = estimate_cells(suite, todo, Path(args.results), seed=args.seed, device=device)
    for e in estimates:
        print(e.line())
    print(summary_line(estimates))
    return 0


register_command(Command("bench", HELP, add_arguments, run, describe=False))
