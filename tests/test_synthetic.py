import json

import numpy as np
import pytest
import torch

from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import DataError, FileFormatError


@pytest.fixture
def syn(digits):
    g = torch.Generator().manual_seed(0)
    idx = digits.train.sample_per_class(3, g).flatten()
    return SyntheticSet.from_real(digits.train, idx, meta={"method": "test"})


def test_round_trip_exact(syn, tmp_path):
    syn.lr = 0.02
    syn.extras["note"] = torch.arange(4.0)
    syn.save(tmp_path / "s")
    back = SyntheticSet.load(tmp_path / "s")
    assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)
    assert back.lr == pytest.approx(0.02) and back.meta == {"method": "test"}
    assert torch.equal(back.extras["note"], torch.arange(4.0))
    assert back.spec == syn.spec and back.ipc == 3


def test_soft_labels_round_trip(syn, tmp_path):
    soft = torch.softmax(torch.randn(len(syn), 10, generator=torch.Generator().manual_seed(0)), 1)
    s = SyntheticSet(syn.images, soft, syn.spec)
    s.save(tmp_path / "s")
    back = SyntheticSet.load(tmp_path / "s")
    assert back.soft and torch.equal(back.labels, s.labels)


def test_tampered_file_is_refused(syn, tmp_path):
    syn.save(tmp_path / "s")
    f = tmp_path / "s" / "data.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="checksum"):
        SyntheticSet.load(tmp_path / "s")


def test_an_oversized_or_linked_meta_json_is_refused_before_it_is_read(syn, tmp_path, monkeypatch):
    import ddkit.data.synthetic as synthetic

    syn.save(tmp_path / "s")
    meta_path = tmp_path / "s" / "meta.json"
    monkeypatch.setattr(synthetic, "MAX_META_BYTES", meta_path.stat().st_size - 1)
    with pytest.raises(FileFormatError, match="meta.json"):
        SyntheticSet.load(tmp_path / "s")
    monkeypatch.undo()
    (tmp_path / "elsewhere.json").write_bytes(meta_path.read_bytes())
    meta_path.unlink()
    meta_path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(FileFormatError, match="symbolic link"):
        SyntheticSet.load(tmp_path / "s")


def test_truncated_and_mismatched(syn, tmp_path, digits):
    syn.save(tmp_path / "s")
    meta_path = tmp_path / "s" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["spec"]["image_size"] = [9, 9]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="does not match"):
        SyntheticSet.load(tmp_path / "s")
    meta_path.write_text("{not json")
    with pytest.raises(FileFormatError, match="corrupt JSON"):
        SyntheticSet.load(tmp_path / "s")
    with pytest.raises(FileFormatError, match="no synthetic set"):
        SyntheticSet.load(tmp_path / "missing")


def test_validation(syn):
    with pytest.raises(DataError, match="out of range"):
        SyntheticSet(syn.images, syn.labels + 10, syn.spec)
    with pytest.raises(DataError, match="NaN"):
        SyntheticSet(syn.images * float("nan"), syn.labels, syn.spec)
    with pytest.raises(DataError, match="probability"):
        SyntheticSet(syn.images, torch.ones(len(syn), 10), syn.spec)
    with pytest.raises(DataError, match="expects"):
        SyntheticSet(syn.images[:, :, :4], syn.labels, syn.spec)


def test_grid_and_folder_export(syn, tmp_path):
    from PIL import Image

    p = syn.save_grid(tmp_path / "grid.png")
    with Image.open(p) as img:
        assert img.size[1] > img.size[0] / 2  # ten rows of classes
    syn.export_folder(tmp_path / "folder")
    files = sorted((tmp_path / "folder").rglob("*.png"))
    assert len(files) == len(syn)
    # exported pixels are the de-normalised images
    with Image.open(tmp_path / "folder" / "0" / "00000.png") as img:
        first = torch.from_numpy(np.array(img)).float().flatten()
    assert torch.allclose(first / 255, syn.pixels()[0].flatten(), atol=1 / 255)


def test_storage_bytes(syn):
    b = syn.storage_bytes()
    assert b["images"] == len(syn) * 64 * 4 and b["labels"] == len(syn) * 8
    assert b["total"] == b["images"] + b["labels"]


def test_storage_counts_stored_not_decoded_images(syn):
    stored = syn.images[:, :, :4, :4].clone()
    s = SyntheticSet(
        syn.images,
        syn.labels,
        syn.spec,
        extras={"formation.stored": stored},
        meta={"formation_factor": 2},
    )
    b = s.storage_bytes()
    assert b["images"] == stored.numel() * 4 and b["extras"] == 0


# ------------------------------------------------------------------ folder swaps
def _fill(text):
    def fill(tmp):
        (tmp / "f.txt").write_text(text)

    return fill


def test_replacing_a_folder_swaps_it_whole(tmp_path):
    from ddkit.io import atomic_replace_dir

    target = tmp_path / "set"
    atomic_replace_dir(target, _fill("old"))
    ours = lambda folder: (folder / "f.txt").is_file()  # noqa: E731 - the writer's own folder
    atomic_replace_dir(target, _fill("new"), owned=ours)
    assert (target / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # nothing hidden left over


def test_a_kill_between_the_two_renames_is_undone(syn, tmp_path, monkeypatch):
    """Fault injection on the two-rename fallback: the process dies after moving the old folder
    aside; the next load (or write) puts the old folder back."""
    import os

    import ddkit.io as io

    target = tmp_path / "set"
    syn.save(target)
    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    real_replace = os.replace

    def dies_before_the_new_folder_moves_in(src, dst):
        if str(dst) == str(target):
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", dies_before_the_new_folder_moves_in)
    with pytest.raises(KeyboardInterrupt):
        SyntheticSet(syn.images + 1, syn.labels, syn.spec).save(target)
    monkeypatch.setattr(io.os, "replace", real_replace)
    assert not target.exists()  # the window the fallback has
    back = SyntheticSet.load(target)
    assert torch.equal(back.images, syn.images)


def test_export_keeps_every_class_in_its_own_folder_inside_the_export(syn, tmp_path):
    import dataclasses

    from ddkit.data.synthetic import class_folder_names

    names = ("..", "../../evil", "a/b", "same", "same", "", ".hidden", "ok", "x y", "9")
    spec = dataclasses.replace(syn.spec, class_names=names)
    out = SyntheticSet(syn.images, syn.labels, spec).export_folder(tmp_path / "export")
    folders = class_folder_names(names)
    assert len(set(folders)) == len(names)
    assert all(not f.startswith(".") and "/" not in f for f in folders)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert len(written) == len(syn) and all(p.parts[0] == "export" for p in written)
    assert sorted(p.name for p in out.iterdir()) == sorted(folders)


def test_written_files_get_the_usual_permissions(syn, tmp_path):
    import os
    import stat

    from ddkit.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        syn.save(tmp_path / "set")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "set").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "set" / "meta.json").stat().st_mode) == 0o644


def test_a_full_disk_is_one_line_and_leaves_the_old_set_whole(syn, tmp_path, monkeypatch, capsys):
    import safetensors.torch
    from safetensors import SafetensorError

    from ddkit.cli import main

    old = syn.save(tmp_path / "set")
    before = {p.name: p.read_bytes() for p in old.iterdir()}

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")  # what a full disk leaves
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError, match="No space left on device"):
        syn.save(old)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert main(["export", str(old), "--to", str(tmp_path / "copy"), "--format", "set"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no copy, no temporary


def test_as_dataset_goes_into_a_data_loader(syn):
    """Issue 70: ``as_dataset()`` is a ``torch.utils.data.Dataset`` of ``(image, hard label)``
    pairs (soft labels by their argmax) that a ``DataLoader`` batches, and still the
    ``ImageDataset`` ddkit's functions take."""
    from ddkit.data.dataset import ImageDataset

    soft = torch.nn.functional.one_hot(syn.labels, 10).float() * 0.8 + 0.02
    for s in (syn, SyntheticSet(syn.images, soft, syn.spec)):
        dataset = s.as_dataset()
        assert isinstance(dataset, torch.utils.data.Dataset) and isinstance(dataset, ImageDataset)
        assert len(dataset) == len(s) == 30
        image, label = dataset[4]
        assert torch.equal(image, s.images[4]) and int(label) == int(syn.labels[4])
        loader = torch.utils.data.DataLoader(dataset, batch_size=8)
        batches = list(loader)
        assert [len(labels) for _, labels in batches] == [8, 8, 8, 6]
        assert torch.equal(torch.cat([images for images, _ in batches]), s.images)
        assert torch.equal(torch.cat([labels for _, labels in batches]), syn.labels)
        assert dataset.class_counts == [3] * 10  # the ImageDataset side: the per-class index
