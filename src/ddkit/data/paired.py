"""Paired datasets: images and the captions that describe them, without classes (issue 71).

The data side of vision-language dataset distillation (X. Wu, X. Zhang, Z. Deng, O.
Russakovsky, "Vision-Language Dataset Distillation", TMLR 2024, arXiv:2308.07545; LoRS, Xu et
al., CVPR 2024, arXiv:2403.07410): a :class:`PairedDataset` holds normalised images, every
caption as padded token ids, and the image each caption describes. Splits are made by image,
never by caption, so no image of the test split is seen in training through another caption.

Where paired data comes from:

* :func:`paired_from_arrays`: images and a list of captions per image, from Python;
* :func:`load_paired_splits` (every split) / :func:`load_paired` (one) with a registered name
  (:func:`register_paired`) or a path:

  - ``captioned-digits``, ``captioned-mnist5k`` (embedded), ``captioned-mnist``,
    ``captioned-fashionmnist`` (their base read as it always is): a **synthetic caption
    benchmark** that needs no download, captions composed from templates out of what each
    painted image shows (:mod:`ddkit.data.captioned`);
  - ``scenes-mnist-fashion`` (the data root), ``scenes-mnist5k`` (embedded): canvases
    composed of several real MNIST / Fashion-MNIST objects, captions from a grammar
    (:mod:`ddkit.data.scenes`);
  - ``captions``, ``coco``, ``flickr30k`` with ``root=PATH``, or the path itself: a CSV or
    JSONL file of image paths and captions, a Hugging Face ``datasets`` folder
    (``save_to_disk``), or the Karpathy split file of COCO / Flickr30k with its images
    (:mod:`ddkit.data.captions`).

Captions become token ids through a :class:`~ddkit.data.tokenize.Tokenizer` (``"word"``: built
from the train split's captions, offline; ``"hf:PATH"``: a local Hugging Face tokenizer); every
split of a dataset shares the train split's tokenizer and normalisation.

How the command line dispatches (for the methods' side): every paired name is also a dataset
name of modality ``"paired"`` (``ddkit list``; :func:`ddkit.data.builtin.modality_of`, which
also claims a captions file or folder for it through :func:`is_paired`) that
:func:`ddkit.data.load_dataset` refuses in one line, because pairs have no labels to build an
``ImageDataset`` from. A command given ``--dataset NAME_OR_PATH`` asks that modality for the
splits (:mod:`ddkit.data.modalities.paired`), which calls
``load_paired_splits(NAME_OR_PATH, root=...)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddkit.data.builtin import RawData, register_dataset
from ddkit.data.dataset import (
    channel_stats,
    check_images,
    check_val_fraction,
    convention_test_rows,
    normalise,
    to_nchw,
)
from ddkit.data.spec import DatasetSpec
from ddkit.data.tokenize import DEFAULT_MAX_LEN, Tokenizer, make_tokenizer
from ddkit.errors import ConfigError, DataError
from ddkit.rng import derive_seed

__all__ = [
    "SPLITS",
    "PairedDataset",
    "PairedLoader",
    "PairedOptions",
    "PairedSplits",
    "RawPairs",
    "is_paired",
    "load_paired",
    "load_paired_splits",
    "paired_from_arrays",
    "paired_splits",
    "register_paired",
]

#: The splits a paired dataset may have.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class PairedDataset:
    """Image-caption pairs without classes.

    ``images`` ``(N, C, H, W)`` float32, normalised by ``spec.mean`` / ``spec.std``;
    ``captions`` ``(M, L)`` int64 token ids padded with ``tokenizer.pad_id``
    (``L = tokenizer.max_len``); ``caption_image`` ``(M,)`` int64: the image row each caption
    describes (every image has at least one); ``spec``: modality ``"paired"``, no classes;
    ``image_ids``: one unique id per image (a file path, a dataset's id); ``texts``: the
    captions as text, row for row with ``captions`` (empty where not kept); ``attributes``
    ``(N, A)`` int64 or ``None``: what a synthetic benchmark painted (named by
    ``attribute_names``), for analysis only.
    """

    images: torch.Tensor
    captions: torch.Tensor
    caption_image: torch.Tensor
    spec: DatasetSpec
    tokenizer: Tokenizer
    image_ids: tuple[str, ...]
    texts: tuple[str, ...] = ()
    attributes: torch.Tensor | None = None
    attribute_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_ids", tuple(self.image_ids))
        object.__setattr__(self, "texts", tuple(self.texts))
        if self.spec.kind.dataset_type() is not PairedDataset:
            raise DataError(f"a paired dataset needs a 'paired' spec, got {self.spec.modality!r}")
        check_images(self.images, self.spec)
        self._check_captions()
        n = len(self.images)
        if len(self.image_ids) != n or len(set(self.image_ids)) != n:
            raise DataError(f"{n} images need {n} distinct image ids, got {len(self.image_ids)}")
        if self.texts and len(self.texts) != len(self.captions):
            raise DataError(f"{len(self.captions)} captions but {len(self.texts)} caption texts")
        if self.attributes is not None and (
            self.attributes.dtype != torch.long or self.attributes.shape[0] != n
            or self.attributes.ndim != 2 or self.attributes.shape[1] != len(self.attribute_names)
        ):  # fmt: skip
            raise DataError("attributes must be int64 (N, A) with one name per column")

    def _check_captions(self) -> None:
        c, ci, n = self.captions, self.caption_image, len(self.images)
        if not isinstance(c, torch.Tensor) or c.dtype != torch.long or c.ndim != 2:
            raise DataError("captions must be an int64 tensor (M, L) of token ids")
        if c.shape[1] != self.tokenizer.max_len:
            raise DataError(
                f"captions hold {c.shape[1]} ids each, the tokenizer pads to {self.tokenizer.max_len}"
            )
        if len(c) and (c.min() < 0 or c.max() >= self.tokenizer.vocab_size):
            raise DataError(f"token ids outside the tokenizer's [0, {self.tokenizer.vocab_size})")
        if not isinstance(ci, torch.Tensor) or ci.dtype != torch.long or ci.shape != (len(c),):
            raise DataError(f"caption_image must be int64 ({len(c)},): one image per caption")
        if len(ci) and (ci.min() < 0 or ci.max() >= n):
            raise DataError(f"caption_image holds rows outside the {n} images")
        if n and (torch.bincount(ci, minlength=n) == 0).any():
            bad = int(torch.nonzero(torch.bincount(ci, minlength=n) == 0)[0])
            raise DataError(f"image {self.image_ids[bad]!r} has no caption; every image needs one")

    def __len__(self) -> int:
        """The number of images."""
        return int(self.images.shape[0])

    @property
    def num_captions(self) -> int:
        return int(self.captions.shape[0])

    def first_caption_rows(self) -> torch.Tensor:
        """``(N,)``: the row in ``captions`` of each image's first caption."""
        rows = torch.arange(self.num_captions, device=self.captions.device)
        first = torch.full((len(self),), self.num_captions, dtype=torch.long, device=rows.device)
        return first.scatter_reduce(0, self.caption_image, rows, "amin")

    def first_captions(self) -> torch.Tensor:
        """``(N, L)``: one caption per image, its first."""
        return self.captions[self.first_caption_rows()]

    def subset(self, index: torch.Tensor) -> PairedDataset:
        """The images at ``index`` (distinct rows, in that order) with all their captions."""
        index = torch.as_tensor(index, dtype=torch.long).cpu()
        new = torch.full((len(self),), -1, dtype=torch.long)
        new[index] = torch.arange(len(index))
        if (new >= 0).sum() != len(index):
            raise DataError("subset: image rows must be distinct")
        ci = self.caption_image.cpu()
        keep = torch.nonzero(new[ci] >= 0).flatten()
        keep = keep[torch.argsort(new[ci[keep]], stable=True)]  # captions in image order
        return dataclasses.replace(
            self,
            images=self.images[index.to(self.images.device)],
            captions=self.captions[keep.to(self.captions.device)],
            caption_image=new[ci[keep]].to(self.caption_image.device),
            image_ids=tuple(self.image_ids[i] for i in index.tolist()),
            texts=tuple(self.texts[i] for i in keep.tolist()) if self.texts else (),
            attributes=None if self.attributes is None else self.attributes[index],
        )

    def to(self, device: torch.device | str) -> PairedDataset:
        """This dataset with its tensors on ``device``."""
        return dataclasses.replace(
            self,
            images=self.images.to(device),
            captions=self.captions.to(device),
            caption_image=self.caption_image.to(device),
        )


@dataclass(frozen=True, eq=False)
class PairedSplits:
    """Train / test (and optional validation) splits of pairs, sharing one spec and
    tokenizer; no image is in two splits."""

    train: PairedDataset
    test: PairedDataset
    val: PairedDataset | None = None

    @property
    def spec(self) -> DatasetSpec:
        return self.train.spec

    @property
    def tokenizer(self) -> Tokenizer:
        return self.train.tokenizer

    def split(self, name: str) -> PairedDataset:
        """The split called ``name`` (``train``, ``val`` or ``test``), or a one-line error."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        part = getattr(self, name)
        if part is None:
            raise ConfigError(f"dataset {self.spec.name!r} has no {name} split; ask val_fraction")
        return part


@dataclass(frozen=True)
class RawPairs:
    """One split as a reader returns it: images ``(N, C, H, W)`` (or ``(N, H, W)``; 8-bit or
    in ``[0, 1]``), a list of captions per image, the image ids, optional attributes."""

    images: np.ndarray | torch.Tensor
    captions: list[list[str]]
    image_ids: list[str]
    attributes: np.ndarray | torch.Tensor | None = None
    attribute_names: tuple[str, ...] = ()


def _flatten(captions: list[list[str]], ids: list[str], where: str) -> tuple[list[str], list[int]]:
    """All captions in one list and the image of each; an image without captions or an
    empty caption is a one-line DataError."""
    if not isinstance(captions, list | tuple) or len(captions) != len(ids):
        raise DataError(f"{where}: give one list of captions per image ({len(ids)} images)")
    texts, owner = [], []
    for i, caps in enumerate(captions):
        caps = [caps] if isinstance(caps, str) else caps
        if not isinstance(caps, list | tuple) or not caps:
            raise DataError(f"{where}: image {ids[i]!r} has no captions; give it at least one")
        for c in caps:
            if not isinstance(c, str) or not c.strip():
                raise DataError(
                    f"{where}: image {ids[i]!r} has an empty caption ({c!r}); write the caption "
                    "or drop it"
                )
            texts.append(c.strip())
            owner.append(i)
    return texts, owner


def _image_ids(ids: list[str] | None, n: int, where: str) -> list[str]:
    ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(ids) != n:
        raise DataError(f"{where}: {n} images but {len(ids)} image ids")
    seen: dict[str, int] = {}
    for i, x in enumerate(ids):
        if x in seen:
            raise DataError(f"{where}: image id {x!r} is given twice (rows {seen[x]} and {i})")
        seen[x] = i
    return ids


def paired_spec(name: str, raw: torch.Tensor) -> DatasetSpec:
    """The spec of paired images ``raw`` (train split, raw scale): their statistics."""
    mean, std = channel_stats(raw)
    return DatasetSpec(name=name, num_classes=0, channels=raw.shape[1],
                       image_size=tuple(raw.shape[2:]), mean=mean, std=std,
                       modality="paired")  # fmt: skip


def _dataset(
    raw: RawPairs, spec: DatasetSpec | None, tokenizer: Tokenizer | str | None, max_len: int,
    name: str, where: str,
) -> PairedDataset:  # fmt: skip
    x = to_nchw(raw.images)
    ids = _image_ids(raw.image_ids, len(x), where)
    texts, owner = _flatten(raw.captions, ids, where)
    spec = spec or paired_spec(name, x)
    if tuple(x.shape[1:]) != spec.shape:
        raise DataError(f"{where}: images are {tuple(x.shape[1:])}, the train split {spec.shape}")
    tok = make_tokenizer(tokenizer, texts, max_len=max_len)
    attrs = None if raw.attributes is None else torch.as_tensor(np.asarray(raw.attributes))
    return PairedDataset(
        images=normalise(x, spec), captions=tok.encode(texts),
        caption_image=torch.tensor(owner, dtype=torch.long), spec=spec, tokenizer=tok,
        image_ids=tuple(ids), texts=tuple(texts),
        attributes=None if attrs is None else attrs.long(),
        attribute_names=raw.attribute_names if attrs is not None else (),
    )  # fmt: skip


def paired_from_arrays(
    images: np.ndarray | torch.Tensor,
    captions: list[list[str]],
    *,
    tokenizer: Tokenizer | str | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    name: str = "custom",
    image_ids: list[str] | None = None,
    spec: DatasetSpec | None = None,
) -> PairedDataset:
    """A :class:`PairedDataset` from user arrays: ``images`` ``(N, H, W)``, ``(N, C, H, W)``
    or channels-last (8-bit scaled to ``[0, 1]``) and ``captions[i]``, the captions of image
    ``i``. ``tokenizer``: ``"word"`` (default: built from these captions), ``"hf:PATH"`` or a
    :class:`Tokenizer`; ``spec``: normalise with another split's statistics (a test set
    built with its train set's ``spec`` and ``tokenizer``), else with these images' own.
    ``image_ids`` default to the row numbers."""
    raw = RawPairs(images, list(captions), image_ids)  # type: ignore[arg-type]
    return _dataset(raw, spec, tokenizer, max_len, name, name)


def paired_splits(
    parts: dict[str, RawPairs],
    *,
    name: str,
    tokenizer: Tokenizer | str | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> PairedSplits:
    """:class:`PairedSplits` from each split's :class:`RawPairs`: normalised with the train
    split's statistics, tokenized with the train split's tokenizer (a word vocabulary from its
    captions). Without a test split, every 5th image (index % 5 == 0) is the test split;
    ``val_fraction`` carves a seeded share of the train *images* out as validation (data with
    a val split of its own refuses it). An image id in two splits is a one-line DataError."""
    val_fraction = check_val_fraction(val_fraction)
    unknown = sorted(set(parts) - set(SPLITS))
    if unknown or "train" not in parts:
        raise DataError(f"{name}: splits must be train[, val, test], got {sorted(parts)}")
    parts = dict(parts)
    if "test" not in parts:
        parts["train"], parts["test"] = _carve(parts["train"], convention_test_rows)
    if val_fraction > 0 and "val" in parts:
        raise ConfigError(f"{name} has a val split already; leave val_fraction at 0")
    if val_fraction > 0:
        g = torch.Generator().manual_seed(derive_seed(seed, "paired-val"))

        def held(n: int) -> torch.Tensor:
            k = max(1, round(val_fraction * n))
            if k >= n:
                raise ConfigError(f"val_fraction {val_fraction} leaves no train images")
            mask = torch.zeros(n, dtype=torch.bool)
            mask[torch.randperm(n, generator=g)[:k]] = True
            return mask

        parts["train"], parts["val"] = _carve(parts["train"], held)
    _check_disjoint(parts, name)
    if not parts["train"].image_ids:
        raise DataError(
            f"{name}: the train split has no images (without a test split every 5th image, "
            "from the first, is the test split); give more images"
        )
    train = _dataset(parts["train"], None, tokenizer, max_len, name, f"{name} train")
    other = {
        s: _dataset(parts[s], train.spec, train.tokenizer, max_len, name, f"{name} {s}")
        for s in ("test", "val") if s in parts
    }  # fmt: skip
    return PairedSplits(train, other["test"], other.get("val"))


def _carve(raw: RawPairs, rows_of: Any) -> tuple[RawPairs, RawPairs]:
    """``raw`` split by image: the images where ``rows_of(n)`` is False, and the others."""
    x = to_nchw(raw.images)
    mask = rows_of(len(x))
    parts = []
    for m in (~mask, mask):
        ix = torch.nonzero(m).flatten().tolist()
        attrs = None if raw.attributes is None else np.asarray(raw.attributes)[ix]
        captions, ids = [raw.captions[i] for i in ix], [raw.image_ids[i] for i in ix]
        parts.append(dataclasses.replace(raw, images=x[ix], captions=captions, image_ids=ids,
                                         attributes=attrs))  # fmt: skip
    return parts[0], parts[1]


def _check_disjoint(parts: dict[str, RawPairs], name: str) -> None:
    seen: dict[str, str] = {}
    for split, raw in parts.items():
        for i in raw.image_ids:
            if seen.get(str(i), split) != split:
                raise DataError(
                    f"{name}: image {str(i)!r} is in both the {seen[str(i)]} and the {split} "
                    "split; splits are made by image, so give each image one split"
                )
            seen[str(i)] = split


# ------------------------------------------------------------- names


@dataclass(frozen=True)
class PairedOptions:
    """What :func:`load_paired_splits` passes a reader: ``root`` (a data folder or file),
    ``image_size`` (resize to), ``image_root`` (where relative image paths start), ``seed``
    and ``captions_per_image`` (a synthetic benchmark's); ``None`` where not given. A reader
    refuses in one line what does not apply to it."""

    root: str | None = None
    image_size: tuple[int, int] | None = None
    image_root: str | Path | None = None
    seed: int = 0
    captions_per_image: int | None = None

    def refuse(self, name: str, *fields: str) -> None:
        """A one-line ConfigError where one of ``fields`` was given to ``name``."""
        given = [f for f in fields if getattr(self, f) is not None]
        if given:
            raise ConfigError(f"dataset {name!r} takes no {given[0]}; leave it unset")


PairedReader = Callable[[PairedOptions], dict[str, RawPairs]]


class PairedLoader:
    """The registry entry of a paired dataset (:data:`ddkit.data.DATASETS`, modality
    ``paired``): :meth:`read` gives its splits' :class:`RawPairs`; called as a class dataset's
    loader (:func:`ddkit.data.load_dataset`), it refuses in one line: pairs have no classes."""

    def __init__(self, name: str, reader: PairedReader) -> None:
        self.name, self.read = name, reader

    def __call__(self, root: str | None) -> RawData:
        raise ConfigError(
            f"dataset {self.name!r} holds image-caption pairs without classes: distil it with a "
            "vision-language method, or load it with ddkit.data.paired.load_paired_splits"
        )


def register_paired(name: str, reader: PairedReader, *, needs_root: bool, help: str) -> None:
    """Register the paired dataset ``name``: ``reader`` gives its splits' :class:`RawPairs`.
    It is a dataset name of modality ``"paired"`` (``ddkit list``,
    :func:`ddkit.data.builtin.modality_of`) whose :class:`PairedLoader`
    :func:`ddkit.data.load_dataset` refuses in one line: pairs have no classes."""
    register_dataset(name, needs_root=needs_root, modality="paired", help=help)(
        PairedLoader(name, reader)
    )


def _registered_reader(name: str) -> PairedReader | None:
    """The reader of the registered paired dataset ``name`` (``None``: no such name)."""
    from ddkit.data.builtin import DATASETS

    loader = DATASETS.get(name) if name in DATASETS else None
    return loader.read if isinstance(loader, PairedLoader) else None


#: The reader of paired data at a path: ``layout_of(path) -> str | None`` (from names alone) and
#: ``read(path, image_size=, image_root=) -> {split: RawPairs}``; :mod:`ddkit.data.captions`
#: registers its own when ``ddkit.data`` is imported (:func:`register_path_reader`).
_PATH_READER: dict[str, Callable[..., Any]] = {}


def register_path_reader(layout_of: Callable[[Path], str | None], read: Callable[..., Any]) -> None:
    """Make ``layout_of`` / ``read`` the reader of paired data at a path."""
    _PATH_READER.update(layout_of=layout_of, read=read)


def is_paired(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` is a paired dataset: a registered name
    (:func:`register_paired`), or a path :mod:`ddkit.data.captions` reads (told from its
    names, nothing read)."""
    from ddkit.data.builtin import DATASETS

    if str(name_or_path) in DATASETS:  # a dataset's name, never a file that happens to share it
        return _registered_reader(str(name_or_path)) is not None
    return _PATH_READER["layout_of"](Path(name_or_path).expanduser()) is not None


def load_paired_splits(
    name_or_path: str | Path,
    *,
    root: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    tokenizer: Tokenizer | str | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    val_fraction: float = 0.0,
    seed: int = 0,
    captions_per_image: int | None = None,
    image_root: str | Path | None = None,
) -> PairedSplits:
    """Every split of the paired dataset ``name_or_path``: a registered name
    (:func:`register_paired`: the synthetic caption benchmarks, which ``seed`` and
    ``captions_per_image`` make; ``captions``, ``coco``, ``flickr30k``, which read ``root``) or
    a path :mod:`ddkit.data.captions` reads. ``image_size`` resizes files' images;
    ``image_root`` is where relative image paths start. ``tokenizer``: ``"word"`` (default)
    or ``"hf:PATH"``; ``max_len``: token ids per caption; ``val_fraction``: a seeded share of
    train images held out where the data has no val split."""
    from ddkit.data.folders import image_size_of

    options = PairedOptions(root, image_size_of(image_size), image_root, seed, captions_per_image)
    name = str(name_or_path)
    reader = _registered_reader(name)
    if reader is not None:
        parts, name = reader(options), name.lower()
    else:
        options.refuse(name, "captions_per_image")
        read = _PATH_READER["read"]
        parts = read(name_or_path, image_size=image_size, image_root=image_root)
        name = Path(name).stem or "paired"
    return paired_splits(
        parts, name=name, tokenizer=tokenizer, max_len=max_len, val_fraction=val_fraction,
        seed=seed,
    )  # fmt: skip


def load_paired(name_or_path: str | Path, split: str = "train", **options: Any) -> PairedDataset:
    """One split (``train``, ``val`` or ``test``) of :func:`load_paired_splits`
    (``options``: its keyword arguments); the statistics and tokenizer are the train
    split's whichever split is asked."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return load_paired_splits(name_or_path, **options).split(split)
