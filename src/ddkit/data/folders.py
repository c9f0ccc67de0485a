"""Image folders: listing the files of a layout, and decoding them (issue 68).

A folder dataset is first a :class:`FolderListing` (each split's image files per class, the
class names, the size to resize to), built from the file names alone; decoding it is a separate
step, done into memory (:func:`decode_listing`) or into a memory-mapped cache
(:mod:`ddkit.data.cache`) when the data is large. Readers of the ImageNet family's layouts
(:mod:`ddkit.data.layouts`) build listings too.

Data stays in its folder: every file and class folder a listing names must resolve (links
followed) to a regular file or folder under the data root -- a link out of it, a FIFO, a device
is refused in one line (:func:`inside_root`), and nothing is opened to find out. A link farm
that points elsewhere on purpose names its targets' folders in ``$DDKIT_DATA_ALLOW_ROOT``
(folders separated by ``:``). Before decoding, the images' headers give their decoded bytes,
checked against the memory budget (:func:`~ddkit.meter.check_memory`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from ddkit.data.builtin import RawData
from ddkit.data.paths import inside_root
from ddkit.data.readers import PathLike, _one_line, _root_dir
from ddkit.errors import ConfigError, DataError, FileFormatError
from ddkit.meter import check_memory
from ddkit.progress import Progress

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: Folders of at least this many images say how decoding goes (count, images per second).
DECODE_PROGRESS_FROM = 1000
#: Lists of at least this many images are decoded in DataLoader worker processes.
PARALLEL_DECODE_FROM = 2000
MAX_DECODE_WORKERS = 8
DECODE_PIECE = 64
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit grayscale (PNG) in Pillow
_GRAY_MODES = {"1", "L", "LA", "F"} | _WIDE_MODES


class ImageRef(Protocol):
    """An image held inside an archive (a tar shard's member, a row of an Arrow table):
    ``open()`` gives its encoded bytes as a stream; ``cache_key()`` changes whenever they may
    have (:mod:`ddkit.data.shards`)."""

    def open(self) -> BinaryIO: ...

    def cache_key(self) -> str: ...


@dataclass(frozen=True)
class FolderListing:
    """The image files of a folder dataset: ``splits`` maps ``"train"`` (and optionally
    ``"test"``) to ``{class name: files}``; labels are positions in ``class_names``;
    ``image_size`` ``(height, width)`` resizes every image (``None``: all must share one size);
    ``where`` names the dataset in messages; ``root`` is the data folder (its cache goes
    beside it)."""

    splits: dict[str, dict[str, list[Path | ImageRef]]]
    class_names: list[str]
    image_size: tuple[int, int] | None
    where: str
    root: Path

    def files(self, split: str) -> list[tuple[Path | ImageRef, int]]:
        """``(file, label)`` of ``split``, class by class."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return [(p, index[c]) for c, files in self.splits[split].items() for p in files]

    @property
    def total(self) -> int:
        return sum(len(f) for split in self.splits.values() for f in split.values())


@dataclass(frozen=True)
class DecodePlan:
    """How a listing's images decode: Pillow ``mode`` ("L" or "RGB"), the Pillow ``size``
    (width, height) to resize to or ``None``, ``wide`` (16-bit grayscale: float32 in
    ``[0, 1]``), and the ``shape`` ``(C, H, W)`` of one decoded image."""

    mode: str
    size: tuple[int, int] | None
    wide: bool
    shape: tuple[int, int, int]


def image_size_of(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``image_size`` (``int`` or ``(height, width)``) as ``(height, width)``, checked."""
    if image_size is None:
        return None
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in hw):
        raise ConfigError(
            f"image_size must be a positive int or (height, width), got {image_size!r}"
        )
    return int(hw[0]), int(hw[1])


def _check_name(path: Path, where: str) -> None:
    """Refuse a class folder whose name holds a control character (a newline, a tab...)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path.name):
        raise DataError(
            f"{where}: class folder {str(path)!r} has a control character in its name; rename it"
        )


def image_files(folder: Path, root: Path, where: str) -> list[Path]:
    """The image files in ``folder`` (not hidden), sorted; each one that is a link, or not a
    regular file, checked by :func:`inside_root` (a plain file of a checked folder is inside)."""
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if (
                entry.name.startswith(".")
                or Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS
            ):
                continue
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                if entry.is_dir():  # a folder named like an image: not an image
                    continue
                inside_root(Path(entry.path), root, where)
            files.append(Path(entry.path))
    return sorted(files)


def _list_classes(
    folder: Path, root: Path | None = None, where: str = "imagefolder"
) -> dict[str, list[Path]]:
    """``{class folder name: its image files}`` of ``folder``, every entry inside ``root``."""
    root = folder if root is None else root
    inside_root(folder, root, where, folder=True)
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        _check_name(sub, where)
        if sub.is_symlink():
            inside_root(sub, root, where, folder=True)
        files = image_files(sub, root, where)
        if not files:
            exts = ", ".join(IMAGE_EXTENSIONS)
            raise DataError(f"{where}: class folder {str(sub)!r} has no images ({exts})")
        out[sub.name] = files
    if not out:
        raise DataError(f"image folder {str(folder)!r} has no class sub-folders")
    return out


@contextlib.contextmanager
def _image_file(ref: Path | ImageRef) -> Iterator[Path | BinaryIO]:
    """What Pillow opens for ``ref``: a file's path, or the stream of an image held in an
    archive (:class:`ImageRef`), closed afterwards."""
    if isinstance(ref, Path):
        yield ref
        return
    with ref.open() as f:
        yield f


def _open_header(path: Path | ImageRef):
    from PIL import Image

    try:
        with _image_file(path) as f, Image.open(f) as im:
            return im.mode, im.size
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for bad files
        raise FileFormatError(f"{path}: cannot read image ({_one_line(err)})") from None


def _load_image(
    path: Path | ImageRef, mode: str, size: tuple[int, int] | None, wide: bool = False
) -> np.ndarray:
    """One image as ``mode`` ("L" or "RGB"): uint8, or with ``wide`` float32 in ``[0, 1]``
    scaled by the image's own bit depth (16-bit grayscale / 65535, 8-bit / 255)."""
    from PIL import Image

    try:
        with _image_file(path) as f, Image.open(f) as im:
            deep = im.mode in _WIDE_MODES
            im = im if deep else im.convert(mode)
            if size is not None and im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            if not deep:
                arr = np.asarray(im, dtype=np.uint8)
                return arr.astype(np.float32) / np.float32(255.0) if wide else arr
            arr = np.asarray(im).astype(np.float32)
    except Exception as err:  # noqa: BLE001
        raise FileFormatError(f"{path}: cannot read image ({_one_line(err)})") from None
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise FileFormatError(f"{path}: pixel values outside the 16-bit range 0..65535")
    arr = arr / np.float32(65535.0)
    return np.repeat(arr[..., None], 3, axis=-1) if mode == "RGB" else arr


def plan_decode(listing: FolderListing) -> DecodePlan:
    """Read every file's header once: the common mode and, without ``image_size``, the common
    size (a one-line :class:`DataError` names two files that differ); the largest image's
    decoding is checked against the memory budget (:func:`decode_bytes`) before any is
    decoded."""
    size = None if listing.image_size is None else listing.image_size[::-1]  # Pillow (W, H)
    modes, first, largest = set(), None, (0, None)
    for files in (f for split in listing.splits.values() for f in split.values()):
        for path in files:
            mode, wh = _open_header(path)
            modes.add(mode)
            largest = max(largest, (wh[0] * wh[1], path), key=lambda item: item[0])
            if listing.image_size is None:
                if first is None:
                    first = (path, wh)
                elif wh != first[1]:
                    raise DataError(
                        f"{listing.where}: {path} is {wh[0]}x{wh[1]} (WxH) but {first[0]} is "
                        f"{first[1][0]}x{first[1][1]}; pass image_size to resize"
                    )
    mode = "L" if modes <= _GRAY_MODES else "RGB"
    w, h = size if size is not None else first[1]
    plan = DecodePlan(mode, size, bool(modes & _WIDE_MODES), (1 if mode == "L" else 3, h, w))
    pixels, path = largest
    at_once = max(1, decode_workers(max(len(listing.files(s)) for s in listing.splits)))
    check_memory(
        f"{listing.where}: decoding {path} ({pixels:,} pixels) in {at_once} process(es)",
        at_once * decode_bytes(pixels, plan.shape[0]),
        "shrink the image files, or raise the budget",
        DataError,
    )
    return plan


def decode_bytes(pixels: int, channels: int) -> int:
    """The bytes that decoding one image of ``pixels`` pixels into ``channels`` holds at once:
    the image as Pillow decodes it (at most 4 bytes a pixel), its conversion and its array
    (``channels`` bytes a pixel each) and the two float32 copies that scale it (4 each)."""
    return pixels * (4 + channels * (1 + 1 + 4 + 4))


class _Decoding:
    """The images of a file list as a map-style dataset for :class:`torch.utils.data.DataLoader`
    workers: item ``i`` is ``(image (C, H, W), label)``, or ``(None, message)`` where the file
    cannot be read (raised in the main process, so the refusal stays one line)."""

    def __init__(self, files: list[tuple[Path | ImageRef, int]], plan: DecodePlan) -> None:
        self.files, self.plan = files, plan

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int | str]:
        path, label = self.files[i]
        try:
            x = _load_image(path, self.plan.mode, self.plan.size, self.plan.wide)
        except FileFormatError as err:
            return None, str(err)
        return (x[None] if x.ndim == 2 else x.transpose(2, 0, 1)), label


def decode_workers(n: int) -> int:
    """Worker processes that decode ``n`` images: none below :data:`PARALLEL_DECODE_FROM`
    (starting them costs more), else one per core, at most :data:`MAX_DECODE_WORKERS`."""
    if n < PARALLEL_DECODE_FROM:
        return 0
    return max(0, min(MAX_DECODE_WORKERS, len(os.sched_getaffinity(0)) if hasattr(
        os, "sched_getaffinity") else (os.cpu_count() or 1)))  # fmt: skip


def decoded_images(
    listing: FolderListing, plan: DecodePlan, split: str, progress: Progress
) -> Iterator[tuple[np.ndarray, int]]:
    """``(image (C, H, W), label)`` of ``split``'s files in order, each image as
    :func:`_load_image` returns it, laid out channels first, decoded in DataLoader worker
    processes for large lists (:func:`decode_workers`); ``progress`` counts them and shows
    images per second."""
    import torch
    from torch.utils.data import DataLoader

    files = listing.files(split)
    items = _Decoding(files, plan)
    workers = decode_workers(len(files))
    if workers:  # pieces of DECODE_PIECE images per message between processes
        loader = DataLoader(items, batch_size=DECODE_PIECE, num_workers=workers,
                            collate_fn=list, prefetch_factor=4)  # fmt: skip
        rows = (row for piece in loader for row in piece)
    else:
        rows = (items[i] for i in range(len(items)))
    for x, label in rows:
        if x is None:
            raise FileFormatError(label)
        progress.update(1, {"images/s": progress.rate(pending=1)})
        yield (x.numpy() if isinstance(x, torch.Tensor) else x), label


def decode_progress(listing: FolderListing) -> Progress:
    """The progress of decoding ``listing``: lines for :data:`DECODE_PROGRESS_FROM` images
    or more, silent below."""
    big = listing.total >= DECODE_PROGRESS_FROM
    return Progress(f"decoding {listing.where}", listing.total, unit="images", every_seconds=10.0,
                    first_after_seconds=3.0, setting=True if big else None)  # fmt: skip


def decode_listing(listing: FolderListing, plan: DecodePlan | None = None) -> RawData:
    """Decode every image of ``listing`` into memory: uint8 ``(N, C, H, W)`` arrays (float32
    in ``[0, 1]`` where some image is 16-bit grayscale) and their labels; ``plan``: the
    listing's :func:`plan_decode`, when the caller has it already (its header pass reads every
    file)."""
    plan = plan or plan_decode(listing)
    item = 4 if plan.wide else 1  # the decoded rows, then their stacked copy: twice
    check_memory(
        f"{listing.where}: its {listing.total:,} images decoded in memory",
        2 * listing.total * int(np.prod(plan.shape)) * item,
        "pass a smaller image_size, or read it with load_dataset (its memory-mapped cache)",
        DataError,
    )
    progress = decode_progress(listing)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in listing.splits:
        rows = list(decoded_images(listing, plan, split, progress))
        x = np.stack([r[0] for r in rows])
        x = np.ascontiguousarray(x[:, 0] if plan.mode == "L" else x)  # grayscale as (N, H, W)
        arrays[split] = (x, np.asarray([r[1] for r in rows], dtype=np.int64))
    progress.close()
    test = arrays.get("test", (None, None))
    names = listing.class_names
    return RawData(*arrays["train"], *test, class_names=names, num_classes=len(names))


def list_image_folder(
    root: PathLike, image_size: int | tuple[int, int] | None = None, where: str = "imagefolder"
) -> FolderListing:
    """The listing of ``root/<class>/*`` (or ``root/train/...`` with ``root/test/...`` or,
    where there is no ``test/``, ``root/val/...``): classes are the sub-folder names, sorted."""
    folder = _root_dir(root, where)
    if (folder / "train").is_dir():
        splits = {"train": _list_classes(folder / "train", folder, where)}
        held_out = next((folder / n for n in ("test", "val") if (folder / n).is_dir()), None)
        if held_out is not None:  # test/, else val/ (ImageNet's and ImageNette's layout)
            splits["test"] = _list_classes(held_out, folder, where)
    elif (folder / "test").is_dir():
        test, train = str(folder / "test"), str(folder / "train")
        raise ConfigError(f"{where}: {test!r} exists but {train!r} does not")
    else:
        splits = {"train": _list_classes(folder, folder, where)}
    class_names = list(splits["train"])
    if "test" in splits:
        unknown = sorted(set(splits["test"]) - set(class_names))
        if unknown:
            train = str(folder / "train")
            raise DataError(f"{where}: test classes {unknown} have no folder under {train!r}")
    return FolderListing(splits, class_names, image_size_of(image_size), where, folder)


def read_image_folder(root: PathLike, image_size: int | tuple[int, int] | None = None) -> RawData:
    """Read ``root/<class>/*.{png,jpg,jpeg,bmp,gif}`` (or ``root/train/...`` + ``root/test/...``,
    or ``root/val/...`` where there is no ``test/``) into memory.

    Classes are the sub-folder names, sorted. Images become grayscale if all are grayscale,
    else RGB. Pixels stay uint8 unless some image is 16-bit grayscale: then all become float32
    in ``[0, 1]``, each scaled by its own bit depth (never clipped to 255). All images must
    share one size unless ``image_size`` (``int`` or ``(height, width)``) is given, in which
    case they are resized to it.
    """
    return decode_listing(list_image_folder(root, image_size))
