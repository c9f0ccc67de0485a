"""``ddkit data``: the datasets that come as files: where they are, fetch or install them."""

from __future__ import annotations

import argparse

from ddkit.commands import Command, add_common, register_command
from ddkit.errors import ConfigError

HELP = "datasets that come as files: where they are, fetch them"


def add_arguments(dd: argparse.ArgumentParser) -> None:
    dd.add_argument("action", choices=["list", "fetch"])
    dd.add_argument("name", nargs="?", help="dataset to fetch (see `ddkit data list`)")
    dd.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="PATH",
        help="install from a local folder or archive (tar, zip, .deb) instead of downloading",
    )
    dd.add_argument(
        "--mirror", action="append", default=[], help="base URL to download from (repeatable)"
    )
    add_common(dd, "root", "quiet")


def run(args: argparse.Namespace) -> int:
    from ddkit.data import store

    if args.action == "list":
        root = args.root if args.root is not None else store.data_root()
        print(f"data root: {root}" + ("" if args.root else f" (set ${store.ENV_VAR} or --root)"))
        for name in store.REMOTES.names():
            where = store.dataset_folder(name, args.root)
            print(f"  {name:<14} {store.status(name, args.root):<8} {where}")
        return 0
    if not args.name:
        raise ConfigError(f"ddkit data fetch needs a dataset: {', '.join(store.REMOTES.names())}")
    log = (lambda _msg: None) if args.quiet else print
    if args.source:
        folder = store.install(args.name, args.source, args.root, log=log)
    else:
        mirrors = tuple(args.mirror) if args.mirror else None
        folder = store.download(args.name, args.root, mirrors=mirrors, log=log)
    print(f"{args.name}: ready in {folder} (checksums verified)")
    return 0


register_command(Command("data", HELP, add_arguments, run, describe=False))
