"""Run a benchmark suite: distil, evaluate, record accuracy, time and peak memory; write the
suite's Markdown table.

Each (dataset, IPC, method) cell is a few units of work (distil, then one per evaluation
network: :mod:`ddkit.bench.cells`), each in a fresh child process so its peak resident memory is
its own; a unit's process exits when the runner does, however the runner ends (a killed runner
leaves no unit writing behind it). Rows are added to the suite's results file as cells finish
(:mod:`ddkit.bench.results`); re-running skips finished cells and units and resumes an
interrupted distillation.

The suite's cells and the check of a run's selection moved to :mod:`ddkit.bench.selection`; the
Markdown table and page (:func:`markdown_table`, :func:`write_markdown`, :func:`suite_page`,
:func:`estimate_seconds`) to :mod:`ddkit.bench.markdown`. Both are still importable from here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddkit.bench.cells import (
    Cell,
    run_unit,
)
from ddkit.bench.markdown import (
    TOPIC_PAGES,  # noqa: F401  (still importable from here)
    estimate_seconds,  # noqa: F401  (still importable from here)
    markdown_table,  # noqa: F401  (still importable from here)
    suite_page,  # noqa: F401  (still importable from here)
    write_markdown,
)
from ddkit.bench.results import (
    claim_unit,
    finish_unit,
    mark_rerun,
    read_results,
    release_unit,
    results_lock,
    write_results,
)
from ddkit.bench.selection import CellSelection
from ddkit.bench.suites import SUITES, Suite
from ddkit.claims import command_key, hold_folder
from ddkit.errors import ConfigError


def run_suite(
    suite: str | Suite,
    *,
    results_dir: str | os.PathLike = "benchmarks/results",
    markdown: str | os.PathLike | None = "BENCHMARKS.md",
    seed: int = 0,
    select: CellSelection | None = None,
    fresh: bool = False,
    rerun: bool = False,
    device: str = "cpu",
    log=print,
) -> list[dict[str, Any]]:
    """Run ``suite`` (a :class:`Suite` or a registered name); returns all result rows (also
    written to JSON and Markdown). Finished cells in the results file are kept (resume), and so
    are the finished units of an interrupted cell (:mod:`ddkit.bench.cells`). Several processes
    can run one suite at once: each takes the units nobody else runs (:mod:`ddkit.bench.results`).
    ``select``: the cells to run (:class:`~ddkit.bench.selection.CellSelection`; default: all).
    ``rerun`` runs the selected finished cells again (after a preset changed, say); each old row
    stays until its cell's new run finishes. ``device``: where the units compute (a row records
    any device other than the CPU, and the table names it).
    """
    from ddkit.methods.config import check_device

    check_device(device)
    suite = suite if isinstance(suite, Suite) else SUITES.get(suite)
    select = select or CellSelection()
    select.check(suite)
    if Path(results_dir).exists() and not Path(results_dir).is_dir():
        raise ConfigError(
            f"results folder {str(results_dir)!r} is a file; give a folder (the suite's results "
            f"go to FOLDER/{suite.name}.json)"
        )
    path = Path(results_dir) / f"{suite.name}.json"
    # one command at a time on the suite's cells; processes of the same command share them
    key = command_key({"suite": suite.name, "seed": seed})
    cells_dir = Path(results_dir) / f"{suite.name}-cells"
    with hold_folder(cells_dir, "bench folder", key, shared=not fresh, option="--results"):
        if fresh:
            with results_lock(path):
                write_results(path, {"suite": suite.name, "rows": []})
            _empty(cells_dir)
        todo = select.cells(suite)
        if rerun:
            mark_rerun(path, suite, todo)
        for cell in mark_rerun(path, suite, todo, stale_only=True):
            log(
                f"[bench {suite.name}] {cell.label}: its row ran with method options the suite no "
                "longer sets; every seed runs again (the row stays until then)"
            )
        with signals_interrupt():
            for cell in todo:
                while (claim := claim_unit(path, suite, cell, seed)) is not None:
                    row = _run_claimed(path, suite, cell, *claim, seed, log, device)
                    if row is not None:
                        _log_row(row, log)
                        break
    data = read_results(path, suite)
    if markdown:
        write_markdown(Path(markdown), suite, data, results_dir)
    return data["rows"]


def _empty(folder: Path) -> None:
    """Remove what ``folder`` holds but the holder files of the processes that hold it."""
    for p in folder.iterdir():
        if not p.name.startswith(".held-"):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _run_claimed(
    path: Path,
    suite: Suite,
    cell: Cell,
    unit: str,
    folder: Path,
    seed: int,
    log: Callable[[str], Any],
    device: str = "cpu",
) -> dict[str, Any] | None:
    """Run a claimed unit in a fresh child process (its peak memory is its own); release it."""
    log(f"[bench {suite.name}] {cell.label}: {unit} ...")
    try:
        error = run_in_child(run_unit, cell, unit, suite, seed, folder, device)
    except BaseException:  # interrupted: the unit is released unfinished, to run next time
        release_unit(path, suite, cell, unit)
        raise
    return finish_unit(path, suite, cell, unit, seed, error)


#: seconds a stopped unit's process gets to end on SIGTERM before it is killed
STOP_GRACE = 3.0


def run_in_child(fn: Callable[..., Any], *args: Any) -> str | None:
    """Call ``fn(*args)`` in a fresh (spawned) child process and wait for it; return ``None``
    when it returned, else its error as one line (a failing method is recorded, not hidden).
    Interrupted (Ctrl-C, SIGTERM: see :func:`signals_interrupt`), the child is stopped at once
    -- SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds -- and the interrupt goes on;
    units write atomically and resume from their checkpoints, so nothing finished is lost."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(send, os.getpid(), fn, args))
    child.start()
    send.close()
    try:
        try:
            outcome = receive.recv()
        except EOFError:  # it died without a word (killed, out of memory)
            child.join()
            return f"the unit's process ended with exit code {child.exitcode}"
        child.join()
        if outcome == "interrupted":
            raise KeyboardInterrupt
        return outcome
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
            child.join(STOP_GRACE)
            if child.is_alive():
                child.kill()
                child.join()


def _child_main(send: Any, parent: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        exit_with_parent(parent, fn, *args)
        outcome = None
    except KeyboardInterrupt:
        outcome = "interrupted"
    except Exception as e:
        outcome = f"{type(e).__name__}: {e}"
    send.send(outcome)
    send.close()


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM interrupts as Ctrl-C does (:class:`KeyboardInterrupt`), so a
    stopped runner stops its unit and releases its claim (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_with_parent(parent: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` in a child process that ends itself as soon as ``parent`` (its
    parent's PID) is gone, so a runner stopped by any signal, SIGKILL included, leaves no unit
    running. Safe for units: they write their files atomically and resume from checkpoints."""
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    return fn(*args)


def _exit_when_orphaned(parent: int, every: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _log_row(row: dict[str, Any], log: Callable[[str], Any]) -> None:
    if "error" in row:
        log(f"    FAILED: {row['error']}")
    else:
        log(
            f"    {100 * row['mean']:.2f} ± {100 * row['std']:.2f}  distill "
            f"{row['distill_seconds']:.1f}s eval {row['eval_seconds']:.1f}s"
        )
