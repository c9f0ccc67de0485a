"""``ddkit bench --dry-run``: each cell's left units estimated by warm-ups of their kind, the
finished ones skipped, nothing written (issue 70)."""

from __future__ import annotations

import pytest

import ddkit.bench.estimate as bench_estimate
import ddkit.eval.estimate as eval_estimate
import ddkit.runs as runs
from ddkit.bench.estimate import estimate_cells, summary_line
from ddkit.bench.results import write_results
from ddkit.bench.selection import cells, selected_cells
from ddkit.bench.suites import Suite
from ddkit.cli import main


@pytest.fixture(autouse=True)
def _quick_warmups(monkeypatch):
    monkeypatch.setattr(eval_estimate, "WARMUP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(runs, "WARMUP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(bench_estimate, "process_start_seconds", lambda _dataset: 1.5)


def _suite(name: str) -> Suite:
    return Suite(name=name, datasets=("digits",), ipcs=(1, 2), protocol="smoke", runs=2,
                 methods=("random", "dm"), full_data=False, models={"digits": "convnet2-w8"},
                 iterations={"dm": 2})  # fmt: skip


def test_every_left_unit_is_counted_and_a_finished_cell_skipped(tmp_path):
    suite = _suite("pytest-estimate")
    todo = selected_cells(suite, only=["random", "dm"], ipcs=[1])
    assert [c.label for c in todo] == [c.label for c in cells(suite) if c.ipc == 1]
    first = estimate_cells(suite, todo, tmp_path)
    assert [(e.cell.method, e.distill_units, e.eval_units) for e in first] == [
        ("random", 1, 2),
        ("dm", 1, 2),
    ]
    for e in first:
        assert e.start_seconds == 1.5 * 3 and e.eval_seconds > 0 and e.distill_seconds >= 0
        assert e.total_seconds == pytest.approx(e.distill_seconds + e.eval_seconds + 4.5)
    assert list(tmp_path.iterdir()) == []  # nothing written
    row = {"dataset": "digits", "method": "random", "ipc": 1, "seed": 0, "accuracies": [0.5],
           "mean": 0.5, "std": 0.0, "options": {}}  # fmt: skip
    write_results(tmp_path / f"{suite.name}.json", {"suite": suite.name, "rows": [row]})
    after = estimate_cells(suite, todo, tmp_path)
    assert [e.cell.method for e in after] == ["dm"]  # the finished random cell costs nothing
    assert summary_line(after).startswith("1 cell(s) left: about ")


def test_ddkit_bench_dry_run_prints_each_cell_and_writes_nothing(tmp_path, capsys):
    args = ["bench", "--suite", "quick", "--methods", "random", "--ipcs", "1"]
    assert main([*args, "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("digits IPC 1 random: 1 distillation(s)")
    assert "cell(s) left: about" in out[-1] and "nothing written" in out[-1]
    assert not (tmp_path / "r").exists()


def test_a_units_start_is_timed_in_a_child_process_as_units_run():
    from ddkit.bench.runner import run_in_child

    assert run_in_child(bench_estimate._unit_start, "digits") is None  # None: it succeeded
