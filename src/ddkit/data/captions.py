"""Readers of image-caption files: CSV, JSONL, Hugging Face ``datasets`` folders and the
Karpathy split files of COCO and Flickr30k (issue 71), for :mod:`ddkit.data.paired`.

Layouts (:func:`paired_format` tells them apart; :func:`read_paired` reads any of them):

* **CSV** (``*.csv``, or a folder holding ``captions.csv``): a header row with an ``image``
  column (a path, relative to ``image_root`` or else to the file's folder) and a ``caption``
  column, one row per caption (an image's rows share its path); optional ``split``
  (``train``, ``val``, ``test``) and ``image_id`` columns.
* **JSONL** (``*.jsonl``, or a folder holding ``captions.jsonl``): one JSON object per line with
  ``image`` and either ``caption`` (one caption) or ``captions`` (a list); optional ``split`` and
  ``image_id``.
* **Hugging Face** ``datasets`` folder (``save_to_disk``; needs ``pip install 'ddkit[hf]'``):
  a ``DatasetDict`` with ``train`` / ``validation`` / ``test`` splits or one ``Dataset``; its
  first ``Image`` column, and a text column (``caption``, ``captions``, ``text``,
  ``sentences`` or ``sentence``: a string, a list of strings or of ``{"raw": ...}``); rows that
  share an ``image_id`` / ``img_id`` / ``filename`` / ``file_name`` are one image; a ``split``
  column, where there is one, gives each row's split (Flickr30k as some hubs save it).
* **Karpathy** split file (``dataset_coco.json``, ``dataset_flickr30k.json``,
  ``dataset_flickr8k.json``, or a folder holding one; A. Karpathy and L. Fei-Fei, "Deep
  Visual-Semantic Alignments for Generating Image Descriptions", CVPR 2015): ``images[]`` with
  ``filename``, optional ``filepath`` (COCO's ``train2014`` / ``val2014``), ``split`` (``train``,
  ``restval``, ``val``, ``test``; ``restval`` counts as train, as in the papers that use these
  splits) and ``sentences[].raw``. Images are read from ``image_root/filepath/filename`` (or
  ``image_root/filename``), ``image_root`` being the file's folder unless given.

Without split information every 5th image is the test split (ddkit's convention); splits are
always by image. Images are decoded with Pillow as the image-folder reader decodes them
(:mod:`ddkit.data.folders`: grey when all are grey, else RGB; resized to ``image_size`` when
given, else all must share one size). Problems are one-line errors naming the file, the row and
the fix: a missing image file, an image path that leaves the data folder (absolute, ``../``, a
link pointing out; the folder is the caption file's, or ``image_root``, the explicit way to read
images kept elsewhere) or that is not a regular file (a FIFO is refused before it is opened; a
saved dataset's rows stored as paths likewise: :func:`ddkit.data.paths.inside_root`), an empty
caption, an image without captions, an image in two
splits, an unknown split, an unreadable file, a file larger than ddkit reads
(:data:`MAX_CAPTION_FILE_BYTES`), a caption longer than :data:`MAX_CAPTION_CHARS`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddkit.data.folders import (
    FolderListing,
    ImageRef,
    decode_progress,
    decoded_images,
    image_size_of,
    plan_decode,
)
from ddkit.data.paired import PairedOptions, RawPairs, register_paired, register_path_reader
from ddkit.data.paths import inside_root
from ddkit.errors import ConfigError, DataError, FileFormatError, require_extra
from ddkit.io import read_regular_file
from ddkit.meter import check_memory

__all__ = [
    "KARPATHY_FILES",
    "MAX_CAPTION_CHARS",
    "MAX_CAPTION_FILE_BYTES",
    "paired_format",
    "read_paired",
]

#: The largest caption file (CSV, JSONL, Karpathy JSON) ddkit reads (COCO's is ~150 MB).
MAX_CAPTION_FILE_BYTES = 1 << 30
#: The longest caption ddkit accepts, in characters.
MAX_CAPTION_CHARS = 4096
KARPATHY_FILES = ("dataset_coco.json", "dataset_flickr30k.json", "dataset_flickr8k.json")
#: Split names as written in the files -> ddkit's split.
SPLIT_NAMES = {"train": "train", "restval": "train", "val": "val", "validation": "val",
               "dev": "val", "test": "test"}  # fmt: skip
_TEXT_COLUMNS = ("caption", "captions", "text", "sentences", "sentence")
_ID_COLUMNS = ("image_id", "img_id", "filename", "file_name")
#: How to read images kept elsewhere: the explicit way out of the data folder.
_ROOT_FIX = ", or pass image_root=FOLDER (the folder holding the images) to read them there"


@dataclass
class _Image:
    """One image while a file is read: where it is and its captions."""

    ref: Path | ImageRef
    split: str | None
    captions: list[str] = field(default_factory=list)


class _Collected:
    """Images by id, in order of first appearance, as a reader meets their captions."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.images: dict[str, _Image] = {}

    def add(self, image_id: str, ref: Path | ImageRef, split: str | None,
            captions: list[Any], row: str) -> None:  # fmt: skip
        """Captions of ``image_id``; ``row`` names where they were read (for messages)."""
        split = _split(split, self.where, row)
        seen = self.images.setdefault(image_id, _Image(ref, split))
        if seen.split is None:  # a row without a split takes the image's split from another
            seen.split = split
        if split is not None and seen.split != split:
            raise DataError(
                f"{self.where}: image {image_id!r} is in both the {seen.split} and the {split} "
                f"split ({row}); splits are made by image, so give each image one split"
            )
        if isinstance(ref, Path) and seen.ref != ref:
            raise DataError(f"{self.where}: image id {image_id!r} names two files ({row})")
        for c in captions:
            seen.captions.append(_caption(c, self.where, f"{row}, image {image_id!r}"))

    def splits(self) -> dict[str, list[tuple[str, _Image]]]:
        if not self.images:
            raise DataError(f"{self.where}: no captions found; give image-caption rows")
        out: dict[str, list[tuple[str, _Image]]] = {}
        for image_id, image in self.images.items():
            if not image.captions:
                raise DataError(
                    f"{self.where}: image {image_id!r} has no captions; give it at least one "
                    "or drop it"
                )
            out.setdefault(image.split or "train", []).append((image_id, image))
        return out


def _split(value: Any, where: str, row: str) -> str | None:
    if value is None or value == "":
        return None
    split = SPLIT_NAMES.get(str(value).strip().lower())
    if split is None:
        raise DataError(
            f"{where}: unknown split {value!r} ({row}); valid: train, val, test "
            "(restval counts as train)"
        )
    return split


def _caption(value: Any, where: str, row: str) -> str:
    if isinstance(value, dict) and "raw" in value:  # Karpathy / Flickr sentences
        value = value["raw"]
    if not isinstance(value, str):
        raise DataError(
            f"{where}: a caption is text, got {type(value).__name__} {str(value)[:40]!r} ({row}); "
            "write captions as strings"
        )
    if not value.strip():
        raise DataError(f"{where}: empty caption ({row}); write the caption or drop the row")
    if len(value) > MAX_CAPTION_CHARS:
        raise DataError(
            f"{where}: caption of {len(value):,} characters ({row}), more than "
            f"{MAX_CAPTION_CHARS:,}; a caption is a sentence: check the column"
        )
    return value.strip()


# ----------------------------------------------------------------- which layout


def paired_format(path: Path) -> str | None:
    """``"csv"``, ``"jsonl"``, ``"karpathy"`` or ``"hf"``: the layout at ``path`` (from
    names alone), or ``None``."""
    if path.is_file():
        if path.name in KARPATHY_FILES:
            return "karpathy"
        return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    if not path.is_dir():
        return None
    if any((path / k).is_file() for k in KARPATHY_FILES):
        return "karpathy"
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "hf"
    for name, kind in (("captions.csv", "csv"), ("captions.jsonl", "jsonl")):
        if (path / name).is_file():
            return kind
    return None


def _layout_file(path: Path, kind: str) -> Path:
    if path.is_file():
        return path
    names = KARPATHY_FILES if kind == "karpathy" else (f"captions.{kind}",)
    return next(path / n for n in names if (path / n).is_file())


def read_paired(
    path: str | Path,
    *,
    image_size: int | tuple[int, int] | None = None,
    image_root: str | Path | None = None,
) -> dict[str, RawPairs]:
    """Each split's :class:`~ddkit.data.paired.RawPairs` read from ``path`` (see the module),
    images decoded (resized to ``image_size`` when given). ``image_root``: where relative
    image paths start (default: the caption file's folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"paired dataset {str(path)!r}: no such file or folder")
    kind = paired_format(path)
    if kind is None:
        raise ConfigError(
            f"{str(path)!r} is not a paired dataset ddkit reads: give a .csv or .jsonl file of "
            "image paths and captions, a Hugging Face save_to_disk folder, or a Karpathy "
            f"split file ({', '.join(KARPATHY_FILES)}) or its folder"
        )
    size = image_size_of(image_size)
    file = path if kind == "hf" else _layout_file(path, kind)
    base = Path(image_root).expanduser() if image_root is not None else file.parent
    if image_root is not None and not base.is_dir():
        raise ConfigError(f"image_root {str(base)!r} is not a folder")
    if kind == "hf":
        return _decode(_read_hf(path, path if image_root is None else base), size, str(path), path)
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "karpathy": _read_karpathy}[kind]
    return _decode(reader(file, base), size, str(file), base)


def _text(file: Path) -> str:
    data = read_regular_file(file, max_bytes=MAX_CAPTION_FILE_BYTES)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{str(file)!r} is not UTF-8 text ({err.reason})") from None


def _ref(value: Any, base: Path, where: str, row: str) -> Path:
    """The image file ``value`` names, relative to ``base``: resolved, and refused unless a
    regular file inside ``base`` (:func:`~ddkit.data.paths.inside_root`); a missing one is
    returned as it is, for :func:`_decode` to name with the others missing."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: no image path ({row}); give each row its image file")
    path = base / value.strip()
    if not os.path.lexists(path):
        return path
    return inside_root(path, base, f"{where}: {row}", noun="image", fix=_ROOT_FIX)


# ----------------------------------------------------------------- CSV / JSONL


def _read_csv(file: Path, base: Path) -> _Collected:
    where = str(file)
    try:
        rows = [r for r in csv.reader(io.StringIO(_text(file), newline="")) if r]
    except csv.Error as err:
        raise FileFormatError(f"{where}: not a readable CSV file ({err})") from None
    if len(rows) < 2:
        raise DataError(f"{where}: needs a header row (image,caption) and at least one data row")
    header = [h.strip().lower() for h in rows[0]]
    for need in ("image", "caption"):
        if need not in header:
            raise DataError(
                f"{where}: no {need!r} column (columns: {', '.join(header)}); name the image "
                "path column 'image' and the text column 'caption'"
            )
    out = _Collected(where)
    for n, r in enumerate(rows[1:], start=1):
        if len(r) != len(header):
            raise DataError(
                f"{where}: data row {n} has {len(r)} cells, the header {len(header)}; quote "
                "captions that hold commas"
            )
        cell = dict(zip(header, r))
        row = f"data row {n}"
        ref = _ref(cell["image"], base, where, row)
        image_id = cell.get("image_id") or cell["image"].strip()
        out.add(image_id, ref, cell.get("split"), [cell["caption"]], row)
    return out


def _read_jsonl(file: Path, base: Path) -> _Collected:
    where = str(file)
    out = _Collected(where)
    for n, line in enumerate(_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        row = f"line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise FileFormatError(f"{where}: line {n} is not JSON ({err.msg})") from None
        if not isinstance(obj, dict) or "image" not in obj:
            raise DataError(f"{where}: line {n} needs an object with an 'image' path")
        if ("caption" in obj) == ("captions" in obj):
            raise DataError(
                f"{where}: line {n} needs 'caption' (a string) or 'captions' (a list), one of them"
            )
        caps = [obj["caption"]] if "caption" in obj else obj["captions"]
        if not isinstance(caps, list) or not caps:
            raise DataError(f"{where}: line {n}: 'captions' must be a non-empty list of strings")
        ref = _ref(obj["image"], base, where, row)
        image_id = str(obj.get("image_id") or obj["image"].strip())
        out.add(image_id, ref, obj.get("split"), caps, row)
    return out


# ----------------------------------------------------------------- Karpathy


def _read_karpathy(file: Path, base: Path) -> _Collected:
    where = str(file)
    try:
        doc = json.loads(_text(file))
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{where}: corrupt JSON ({err})") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise FileFormatError(f"{where}: not a Karpathy split file (no 'images' list)")
    out = _Collected(where)
    for n, img in enumerate(images):
        row = f"images[{n}]"
        if not isinstance(img, dict) or not isinstance(img.get("filename"), str):
            raise DataError(f"{where}: {row} has no 'filename'")
        if "split" not in img:
            raise DataError(f"{where}: {row} has no 'split' (train, restval, val or test)")
        sentences = img.get("sentences")
        if not isinstance(sentences, list):
            raise DataError(f"{where}: {row} has no 'sentences' list")
        sub = str(img.get("filepath") or "")
        name = f"{sub}/{img['filename']}" if sub else img["filename"]
        if sub and not (base / name).exists() and (base / img["filename"]).exists():
            ref = _ref(img["filename"], base, where, row)  # image_root holds the files flat
        else:
            ref = _ref(name, base, where, row)
        out.add(name, ref, img["split"] if img["split"] else "''", sentences, row)
    return out


# ----------------------------------------------------------------- Hugging Face


def _read_hf(folder: Path, base: Path) -> _Collected:
    """The captions of a saved dataset; an image row stored as a path, not bytes, must name a
    regular file inside ``base`` (the folder, unless ``image_root`` is given)."""
    where = str(folder)
    datasets = require_extra("datasets", "hf", f"paired dataset {where!r}")
    from ddkit.data.shards import ArrowImage

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise FileFormatError(f"{where}: not a readable saved dataset ({err})") from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    out = _Collected(where)
    for split, table in parts.items():
        image_col, text_col, id_col = _hf_columns(table, datasets, where)
        raw = table.cast_column(image_col, datasets.Image(decode=False))
        _check_hf_paths(raw, image_col, base, where, split)
        texts = table[text_col]
        ids = table[id_col] if id_col else None
        # a split column (Flickr30k as some hubs save it: one part, a split per row) decides
        own = table["split"] if "split" in table.features else [split or None] * len(texts)
        for i, value in enumerate(texts):
            row = f"split {split!r} row {i}" if split else f"row {i}"
            image_id = (f"{split}/{i}" if split else str(i)) if ids is None else str(ids[i])
            ref = ArrowImage(raw, image_col, i, table._fingerprint, folder)
            caps = value if isinstance(value, list) else [value]
            out.add(image_id, ref, own[i], caps, row)
    return out


def _check_hf_paths(raw: Any, column: str, base: Path, where: str, split: str) -> None:
    """Refuse the rows of ``raw``'s image ``column`` that hold no bytes and name a file outside
    ``base`` or no file at all (read from the Arrow column: no image is decoded here)."""
    chunks = raw.select_columns([column]).with_format("arrow")[:].column(column).chunks
    paths = [p for c in chunks for p in c.field("path").to_pylist()]
    unstored = [n for c in chunks for n in c.field("bytes").is_null().to_pylist()]
    for i in (i for i, no_bytes in enumerate(unstored) if no_bytes):
        row = f"split {split!r} row {i}" if split else f"row {i}"
        if not paths[i]:
            raise DataError(f"{where}: {row} has no image (neither bytes nor a path)")
        inside_root(Path(paths[i]), base, f"{where}: {row}", noun="image", fix=_ROOT_FIX)


def _hf_columns(table: Any, datasets: Any, where: str) -> tuple[str, str, str | None]:
    """The image, text and (optional) image-id columns of a saved dataset's features."""
    features = table.features
    images = [n for n, f in features.items() if isinstance(f, datasets.Image)]
    if not images:
        raise DataError(f"{where}: no Image column among {list(features)}")
    text = next((c for c in _TEXT_COLUMNS if c in features), None)
    if text is None:
        raise DataError(
            f"{where}: no caption column among {list(features)}; name it one of "
            f"{', '.join(_TEXT_COLUMNS)}"
        )
    return images[0], text, next((c for c in _ID_COLUMNS if c in features), None)


# ----------------------------------------------------------------- decoding


def _decode(
    collected: _Collected, size: tuple[int, int] | None, where: str, root: Path
) -> dict[str, RawPairs]:
    """Every split's images decoded (:mod:`ddkit.data.folders`), with their captions."""
    splits = collected.splits()
    missing = [(i, im.ref) for items in splits.values() for i, im in items
               if isinstance(im.ref, Path) and not im.ref.is_file()]  # fmt: skip
    if missing:
        image_id, ref = missing[0]
        raise DataError(
            f"{where}: image file {str(ref)!r} (image {image_id!r}) does not exist"
            + (f", nor {len(missing) - 1} other(s)" if len(missing) > 1 else "")
            + "; fix the paths or pass image_root"
        )
    listing = FolderListing(
        {s: {"images": [im.ref for _, im in items]} for s, items in splits.items()},
        ["images"], size, where, root,
    )  # fmt: skip
    plan = plan_decode(listing)
    n = listing.total
    check_memory(f"decoding {n:,} images of {where}", n * int(np.prod(plan.shape)) * 9,
                 "pass a smaller image_size", DataError)  # fmt: skip
    progress = decode_progress(listing)
    out = {}
    for split, items in splits.items():
        x = np.stack([img for img, _ in decoded_images(listing, plan, split, progress)])
        out[split] = RawPairs(x, [im.captions for _, im in items], [i for i, _ in items])
    progress.close()
    return out


# ----------------------------------------------------------------- names


def _root_reader(name: str, file: str | None):  # noqa: ANN202 - a PairedReader
    """The reader of dataset ``name``: any layout at ``root``, or the split file ``file``
    (at ``root``, or ``root`` itself)."""

    def read(options: PairedOptions) -> dict[str, RawPairs]:
        options.refuse(name, "captions_per_image")
        if options.root is None:
            raise ConfigError(f"dataset {name!r} reads files from disk: pass root=PATH (--root)")
        path = Path(options.root).expanduser()
        if file is not None and path.is_dir():
            if not (path / file).is_file():
                raise ConfigError(
                    f"{name}: no {file} in {str(path)!r}; pass the folder holding the Karpathy "
                    "split file (or the file itself) as root"
                )
            path = path / file
        return read_paired(path, image_size=options.image_size, image_root=options.image_root)

    return read


for _name, _file, _help in (
    ("captions", None, "image-caption pairs: a .csv / .jsonl file, a save_to_disk folder or a "
     "Karpathy split file (root)"),
    ("coco", "dataset_coco.json", "COCO captions, Karpathy split (root: dataset_coco.json and "
     "the image folders)"),
    ("flickr30k", "dataset_flickr30k.json", "Flickr30k captions, Karpathy split (root: "
     "dataset_flickr30k.json; images there or under image_root)"),
):  # fmt: skip
    register_paired(_name, _root_reader(_name, _file), needs_root=True, help=_help)


register_path_reader(paired_format, read_paired)
