"""``ddkit list``: the registries (datasets, models, protocols, methods, ...), or a method's
defaults and presets."""

from __future__ import annotations

import argparse
from typing import Any

from ddkit.commands import COMMANDS, Command, Group, discover, register_command

HELP = "list datasets, models, methods, selectors, protocols"


def add_arguments(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("--presets", metavar="METHOD", help="a method's defaults and presets")


def run(args: argparse.Namespace) -> int:
    from ddkit.bench import SUITES
    from ddkit.data import DATASETS
    from ddkit.data.codecs import CODECS
    from ddkit.eval import PROTOCOLS
    from ddkit.eval.learners import LEARNERS
    from ddkit.methods import METHODS, load_all
    from ddkit.models import MODELS

    load_all()
    if args.presets:
        return _print_presets(METHODS.get(args.presets))
    sections = [
        ("datasets", DATASETS),
        ("models", MODELS),
        ("protocols", PROTOCOLS),
        ("learners (ddkit evaluate --learners; also the networks mlp, conv1d, resnet1d)", LEARNERS),
        ("codecs (what a set stores: --set codec=SPEC)", CODECS),
        ("suites", SUITES),
    ]
    discover()
    for name in COMMANDS.names():  # applications, audits: the members of command groups
        group = COMMANDS.get(name)
        if isinstance(group, Group):
            group.load()
            sections.append((f"{group.members.kind}s (ddkit {name} NAME)", group.members))
    for title, reg in sections:
        print(f"{title}:")
        for name in reg.names():
            print(f"  {name:<14} {reg.help(name)}")
    for title, lines in _listed_families():
        print(f"{title}:")
        for name, text in lines.items():
            print(f"  {name:<14} {text}")
    for kind in ("distiller", "selector"):
        print("methods:" if kind == "distiller" else "selectors:")
        for name in METHODS.names():
            if METHODS.get(name).kind == kind:
                print(f"  {name:<14} {METHODS.help(name)}")
    return 0


def _listed_families() -> list[tuple[str, dict[str, str]]]:
    """The name lists that are not registries: the augmentation families (the pruning scores
    are listed by ``ddkit prune --help``, the coreset family's own command)."""
    from ddkit.augment.dsa import FAMILY_HELP
    from ddkit.augment.series import SERIES_HELP

    return [
        ("augmentations (--set augment=STRATEGY: families joined by _, e.g. color_crop_cutout)",
         FAMILY_HELP),
        ("series augmentations (--set augment=series, or operations joined by _)", SERIES_HELP),
    ]  # fmt: skip


def _print_presets(cls: Any) -> int:
    """A method's defaults and its presets, each with its source."""
    print(f"{cls.name}: defaults (any dataset, any IPC)")
    for key, value in cls().config_dict().items():
        print(f"  {key} = {value!r}")
    if not cls.presets:
        print("no presets")
    for p in cls.presets:
        values = ", ".join(f"{k}={v!r}" for k, v in p.values.items())
        print(f"dataset {p.dataset}, IPC {p.ipc}: {values}\n  source: {p.source}")
    return 0


register_command(Command("list", HELP, add_arguments, run, describe=False))
