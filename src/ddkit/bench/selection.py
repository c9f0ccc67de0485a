"""The cells of a benchmark suite (:func:`cells`), a run's selection of them
(:class:`CellSelection`) and the check that it names only cells the suite has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ddkit.bench.cells import FULL, Cell
from ddkit.bench.suites import Suite
from ddkit.errors import ConfigError


def cells(suite: Suite) -> list[Cell]:
    """Every cell of ``suite``: per dataset the full-data row, each method at each IPC, and each
    pruning method at each kept percentage."""
    from ddkit.methods import METHODS, load_all

    load_all()
    methods = list(suite.methods) or METHODS.names()
    if suite.keeps:
        from ddkit.methods.coreset.pruning import check_pruning_method

        for method in suite.methods:
            check_pruning_method(method)
    out = []
    for ds in suite.datasets:
        if suite.full_data:
            out.append(Cell(ds, FULL, 0))
        for ipc in suite.ipcs:
            out.extend(Cell(ds, m, ipc) for m in methods)
        for keep in suite.keeps:
            out.extend(Cell(ds, m, 0, keep) for m in suite.methods)
    return out


def selected_cells(
    suite: Suite,
    only: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    ipcs: Sequence[int] | None = None,
    keeps: Sequence[int] | None = None,
) -> list[Cell]:
    """The cells of ``suite`` a run with these ``--methods``, ``--datasets``, ``--ipcs`` and
    ``--keeps`` covers (each ``None``: all; the full-data rows whatever the IPCs)."""
    return [
        c
        for c in cells(suite)
        if (not only or c.method in only)
        and (not datasets or c.dataset in datasets)
        and (not ipcs or c.full or c.keep or c.ipc in ipcs)
        and (not keeps or c.full or not c.keep or c.keep in keeps)
    ]


def _check_selection(
    suite: Suite,
    only: Sequence[str] | None,
    datasets: Sequence[str] | None,
    ipcs: Sequence[int] | None,
    keeps: Sequence[int] | None = None,
) -> None:
    """Refuse ``--methods``, ``--datasets``, ``--ipcs`` or ``--keeps`` values the suite does not
    have (instead of running nothing, exit 0, or, with ``--fresh``, wiping the results first)."""
    known = {c.method for c in cells(suite)} | {FULL}
    for what, asked, valid in (
        ("method", only, known),
        ("dataset", datasets, set(suite.datasets)),
        ("IPC", ipcs, set(suite.ipcs)),
        ("kept percentage", keeps, set(suite.keeps)),
    ):
        unknown = sorted(set(asked or ()) - valid)
        if unknown:
            names = ", ".join(str(v) for v in sorted(valid)) or "none (it sweeps kept fractions)"
            raise ConfigError(f"suite {suite.name!r} has no {what} {unknown[0]!r}; valid: {names}")


@dataclass(frozen=True)
class CellSelection:
    """The cells of a suite one run covers: only these ``methods`` (``"full"``: the full-data
    rows), ``datasets``, ``ipcs`` and kept percentages of a pruning sweep (``keeps``); each
    ``None`` (or empty): all of them, the full-data rows whatever the IPCs
    (``ddkit bench --methods/--datasets/--ipcs/--keeps``)."""

    methods: Sequence[str] | None = None
    datasets: Sequence[str] | None = None
    ipcs: Sequence[int] | None = None
    keeps: Sequence[int] | None = None

    def __post_init__(self) -> None:
        for name in ("methods", "datasets", "ipcs", "keeps"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else tuple(value))

    def check(self, suite: Suite) -> None:
        """Refuse names the suite does not have, in one line (:func:`_check_selection`)."""
        _check_selection(suite, self.methods, self.datasets, self.ipcs, self.keeps)

    def cells(self, suite: Suite) -> list[Cell]:
        """The cells of ``suite`` this selection covers (:func:`selected_cells`)."""
        return selected_cells(suite, self.methods, self.datasets, self.ipcs, self.keeps)
