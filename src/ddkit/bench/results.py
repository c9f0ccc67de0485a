"""A suite's results file, shared by every ``ddkit bench`` process working through the suite.

``<results>/<suite>.json`` holds the finished rows and, under ``running``, which process runs
which unit of which cell (:mod:`ddkit.bench.cells`). Every change is a read-modify-write under
an exclusive lock, so several processes (on the two cores of one machine, say) share the work
without overwriting each other's rows. A claim names its process and the machine's boot, so a
claim left by a killed process, or committed from another machine, is taken over.

Under ``rerun`` it lists finished cells being run again (``ddkit bench --rerun``): their units
run in ``<cell folder>.rerun`` while the old row and folder stay, and both are replaced only when
the new run finishes (the old row then moves under ``replaced``, kept for the record); a failed
re-run leaves them as they were.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddkit.bench.cells import (
    DISTILL,
    PEAK_MEASURE,
    Cell,
    cell_folder,
    cell_row,
    cell_seeds,
    eval_runs,
    finished_units,
    unit_seed,
    units,
    write_unit,
)
from ddkit.bench.suites import Suite
from ddkit.errors import FileFormatError
from ddkit.io import atomic_write_json, process_alive, read_json
from ddkit.meter import machine_info
from ddkit.plots import is_number, is_result_row, shown_row


@contextmanager
def results_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock on the results file ``path`` for a read-modify-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_results(path: Path, suite: Suite) -> dict[str, Any]:
    """The suite's results (rows, claims); a file of another shape is refused in one line."""
    data = read_json(path) if path.exists() else {"suite": suite.name, "rows": []}
    check_results_shape(data, path)
    if not isinstance(data.setdefault("running", {}), dict):
        data["running"] = {}
    return data


def check_results_shape(data: Any, path: Path) -> None:
    """Refuse, in one line naming ``path``, a results file that is no object with a list of rows."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise FileFormatError(
            f"{str(path)!r} is not a ddkit bench results file (no list of rows); move it away "
            "or pass --fresh"
        )


#: The fields that tell one machine from another in a results file's list of machines.
MACHINE_KEYS = ("cpu", "cores", "torch", "gpu")


def write_results(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically, recording this machine as the file's last writer
    (``machine``) and, once, in the list of every machine that wrote rows (``machines``)."""
    here = machine_info()
    # a file written before the list existed names its rows' machine only as its last writer
    machines = data.setdefault("machines", [data["machine"]] if data.get("machine") else [])
    data["machine"] = here
    if all(any(m.get(k) != here.get(k) for k in MACHINE_KEYS) for m in machines):
        machines.append(here)
    atomic_write_json(path, data)


def finished_cells(data: dict[str, Any], suite: Suite | None = None) -> set[Cell]:
    """The cells with a finished row; with ``suite``, only those whose row spans the
    distillation seeds the suite asks for (a cell finished with fewer runs the others)."""
    return {Cell.of_row(r) for r in data["rows"] if complete_row(r, suite)}


def row_seeds(row: dict[str, Any]) -> list[int]:
    """The distillation seeds a row's accuracies span (a row written before there were
    several: its one ``seed``)."""
    seeds = row.get("distill_seeds")
    return list(seeds) if isinstance(seeds, list) and seeds else [row.get("seed", 0)]


def complete_row(row: Any, suite: Suite | None = None) -> bool:
    """Whether ``row`` is finished (:func:`finished_row`) and, with ``suite``, spans the seeds
    the suite asks for its cell (a recorded failure always does) with the method options the
    suite sets now (:func:`stale_row`)."""
    if not finished_row(row):
        return False
    if suite is None or isinstance(row.get("error"), str):
        return True
    return len(row_seeds(row)) >= cell_seeds(suite, Cell.of_row(row)) and not stale_row(row, suite)


def stale_row(row: Any, suite: Suite) -> bool:
    """Whether a finished row ran with method options other than those ``suite`` sets for its
    cell now (the suite changed since): its cell runs again, every seed, and the row stays
    until the new one replaces it. A row that records no options (an older file) is not."""
    options = row.get("options") if is_result_row(row) else None
    if not isinstance(options, dict) or isinstance(row.get("error"), str):
        return False
    cell = Cell.of_row(row)
    return not cell.full and options != suite.options_for(cell.method, cell.ipc)


def stale_cells(data: dict[str, Any], suite: Suite, cells: list[Cell]) -> list[Cell]:
    """Those of ``cells`` whose row in the results ``data`` is stale (:func:`stale_row`)."""
    stale = {Cell.of_row(r) for r in data["rows"] if finished_row(r) and stale_row(r, suite)}
    return [c for c in cells if c in stale]


def finished_row(row: Any) -> bool:
    """Whether a results row records a finished cell: its failure (``error``), or its
    accuracies and their mean. A row that lost them, or is no row at all, is not: its cell runs
    again and the new row replaces it."""
    if not is_result_row(row):
        return False
    if isinstance(row.get("error"), str):
        return True
    accs = row.get("accuracies")
    return shown_row(row) and isinstance(accs, list) and bool(accs) and all(map(is_number, accs))


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _claimed(owner: Any) -> bool:
    """Whether a claim is held by another live process of this machine's current boot."""
    if isinstance(owner, int):  # a bare PID: a claim from this machine
        owner = {"pid": owner, "boot": _boot_id()}
    if not isinstance(owner, dict) or owner.get("boot") != _boot_id():
        return False
    pid = int(owner.get("pid", -1))
    return pid != os.getpid() and process_alive(pid)


def _key(cell: Cell, unit: str | None = None) -> str:
    key = f"{cell.dataset}/{cell.method}/{cell.ipc}" + (f"/keep{cell.keep}" if cell.keep else "")
    return key + (f"/{unit}" if unit else "")


def rerun_folder(folder: Path) -> Path:
    """Where a finished cell's re-run works until it replaces ``folder``."""
    return folder.with_name(folder.name + ".rerun")


def mark_rerun(
    path: Path, suite: Suite, cells: list[Cell], *, stale_only: bool = False
) -> list[Cell]:
    """Mark the finished ones of ``cells`` to run again (with ``stale_only``, those whose row is
    stale: :func:`stale_cells`, checked under the same lock); returns those newly marked. A
    cell already marked keeps its mark and resumes its re-run's finished units."""
    with results_lock(path):
        data = read_results(path, suite)
        if stale_only:
            cells = stale_cells(data, suite, cells)
        marks = data.setdefault("rerun", [])
        # any finished row, also one of fewer seeds than the suite asks: every seed runs again
        done = finished_cells(data)
        fresh = [c for c in cells if c in done and _key(c) not in marks]
        for cell in fresh:
            shutil.rmtree(rerun_folder(cell_folder(path.parent, suite, cell)), ignore_errors=True)
            marks.append(_key(cell))
        if fresh:
            write_results(path, data)
    return fresh


def _work_folder(path: Path, suite: Suite, cell: Cell, data: dict[str, Any]) -> tuple[Path, bool]:
    """The folder ``cell``'s units work in, and whether that is a re-run's."""
    folder = cell_folder(path.parent, suite, cell)
    rerun = _key(cell) in data.get("rerun", [])
    return (rerun_folder(folder) if rerun else folder), rerun


def claim_unit(path: Path, suite: Suite, cell: Cell, seed: int = 0) -> tuple[str, Path] | None:
    """Claim the next unit of ``cell`` that nobody has finished or runs, in the order the units
    must run, and the folder it works in; ``None`` when the cell is finished, or what is left
    of it runs elsewhere (or waits for a distillation that runs elsewhere). A cell whose units
    are all finished but whose row was never written (its last unit's process died in between)
    gets its row now."""
    with results_lock(path):
        data = read_results(path, suite)
        folder, rerun = _work_folder(path, suite, cell, data)
        if (cell in finished_cells(data, suite) and not rerun) or _claimed(
            data["running"].get(_key(cell))
        ):
            return None
        if not rerun:
            _restore_first_seed(folder, suite, cell, data)
        done = finished_units(folder, suite, cell)
        if done == set(units(suite, cell)):
            for unit in units(suite, cell):  # claims left by the process that died
                if not _claimed(data["running"].get(_key(cell, unit))):
                    data["running"].pop(_key(cell, unit), None)
            _record_row(path, suite, cell, data, seed, None)
            write_results(path, data)
            return None
        waiting: set[int] = set()  # seeds whose distillation runs elsewhere
        for unit in units(suite, cell):
            s, name = unit_seed(unit)
            if unit in done or s in waiting:
                continue
            if _claimed(data["running"].get(_key(cell, unit))):
                if name == DISTILL:
                    waiting.add(s)  # the seed's later units need its set
                continue
            data["running"][_key(cell, unit)] = {"pid": os.getpid(), "boot": _boot_id()}
            write_results(path, data)
            return unit, folder
    return None


def _restore_first_seed(folder: Path, suite: Suite, cell: Cell, data: dict[str, Any]) -> None:
    """A cell finished with one seed whose folder is gone (cells run before there were several
    seeds kept none, or it was cleaned) gets its first seed's unit files back from its row --
    each network's ``eval<k>.json``, the distillation's ``distill.json``, marked ``from_row`` --
    so that only the missing seeds run."""
    runs = eval_runs(suite, cell)
    rows = [
        r
        for r in data["rows"]
        if finished_row(r)
        and "error" not in r
        and Cell.of_row(r) == cell
        and len(row_seeds(r)) == 1
        and not stale_row(r, suite)  # another variant's seed is not this cell's first seed
    ]
    files = [folder / "distill.json", *(folder / f"eval{k}.json" for k in range(runs))]
    if (
        cell.full
        or not rows
        or len(rows[0]["accuracies"]) != runs
        or any(f.exists() for f in files)
    ):
        return
    row = rows[0]
    common = {
        "num_images": row.get("num_images"),
        "storage_bytes": row.get("storage_bytes"),
        "from_row": True,
    }
    peak = {"peak_mb": row.get("peak_distill_mb"), "peak_measure": PEAK_MEASURE}
    write_unit(
        files[0],
        {
            "iterations": row.get("iterations", 0),
            "options": row.get("options", {}),
            "seconds": row.get("distill_seconds", 0.0),
            "resumed": False,
            **(peak if peak["peak_mb"] is not None else {}),
            **common,
        },
    )
    peak = {"peak_mb": row.get("peak_total_mb"), "peak_measure": PEAK_MEASURE}
    for k, (acc, seed) in enumerate(zip(row["accuracies"], row["seeds"], strict=True)):
        net = {"model": row["model"], "accuracy": acc, "train_accuracy": None, "seed": seed}
        net |= {"seconds": row.get("eval_seconds", 0.0) / runs, "epochs": row.get("epochs")}
        net |= {"lr": row.get("lr"), "protocol": row.get("protocol")}
        write_unit(files[k + 1], {**net, **(peak if peak["peak_mb"] is not None else {}), **common})


def release_unit(path: Path, suite: Suite, cell: Cell, unit: str) -> None:
    """Drop this process's claim on an unfinished ``unit`` (an interrupted runner): it runs
    next time, resuming from what it kept."""
    with results_lock(path):
        data = read_results(path, suite)
        if data["running"].pop(_key(cell, unit), None) is not None:
            write_results(path, data)


def finish_unit(
    path: Path, suite: Suite, cell: Cell, unit: str, seed: int, error: str | None = None
) -> dict[str, Any] | None:
    """Drop this process's claim on ``unit``; when it was the cell's last, or it failed, record
    the cell's row (a failure is recorded, not hidden) and return it. A re-run's row replaces
    the old one, and its folder the old folder; a failed re-run keeps the old row and folder."""
    with results_lock(path):
        data = read_results(path, suite)
        data["running"].pop(_key(cell, unit), None)
        row = _record_row(path, suite, cell, data, seed, error)
        write_results(path, data)
        return row


def _record_row(
    path: Path, suite: Suite, cell: Cell, data: dict[str, Any], seed: int, error: str | None
) -> dict[str, Any] | None:
    """Put ``cell``'s row in ``data`` (under the results lock) when it failed or all its units
    are finished, and return it; ``None`` while units are left."""
    folder, rerun = _work_folder(path, suite, cell, data)
    row = None
    if cell not in finished_cells(data, suite) or rerun:
        if error is not None:
            row = {
                "dataset": cell.dataset,
                "method": cell.method,
                "ipc": cell.ipc or None,
                **({"keep": cell.keep} if cell.keep else {}),
                "error": error,
            }
        elif finished_units(folder, suite, cell) == set(units(suite, cell)):
            row = cell_row(folder, suite, cell, seed)
    if row is not None and rerun:
        data["rerun"].remove(_key(cell))
        if "error" in row:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            row = _replace_cell(path, suite, cell, data, row)
    elif row is not None:  # in place of a damaged row of the cell or (unless it failed)
        # the row of fewer seeds its folder still holds
        against = None if "error" in row else suite
        data["rows"] = [r for r in data["rows"] if not _damaged_row_of(r, cell, against)]
        data["rows"].append(row)
    return row


def _damaged_row_of(row: Any, cell: Cell, suite: Suite | None) -> bool:
    return is_result_row(row) and not complete_row(row, suite) and Cell.of_row(row) == cell


def _replace_cell(
    path: Path, suite: Suite, cell: Cell, data: dict[str, Any], row: dict[str, Any]
) -> dict[str, Any]:
    """Put a finished re-run's folder and row in place of the cell's old ones, which are kept
    under ``replaced``."""
    final = cell_folder(path.parent, suite, cell)
    old = final.with_name(final.name + ".replaced")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    rerun_folder(final).rename(final)
    shutil.rmtree(old, ignore_errors=True)
    row = {**row, "cell_folder": final.as_posix()}
    same = [r for r in data["rows"] if is_result_row(r) and Cell.of_row(r) == cell]
    data.setdefault("replaced", []).extend(same)
    data["rows"] = [r for r in data["rows"] if r not in same] + [row]
    return row
