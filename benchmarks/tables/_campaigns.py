"""A script of ``benchmarks/campaigns/`` or ``benchmarks/studies/`` as a module, for the tables
whose rendering lives beside the code that writes their results files (one renderer for the
script's own printout and the page)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1]
RESULTS = BENCHMARKS / "results"


def _script(folder: str, name: str) -> ModuleType:
    """``benchmarks/<folder>/<name>.py``, imported (its folder on the path for its siblings)."""
    path = str(BENCHMARKS / folder)
    if path not in sys.path:
        sys.path.append(path)
    return importlib.import_module(name)


def campaign(name: str) -> ModuleType:
    return _script("campaigns", name)


def study(name: str) -> ModuleType:
    return _script("studies", name)


def results(*names: str) -> list[str]:
    """The paths of results files named relative to ``benchmarks/results/``."""
    return [str(RESULTS / name) for name in names]
