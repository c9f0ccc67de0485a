"""DREAM's representative real batches against random ones (docs/benchmarks/families.md): the
validation accuracy and CPU seconds at each milestone (``benchmarks/studies/dream_curve.py``'s
``markdown_table``, run by ``campaigns/dream_mnist5k.sh``; ``dream_mnist5k.json``)."""

from __future__ import annotations

import json

from _campaigns import RESULTS, study


def dream() -> str:
    rows = json.loads((RESULTS / "dream_mnist5k.json").read_text())["rows"]
    return study("dream_curve").markdown_table(rows)


TABLES = {"dream:mnist5k": dream}
