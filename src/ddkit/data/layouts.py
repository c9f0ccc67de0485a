"""Readers for the ImageNet family's folder layouts (issue 68): Tiny-ImageNet, ImageNet-1K and
its ImageNette / ImageWoof subsets, and the plain ``imagefolder``, read from ``--root``; nothing
is downloaded. Each registered loader returns a :class:`~ddkit.data.cache.FolderSource`, which
decodes into memory or through the memory-mapped cache.

- ``tinyimagenet`` (Le & Yang 2015; 200 classes, 64 px): ``wnids.txt``,
  ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt``
  (the held-out split the distillation papers test on; the official test split has no labels).
- ``imagenet`` (ILSVRC-2012; 1,000 classes): ``train/<wnid>/*.JPEG`` and a ``val/`` either in
  class folders or flat, labelled by ``LOC_val_solution.csv`` (``ImageId,PredictionString``
  whose first token is the wnid); images resized to 224 px, the decoupled family's size.
- ``imagenette`` / ``imagewoof`` (fast.ai's 10-class subsets): ``train/<wnid>/`` and
  ``val/<wnid>/``, resized to 128 px as in MTT's ImageNet subsets.

Class names are the wnids, sorted (the order of ``torchvision``'s ``ImageFolder`` and of the
papers' class indices). Every image, and every file an annotation names, must resolve to a
regular file under the root (:func:`~ddkit.data.paths.inside_root`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ddkit.data.builtin import RawData, register_dataset
from ddkit.data.cache import FolderSource
from ddkit.data.folders import (
    FolderListing,
    _list_classes,
    decode_listing,
    image_files,
    image_size_of,
    list_image_folder,
)
from ddkit.data.paths import inside_root, read_text_inside
from ddkit.data.readers import PathLike, _root_dir
from ddkit.errors import DataError

#: Image sizes of the registered layouts that resize (ImageNet's images differ in size).
IMAGENET_SIZE = 224
SUBSET_SIZE = 128


def _need(path: Path, dataset: str, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{dataset}: {str(path)!r} is missing ({what})")
    return path


def read_tiny_imagenet(root: PathLike, image_size: int | None = None) -> RawData:
    """Tiny-ImageNet under ``root``, decoded into memory (:func:`list_tiny_imagenet`)."""
    return decode_listing(list_tiny_imagenet(root, image_size))


def list_tiny_imagenet(root: PathLike, image_size: int | None = None) -> FolderListing:
    """Tiny-ImageNet's layout under ``root`` (or ``root/tiny-imagenet-200``): train and the
    labelled validation split as test."""
    folder = _root_dir(root, "tinyimagenet")
    if (folder / "tiny-imagenet-200").is_dir():
        folder = folder / "tiny-imagenet-200"
    wnids_file = _need(folder / "wnids.txt", "tinyimagenet", "the class list")
    wnids = sorted(set(read_text_inside(wnids_file, folder, "tinyimagenet").split()))
    if not wnids:
        raise DataError(f"tinyimagenet: {str(wnids_file)!r} lists no classes")
    train: dict[str, list[Path]] = {}
    for w in wnids:
        images = _need(folder / "train" / w / "images", "tinyimagenet", f"class {w}'s images")
        inside_root(images, folder, "tinyimagenet", folder=True)
        train[w] = image_files(images, folder, "tinyimagenet")
        if not train[w]:
            raise DataError(f"tinyimagenet: {str(images)!r} has no images")
    splits = {"train": train}
    notes = folder / "val" / "val_annotations.txt"
    if notes.exists():
        splits["test"] = _annotated(notes, folder, folder / "val" / "images", wnids, "tinyimagenet")
    return FolderListing(splits, wnids, image_size_of(image_size), "tinyimagenet", folder)


def _annotated(
    notes: Path,
    root: Path,
    images: Path,
    wnids: list[str],
    dataset: str,
    *,
    csv_header: bool = False,
) -> dict[str, list[Path]]:
    """A flat folder of ``images`` labelled by ``notes``: lines of ``file<TAB>wnid...``
    (Tiny-ImageNet) or, with ``csv_header``, ``ImageId,PredictionString`` rows (ImageNet);
    every file named must be a regular file under ``root``."""
    out: dict[str, list[Path]] = {w: [] for w in wnids}
    lines = read_text_inside(notes, root, dataset).splitlines()
    rows = csv.reader(lines) if csv_header else (line.split("\t") for line in lines)
    if csv_header:
        next(rows, None)
    for n, row in enumerate(rows, start=1):
        if not row or not row[0].strip():
            continue
        if len(row) < 2 or not row[1].split():
            raise DataError(f"{dataset}: {notes} line {n} has no class")
        name, wnid = row[0].strip(), row[1].split()[0]
        if wnid not in out:
            raise DataError(f"{dataset}: {notes} line {n} names unknown class {wnid!r}")
        path = images / (name if Path(name).suffix else f"{name}.JPEG")
        _need(path, dataset, f"named in {notes.name} line {n}")
        inside_root(path, root, dataset)
        out[wnid].append(path)
    return {w: sorted(files) for w, files in out.items() if files}


def read_imagenet(root: PathLike, image_size: int = IMAGENET_SIZE) -> RawData:
    """ImageNet-1K under ``root``, decoded into memory (:func:`list_imagenet`)."""
    return decode_listing(list_imagenet(root, image_size))


def list_imagenet(root: PathLike, image_size: int = IMAGENET_SIZE) -> FolderListing:
    """ImageNet-1K's layout under ``root``: ``train/<wnid>/`` and ``val/`` in class folders
    (as :func:`~ddkit.data.folders.list_image_folder`) or flat with ``LOC_val_solution.csv``."""
    folder = _root_dir(root, "imagenet")
    val = folder / "val"
    labels = next(
        (p for p in (folder / "LOC_val_solution.csv", val / "LOC_val_solution.csv") if p.exists()),
        None,
    )
    if labels is None or not val.is_dir() or any(p.is_dir() for p in val.iterdir()):
        return list_image_folder(folder, image_size, "imagenet")
    train = _list_classes(
        _need(folder / "train", "imagenet", "the training images"), folder, "imagenet"
    )
    wnids = list(train)
    test = _annotated(labels, folder, val, wnids, "imagenet", csv_header=True)
    splits = {"train": train, "test": test}
    return FolderListing(splits, wnids, image_size_of(image_size), "imagenet", folder)


@register_dataset("tinyimagenet", needs_root=True, help="Tiny-ImageNet (200 classes, 64 px)")
def _tinyimagenet(root: str | None) -> FolderSource:
    return FolderSource(list_tiny_imagenet(root))


@register_dataset("imagenet", needs_root=True, help="ImageNet-1K folders, resized to 224 px")
def _imagenet(root: str | None) -> FolderSource:
    return FolderSource(list_imagenet(root))


@register_dataset("imagenette", needs_root=True, help="ImageNette train/ val/, resized to 128 px")
def _imagenette(root: str | None) -> FolderSource:
    return FolderSource(list_image_folder(root, SUBSET_SIZE, "imagenette"))


@register_dataset("imagewoof", needs_root=True, help="ImageWoof train/ val/, resized to 128 px")
def _imagewoof(root: str | None) -> FolderSource:
    return FolderSource(list_image_folder(root, SUBSET_SIZE, "imagewoof"))


@register_dataset("imagefolder", needs_root=True, help="images in root/[train|test|val/]<class>/")
def _imagefolder(root: str | None) -> FolderSource:
    return FolderSource(list_image_folder(root))
