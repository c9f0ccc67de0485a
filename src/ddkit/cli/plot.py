"""``ddkit plot``: a run's learning curve, a set beside real images, a suite's accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddkit.commands import Command, add_common, defaults_of, register_command
from ddkit.errors import ConfigError

HELP = "draw a run's learning curve, a suite's accuracy vs IPC, ..."


def add_arguments(pl: argparse.ArgumentParser) -> None:
    from ddkit.bench.runner import run_suite

    pl.add_argument(
        "what",
        choices=["curve", "compare", "bench"],
        help="curve: a run's log.jsonl; compare: synthetic beside real images per class; "
        "bench: accuracy against IPC from a suite's results",
    )
    pl.add_argument("path", nargs="?", help="run folder (curve, compare)")
    pl.add_argument("--suite", default="quick", help="(bench) suite name")
    pl.add_argument(
        "--x",
        choices=["ipc", "bytes", "keep"],
        default="ipc",
        help="(bench) accuracy against IPC, bytes stored, or the kept percentage (pruning suite)",
    )
    pl.add_argument("--results", default=defaults_of(run_suite)["results_dir"], help="(bench)")
    pl.add_argument("--dataset", default=None, help="(compare) dataset of the real images")
    add_common(pl, "root", out="PNG path (default: next to the input)")


#: the mark of the library that draws every chart ``ddkit plot`` writes
PNG_MARK = b"Matplotlib"


def run(args: argparse.Namespace) -> int:
    from ddkit import plots
    from ddkit.io import check_out, starts_with
    from ddkit.report import PNG_MAGIC

    if args.out is not None:  # before any work: never over a set, a run's files or a user's file
        check_out(args.out, folder=False, own=starts_with(PNG_MAGIC, PNG_MARK), kind="a chart")
    if args.what == "bench":
        out = _plot_bench(args)
    elif args.path is None:
        raise ConfigError(f"ddkit plot {args.what} needs a run folder")
    elif args.what == "curve":
        log = Path(args.path) / "log.jsonl"
        if not log.is_file():
            raise ConfigError(f"{str(args.path)!r} has no log.jsonl (is it a run folder?)")
        out = Path(args.out or Path(args.path) / "curve.png")
        plots.plot_learning_curve(log, out)
    else:
        from ddkit.runs import open_saved_set

        saved = open_saved_set(args.path, dataset=args.dataset, root=args.root)
        out = Path(args.out or saved.folder / "compare.png")
        plots.plot_synthetic_vs_real(saved.syn, saved.splits.train, out)
    print(f"wrote {out}")
    return 0


def _plot_bench(args: argparse.Namespace) -> Path:
    """Accuracy against IPC (bytes, kept percentage) from a suite's results file."""
    from ddkit import plots
    from ddkit.bench.results import check_results_shape
    from ddkit.io import read_json

    results = Path(args.results) / f"{args.suite}.json"
    if not results.is_file():
        raise ConfigError(f"no results {str(results)!r}; run `ddkit bench --suite {args.suite}`")
    data = read_json(results)
    check_results_shape(data, results)
    if not any(plots.shown_row(r) for r in data["rows"]):
        raise ConfigError(f"{str(results)!r} has no finished rows to plot yet")
    out = Path(args.out or results.with_name(f"{args.suite}-accuracy-{args.x}.png"))
    plots.plot_accuracy_vs_ipc(data["rows"], out, x=args.x)
    return out


register_command(Command("plot", HELP, add_arguments, run, describe=False))
