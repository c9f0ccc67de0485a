"""``ddkit toy-info``: the toy family's own sub-command."""

from __future__ import annotations

import argparse

from ddkit.commands import Command, add_common, register_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ipc", type=int, default=1)
    add_common(parser, "seed")


def run(args: argparse.Namespace) -> int:
    print(f"toy family: ipc {args.ipc}, seed {args.seed}")
    return 0


register_command(Command("toy-info", "what the toy family is", add_arguments, run))
