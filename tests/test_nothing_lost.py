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
    from ddkit.eval.teacher import save_teacher, train_teacher
    from ddkit.models import create_model

    net = create_model("convnet1-w8", num_classes=10, in_channels=1, image_size=8)
    meta = {"model": "convnet1-w8", "spec": tiny_digits().spec.to_dict()}
    with pytest.raises(ConfigError, match="is not a teacher folder"):
        save_teacher(net, _others(tmp_path / "t"), meta)
    with pytest.raises(ConfigError, match="is not a teacher folder"):  # before any training
        train_teacher(tiny_digits().train, "convnet1-w8", epochs=1, out_dir=tmp_path / "t")
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
