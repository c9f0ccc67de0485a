"""What the cells of a ``ddkit bench`` run left to do will cost here (``ddkit bench --dry-run``).

Every unit a cell still has to run is estimated by the estimators of its own kind, on this
machine: a distillation by :func:`ddkit.runs.estimate_distill` (the method's set-up and a
warm-up of its real schedule), an evaluation network by
:func:`ddkit.eval.estimate.estimate_evaluation` (a warm-up of one network on a set of the cell's
size: random real images of its IPC, the kept rows' count of a pruning cell, or the full
training split); plus, for each unit, the start of the child process it runs in (importing
ddkit, loading the dataset), timed once per dataset.
Pruning cells' scoring is not estimated (it is said so). Nothing is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddkit.bench.cells import (
    DISTILL,
    Cell,
    cell_folder,
    eval_epochs,
    finished_units,
    unit_seed,
    units,
)
from ddkit.bench.results import finished_cells, read_results
from ddkit.bench.suites import Suite
from ddkit.progress import clock


@dataclass(frozen=True)
class CellEstimate:
    """One cell's left units and their estimated seconds (``None``: not estimated)."""

    cell: Cell
    distill_units: int
    eval_units: int
    distill_seconds: float | None
    eval_seconds: float
    start_seconds: float

    @property
    def total_seconds(self) -> float:
        return (self.distill_seconds or 0.0) + self.eval_seconds + self.start_seconds

    def line(self) -> str:
        distill = (
            "" if not self.distill_units
            else f"{self.distill_units} distillation(s) "
            + ("(scoring not estimated)" if self.distill_seconds is None
               else f"{clock(self.distill_seconds)}") + ", "
        )  # fmt: skip
        return (
            f"{self.cell.label}: {distill}{self.eval_units} evaluation network(s) "
            f"{clock(self.eval_seconds)}, {self.distill_units + self.eval_units} process "
            f"start(s) {clock(self.start_seconds)} = about {clock(self.total_seconds)}"
        )


def _unit_start(dataset: str) -> None:
    """What every unit's child process does before its work: import ddkit's registries and
    load the cell's dataset."""
    from ddkit.data import load_dataset
    from ddkit.methods import load_all

    load_all()
    load_dataset(dataset)


def process_start_seconds(dataset: str = "digits") -> float:
    """Seconds a unit's child process takes to start, import ddkit and load ``dataset``,
    timed once here the way units run (:func:`ddkit.bench.runner.run_in_child`)."""
    from ddkit.bench.runner import run_in_child

    t0 = time.perf_counter()
    run_in_child(_unit_start, dataset)
    return time.perf_counter() - t0


def estimate_cells(
    suite: Suite,
    todo: list[Cell],
    results_dir: Path,
    *,
    seed: int = 0,
    device: str = "cpu",
) -> list[CellEstimate]:
    """The estimate of every cell of ``todo`` not finished in ``results_dir``, counting only
    its units not finished yet (an interrupted cell's kept units cost nothing)."""
    path = results_dir / f"{suite.name}.json"
    done = finished_cells(read_results(path, suite), suite) if path.exists() else set()
    from ddkit.data import load_dataset

    starts: dict[str, float] = {}
    splits: dict[str, Any] = {}  # each dataset loaded once, for every cell of it
    out = []
    for cell in todo:
        if cell in done:
            continue
        kept = finished_units(cell_folder(results_dir, suite, cell), suite, cell)
        left = [u for u in units(suite, cell) if u not in kept]
        distills = sum(1 for u in left if unit_seed(u)[1] == DISTILL)
        evals = len(left) - distills
        if cell.dataset not in starts:
            starts[cell.dataset] = process_start_seconds(cell.dataset)
            splits[cell.dataset] = load_dataset(cell.dataset)
        data = splits[cell.dataset]
        one = _distill_seconds(suite, cell, data, seed, device) if distills else 0.0
        network = _network_seconds(suite, cell, data, seed, device) if evals else 0.0
        distill_seconds = None if one is None else one * distills
        start = starts[cell.dataset] * (distills + evals)
        out.append(CellEstimate(cell, distills, evals, distill_seconds, network * evals, start))
    return out


def _distill_seconds(suite: Suite, cell: Cell, splits: Any, seed: int, device: str) -> float | None:
    """One distillation of ``cell``; ``None`` for a pruning cell (its scoring is not timed)."""
    if cell.keep:
        return None
    from ddkit.methods import create_method
    from ddkit.runs import estimate_distill

    options = suite.options_for(cell.method, cell.ipc)
    default = create_method(cell.method, dataset=cell.dataset, ipc=cell.ipc, **options)
    iterations = suite.budget(cell.method, cell.ipc, default.config.iterations, cell.dataset)
    cost = estimate_distill(
        dataset=cell.dataset, method=cell.method, ipc=cell.ipc, iterations=iterations, seed=seed,
        options=options, splits=splits, device=None if device == "cpu" else device,
    )  # fmt: skip
    return cost.total_seconds


def _network_seconds(suite: Suite, cell: Cell, splits: Any, seed: int, device: str) -> float:
    """One evaluation network of ``cell``, trained on a set of the cell's size."""
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.eval.estimate import estimate_evaluation
    from ddkit.methods import create_method

    if cell.full:
        syn = SyntheticSet.from_real(splits.train)
    elif cell.keep:
        g = torch.Generator().manual_seed(seed)
        kept = max(1, len(splits.train) * cell.keep // 100)
        syn = SyntheticSet.from_real(
            splits.train, torch.randperm(len(splits.train), generator=g)[:kept]
        )
    else:
        syn = create_method("random").fit(splits.train, cell.ipc, seed=seed, progress=False)
    model = suite.models.get(cell.dataset)
    est = estimate_evaluation(
        syn, splits.test, suite.protocol, models=[model] if model else None, runs=1,
        epochs=eval_epochs(suite, cell), seed=seed, device=device,
    )  # fmt: skip
    return est.total_seconds


def summary_line(estimates: list[CellEstimate]) -> str:
    """The whole run's estimate in one line."""
    total = sum(e.total_seconds for e in estimates)
    unestimated = sum(1 for e in estimates if e.distill_units and e.distill_seconds is None)
    note = f" ({unestimated} pruning cell(s)' scoring not estimated)" if unestimated else ""
    return (
        f"{len(estimates)} cell(s) left: about {clock(total)} on this machine, one unit after "
        f"another (measured by warm-ups){note}; nothing written"
    )
