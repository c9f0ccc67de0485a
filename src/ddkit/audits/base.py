"""The audit contract: a registered class with a name, one line of help, its CLI arguments and
its run; the results are JSON with the seeds, runs and budgets that produced them."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path
from typing import Any, ClassVar

from ddkit.registry import Registry


class Audit:
    """One trust audit. Subclasses set ``name`` and ``help`` and implement
    :meth:`add_arguments` (the options of ``ddkit audit NAME``) and :meth:`run` (the command:
    validates its options in one line each, writes its JSON and plot, returns the exit code).
    The measuring itself is a plain function of the audit's module, usable from Python."""

    name: ClassVar[str] = "audit"
    help: ClassVar[str] = ""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise NotImplementedError


AUDITS: Registry[Any] = Registry("audit")


def register_audit(cls: type[Audit]) -> type[Audit]:
    """Class decorator: register an audit under its ``name``."""
    AUDITS.add(cls.name, cls, help=cls.help)
    return cls


def load_all() -> None:
    """Import every module of :mod:`ddkit.audits`, so that each registers its audit."""
    folder = str(Path(__file__).parent)
    for info in pkgutil.walk_packages([folder], prefix="ddkit.audits."):
        importlib.import_module(info.name)
