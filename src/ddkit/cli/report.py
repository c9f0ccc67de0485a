"""``ddkit report``: one self-contained HTML page for a run folder or a results file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddkit.commands import Command, add_common, register_command

HELP = "one self-contained HTML page for a run folder, or a bench, audit or evaluate results file"


def add_arguments(rp: argparse.ArgumentParser) -> None:
    rp.add_argument(
        "path", help="run folder, or a results file (.json) of ddkit bench, audit or evaluate --out"
    )
    add_common(rp, out="HTML path (default: RUN/report.html, or the results file as .html)")


#: how every page ``ddkit report`` writes begins, and the mark of its head
PAGE_START = b"<!doctype html><html><head><meta charset=utf-8><title>"
PAGE_HEAD = b"</title><style>"


def run(args: argparse.Namespace) -> int:
    from ddkit.io import check_out, starts_with
    from ddkit.report import write_report

    if args.out is not None:  # before any work: never over a set, a run's files or a user's file
        out = Path(args.out)
        if out.is_dir():  # the page goes inside, under its default name
            is_results = Path(args.path).is_file() and Path(args.path).suffix == ".json"
            out = out / (Path(args.path).with_suffix(".html").name if is_results else "report.html")
        check_out(out, folder=False, own=starts_with(PAGE_START, PAGE_HEAD), kind="a page")
    print(f"wrote {write_report(args.path, args.out)}")
    return 0


register_command(Command("report", HELP, add_arguments, run, describe=False))
