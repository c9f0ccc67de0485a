"""Reliability audit (issue 83), run folders and what commands are given: no ``--out`` writes
over a saved set, a run's own files or a file ddkit did not write; stored label codecs and
regeneration boxes that cannot be right, an lgm that cannot fit or does not match the data, a
recipe whose digest was deleted, and option values (device, class count, a learning rate) that
cannot be used are each refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddkit.cli import main
from ddkit.data.synthetic import SyntheticSet

DDKIT = [sys.executable, "-m", "ddkit"]
RANDOM_RUN = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]

# one-epoch evaluations only check where the report goes
pytestmark = pytest.mark.filterwarnings("ignore:.*under-trained:UserWarning")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _ddkit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``ddkit ARGS`` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*DDKIT, *args], cwd=cwd, capture_output=True, text=True, env=env)


def _refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """The command ended with exit code 2 and one error line holding ``words``."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("ddkit: error")]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``ddkit distill`` run folder (``run/``, its set in ``run/synthetic``)."""
    where = tmp_path_factory.mktemp("runs")
    assert main([*RANDOM_RUN, "--out", str(where / "run")]) == 0
    return where


@pytest.mark.parametrize(
    "command, out, words",
    [
        (["evaluate", "run", "--protocol", "smoke"], "run/synthetic/meta.json", ["saved set"]),
        (["evaluate", "run", "--protocol", "smoke"], "run/synthetic", ["saved set", "not a file"]),
        (["evaluate", "run", "--protocol", "smoke"], "run/config.json", ["run folder"]),
        (["evaluate", "run", "--protocol", "smoke"], "run", ["run folder", "not a file"]),
        (["report", "run"], "run/synthetic/data.safetensors", ["saved set"]),
        (["report", "run"], "run/synthetic", ["saved set"]),  # a folder: the page goes inside
        (["report", "run"], "run/config.json", ["run folder"]),
        (["plot", "curve", "run"], "run/log.jsonl", ["run folder"]),
        (RANDOM_RUN, "run/synthetic", ["saved set"]),
        (RANDOM_RUN, "run/synthetic/inner", ["saved set"]),
        (RANDOM_RUN, "run/checkpoint", ["run folder"]),
        (["teacher", "--epochs", "1"], "run", ["run folder"]),
    ],
)
def test_no_out_writes_over_a_saved_set_or_a_runs_own_files(run_folder, command, out, words):
    before = _files(run_folder)
    done = _ddkit([*command, "--out", out], cwd=run_folder)
    _refused(done, f"'{out}", "--out", *words)
    assert _files(run_folder) == before
    SyntheticSet.load(run_folder / "run" / "synthetic")  # still loads


def test_a_report_replaces_only_a_report_ddkit_wrote_and_goes_to_new_folders(run_folder, tmp_path):
    args = ["evaluate", str(run_folder / "run"), "--protocol", "smoke", "--runs", "1", "--quiet"]
    report = tmp_path / "new" / "eval.json"
    assert main([*args, "--out", str(report)]) == 0 and report.is_file()  # a new folder
    assert main([*args, "--out", str(report)]) == 0  # its own report, replaced
    page = tmp_path / "page.html"
    assert main(["report", str(report), "--out", str(page)]) == 0
    assert main(["report", str(report), "--out", str(page)]) == 0
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    for command in (args, ["report", str(report)], ["plot", "curve", str(run_folder / "run")]):
        done = _ddkit([*command, "--out", str(mine)], cwd=tmp_path)
        _refused(done, "exists and is not", "ddkit wrote", "--out")
        assert mine.read_text() == "my notes"


def test_distill_resumes_its_own_run_folder_but_never_nests_a_run_in_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*RANDOM_RUN, "--out", str(run)]) == 0
    assert main([*RANDOM_RUN, "--out", str(run), "--resume"]) == 0
    before = _files(run)
    assert main([*RANDOM_RUN, "--out", str(run / "inner")]) == 2
    err = capsys.readouterr().err
    assert "inside the run folder" in err and err.count("\n") == 1
    assert _files(run) == before
