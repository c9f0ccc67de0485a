"""The suite tables (``bench:<suite>``): each suite with a results file in
``benchmarks/results/<suite>.json``, written by ``ddkit.bench.markdown.markdown_table`` -- the
function ``ddkit bench`` itself uses when a cell finishes, so both writers agree."""

from __future__ import annotations

import json
from pathlib import Path

from ddkit.bench.markdown import markdown_table
from ddkit.bench.suites import SUITES

RESULTS = Path(__file__).resolve().parents[1] / "results"


def suite_table(name: str) -> str:
    data = json.loads((RESULTS / f"{name}.json").read_text())
    return markdown_table(SUITES.get(name), data, RESULTS)


TABLES = {
    f"bench:{name}": (lambda name=name: suite_table(name))
    for name in SUITES.names()
    if (RESULTS / f"{name}.json").is_file()
}
