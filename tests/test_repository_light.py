"""The repository stays light and its front pages short (issue 72).

* Tracked files under ``benchmarks/results`` stay under :data:`RESULTS_LIMIT_BYTES`: finished
  cells keep their rows, figures and logs, not their saved sets (benchmarks/results/README.md).
* A finished cell's set can be regenerated from what the cell records: the pruning suite's
  ``mnist5k-random-keep2`` cell (random rows, seconds on a CPU) is selected again from its
  recorded method, kept fraction, options and seed, and must give the rows its ``meta.json``
  lists. Row indices drawn by a seeded generator do not depend on the CPU kind, so the check
  holds on every machine (float tensors would not).
* README.md and BENCHMARKS.md stay front pages; the detail lives under ``docs/``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ddkit.io import read_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_LIMIT_BYTES = 10 * 1000 * 1000
README_MAX_LINES = 250
BENCHMARKS_MAX_LINES = 400
# the cell regenerated below: its row in pruning.json, its set's meta.json in its folder
REGENERATED_CELL = ("mnist5k", "random", 2)


def _tracked(folder: Path) -> list[Path]:
    """The files git tracks under ``folder`` (skips the test outside a git checkout)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--", str(folder.relative_to(ROOT))],
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        pytest.skip(f"git ls-files failed: {out.stderr.decode(errors='replace').strip()}")
    return [ROOT / name for name in out.stdout.decode().split("\0") if name]


def test_tracked_results_stay_under_the_limit() -> None:
    files = _tracked(RESULTS)
    assert files, "git tracks no file under benchmarks/results"
    # a file staged for removal but still listed is gone from the work tree: it counts nothing
    sizes = {f: f.stat().st_size for f in files if f.is_file()}
    total = sum(sizes.values())
    largest = sorted(sizes, key=sizes.get, reverse=True)[:5]
    listing = ", ".join(f"{f.relative_to(ROOT)} ({sizes[f] / 1e6:.2f} MB)" for f in largest)
    assert total <= RESULTS_LIMIT_BYTES, (
        f"tracked files under benchmarks/results hold {total / 1e6:.2f} MB, over the "
        f"{RESULTS_LIMIT_BYTES / 1e6:.0f} MB limit; the largest: {listing}. Finished cells keep "
        "rows, figures and gzipped logs, not sets or checkpoints (benchmarks/results/README.md)"
    )


def test_no_saved_set_or_checkpoint_is_tracked_in_a_finished_cell() -> None:
    from ddkit.bench.cells import cell_folder
    from ddkit.bench.results import finished_cells, read_results
    from ddkit.bench.suites import SUITES

    tracked = {f.relative_to(ROOT).as_posix() for f in _tracked(RESULTS)}
    heavy = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem not in SUITES.names():
            continue
        suite = SUITES.get(path.stem)
        for cell in finished_cells(read_results(path, suite), suite):
            prefix = cell_folder(RESULTS, suite, cell).relative_to(ROOT).as_posix() + "/"
            heavy += [
                f
                for f in tracked
                if f.startswith(prefix) and (f.endswith(".safetensors") or "/checkpoint/" in f)
            ]
    assert not heavy, f"finished cells track sets or checkpoints: {heavy[:5]}"


def _regenerated_rows(seed: int, folder: Path) -> list[int]:
    from ddkit.bench.cells import DISTILL, Cell, run_unit
    from ddkit.bench.suites import SUITES

    dataset, method, keep = REGENERATED_CELL
    run_unit(Cell(dataset, method, 0, keep), DISTILL, SUITES.get("pruning"), seed, folder)
    return read_json(folder / DISTILL / "synthetic" / "meta.json")["provenance"]["indices"]


def test_a_finished_cells_set_is_regenerated_from_its_record(tmp_path: Path) -> None:
    from ddkit.bench.cells import DISTILL, Cell, cell_folder
    from ddkit.bench.results import read_results
    from ddkit.bench.suites import SUITES

    suite = SUITES.get("pruning")
    dataset, method, keep = REGENERATED_CELL
    cell = Cell(dataset, method, 0, keep)
    rows = [
        r
        for r in read_results(RESULTS / "pruning.json", suite)["rows"]
        if r["dataset"] == dataset and r["method"] == method and r.get("keep") == keep
    ]
    assert len(rows) == 1, "the regenerated cell's row is missing from pruning.json"
    row = rows[0]
    folder = cell_folder(RESULTS, suite, cell)
    recorded = read_json(folder / DISTILL / "synthetic" / "meta.json")["provenance"]
    # what the record says the set was made with is what the suite makes it with today
    assert (recorded["method"], recorded["keep"], recorded["seed"]) == (method, keep / 100, 0)
    assert row["options"] == recorded["options"] == suite.options_for(method, 0)
    assert row["num_images"] == len(recorded["indices"])

    rows_again = _regenerated_rows(row["seed"], tmp_path / "cell")
    assert rows_again == recorded["indices"]
    # the comparison can fail: another seed selects other rows
    assert _regenerated_rows(row["seed"] + 1, tmp_path / "other") != recorded["indices"]


def _lines(name: str) -> int:
    return len((ROOT / name).read_text().splitlines())


def test_readme_is_a_front_door() -> None:
    lines = _lines("README.md")
    assert lines <= README_MAX_LINES, (
        f"README.md is {lines} lines, over {README_MAX_LINES}: move manual content to a page "
        "under docs/ and link it"
    )


def test_benchmarks_page_is_short() -> None:
    lines = _lines("BENCHMARKS.md")
    assert lines <= BENCHMARKS_MAX_LINES, (
        f"BENCHMARKS.md is {lines} lines, over {BENCHMARKS_MAX_LINES}: move the detail to its "
        "topic page under docs/benchmarks/"
    )
