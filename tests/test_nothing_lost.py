"""Outputs never replace what ddkit did not write (issue 75): a folder of other files, the
working folder, a device, a FIFO. Each case failed before the fix: ``ddkit prune --out DIR``
deleted whatever DIR held, and an atomic ``--out FILE`` replaced a device node or FIFO."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from ddkit.cli import main
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.io import atomic_write_json
from ddkit.testing import tiny_digits


def _set() -> SyntheticSet:
    train = tiny_digits().train
    return SyntheticSet.from_real(train, torch.arange(4))


def _others(folder: Path) -> Path:
    """A folder holding a user's own files."""
    (folder / "notes").mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "notes" / "a.txt").write_text("more")
    return folder


def _intact(folder: Path) -> bool:
    return (folder / "thesis.tex").read_text() == "years of work" and (
        folder / "notes" / "a.txt"
    ).is_file()


def test_prune_refuses_a_folder_of_other_files_and_keeps_them(tmp_path, capsys):
    out = _others(tmp_path / "mine")
    argv = ["prune", "--dataset", "digits", "--score", "el2n", "--keep", "0.1", "--epochs", "1",
            "--seeds", "1", "--model", "convnet1-w8", "--cache", str(tmp_path / "scores")]  # fmt: skip
    assert main([*argv, "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not empty and is not a saved set" in err[0]
    assert _intact(out) and sorted(p.name for p in out.iterdir()) == ["notes", "thesis.tex"]
    assert main([*argv, "--out", str(tmp_path / "kept")]) == 0  # a new folder: written
    assert main([*argv, "--out", str(tmp_path / "kept"), "--seed", "1"]) == 0  # its own: again
    assert SyntheticSet.load(tmp_path / "kept").meta


def test_a_set_is_never_saved_over_the_working_folder_or_a_file(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(ConfigError, match="holds the working folder"):
        _set().save(".")
    with pytest.raises(ConfigError, match="holds the working folder"):
        _set().save(tmp_path)  # a folder that holds the working one
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        _set().save(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x" and here.is_dir()


def test_teachers_and_hf_exports_replace_only_their_own_folders(tmp_path):
    from ddkit.eval.teacher import TeacherRecipe, save_teacher, train_teacher
    from ddkit.models import create_model

    net = create_model("convnet1-w8", num_classes=10, in_channels=1, image_size=8)
    meta = {"model": "convnet1-w8", "spec": tiny_digits().spec.to_dict()}
    with pytest.raises(ConfigError, match="is not a teacher folder"):
        save_teacher(net, _others(tmp_path / "t"), meta)
    with pytest.raises(ConfigError, match="is not a teacher folder"):  # before any training
        train_teacher(
            tiny_digits().train, TeacherRecipe("convnet1-w8", epochs=1), out_dir=tmp_path / "t"
        )
    assert _intact(tmp_path / "t") and not (tmp_path / "t" / "checkpoint").exists()
    save_teacher(net, tmp_path / "t2", meta)
    save_teacher(net, tmp_path / "t2", meta)  # its own folder: replaced
    with pytest.raises(ConfigError, match="is not a teacher folder"):
        save_teacher(net, _set().save(tmp_path / "s"), meta)  # a set is not a teacher


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_file_output_never_replaces_a_fifo_a_device_or_a_folder(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is a FIFO, not a regular file"):
        atomic_write_json(fifo, {"a": 1})
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(ConfigError, match="is a character device, not a regular file"):
        atomic_write_json("/dev/null", {"a": 1})
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(ConfigError, match="is a folder, not a regular file"):
        atomic_write_json(tmp_path, {"a": 1})
    atomic_write_json(tmp_path / "f.json", {"a": 1})
    atomic_write_json(tmp_path / "f.json", {"a": 2})  # a regular file: replaced
    assert (tmp_path / "f.json").read_text().strip().endswith("}")


def test_an_edited_kept_audit_unit_is_refused_not_reused(tmp_path):
    """Issue 75: an audit's kept per-set result carried no checksum, so an edited value was
    reused silently; now it is refused in one line (a unit kept before checksums is read)."""
    import json

    from ddkit.audits.base import kept_json

    path = tmp_path / "unit.json"
    value = {"auc": 0.61, "curve": [0.1, 0.2], "n": 3}
    assert kept_json(path, "k1", lambda: value) == value
    assert kept_json(path, "k1", lambda: pytest.fail("recomputed")) == value  # resumed
    kept = json.loads(path.read_text())
    kept["value"]["auc"] = 0.99
    path.write_text(json.dumps(kept))
    with pytest.raises(ConfigError, match="was edited after it was kept"):
        kept_json(path, "k1", lambda: value)
    del kept["sha256"]  # as written before checksums
    path.write_text(json.dumps(kept))
    assert kept_json(path, "k1", lambda: value)["auc"] == 0.99
    by_budget = {2: 0.5, 10: 0.7}  # int keys read back as text, in another sorted order
    assert kept_json(tmp_path / "b.json", "k2", lambda: by_budget) == by_budget
    assert kept_json(tmp_path / "b.json", "k2", lambda: pytest.fail("recomputed")) == {
        "2": 0.5,
        "10": 0.7,
    }


# ============================================================================ held output folders
def _holder(folder: Path, pid: int, command: str = "another command") -> Path:
    """A holder file of process ``pid`` in ``folder``, as :func:`ddkit.claims.hold_folder`
    writes it."""
    import json
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".held-{socket.gethostname()}-{pid}.json"
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": command}))
    return path


@pytest.fixture
def live_pid():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


AUDIT = ["audit", "adversarial", "--dataset", "digits", "--methods", "random", "--ipc", "1",
         "--no-full", "--protocol", "dc", "--runs", "1", "--epochs", "2", "--models",
         "convnet1-w8", "--epsilons", "0", "--steps", "1", "--max-test", "10", "--quiet"]  # fmt: skip


def test_a_second_audit_on_a_held_folder_is_refused_and_a_dead_holder_taken_over(
    tmp_path, capsys, live_pid, dead_pid
):
    """Issue 75: audit folders had no lock: two concurrent audits wrote units neither could
    resume. A folder a live audit holds is refused in one line, writing nothing; a holder whose
    process is gone is taken over with a notice."""
    out = tmp_path / "audit"
    held = _holder(out, live_pid)
    assert main([*AUDIT, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is in use by process {live_pid}" in err[0]
    assert sorted(p.name for p in out.iterdir()) == [held.name]
    held.unlink()
    stale = _holder(out, dead_pid)
    assert main([*AUDIT, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"took over audit folder {str(out)!r} from process {dead_pid}" in err
    assert (out / "adversarial.json").is_file() and not stale.exists()
    assert not list(out.glob(".held-*"))  # released when the audit ends


def test_processes_of_one_command_share_a_folder_others_are_refused(tmp_path, live_pid):
    """Where a command is made to share its folder (privacy's networks, a bench suite), a
    process of the same command joins a live holder; another command, or any second process
    where sharing is not allowed, is refused."""
    from ddkit.claims import hold_folder

    _holder(tmp_path, live_pid, "same")
    with hold_folder(tmp_path, "audit folder", "same", shared=True):
        assert len(list(tmp_path.glob(".held-*"))) == 2
    with pytest.raises(ConfigError, match=f"in use by process {live_pid} with other settings"):
        with hold_folder(tmp_path, "audit folder", "other", shared=True):
            pytest.fail("entered")
    with pytest.raises(ConfigError, match=f"in use by process {live_pid}; wait"):
        with hold_folder(tmp_path, "audit folder", "same"):
            pytest.fail("entered")
    assert len(list(tmp_path.glob(".held-*"))) == 1  # only the live holder's


def test_a_privacy_audit_from_python_holds_its_out_folder_too(tmp_path, live_pid):
    """Issue 75's locks covered the command line only: privacy_audit(out=...) from Python wrote
    into a folder another process held. Now it is refused there in one line, writing nothing."""
    from ddkit.audits.privacy import MembershipAttack, PrivacyTraining, Source, privacy_audit
    from ddkit.data import load_dataset
    from ddkit.eval.protocol import get_protocol

    held = _holder(tmp_path, live_pid)
    splits = load_dataset("digits")
    with pytest.raises(ConfigError, match=f"in use by process {live_pid} with other settings"):
        privacy_audit(splits, [Source("full")], PrivacyTraining.of(get_protocol("smoke")),
                      attack=MembershipAttack(shadows=0, pool=40), out=tmp_path)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [held.name]


@pytest.fixture
def one_cell_suite():
    from ddkit.bench.suites import SUITES, Suite

    name = "pytest-nothing-lost"
    if name not in SUITES.names():
        suite = Suite(name=name, datasets=("digits",), ipcs=(1,), protocol="smoke", runs=1,
                      methods=("random",), full_data=False, models={"digits": "convnet1-w8"})  # fmt: skip
        SUITES.add(name, suite, help="test suite")
    return name


def test_an_edited_bench_unit_is_refused_not_reused(tmp_path, one_cell_suite):
    """Issue 75: a bench cell's kept units (``eval<k>.json``, ``distill.json``) carried no
    checksum, so an edited accuracy went into the suite's row silently; now it is refused in
    one line (a unit written before checksums is read as it is)."""
    import json

    from ddkit.bench.cells import Cell, cell_row, write_unit
    from ddkit.bench.suites import SUITES
    from ddkit.errors import FileFormatError

    suite, cell = SUITES.get(one_cell_suite), Cell("digits", "random", 1)
    write_unit(tmp_path / "distill.json", {"iterations": 0, "seconds": 0.5, "num_images": 10})
    net = {"model": "convnet1-w8", "accuracy": 0.4, "train_accuracy": 1.0, "seed": 7,
           "seconds": 0.1, "epochs": 2, "lr": 0.01, "num_images": 10, "storage_bytes": 640}  # fmt: skip
    write_unit(tmp_path / "eval0.json", net)
    assert cell_row(tmp_path, suite, cell, 0)["accuracies"] == [0.4]
    kept = json.loads((tmp_path / "eval0.json").read_text())
    kept["accuracy"] = 0.99
    (tmp_path / "eval0.json").write_text(json.dumps(kept))
    with pytest.raises(FileFormatError, match="eval0.json' was edited after it was written"):
        cell_row(tmp_path, suite, cell, 0)
    del kept["sha256"]  # as written before checksums
    (tmp_path / "eval0.json").write_text(json.dumps(kept))
    assert cell_row(tmp_path, suite, cell, 0)["accuracies"] == [0.99]


def test_a_bench_suite_of_another_seed_is_refused_while_one_runs(
    tmp_path, one_cell_suite, live_pid, monkeypatch
):
    """Issue 75: two ``ddkit bench`` of one suite with other seeds mixed their cells; a live
    process of another command holds the suite's cells, so this one is refused before any work;
    a process of the same command shares them, as before."""
    from ddkit.bench import runner
    from ddkit.claims import command_key

    cells = tmp_path / f"{one_cell_suite}-cells"
    _holder(cells, live_pid, command_key({"suite": one_cell_suite, "seed": 1}))
    quiet = dict(results_dir=tmp_path, markdown=None, log=lambda s: None)
    with pytest.raises(ConfigError, match=f"in use by process {live_pid} with other settings"):
        runner.run_suite(one_cell_suite, **quiet)
    with pytest.raises(ConfigError, match=f"in use by process {live_pid}; wait"):  # --fresh: alone
        runner.run_suite(one_cell_suite, seed=1, fresh=True, **quiet)
    assert (
        len(list(cells.iterdir())) == 1
    )  # the holder's file alone: nothing written, nothing wiped
    # the same command: it joins
    monkeypatch.setattr(runner.CellSelection, "cells", lambda self, suite: [])
    assert runner.run_suite(one_cell_suite, seed=1, **quiet) == []
    assert len(list(cells.iterdir())) == 1


def test_an_edited_app_row_is_refused_and_a_held_app_folder_too(tmp_path, capsys, live_pid):
    """Issue 75: ``ddkit app continual`` reused a kept row with the same settings even when its
    values were edited, and app folders had no lock; now an edited row is refused in one line,
    and a folder another live command holds too."""
    import json

    out = tmp_path / "cl"
    argv = ["app", "continual", "--methods", "random", "--steps", "2", "--memory", "1",
            "--protocol", "smoke", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    kept = json.loads((out / "continual.json").read_text())
    assert "sha256" in kept["results"][0]
    capsys.readouterr()
    assert main(argv) == 0 and "random: kept from" in capsys.readouterr().out  # resumed
    kept["results"][0]["mean_curve"][0] = 0.99
    (out / "continual.json").write_text(json.dumps(kept))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was edited after it was kept" in err[0]
    assert json.loads((out / "continual.json").read_text()) == kept  # left as it was
    (out / "continual.json").unlink()
    _holder(out, live_pid)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"output folder {str(out)!r} is in use by process {live_pid}" in err[0]
    assert not (out / "continual.json").exists()
