"""Image datasets held in archives rather than files: tar shards in the WebDataset layout, and
Hugging Face ``datasets`` folders (Arrow, memory-mapped) written by ``save_to_disk`` (issue 68).

Both become a :class:`~ddkit.data.folders.FolderListing` whose entries are references to
images inside the archives, so they decode into memory or into the memory-mapped cache
(:mod:`ddkit.data.cache`) exactly as an image folder does.

- ``webdataset``: ``ROOT/*.tar`` (or ``ROOT/train/*.tar`` with ``ROOT/test/*.tar`` or
  ``ROOT/val/*.tar``); a sample is the members sharing a key (the member name up to the first
  dot of its base name): one image (``.jpg``, ``.png``, ...) and its class index in ``.cls``
  (text). Class names come from ``ROOT/classes.txt`` (one per line) when present, else are the
  indices. Read with the standard library's ``tarfile``: no extra is needed.
- ``hf-disk``: a folder written by ``datasets``' ``save_to_disk``: a ``DatasetDict`` with
  ``train`` and ``test`` (or ``validation``) splits, or one ``Dataset`` (the ddkit convention
  then splits off the test rows); the first ``Image`` column and the ``label`` column (or the
  first ``ClassLabel`` one), whose names are the class names. Needs the ``hf`` extra.

Data stays in its folder (as in :mod:`ddkit.data.folders`): a shard must be a regular file under
the root; its members that are links (symbolic or hard), devices or FIFOs are refused, and so
is a compressed tar (decompress it: its members are read by offset); an ``hf-disk`` image held
as a bare path (no bytes) is read only where it resolves to a regular file under the dataset's
folder (a relative path is taken from there) or under ``$DDKIT_DATA_ALLOW_ROOT``.

A member is read with ``os.pread`` at its offset, through a descriptor each process opens for
itself: the DataLoader worker processes that decode a listing share no file position.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ddkit.data.builtin import register_dataset
from ddkit.data.cache import FolderSource
from ddkit.data.folders import IMAGE_EXTENSIONS, FolderListing
from ddkit.data.paths import inside_root, read_text_inside
from ddkit.data.readers import PathLike, _root_dir
from ddkit.errors import ConfigError, DataError, FileFormatError
from ddkit.meter import check_memory

#: ``(process id, tar)`` -> a descriptor of ``tar`` opened by that process (never inherited).
_OPEN_TARS: dict[tuple[int, Path], int] = {}
#: The first bytes of compressed files that ``tarfile`` would otherwise inflate unasked.
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
#: The most bytes a ``.cls`` member (a class index as text) may hold.
_MAX_CLS_BYTES = 64


def _descriptor(tar: Path) -> int:
    """This process's read-only descriptor of ``tar``, opened on first use after a fork."""
    key = (os.getpid(), tar)
    fd = _OPEN_TARS.get(key)
    if fd is None:
        fd = _OPEN_TARS[key] = os.open(tar, os.O_RDONLY | os.O_CLOEXEC)
    return fd


@dataclass(frozen=True)
class TarMember:
    """An image stored as member ``name`` of the tar file ``tar``: ``size`` bytes from byte
    ``offset`` of the file."""

    tar: Path
    name: str
    offset: int
    size: int

    def open(self) -> BinaryIO:
        check_memory(f"webdataset: {self}", self.size, "split the member's image", DataError)
        fd, chunks, at = _descriptor(self.tar), [], 0
        while at < self.size:  # pread: no file position, so no other reader can move it
            chunk = os.pread(fd, self.size - at, self.offset + at)
            if not chunk:
                raise FileFormatError(f"{self}: the tar ends inside the member; re-write it")
            chunks.append(chunk)
            at += len(chunk)
        return io.BytesIO(b"".join(chunks))

    def cache_key(self) -> str:
        st = self.tar.stat()
        return f"{self.tar.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{self.name}"

    def __str__(self) -> str:
        return f"{self.tar}:{self.name}"


def _samples(tar: Path, root: Path) -> list[tuple[TarMember, int]]:
    """``(image member, class index)`` of every sample of ``tar`` (a plain tar file under
    ``root``), in member order."""
    inside_root(tar, root, "webdataset")
    with open(tar, "rb") as f:
        kind = next((k for m, k in _COMPRESSED.items() if f.read(8).startswith(m)), None)
    if kind is not None:
        raise FileFormatError(
            f"webdataset: {tar} is a {kind}-compressed tar; decompress it (shards are read "
            "by offset)"
        )
    labels: dict[str, int] = {}
    images: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(tar, "r:") as archive:
            for m in archive.getmembers():
                if m.isdir():
                    continue
                if not m.isfile() or m.issparse():
                    raise DataError(
                        f"webdataset: {tar}:{m.name!r} is not a regular file (a link, device "
                        "or FIFO member); write the file itself into the shard"
                    )
                base = m.name.rsplit("/", 1)
                stem, _, ext = base[-1].partition(".")
                key = "/".join([*base[:-1], stem])
                if ext.lower() == "cls":
                    labels[key] = _class_index(archive, m, tar)
                elif f".{ext.lower()}" in IMAGE_EXTENSIONS:
                    images[key] = m
    except (tarfile.TarError, OSError) as err:
        raise FileFormatError(f"webdataset: {tar} is not a readable tar file ({err})") from None
    if not images:
        raise DataError(f"webdataset: {tar} holds no samples (an image and its .cls); remove it")
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise DataError(f"webdataset: {tar} sample {unlabelled[0]!r} has no .cls label")
    return [
        (TarMember(tar, m.name, m.offset_data, m.size), labels[key]) for key, m in images.items()
    ]


def _class_index(archive: tarfile.TarFile, member: tarfile.TarInfo, tar: Path) -> int:
    """The class index a ``.cls`` member holds (decimal digits as text), else one line."""
    raw = archive.extractfile(member).read(_MAX_CLS_BYTES + 1)
    try:
        text = raw.decode("ascii").strip() if len(raw) <= _MAX_CLS_BYTES else ""
    except UnicodeDecodeError:
        text = ""
    if not text.isdigit():
        raise DataError(
            f"webdataset: {tar}:{member.name!r} is not a class index (decimal digits as text)"
        )
    return int(text)


def list_webdataset(root: PathLike) -> FolderListing:
    """The listing of tar shards in the WebDataset layout under ``root`` (see the module)."""
    folder = _root_dir(root, "webdataset")
    held_out = next((folder / n for n in ("test", "val") if (folder / n).is_dir()), None)
    parts = {"train": folder / "train" if (folder / "train").is_dir() else folder}
    if held_out is not None:
        parts["test"] = held_out
    rows: dict[str, list[tuple[TarMember, int]]] = {}
    for split, where in parts.items():
        shards = sorted(where.glob("*.tar"))
        if not shards:
            raise DataError(f"webdataset: {str(where)!r} has no .tar shards")
        rows[split] = [row for shard in shards for row in _samples(shard, folder)]
    k = _class_count(rows, "webdataset")
    names_file = folder / "classes.txt"
    names = (
        read_text_inside(names_file, folder, "webdataset").split("\n")
        if (names_file.exists() or names_file.is_symlink())
        else []
    )
    names = [n.strip() for n in names if n.strip()] or [str(c) for c in range(k)]
    if len(names) < k:
        raise DataError(f"webdataset: {names_file} names {len(names)} classes, labels reach {k}")
    return _listing(rows, names, "webdataset", folder)


def _class_count(rows: dict[str, list[tuple[Any, int]]], where: str) -> int:
    """The number of classes (largest index + 1), refused when it exceeds the training rows:
    every class needs one, and a stray huge index would otherwise name a billion classes."""
    k = 1 + max((c for split in rows.values() for _, c in split), default=-1)
    n = len(rows.get("train", []))
    if k > n:
        raise DataError(f"{where}: class index {k - 1} in a training split of {n} images")
    return k


def _listing(
    rows: dict[str, list[tuple[Any, int]]], names: list[str], where: str, root: Path
) -> FolderListing:
    """A listing from ``(image reference, class index)`` rows per split, grouped by class."""
    splits = {}
    for split, items in rows.items():
        by_class: dict[str, list[Any]] = {}
        for ref, c in sorted(items, key=lambda item: item[1]):  # stable: order within a class
            by_class.setdefault(names[c], []).append(ref)
        splits[split] = by_class
    return FolderListing(splits, names, None, where, root)


@dataclass(frozen=True, eq=False)
class ArrowImage:
    """Row ``index`` of the image column of a memory-mapped Hugging Face dataset."""

    table: Any  # a datasets.Dataset whose image column is not decoded
    column: str
    index: int
    fingerprint: str
    root: Path  # the dataset's folder: a bare path must lead to a file under it

    def open(self) -> BinaryIO:
        value = self.table[self.index][self.column]
        if value.get("bytes") is not None:
            return io.BytesIO(value["bytes"])
        if not value.get("path"):
            raise FileFormatError(f"{self}: the image has neither bytes nor a path")
        real = inside_root(self.root / value["path"], self.root, f"hf-disk: {self}")
        return open(real, "rb")  # noqa: SIM115 - the caller closes it

    def cache_key(self) -> str:
        return f"{self.fingerprint}\0{self.column}\0{self.index}"

    def __str__(self) -> str:
        return f"row {self.index} of {self.fingerprint}"


def list_hf_disk(root: PathLike) -> FolderListing:
    """The listing of a Hugging Face ``datasets`` folder (see the module)."""
    folder = _root_dir(root, "hf-disk")
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "dataset 'hf-disk' needs the Hugging Face datasets package: pip install 'ddkit[hf]'"
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise FileFormatError(f"hf-disk: {str(folder)!r} is not a saved dataset ({err})") from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if "train" not in parts:
        raise DataError(f"hf-disk: {str(folder)!r} has no 'train' split (has {sorted(parts)})")
    held_out = next((n for n in ("test", "validation", "val") if n in parts), None)
    parts = {"train": parts["train"], **({"test": parts[held_out]} if held_out else {})}
    image_col, label_col, names = _columns(parts["train"], datasets)
    rows = {}
    for split, table in parts.items():
        raw = table.cast_column(image_col, datasets.Image(decode=False))
        labels = table[label_col]
        bad = next((c for c in labels if not isinstance(c, int) or isinstance(c, bool) or c < 0),
                   None)  # fmt: skip
        if bad is not None:
            raise DataError(
                f"hf-disk: column {label_col!r} holds {bad!r}; labels must be class indices "
                "(a ClassLabel column)"
            )
        rows[split] = [(ArrowImage(raw, image_col, i, table._fingerprint, folder), c)
                       for i, c in enumerate(labels)]  # fmt: skip
    k = _class_count(rows, "hf-disk")
    names = names or [str(c) for c in range(k)]
    return _listing(rows, names, "hf-disk", folder)


def _columns(table: Any, datasets: Any) -> tuple[str, str, list[str]]:
    """The image column, the label column and the class names of a dataset's features."""
    features = table.features
    images = [n for n, f in features.items() if isinstance(f, datasets.Image)]
    if not images:
        raise DataError(f"hf-disk: no Image column among {list(features)}")
    classes = [n for n, f in features.items() if isinstance(f, datasets.ClassLabel)]
    label = "label" if "label" in features else (classes[0] if classes else None)
    if label is None:
        raise DataError(f"hf-disk: no 'label' or ClassLabel column among {list(features)}")
    feature = features[label]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else []
    return images[0], label, names


@register_dataset("webdataset", needs_root=True, help="tar shards: ROOT/[train|test/]*.tar, .cls")
def _webdataset(root: str | None) -> FolderSource:
    return FolderSource(list_webdataset(root))


@register_dataset("hf-disk", needs_root=True, help="a Hugging Face datasets folder (save_to_disk)")
def _hf_disk(root: str | None) -> FolderSource:
    return FolderSource(list_hf_disk(root))
