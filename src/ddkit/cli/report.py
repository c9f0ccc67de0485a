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
    from ddkit.report import write_report

    print(f"wrote {write_report(args.path, args.out)}")
    return 0


register_command(Command("report", HELP, add_arguments, run, describe=False))
