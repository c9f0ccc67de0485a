"""A campaign script of ``benchmarks/campaigns/`` as a module, for the tables whose rendering
lives beside the code that writes their results files (one renderer for the campaign's own
printout and the page)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
RESULTS = Path(__file__).resolve().parents[1] / "results"


def campaign(name: str) -> ModuleType:
    """``benchmarks/campaigns/<name>.py``, imported (its folder on the path for its siblings)."""
    if str(CAMPAIGNS) not in sys.path:
        sys.path.append(str(CAMPAIGNS))
    return importlib.import_module(name)


def results(*names: str) -> list[str]:
    """The paths of results files named relative to ``benchmarks/results/``."""
    return [str(RESULTS / name) for name in names]
