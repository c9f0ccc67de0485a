"""Tar shards in the WebDataset layout and Hugging Face datasets folders (issue 68), each
read from a fabricated miniature and compared with the same images as an image folder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.data import load_dataset
from ddkit.data.cache import BUILD_MARKER, CACHE_MODE_ENV
from ddkit.errors import ConfigError, DataError, FileFormatError

NAMES = ["cat", "dog", "emu"]


def _images() -> dict[str, list[tuple[np.ndarray, int]]]:
    """3 classes x 4 train (2 test) random 6x5 RGB images, as (pixels, class)."""
    rng = np.random.default_rng(0)
    return {
        split: [(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), c) for c in range(3)
                for _ in range(n)]
        for split, n in (("train", 4), ("test", 2))
    }  # fmt: skip


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _as_folder(root: Path) -> Path:
    for split, rows in _images().items():
        for i, (pixels, c) in enumerate(rows):
            path = root / split / NAMES[c] / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_png(pixels))
    return root


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _as_shards(root: Path, shards: int = 2) -> Path:
    for split, rows in _images().items():
        (root / split).mkdir(parents=True)
        for s in range(shards):
            with tarfile.open(root / split / f"shard-{s:04d}.tar", "w") as archive:
                part = len(rows) // shards  # contiguous runs: the folder's order
                for i, (pixels, c) in list(enumerate(rows))[s * part : (s + 1) * part]:
                    _add(archive, f"{i:06d}.png", _png(pixels))
                    _add(archive, f"{i:06d}.cls", str(c).encode())
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return root


def _same(a, b) -> None:
    assert a.spec.class_names == b.spec.class_names and a.spec.mean == b.spec.mean
    for x, y in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_webdataset_shards_read_as_the_same_images_in_a_folder(tmp_path, monkeypatch, mode):
    monkeypatch.setenv(CACHE_MODE_ENV, mode)
    shards = load_dataset("webdataset", root=str(_as_shards(tmp_path / "wds")))
    folder = load_dataset("imagefolder", root=str(_as_folder(tmp_path / "folder")))
    _same(shards, folder)


def test_webdataset_refuses_a_sample_without_its_label_and_an_empty_folder(tmp_path):
    root = tmp_path / "wds"
    root.mkdir()
    with pytest.raises(DataError, match="no .tar shards"):
        load_dataset("webdataset", root=str(root))
    with tarfile.open(root / "a.tar", "w") as archive:
        _add(archive, "x.png", _png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(DataError, match="'x' has no .cls label"):
        load_dataset("webdataset", root=str(root))
    (root / "a.tar").write_bytes(b"not a tar")
    with pytest.raises(FileFormatError, match="not a readable tar"):
        load_dataset("webdataset", root=str(root))


def _as_hf(root: Path) -> Path:
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)}
    )
    parts = {
        split: datasets.Dataset.from_dict(
            {"image": [Image.fromarray(p) for p, _ in rows], "label": [c for _, c in rows]},
            features=features,
        )
        for split, rows in _images().items()
    }
    datasets.DatasetDict(parts).save_to_disk(str(root))
    return root


@pytest.mark.parametrize("mode", ["never", "always"])
def test_a_hugging_face_folder_reads_as_the_same_images_in_a_folder(tmp_path, monkeypatch, mode):
    pytest.importorskip("datasets")
    monkeypatch.setenv(CACHE_MODE_ENV, mode)
    hf = load_dataset("hf-disk", root=str(_as_hf(tmp_path / "hf")))
    folder = load_dataset("imagefolder", root=str(_as_folder(tmp_path / "folder")))
    _same(hf, folder)


def test_a_folder_that_is_no_saved_dataset_is_refused(tmp_path):
    pytest.importorskip("datasets")
    with pytest.raises(FileFormatError, match="not a saved dataset"):
        load_dataset("hf-disk", root=str(tmp_path))


# ------------------------------------------------------------- hostile inputs (issue 73)
def test_a_cache_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path, monkeypatch):
    from ddkit.data.cache import CACHE_DIR_ENV

    root = _as_folder(tmp_path / "folder")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker / "sub"))
    monkeypatch.setenv(CACHE_MODE_ENV, "always")
    with pytest.raises(ConfigError, match="cannot make the cache folder .*DDKIT_DATA_CACHE"):
        load_dataset("imagefolder", root=str(root))


def test_a_killed_builds_leftovers_are_removed_by_the_next_build(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_MODE_ENV, "always")
    root = _as_folder(tmp_path / "folder")
    stale = root / ".ddkit-cache" / ".abc.tmp-999999999"
    (stale / "x").mkdir(parents=True)
    (stale / BUILD_MARKER).write_text("999999999")  # ddkit's build, by no running process
    load_dataset("imagefolder", root=str(root))
    assert not stale.exists()


def test_a_stray_huge_class_index_is_refused(tmp_path):
    root = _as_shards(tmp_path / "wds")
    (root / "classes.txt").unlink()
    with tarfile.open(root / "train" / "shard-0000.tar", "a") as archive:
        _add(archive, "huge.png", _png(np.zeros((6, 5, 3), np.uint8)))
        _add(archive, "huge.cls", b"1000000000")
    with pytest.raises(DataError, match="class index 1000000000 in a training split of 13"):
        load_dataset("webdataset", root=str(root))


def test_hugging_face_labels_that_are_not_class_indices_are_refused(tmp_path):
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(np.zeros((4, 4, 3), np.uint8))] * 2, "label": ["a", "b"]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}),
    )
    table.save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(DataError, match="holds 'a'; labels must be class indices"):
        load_dataset("hf-disk", root=str(tmp_path / "hf"))
