"""The `ddkit` command line: a thin layer over the Python API.

Every sub-command registers itself in :data:`ddkit.commands.COMMANDS`: the core ones from one
module each in this package (``ddkit/cli/evaluate.py`` is ``ddkit evaluate``), the method
families', applications' and audits' from the ``cli`` module of their own folder.
:func:`build_parser` assembles the parser from that registry; :func:`main` runs a command with
one-line errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Sequence

from ddkit import context, distributed, levers
from ddkit.cli.bench import bench_markdown
from ddkit.commands import COMMANDS, discover, mark_command_start
from ddkit.errors import ConfigError, DDKitError
from ddkit.rng import check_seed

__all__ = ["CORE", "DISTRIBUTED_COMMANDS", "bench_markdown", "build_parser", "main"]

#: the core commands in the order ``ddkit --help`` lists them; the others follow by name
CORE = ("list", "distill", "evaluate", "export", "plot", "report", "bench", "data", "demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddkit", description="Dataset distillation toolkit.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument(
        "--exact",
        action="store_true",
        help="exact mode: the speed levers that default to auto (bf16, compile) stay off, "
        "giving the float32 eager results bit for bit (as DDKIT_EXACT=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    discover()  # every sub-command registers itself: the core ones, families, apps, audits
    for name in sorted(COMMANDS.names(), key=_place):
        COMMANDS.get(name).install(sub)
    return p


def _place(name: str) -> tuple[int, str]:
    """Where ``ddkit --help`` lists a command: the core ones in :data:`CORE`'s order, then the
    others by name."""
    return (CORE.index(name) if name in CORE else len(CORE), name)


#: the sub-commands that split their work over the processes of a torchrun launch
DISTRIBUTED_COMMANDS = ("distill", "evaluate", "experts", "teacher")


def _run_as_rank(args: argparse.Namespace, launch: distributed.Launch) -> int:
    """Run a sub-command as one rank of a torchrun launch: refuse one that does not split
    its work (one line); the ranks other than 0 print nothing but their errors."""
    if args.command not in DISTRIBUTED_COMMANDS:
        raise ConfigError(
            f"ddkit {args.command} does not run on several processes; launch it without "
            f"torchrun (these do: {', '.join(DISTRIBUTED_COMMANDS)})"
        )
    if launch.main:
        return int(args.func(args) or 0)
    if hasattr(args, "quiet"):
        args.quiet = True
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return int(args.func(args) or 0)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as one ``ddkit: warning:`` line each (the API's users see them as usual)."""
    print(f"ddkit: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    mark_command_start(whole_process=argv is None)  # a time budget counts from here
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        warnings.showwarning = _warning_line
    if hasattr(sys.stdout, "reconfigure"):  # a path that is not UTF-8 prints as \xff, not a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        if args.exact:  # in the environment: child processes (bench units, torchrun ranks) see it
            context.export(context.EXACT_ENV, "1")
        context.run_context()  # every DDKIT_* variable parsed at the door: a bad one is one line
        levers.float32_on_cuda()
        if getattr(args, "seed", None) is not None:  # every sub-command's --seed, checked once
            check_seed(args.seed)
        with distributed.session() as launch:  # under torchrun: one rank of the group
            if launch is None:
                return int(args.func(args) or 0)
            return _run_as_rank(args, launch)
    except DDKitError as e:
        if args.debug:
            raise
        print(f"ddkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddkit: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if args.debug:
            raise
        print(f"ddkit: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except Exception as e:  # a bug or an input nobody checked: one line, the traceback on --debug
        if args.debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(
            f"ddkit: error: unexpected {type(e).__name__}: {first} (run with --debug for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return 2
