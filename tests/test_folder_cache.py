"""The memory-mapped cache of large image folders (issue 68, ddkit.data.cache)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.data import load_dataset
from ddkit.data.byte_images import ByteImages
from ddkit.data.cache import CACHE_DIR_ENV, CACHE_MODE_ENV
from ddkit.errors import ConfigError, DataError


def _folder(root: Path, test: bool = True) -> Path:
    """3 classes x 7 train (and 2 test) RGB PNGs of 6x5 pixels, random content."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("test", 2)) if test else (("train", 7),):
        for c in range(3):
            for i in range(n):
                path = root / split / f"class{c}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(path)
    return root


def _load(root: Path, mode: str, monkeypatch, **kw):
    monkeypatch.setenv(CACHE_MODE_ENV, mode)
    return load_dataset("imagefolder", root=str(root), **kw)


@pytest.mark.parametrize("test_split", [True, False])
def test_the_cache_gives_the_in_memory_splits_bit_for_bit(tmp_path, monkeypatch, test_split):
    """The cached and the in-memory splits of one folder hold the same bits: labels, rows and
    normalised pixels, the convention test split and a validation split too; the statistics are
    equal in the float32 they are applied in (the cache sums its mean a block at a time)."""
    root = _folder(tmp_path / "data", test_split)
    memory = _load(root, "never", monkeypatch)
    cached = _load(root, "always", monkeypatch)
    assert (root / ".ddkit-cache").is_dir()
    for a, b in ((memory.train, cached.train), (memory.test, cached.test)):
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(b.images, a.images)
    assert replace(cached.spec, mean=memory.spec.mean) == memory.spec
    assert np.array_equal(np.float32(cached.spec.mean), np.float32(memory.spec.mean))
    with_val = _load(root, "always", monkeypatch, val_fraction=0.3, seed=1)
    plain_val = _load(root, "never", monkeypatch, val_fraction=0.3, seed=1)
    assert torch.equal(with_val.val.labels, plain_val.val.labels)
    assert torch.equal(with_val.val.images, plain_val.val.images)
    assert torch.equal(with_val.train.images, plain_val.train.images)


def test_a_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    from ddkit.data import folders

    root = _folder(tmp_path / "data")
    first = _load(root, "always", monkeypatch)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "_load_image", no_decoding)
    again = _load(root, "always", monkeypatch)
    assert torch.equal(again.train.images, first.train.images)
    monkeypatch.undo()
    changed = root / "train" / "class1" / "0.png"
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))
    rebuilt = _load(root, "always", monkeypatch)
    assert not torch.equal(rebuilt.train.images, first.train.images)
    assert len(list((root / ".ddkit-cache").iterdir())) == 2


def test_the_images_are_mapped_from_the_cache_not_copied(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")
    splits = _load(root, "always", monkeypatch)
    x = splits.train.images
    (npy,) = (root / ".ddkit-cache").glob("*/train.npy")
    on_disk = np.load(npy, mmap_mode="r")
    assert isinstance(x, ByteImages) and x.dtype == torch.float32  # 8-bit: kept as pixels
    assert np.array_equal(on_disk, x.pixels.numpy())
    with pytest.raises(DataError, match="cannot be written in place; write into a copy"):
        x[0, 0, 0, 0] = 123.0
    with pytest.raises(DataError, match="cannot be written in place"):
        x.mul_(2)
    before = int(on_disk[0, 0, 0, 0])
    x.pixels[0, 0, 0, 0] = (before + 1) % 256  # copy-on-write: never reaches the cache
    assert int(np.load(npy, mmap_mode="r")[0, 0, 0, 0]) == before


def test_a_folder_it_cannot_write_caches_in_the_users_cache_folder(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (root / ".ddkit-cache").write_text("")  # nothing can be written there (as for read-only)
    _load(root, "always", monkeypatch)
    assert len(list((tmp_path / "home" / ".cache" / "ddkit" / "folders").iterdir())) == 1
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    _load(root, "always", monkeypatch)
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1


def test_a_build_that_fails_leaves_no_cache_and_a_bad_mode_is_refused(tmp_path, monkeypatch):
    from ddkit.data import cache

    root = _folder(tmp_path / "data")

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_spec", killed)
    with pytest.raises(KeyboardInterrupt):
        _load(root, "always", monkeypatch)
    assert list((root / ".ddkit-cache").iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="DDKIT_FOLDER_CACHE"):
        _load(root, "sometimes", monkeypatch)


def test_a_cache_that_cannot_fit_the_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    import shutil

    from ddkit.data import cache

    root = _folder(tmp_path / "data")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: usage._replace(free=100))
    with pytest.raises(ConfigError, match=r"needs 0\.0 GiB .* 0\.0 GiB free; set \$DDKIT_DATA"):
        _load(root, "always", monkeypatch)
    assert list((root / ".ddkit-cache").iterdir()) == []


def test_dm_distils_the_same_set_from_the_cache_as_from_memory(tmp_path, monkeypatch):
    """Two dm steps from the cached and from the in-memory splits of one folder (same seed):
    the same rows are drawn from the same bits, so the sets are bit-identical."""
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides

    root = _folder(tmp_path / "data")
    kw = {**method_test_overrides("dm"), "iterations": 2, "batch_real": 4, "model": "convnet1-w8"}
    sets = [
        create_method("dm", **kw).fit(_load(root, mode, monkeypatch).train, 2, seed=0)
        for mode in ("never", "always")
    ]
    assert torch.equal(sets[1].images, sets[0].images)
    assert torch.equal(sets[1].labels, sets[0].labels)
