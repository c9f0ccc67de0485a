"""Every table of measured figures on the benchmark pages (BENCHMARKS.md, docs/benchmarks/) is
written by a registered writer from the committed results files (``benchmarks/tables/``): a
marked table that differs from its writer's output fails, and so does a table outside the
markers that ``benchmarks/tables/_unwritten.py`` does not list. Nothing is trained: the writers
only read ``benchmarks/results/``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def write():
    path = ROOT / "benchmarks" / "tables" / "write.py"
    spec = importlib.util.spec_from_file_location("benchmark_tables_write", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_every_table_on_the_benchmark_pages_is_what_its_writer_writes(write):
    found = write.problems()
    assert not found, (
        "the benchmark pages differ from their writers (python benchmarks/tables/write.py "
        "rewrites the marked tables; a new table needs a writer in benchmarks/tables/):\n"
        + "\n".join(found)
    )


def _pages(root: Path, front: str, topic: str = "") -> None:
    (root / "docs" / "benchmarks").mkdir(parents=True)
    (root / "BENCHMARKS.md").write_text(front)
    (root / "docs" / "benchmarks" / "a.md").write_text(topic)


def test_a_block_unlike_its_writer_an_unknown_marker_and_a_loose_table_are_reported(
    write, tmp_path
):
    tables = {"t": lambda: "| a |\n|---|\n| 1 |", "unused": lambda: "x"}
    _pages(
        tmp_path,
        "# B\n\n<!-- t:start -->\n| a |\n|---|\n| 2 |\n<!-- t:end -->\n",
        "<!-- u:start -->\nold\n<!-- u:end -->\n\n| pasted |\n|---|\n| 3 |\n",
    )
    found = write.problems(tmp_path, tables, unwritten={})
    assert any("BENCHMARKS.md: table 't' differs" in p for p in found)
    assert any("no writer for the marked table 'u'" in p for p in found)
    assert any("docs/benchmarks/a.md: 1 table(s) with no writer under the header '| pasted |'" in p
               for p in found)  # fmt: skip
    assert any("'unused' is registered but marked on no page" in p for p in found)
    assert len(found) == 4
    # a listed table passes; a listed table that is gone does not
    listed = {("docs/benchmarks/a.md", "| pasted |"): (1, "why")}
    assert len(write.problems(tmp_path, tables, unwritten=listed)) == 3
    gone = {**listed, ("docs/benchmarks/a.md", "| other |"): (1, "why")}
    assert any("'| other |', 1 listed" in p for p in write.problems(tmp_path, tables, gone))


def test_rewriting_replaces_only_the_marked_bodies(write):
    text = (
        "intro\n<!-- t:start -->\nold\n<!-- t:end -->\nmiddle\n<!-- t:start -->\n<!-- t:end -->\n"
    )
    new = write.rewritten(text, lambda name: f"new {name}")
    assert new == (
        "intro\n<!-- t:start -->\nnew t\n<!-- t:end -->\nmiddle\n<!-- t:start -->\nnew t\n"
        "<!-- t:end -->\n"
    )
    assert write.unmarked_tables(new + "\n| h |\n| --- |\n") == ["| h |"]


def test_every_table_module_registers_its_tables(write):
    tables = write.registry()
    assert {"summary:methods", "summary:speed", "bench:standard", "reproduction"} <= set(tables)
    assert all(callable(writer) for writer in tables.values())
