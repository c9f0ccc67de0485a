"""``ddkit resample``: draw any number of images per class from a set that stores a generator."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddkit.commands import Command, add_common, register_command
from ddkit.errors import ConfigError


def add_resample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="run folder or synthetic-set folder of a `dim` run")
    parser.add_argument("--per-class", type=int, required=True, help="images per class to draw")
    parser.add_argument("--to", required=True, help="output synthetic-set folder")
    add_common(parser, "seed")


def run_resample(args: argparse.Namespace) -> int:
    from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path
    from ddkit.methods.generative.dim import resample

    out = Path(args.to)
    if out.exists():
        raise ConfigError(f"{str(out)!r} already exists; choose another --to or remove it")
    syn = resample(SyntheticSet.load(resolve_synthetic_path(args.path)), args.per_class, args.seed)
    syn.save(out)
    print(
        f"wrote {out} ({len(syn)} images, {args.per_class} per class, sampled with seed "
        f"{args.seed}; stored bytes unchanged: {syn.storage_bytes()['total']:,})"
    )
    return 0


register_command(
    Command(
        "resample",
        "draw any number of images per class from a set that stores a generator",
        add_resample_arguments,
        run_resample,
    )
)
