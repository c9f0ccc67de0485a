"""The data-at-scale page's measurement tables (docs/benchmarks/data-at-scale.md, issues 68 and
82), rendered by ``benchmarks/scale/scale_table.py`` (which also prints them) from
``benchmarks/results/scale/``."""

from __future__ import annotations

from collections.abc import Callable

from _campaigns import _script

_scale = _script("scale", "scale_table")


def _joined(table: Callable[[], list[str]]) -> Callable[[], str]:
    return lambda: "\n".join(table())


TABLES = {
    "scale:dm-memory": _joined(_scale.dm_table),
    "scale:load-memory": _joined(_scale.load_table),
    "scale:commands": _joined(_scale.commands_table),
    "scale:decode": _joined(_scale.decode_table),
    "scale:stream-equivalence": _joined(_scale.equivalence_table),
    "scale:step-seconds": _joined(_scale.step_table),
}
