"""Paired datasets: images and the captions that describe them, without classes (issue 71).

The data side of vision-language dataset distillation (X. Wu, X. Zhang, Z. Deng, O.
Russakovsky, "Vision-Language Dataset Distillation", TMLR 2024, arXiv:2308.07545; LoRS, Xu et
al., CVPR 2024, arXiv:2403.07410): a :class:`PairedDataset` holds normalised images, every
caption as padded token ids, and the image each caption describes. Splits are made by image,
never by caption, so no image of the test split is seen in training through another caption.

Where paired data comes from:

* :func:`paired_from_arrays`: images and a list of captions per image, from Python;
* :func:`load_paired` / :func:`load_paired_splits` with a name or a path:

  - ``captioned-digits``, ``captioned-mnist5k`` (embedded), ``captioned-mnist``,
    ``captioned-fashionmnist`` (read from ``root`` as their base datasets are): a **synthetic
    caption benchmark** that needs no download. Each image of the base dataset is painted with
    an object colour and a background colour drawn from ``seed``, and gets
    ``captions_per_image`` (default 5) captions composed from what it shows (the digit or
    garment, its colour, the background colour) in phrasings drawn from ``seed``. The captions
    are generated from templates, not written by people: recall on it measures whether a
    method keeps the attributes, not language understanding. Same name and seed, same data.
  - a path: a CSV or JSONL file of image paths and captions, a Hugging Face ``datasets``
    folder (``save_to_disk``) with an image and a text column, or a folder holding the
    Karpathy split file of COCO or Flickr30k (``dataset_coco.json`` / ``dataset_flickr30k.json``)
    and the images: :mod:`ddkit.data.captions` reads them.

Captions become token ids through a :class:`~ddkit.data.tokenize.Tokenizer` (``"word"``: built
from the train split's captions, offline; ``"hf:PATH"``: a local Hugging Face tokenizer); every
split of a dataset shares the train split's tokenizer and normalisation.

How the command line dispatches (for the methods' side): the paired names are registered as
datasets of modality ``"paired"`` (:func:`ddkit.methods.base.dataset_modality` gives
``"paired"``; :func:`is_paired` also knows paths), and :func:`ddkit.data.load_dataset` refuses
them in one line, because pairs have no labels to build an ``ImageDataset`` from. A command
that gets ``--dataset NAME_OR_PATH`` asks :func:`is_paired` and, where it is, calls
``load_paired_splits(NAME_OR_PATH, root=..., image_size=..., tokenizer=..., seed=...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddkit.data.builtin import DATASETS, RawData, register_dataset
from ddkit.data.dataset import (
    channel_stats,
    check_images,
    check_val_fraction,
    convention_test_rows,
    normalise,
    to_labels,
    to_nchw,
)
from ddkit.data.spec import DatasetSpec
from ddkit.data.tokenize import DEFAULT_MAX_LEN, Tokenizer, make_tokenizer
from ddkit.errors import ConfigError, DataError
from ddkit.rng import derive_seed

__all__ = [
    "SPLITS",
    "PairedDataset",
    "PairedSplits",
    "is_paired",
    "load_paired",
    "load_paired_splits",
    "paired_from_arrays",
    "paired_splits",
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
        if self.spec.modality != "paired":
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
            raise DataError(f"captions hold {c.shape[1]} ids, the tokenizer pads to max_len")
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
        attribute_names=_ATTRIBUTES if attrs is not None else (),
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
    ``val_fraction`` carves a seeded share of the train *images* out as validation where the
    data has no val split. An image id in two splits is a one-line DataError."""
    val_fraction = check_val_fraction(val_fraction)
    unknown = sorted(set(parts) - set(SPLITS))
    if unknown or "train" not in parts:
        raise DataError(f"{name}: splits must be train[, val, test], got {sorted(parts)}")
    parts = dict(parts)
    if "test" not in parts:
        parts["train"], parts["test"] = _carve(parts["train"], convention_test_rows)
    if val_fraction > 0 and "val" not in parts:
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
    train = _dataset(parts["train"], None, tokenizer, max_len, name, f"{name} train")
    if len(train) == 0:
        raise DataError(f"{name}: the train split has no images")
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
        parts.append(RawPairs(x[ix], [raw.captions[i] for i in ix],
                              [raw.image_ids[i] for i in ix], attrs))  # fmt: skip
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


# ------------------------------------------------------------- the synthetic caption benchmark

_ATTRIBUTES = ("object", "colour", "background")
#: Colour names of :data:`ddkit.data.biased.PALETTE`, then black (a background only).
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "violet",
                "white", "teal", "black")  # fmt: skip
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_PHRASES = (
    "a {fg} {numeral} on a {bg} background",
    "the digit {word} written in {fg} over {bg}",
    "a {fg} handwritten {word} against a {bg} background",
    "a handwritten number {numeral}, coloured {fg}, on {bg}",
    "{word} in {fg} on a {bg} backdrop",
    "an image of the number {word}: {fg} strokes, {bg} background",
    "a {bg} picture with a {fg} {word} in the middle",
    "digit {numeral}, {fg} on {bg}",
)
_GARMENT_PHRASES = (
    "a {fg} {word} on a {bg} background",
    "a photo of a {word} in {fg} over {bg}",
    "a {fg} {word} against a {bg} backdrop",
    "a {word}, coloured {fg}, on {bg}",
    "{fg} {word} shown on a plain {bg} background",
    "an image of a {word}: {fg} on {bg}",
    "a {bg} picture with a {fg} {word} in the middle",
    "{word}, {fg} on {bg}",
)
MAX_CAPTIONS_PER_IMAGE = len(_DIGIT_PHRASES)


def _paint_pair(grey: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Grey images ``(N, 1, H, W)`` in ``[0, 1]`` as RGB: the object (ink) in colour ``fg``,
    the rest in colour ``bg``, blended by the grey value."""
    from ddkit.data.biased import PALETTE

    colours = torch.cat([PALETTE, torch.zeros(1, 3)])  # index 10: black
    return grey * colours[fg][:, :, None, None] + (1 - grey) * colours[bg][:, :, None, None]


def caption_benchmark_split(
    grey: torch.Tensor, labels: torch.Tensor, names: list[str], *, digits: bool,
    captions_per_image: int, seed: int, split: str, prefix: str,
) -> RawPairs:  # fmt: skip
    """One split of the synthetic caption benchmark (see the module): every image painted with
    an object colour (one of the ten palette colours) and a different background colour (the
    other nine or black), drawn from ``(seed, split)``, and ``captions_per_image`` captions
    in distinct phrasings drawn from the same stream."""
    n = len(labels)
    g = torch.Generator().manual_seed(derive_seed(seed, "captioned", split))
    fg = torch.randint(10, (n,), generator=g)
    bg = (fg + torch.randint(1, 11, (n,), generator=g)) % 11  # never the object's colour
    phrases = _DIGIT_PHRASES if digits else _GARMENT_PHRASES
    order = torch.argsort(torch.rand(n, len(phrases), generator=g), dim=1)[:, :captions_per_image]
    captions = []
    for i, (c, f, b) in enumerate(zip(labels.tolist(), fg.tolist(), bg.tolist())):
        words = {"fg": COLOUR_NAMES[f], "bg": COLOUR_NAMES[b],
                 "numeral": names[c], "word": _NUMBERS[c] if digits else names[c]}  # fmt: skip
        captions.append([phrases[p].format(**words) for p in order[i].tolist()])
    images = (_paint_pair(grey, fg, bg) * 255).round().clamp(0, 255).to(torch.uint8)
    attrs = torch.stack([labels, fg, bg], dim=1)
    return RawPairs(images, captions, [f"{prefix}{split}/{i}" for i in range(n)], attrs)


#: Benchmark name -> (base dataset, whether its classes are digits).
BENCHMARKS = {
    "captioned-digits": ("digits", True),
    "captioned-mnist5k": ("mnist5k", True),
    "captioned-mnist": ("mnist", True),
    "captioned-fashionmnist": ("fashionmnist", False),
}


def caption_benchmark(
    name: str, root: str | None = None, *, captions_per_image: int = 5, seed: int = 0
) -> dict[str, RawPairs]:
    """The train and test :class:`RawPairs` of the synthetic caption benchmark ``name``
    (:data:`BENCHMARKS`), from its base dataset's splits (ddkit's convention split where the
    base has no test split)."""
    if not isinstance(captions_per_image, int) or not (
        1 <= captions_per_image <= MAX_CAPTIONS_PER_IMAGE
    ):
        raise ConfigError(
            f"captions_per_image must be an integer in [1, {MAX_CAPTIONS_PER_IMAGE}], "
            f"got {captions_per_image!r}"
        )
    base, digits = BENCHMARKS[name]
    loader = DATASETS.get(base)
    if getattr(loader, "needs_root", False) and root is None:
        raise ConfigError(f"dataset {name!r} paints {base!r}, read from disk: pass root=PATH")
    raw: RawData = loader(root)
    x, y = to_nchw(raw.train_images), to_labels(raw.train_labels, "train labels")
    if raw.test_images is None:
        test = convention_test_rows(len(x))
        xt, yt, x, y = x[test], y[test], x[~test], y[~test]
    else:
        xt, yt = to_nchw(raw.test_images), to_labels(raw.test_labels, "test labels")
    names = [str(c).lower() for c in (raw.class_names or range(10))]
    return {
        split: caption_benchmark_split(
            grey.clamp(0, 1), labels, names, digits=digits, captions_per_image=captions_per_image,
            seed=seed, split=split, prefix="",
        )
        for split, grey, labels in (("train", x, y), ("test", xt, yt))
    }  # fmt: skip


def _refuse_as_classes(name: str):  # noqa: ANN202 - a dataset loader
    def load(root: str | None) -> RawData:
        raise ConfigError(
            f"dataset {name!r} holds image-caption pairs without classes: distil it with a "
            "vision-language method, or load it with ddkit.data.paired.load_paired_splits"
        )

    return load


for _name, (_base, _digits) in BENCHMARKS.items():
    _where = "embedded" if _base in ("digits", "mnist5k") else "data root"
    register_dataset(
        _name,
        needs_root=getattr(DATASETS.get(_base), "needs_root", False),
        modality="paired",
        help=f"synthetic caption benchmark: {_base} painted, captions from templates ({_where})",
    )(_refuse_as_classes(_name))


def is_paired(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` is a paired dataset: a registered name of modality
    ``"paired"``, or a path :mod:`ddkit.data.captions` reads (without reading it whole)."""
    name = str(name_or_path)
    if name in DATASETS:
        return getattr(DATASETS.get(name), "modality", "image") == "paired"
    from ddkit.data.captions import paired_format

    return paired_format(Path(name)) is not None


def load_paired_splits(
    name_or_path: str | Path,
    *,
    root: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    tokenizer: Tokenizer | str | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    val_fraction: float = 0.0,
    seed: int = 0,
    captions_per_image: int = 5,
    image_root: str | Path | None = None,
) -> PairedSplits:
    """Every split of the paired dataset ``name_or_path``: a benchmark name (see the module;
    ``root`` for those read from disk, ``seed`` and ``captions_per_image`` make it) or a
    path :mod:`ddkit.data.captions` reads (``image_size`` resizes, ``image_root`` is where
    relative image paths start). ``tokenizer``: ``"word"`` (default) or ``"hf:PATH"``;
    ``max_len``: token ids per caption; ``val_fraction``: a seeded share of train images held
    out where the data has no val split."""
    name = str(name_or_path)
    if name.lower() in BENCHMARKS:
        if image_size is not None:
            raise ConfigError(f"{name} has fixed-size images; leave image_size unset")
        parts = caption_benchmark(
            name.lower(), root, captions_per_image=captions_per_image, seed=seed
        )
        name = name.lower()
    else:
        from ddkit.data.captions import read_paired

        parts = read_paired(name_or_path, image_size=image_size, image_root=image_root)
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
