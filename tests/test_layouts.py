"""The ImageNet family's folder layouts (issue 68), each read from a fabricated miniature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.data import load_dataset
from ddkit.data.layouts import read_imagenet, read_tiny_imagenet
from ddkit.errors import DataError

WNIDS = ["n02", "n01", "n03"]  # not in sorted order: classes are sorted by wnid


def _jpeg(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _value(wnid: str) -> int:
    return 40 * (sorted(WNIDS).index(wnid) + 1)


def _tiny(root: Path) -> Path:
    """Tiny-ImageNet's layout: wnids.txt, train/<wnid>/images/, val/images + annotations."""
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    lines = []
    for w in WNIDS:
        for i in range(3):
            _jpeg(root / "train" / w / "images" / f"{w}_{i}.JPEG", _value(w))
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(2):
            name = f"val_{w}_{i}.JPEG"
            _jpeg(root / "val" / "images" / name, _value(w))
            lines.append(f"{name}\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def _labels_follow_pixels(splits) -> None:
    for split in (splits.train, splits.test):
        mean = split.images.flatten(1).mean(1)
        for c in range(3):  # one pixel value per class: the labels were read with the images
            assert len(set(mean[split.labels == c].round(decimals=4).tolist())) == 1


def test_tiny_imagenet_layout_reads_train_and_the_annotated_val(tmp_path, monkeypatch):
    root = _tiny(tmp_path / "tiny-imagenet-200")
    raw = read_tiny_imagenet(tmp_path)  # the archive's folder is found below root
    assert raw.class_names == sorted(WNIDS) and raw.num_classes == 3
    assert raw.train_images.shape == (9, 3, 8, 8) and raw.test_images.shape == (6, 3, 8, 8)
    assert raw.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [int(x[0, 0, 0]) for x in raw.test_images[::2]] == [40, 80, 120]
    splits = load_dataset("tinyimagenet", root=str(root))
    assert splits.spec.num_classes == 3 and len(splits.test) == 6
    _labels_follow_pixels(splits)


def test_tiny_imagenet_refuses_a_broken_layout_in_one_line(tmp_path):
    root = _tiny(tmp_path / "t")
    notes = root / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + "val_x.JPEG\tn09\t0\t0\t8\t8\n")
    with pytest.raises(DataError, match="unknown class 'n09'"):
        read_tiny_imagenet(root)
    notes.write_text("missing.JPEG\tn01\t0\t0\t8\t8\n")
    with pytest.raises(DataError, match="missing.JPEG.*is missing"):
        read_tiny_imagenet(root)
    (root / "wnids.txt").unlink()
    with pytest.raises(DataError, match="wnids.txt.*missing"):
        read_tiny_imagenet(root)


def _imagenet(root: Path, flat_val: bool) -> Path:
    for w in WNIDS:
        for i in range(2):
            _jpeg(root / "train" / w / f"{w}_{i}.JPEG", _value(w), size=10 + i)  # sizes differ
    rows = ["ImageId,PredictionString"]
    for j, w in enumerate(WNIDS):
        if flat_val:
            _jpeg(root / "val" / f"ILSVRC2012_val_{j:08d}.JPEG", _value(w))
            rows.append(f"ILSVRC2012_val_{j:08d},{w} 1 2 3 4 {w} 5 6 7 8")
        else:
            _jpeg(root / "val" / w / f"ILSVRC2012_val_{j:08d}.JPEG", _value(w))
    if flat_val:
        (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("flat_val", [True, False])
def test_imagenet_layout_with_flat_or_class_folder_val(tmp_path, flat_val):
    root = _imagenet(tmp_path / "imagenet", flat_val)
    raw = read_imagenet(root, image_size=16)
    assert raw.class_names == sorted(WNIDS)
    assert raw.train_images.shape == (6, 3, 16, 16) and raw.test_images.shape == (3, 3, 16, 16)
    assert raw.test_labels.tolist() == [0, 1, 2]
    assert [int(x[0, 8, 8]) for x in raw.test_images] == [40, 80, 120]


def test_imagenette_reads_val_as_its_test_split(tmp_path):
    root = tmp_path / "imagenette2-160"
    for w in WNIDS:
        _jpeg(root / "train" / w / "a.JPEG", _value(w), size=12)
        _jpeg(root / "val" / w / "b.JPEG", _value(w), size=12)
    splits = load_dataset("imagenette", root=str(root))
    assert splits.spec.image_size == (128, 128) and len(splits.test) == 3
    _labels_follow_pixels(splits)


def test_a_folder_of_pngs_distils_to_the_set_of_the_same_arrays_in_memory(tmp_path):
    """Tiny digits written as an image folder and read back give the in-memory dataset's
    tensors exactly, so dm, dsa and sre2l distil the same set from either with one seed."""
    from ddkit.data import ArrayExtras, from_arrays
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides, tiny_digits

    d = tiny_digits()

    def grey(split):
        return (split.images[:, 0] * split.spec.std[0] + split.spec.mean[0]).mul(255).round()

    arrays = {}
    for name, split in (("train", d.train), ("test", d.test)):
        x = grey(split).clamp(0, 255).byte().numpy()
        arrays[name] = (x, split.labels.numpy())
        for i, (img, label) in enumerate(zip(x, split.labels.tolist())):
            path = tmp_path / name / f"c{label}" / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
    folder = load_dataset("imagefolder", root=str(tmp_path))
    order = np.argsort(arrays["train"][1], kind="stable")  # the folder lists class by class
    torder = np.argsort(arrays["test"][1], kind="stable")
    memory = from_arrays(
        arrays["train"][0][order], arrays["train"][1][order],
        arrays["test"][0][torder], arrays["test"][1][torder], name="imagefolder",
        extras=ArrayExtras(class_names=[f"c{c}" for c in range(10)]),
    )  # fmt: skip
    assert folder.spec == memory.spec
    assert torch.equal(folder.train.images, memory.train.images)
    assert torch.equal(folder.test.images, memory.test.images)
    for method in ("dm", "dsa", "sre2l"):
        kw = method_test_overrides(method)
        a = create_method(method, **kw).fit(folder.train, 1, seed=0)
        b = create_method(method, **kw).fit(memory.train, 1, seed=0)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels), method


def test_decoding_a_large_folder_says_how_fast_it_goes(tmp_path, monkeypatch, capsys):
    from ddkit.data import folders

    root = _tiny(tmp_path / "t")
    monkeypatch.setattr(folders, "DECODE_PROGRESS_FROM", 10)
    read_tiny_imagenet(root)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("decoding tinyimagenet: 15/15 images (100%)")
    assert "images/s=" in lines[-1]
    monkeypatch.setattr(folders, "DECODE_PROGRESS_FROM", 16)
    read_tiny_imagenet(root)
    assert capsys.readouterr().err == ""  # a small folder reads quietly


def test_worker_processes_decode_the_same_images_and_refuse_a_broken_file_in_one_line(
    tmp_path, monkeypatch
):
    from ddkit.data import folders
    from ddkit.data.folders import decode_listing, decode_workers
    from ddkit.data.layouts import list_tiny_imagenet
    from ddkit.errors import FileFormatError

    root = _tiny(tmp_path / "t")
    listing = list_tiny_imagenet(root)
    monkeypatch.setattr(folders, "PARALLEL_DECODE_FROM", 10**9)
    alone = decode_listing(listing)
    monkeypatch.setattr(folders, "PARALLEL_DECODE_FROM", 2)
    monkeypatch.setattr(folders, "DECODE_PIECE", 2)
    assert decode_workers(listing.total) >= 1
    together = decode_listing(listing)
    for a, b in (
        (alone.train_images, together.train_images),
        (alone.test_labels, together.test_labels),
    ):
        assert np.array_equal(a, b)
    # a file whose header reads but whose pixels do not: refused by a worker, in one line
    broken = root / "train" / "n02" / "images" / "n02_1.JPEG"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)).save(
        broken, format="JPEG"
    )
    data = broken.read_bytes()
    broken.write_bytes(data[:-20])  # the header reads, the pixels do not
    assert folders._open_header(broken)[1] == (8, 8)
    with pytest.raises(FileFormatError, match="n02_1.JPEG: cannot read image") as err:
        decode_listing(list_tiny_imagenet(root))
    assert "\n" not in str(err.value)
