"""``ddkit report``: one self-contained HTML page for a run folder or a results file."""

from __future__ import annotations

import argparse

from ddkit.commands import Command, add_common, register_command

HELP = "one self-contained HTML page for a run folder, or a bench, audit or evaluate results file"


def add_arguments(rp: argparse.ArgumentParser) -> None:
    rp.add_argument(
        "path", help="run folder, or a results file (.json) of ddkit bench, audit or evaluate --out"
    )
    add_common(rp, out="HTML path (default: RUN/report.html, or the results file as .html)")


def run(args: argparse.Namespace) -> int:
    from ddkit.io import check_out, starts_with
    from ddkit.report import PAGE_HEAD, PAGE_START, report_path, write_report

    if args.out is not None:  # before any work: never over a set, a run's files or a user's file
        own = starts_with(PAGE_START.encode(), PAGE_HEAD.encode())
        check_out(report_path(args.path, args.out), folder=False, own=own, kind="a page")
    print(f"wrote {write_report(args.path, args.out)}")
    return 0


register_command(Command("report", HELP, add_arguments, run, describe=False))
