"""Folder datasets too large to decode into memory: decoded once into a memory-mapped cache
beside the data, then opened in seconds with memory that does not grow with the data (issue 68).

:func:`load_listing` decodes a :class:`~ddkit.data.folders.FolderListing` into memory when its
float32 images stay under :data:`CACHE_FROM_BYTES` (the in-memory path, unchanged), and
otherwise through the cache: each image is decoded and written to a ``.npy`` file, the channel
statistics are summed in float64 on the way. 8-bit images are stored as their pixels (uint8)
and opened as :class:`~ddkit.data.byte_images.ByteImages`, float32 to every reader and a
quarter of the bytes (a 100,000-image folder at 64 px stays resident in 1.2 GB); 16-bit ones
are scaled as :func:`~ddkit.data.dataset.to_nchw` scales them and stored as float32, normalised
in place a block at a time. The splits then hold tensors mapped from those files
(copy-on-write): an iteration reads only the rows it draws, and the kernel can drop pages again
under memory pressure instead of killing the run.

The cache lives in ``ROOT/.ddkit-cache/<key>/`` (or under ``$DDKIT_DATA_CACHE``, or
``~/.cache/ddkit/folders`` where the data folder is read-only). Its key covers every file's
path, size and modification time, the class names and the image size, so an edited folder is
decoded anew; the class index (labels and rows per class) is stored with it. A cache is
written under a temporary name and renamed when complete, so a killed build leaves nothing a
later run would trust. ``$DDKIT_FOLDER_CACHE`` = ``auto`` (default), ``always`` or ``never``.

Below the threshold the same decoding fills arrays in memory instead of files, and the statistics
are those ``from_arrays`` computes, so the splits are those of the same images given as arrays.
The cache sums its statistics in float64 a block at a time: its mean can differ from torch's in
the last bits of float64, never in the float32 the pixels are normalised in, so a listing's
normalised pixels hold the same bits whichever path it takes (tests check it, and that dm, dsa
and sre2l distil the same set).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddkit import context
from ddkit.data.byte_images import ByteImages, stored_rows
from ddkit.data.dataset import (
    DatasetSplits,
    ImageDataset,
    channel_stats,
    convention_test_rows,
    count_classes,
    stratified_split,
)
from ddkit.data.folders import (
    FolderListing,
    ImageRef,
    decode_progress,
    decoded_images,
    plan_decode,
)
from ddkit.data.readers import _one_line
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, DataError, FileFormatError
from ddkit.io import atomic_write_json, process_alive, read_json
from ddkit.meter import check_memory

#: Decoded float32 images of at least this many bytes go through the cache under ``auto``.
CACHE_FROM_BYTES = 2**30
CACHE_DIR_ENV = context.DATA_CACHE_ENV
CACHE_MODE_ENV = context.FOLDER_CACHE_ENV
CACHE_MODES = context.FOLDER_CACHE_MODES
#: Version of the cache's layout (part of its key).
CACHE_FORMAT = 3  # 2: the std rounded to float32 as torch computes it; 3: 8-bit pixels as uint8
_BLOCK = 4096  # rows normalised at once
_INDEX = "index.json"
#: The file a build writes first into its temporary folder (holding its process id): the
#: cleanup of killed builds deletes only folders that hold it.
BUILD_MARKER = ".ddkit-build"


@dataclass(frozen=True)
class FolderSource:
    """What a folder dataset's loader returns: its listing, turned into splits by
    :func:`load_listing` when :func:`~ddkit.data.load_dataset` asks."""

    listing: FolderListing

    def to_splits(self, *, name: str, val_fraction: float = 0.0, seed: int = 0) -> DatasetSplits:
        return load_listing(self.listing, name=name, val_fraction=val_fraction, seed=seed)


def load_listing(
    listing: FolderListing, *, name: str, val_fraction: float = 0.0, seed: int = 0
) -> DatasetSplits:
    """The splits of ``listing``: decoded into memory, or through the cache (see the module)."""
    mode = context.folder_cache()
    plan = plan_decode(listing)
    if mode == "never" or (mode == "auto" and _image_bytes(listing, plan) < CACHE_FROM_BYTES):
        check_memory(
            f"{listing.where}: its {listing.total:,} images decoded in memory (float32)",
            _image_bytes(listing, plan),
            f"set ${CACHE_MODE_ENV}=always (the memory-mapped cache) or pass a smaller image_size",
            DataError,
        )
        rows = _decode(
            listing, plan, lambda split, n: np.empty((n, *plan.shape), np.float32), sum_stats=False
        )
        # in memory, the statistics from_arrays takes: the same images as arrays, the same spec
        rows.mean, rows.std = channel_stats(torch.from_numpy(rows.images["train"]))
        spec = _spec(listing, plan, rows, name)
        _normalise_in_place(rows.images.values(), spec)
        return _splits(rows.images, rows.labels, spec, val_fraction, seed)
    folder = _cache_folder(listing, plan)
    if not (folder / _INDEX).is_file():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"{listing.where}: cannot make the cache folder {str(folder.parent)!r} "
                f"({err.strerror or err}); set ${CACHE_DIR_ENV} to a writable folder"
            ) from None
        _remove_dead_builds(folder.parent)
        _build(listing, plan, folder, name)
    return _open(folder, name, val_fraction, seed)


def _remove_dead_builds(parent: Path) -> None:
    """Delete the temporary folders of builds whose process no longer runs (a killed build
    leaves its ``.<key>.tmp-<pid>`` behind): only folders holding ddkit's own
    :data:`BUILD_MARKER`, which names the building process; anything else is left alone."""
    for tmp in parent.glob(".*.tmp-*"):
        marker = tmp / BUILD_MARKER
        if tmp.is_symlink() or not tmp.is_dir() or marker.is_symlink() or not marker.is_file():
            continue
        try:
            pid = marker.read_text(encoding="ascii", errors="replace")[:32].strip()
        except OSError:
            continue
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _image_bytes(listing: FolderListing, plan, dtype: type = np.float32) -> int:  # noqa: ANN001
    """The bytes of ``listing``'s images held as ``dtype`` (float32: decoded in memory;
    :func:`_stored_dtype`: the cache's files)."""
    return listing.total * int(np.prod(plan.shape)) * np.dtype(dtype).itemsize


def _stored_dtype(plan) -> type:  # noqa: ANN001
    """What the cache stores a pixel as: 8-bit images as themselves, 16-bit ones as float32."""
    return np.float32 if plan.wide else np.uint8


def cache_key(listing: FolderListing, shape: tuple[int, ...]) -> str:
    """The SHA-256 of everything a cache depends on: the format, the listing's classes, size
    and decoded shape, and each file's path, size, modification time and label."""
    h = hashlib.sha256()
    head = [CACHE_FORMAT, listing.where, listing.class_names, listing.image_size, list(shape)]
    h.update(json.dumps(head).encode())
    for split in sorted(listing.splits):
        h.update(split.encode())
        for ref, label in listing.files(split):
            h.update(f"{_source_key(ref)}\0{label}\n".encode())
    return h.hexdigest()


def _source_key(ref: Path | ImageRef) -> str:
    """What identifies one image's bytes: a file's resolved path, size and modification time;
    an archived image's own key."""
    if isinstance(ref, Path):
        st = ref.stat()
        return f"{ref.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    return ref.cache_key()


def _cache_folder(listing: FolderListing, plan) -> Path:  # noqa: ANN001
    key = cache_key(listing, plan.shape)
    given = context.data_cache()
    if given is not None:
        return given / key
    beside = listing.root / ".ddkit-cache"
    try:
        beside.mkdir(exist_ok=True)
        probe = beside / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return beside / key
    except OSError:  # a read-only data folder: the user's cache folder
        return Path.home() / ".cache" / "ddkit" / "folders" / key


def _destinations(listing: FolderListing) -> dict[str, list[str]]:
    """For each source split of ``listing``, the split each of its files goes to: itself, or
    without a test split the ddkit convention (every fifth train row is test), as
    :func:`from_arrays` applies it."""
    if "test" in listing.splits:
        return {s: [s] * len(listing.files(s)) for s in ("train", "test")}
    test = convention_test_rows(len(listing.files("train"))).tolist()
    return {"train": ["test" if t else "train" for t in test]}


@dataclass
class _Decoded:
    """A listing decoded into one array per split (float32 in memory, or memory-mapped files
    of :func:`_stored_dtype`), their labels, and the train rows' channel statistics."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _build(listing: FolderListing, plan, folder: Path, name: str) -> None:  # noqa: ANN001
    """Decode ``listing`` into ``folder`` (written under a temporary name, renamed at the end)."""
    needed = _image_bytes(listing, plan, _stored_dtype(plan))
    free = shutil.disk_usage(folder.parent).free
    if needed > free:
        raise ConfigError(
            f"{listing.where}: its cache needs {needed / 2**30:,.1f} GiB in "
            f"{str(folder.parent)!r}, which has {free / 2**30:,.1f} GiB free; set "
            f"${CACHE_DIR_ENV} to a folder on a larger disk"
        )
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if (tmp / BUILD_MARKER).is_file():  # this process's own build, failed earlier
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / BUILD_MARKER).write_text(str(os.getpid()))
        stored = _stored_dtype(plan)
        rows = _decode(
            listing,
            plan,
            lambda split, n: np.lib.format.open_memmap(
                tmp / f"{split}.npy", "w+", stored, (n, *plan.shape)
            ),
        )
        spec = _spec(listing, plan, rows, name)
        if stored is np.float32:  # 8-bit pixels are normalised as they are read
            _normalise_in_place(rows.images.values(), spec)
        for split, x in rows.images.items():
            x.flush()
            np.save(tmp / f"{split}_labels.npy", rows.labels[split])
        del rows
        counts = np.bincount(np.load(tmp / "train_labels.npy"), minlength=spec.num_classes)
        index = {
            "format": CACHE_FORMAT,
            "spec": spec.to_dict(),
            "class_counts": counts.tolist(),
            "pixels": np.dtype(stored).name,
        }
        atomic_write_json(tmp / _INDEX, index)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same cache first: use theirs
            if not (folder / _INDEX).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _decode(
    listing: FolderListing,
    plan,  # noqa: ANN001
    new_array: Callable[[str, int], np.ndarray],
    *,
    sum_stats: bool = True,
) -> _Decoded:
    """Decode every file once into ``new_array(split, rows)`` (uint8 pixels into a uint8
    array; else float32 in ``[0, 1]``, as :func:`~ddkit.data.dataset.to_nchw` scales 8-bit
    pixels) with its label, and (``sum_stats``)
    sum the train rows' channel mean and (unbiased) std in float64, the std rounded to float32
    as torch's (:func:`~ddkit.data.dataset.channel_stats`) is; without, the statistics are
    left empty for the caller to compute."""
    destinations = _destinations(listing)
    sizes = {"train": 0, "test": 0}
    for split in (d for ds in destinations.values() for d in ds):
        sizes[split] += 1
    x = {s: new_array(s, n) for s, n in sizes.items()}
    y = {s: np.zeros(n, np.int64) for s, n in sizes.items()}
    at = dict.fromkeys(sizes, 0)
    c = plan.shape[0]
    sums, squares, count = np.zeros(c), np.zeros(c), 0
    progress = decode_progress(listing)
    for source, goes_to in destinations.items():
        images = decoded_images(listing, plan, source, progress)
        for split, (img, label) in zip(goes_to, images):
            v = img.astype(np.float32) / np.float32(255.0) if img.dtype == np.uint8 else img
            x[split][at[split]] = img if x[split].dtype == np.uint8 else v
            y[split][at[split]] = label
            at[split] += 1
            if sum_stats and split == "train":
                sums += v.sum(axis=(1, 2), dtype=np.float64)
                squares += np.square(v, dtype=np.float64).sum(axis=(1, 2))
                count += v.shape[1] * v.shape[2]
    progress.close()
    if not sum_stats:
        return _Decoded(x, y, (), ())
    mean = sums / max(count, 1)
    var = (squares - count * mean**2) / max(count - 1, 1)
    std = np.sqrt(np.maximum(var, 0.0)).clip(min=1e-6).astype(np.float32)  # as torch's std
    return _Decoded(x, y, tuple(mean.tolist()), tuple(std.tolist()))


def _spec(listing: FolderListing, plan, rows: _Decoded, name: str) -> DatasetSpec:  # noqa: ANN001
    """The decoded listing's spec, its classes checked (two or more, each with training rows)."""
    train, test = (torch.from_numpy(rows.labels[s]) for s in ("train", "test"))
    try:
        count_classes(train, test, len(listing.class_names))
    except (ConfigError, DataError) as err:
        raise DataError(f"{listing.where}: {err}") from None
    return DatasetSpec(
        name=name,
        num_classes=len(listing.class_names),
        channels=plan.shape[0],
        image_size=plan.shape[1:],
        mean=rows.mean,
        std=rows.std,
        class_names=tuple(listing.class_names),
    )


def _normalise_in_place(arrays: Iterable[np.ndarray], spec: DatasetSpec) -> None:
    """``(x - mean) / std`` in float32, as :func:`~ddkit.data.dataset.normalise`, a block of
    rows at a time."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    for x in arrays:
        for i in range(0, len(x), _BLOCK):
            block = (torch.from_numpy(np.asarray(x[i : i + _BLOCK])) - mean) / std
            if not torch.isfinite(block).all():
                raise DataError("images span more than the float32 range around their mean")
            x[i : i + _BLOCK] = block.numpy()


def _open(folder: Path, name: str, val_fraction: float, seed: int) -> DatasetSplits:
    """The splits of a finished cache, their images mapped from its files (copy-on-write); a
    cache whose files disagree with its index (truncated, edited) is refused in one line."""
    parts = ("train", "test")
    try:
        index = read_json(folder / _INDEX, max_bytes=2**24)
        raw, counts = index["spec"], [int(c) for c in index["class_counts"]]
        named = {raw["num_classes"], len(counts), len(raw.get("class_names") or ())}
        if index["format"] != CACHE_FORMAT or len(named) != 1:  # checked before any allocation
            raise ValueError("its index does not describe its classes")
        spec = DatasetSpec.from_dict({**raw, "name": name})
        images = {s: np.load(folder / f"{s}.npy", mmap_mode="c") for s in parts}
        labels = {s: np.load(folder / f"{s}_labels.npy") for s in parts}
        _check_cache(images, labels, spec, counts, np.dtype(index["pixels"]))
    except (FileFormatError, ValueError, TypeError, KeyError, OSError, EOFError) as err:
        raise FileFormatError(
            f"the cache {str(folder)!r} is damaged ({_one_line(err)}); delete it to rebuild it"
        ) from None
    return _splits(images, labels, spec, val_fraction, seed)


def _check_cache(
    images: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    spec: DatasetSpec,
    counts: list[int],
    pixels: np.dtype,
) -> None:
    """Raise ``ValueError`` where a cache's arrays disagree with its index: their shapes and
    types (``pixels``), labels outside the classes, and the train rows per class."""
    shape = (spec.channels, *spec.image_size)
    if pixels not in (np.uint8, np.float32):
        raise ValueError(f"its index names pixels of {pixels}, not uint8 or float32")
    for s in images:
        x, y = images[s], labels[s]
        if x.dtype != pixels or x.ndim != 4 or x.shape[1:] != shape:
            raise ValueError(f"{s}.npy holds {x.dtype} {x.shape}, not {pixels} rows of {shape}")
        if y.dtype != np.int64 or y.shape != (len(x),):
            raise ValueError(f"{s}_labels.npy holds {y.dtype} {y.shape}, not {len(x)} labels")
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ValueError(f"{s}_labels.npy holds labels outside 0..{spec.num_classes - 1}")
    if np.bincount(labels["train"], minlength=spec.num_classes).tolist() != counts:
        raise ValueError("its train labels do not match its class counts")


def _splits(
    images: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    spec: DatasetSpec,
    val_fraction: float,
    seed: int,
) -> DatasetSplits:
    """The rows as splits (uint8 pixels as :class:`ByteImages` normalised by ``spec``); the
    validation rows and the rest of train are copied (:func:`~ddkit.data.dataset.stratified_split`
    of the train labels, as ``from_arrays``), still as pixels."""
    x, xt = (_as_images(torch.from_numpy(images[s]), spec) for s in ("train", "test"))
    y, yt = (torch.from_numpy(labels[s]) for s in ("train", "test"))
    val = None
    if val_fraction > 0:
        keep, held = stratified_split(y, val_fraction, seed)
        val = ImageDataset(stored_rows(x, held), y[held], spec)
        x, y = stored_rows(x, keep), y[keep]
    return DatasetSplits(ImageDataset(x, y, spec), ImageDataset(xt, yt, spec), val)


def _as_images(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """A split's stored rows as normalised images: uint8 pixels as :class:`ByteImages`."""
    if x.dtype != torch.uint8:
        return x
    return ByteImages(x, torch.tensor(spec.mean), torch.tensor(spec.std))
