"""Biased datasets: a spurious colour tied to the class, with a chosen share of exceptions.

* **Colored MNIST** (``colored-mnist5k-c<P>``, ``colored-mnist-c<P>``): each digit is tinted
  with its class's colour, as in the Colored MNIST of Bahng et al. ("Learning De-biased
  Representations with Biased Representations", ICML 2020, arXiv:1910.02806) and of the
  dataset-bias study this module serves (J. Cui, R. Wang, Y. Xiong and C.-J. Hsieh,
  "Mitigating Bias in Dataset Distillation", ICML 2024, arXiv:2406.06609).
* **Background Fashion-MNIST** (``bg-fashionmnist-c<P>``): each garment stays grey and the
  pixels it does not cover take its class's colour (the background bias of the same study).

``P`` is the bias-conflicting percentage of the training split: in every class,
``round(P / 100 * n_c)`` rows chosen at random take a colour drawn uniformly from the *other*
classes' colours; the rest take their class's colour. The test split is unbiased: within each
class the rows, in random order, take the ten colours in turn from a random start, so colour is
independent of class and every (class, colour) group holds the same number of rows, give or
take one. Rows keep their colour index as :attr:`ImageDataset.bias`; colour ``c`` is class
``c``'s, so a row is bias-aligned when ``bias == label``.

Names: ``<base>-c<percent>[-s<seed>]`` (``colored-mnist5k-c0.5``, ``colored-mnist-c5-s1``);
the colours are drawn from ``seed`` (default 0), so the same name is the same dataset. The
base datasets' splits are kept (mnist5k: the ddkit convention, test = index % 5 == 0), so a
biased dataset holds the same digits as its base. Deviations from the papers: the colours are
exact (no per-row colour noise) and the test split is balanced over (class, colour) rather than
drawn at random.
"""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import torch

from ddkit.data.builtin import DATASETS, DatasetFamily, DatasetLoader, RawData
from ddkit.data.dataset import convention_test_rows, to_labels, to_nchw
from ddkit.errors import ConfigError
from ddkit.rng import derive_seed

__all__ = [
    "PALETTE",
    "balanced_attributes",
    "biased_attributes",
    "biased_raw",
    "check_conflict_ratio",
    "paint",
]

#: The class colours (RGB in [0, 1]): colour ``c`` is class ``c``'s.
PALETTE = torch.tensor(
    [
        [1.0, 0.0, 0.0],  # red
        [0.0, 1.0, 0.0],  # green
        [0.0, 0.0, 1.0],  # blue
        [1.0, 1.0, 0.0],  # yellow
        [1.0, 0.0, 1.0],  # magenta
        [0.0, 1.0, 1.0],  # cyan
        [1.0, 0.5, 0.0],  # orange
        [0.5, 0.0, 1.0],  # violet
        [1.0, 1.0, 1.0],  # white
        [0.0, 0.5, 0.5],  # teal
    ]
)
STYLES = ("digit", "background")


def check_conflict_ratio(ratio: object) -> float:
    """``ratio`` as a float in ``[0, 1]``, else a one-line :class:`ConfigError`."""
    ok = isinstance(ratio, int | float) and not isinstance(ratio, bool)
    if not ok or not 0.0 <= float(ratio) <= 1.0:
        raise ConfigError(
            f"bias-conflicting ratio must be a fraction in [0, 1], got {ratio!r} "
            "(dataset names give it in percent: -c5 is 0.05)"
        )
    return float(ratio)


def _rank_in_class(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each row's position ``0..n_c - 1`` in a random order of its class's rows."""
    n = len(labels)
    perm = torch.randperm(n, generator=generator)
    order = perm[torch.argsort(labels[perm], stable=True)]  # by class, random within a class
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n) - starts[labels[order]]
    return rank


def biased_attributes(
    labels: torch.Tensor, ratio: float, num_values: int, generator: torch.Generator
) -> torch.Tensor:
    """Bias attributes of a biased split: in every class ``c``, ``round(ratio * n_c)`` rows at
    random take a value drawn uniformly from the ``num_values - 1`` values other than ``c``;
    the others take ``c``."""
    ratio = check_conflict_ratio(ratio)
    counts = torch.bincount(labels, minlength=num_values).double()
    conflicting = _rank_in_class(labels, generator) < torch.round(ratio * counts)[labels]
    shift = torch.randint(1, num_values, (len(labels),), generator=generator)
    return torch.where(conflicting, (labels + shift) % num_values, labels)


def balanced_attributes(
    labels: torch.Tensor, num_values: int, generator: torch.Generator
) -> torch.Tensor:
    """Bias attributes independent of the class: each class's rows, in random order, take the
    values in turn from a random start, so every (class, value) pair holds ``n_c // num_values``
    or one more rows."""
    start = torch.randint(num_values, (int(labels.max()) + 1,), generator=generator)
    return (_rank_in_class(labels, generator) + start[labels]) % num_values


def paint(grey: torch.Tensor, colours: torch.Tensor, style: str) -> torch.Tensor:
    """Colour grey images ``(N, 1, H, W)`` in ``[0, 1]`` with one RGB colour per row
    ``(N, 3)``: ``"digit"`` tints the strokes (``grey * colour``), ``"background"`` keeps the
    object grey and gives the pixels it does not cover (value 0) the colour."""
    c = colours[:, :, None, None].to(grey.dtype)
    if style == "digit":
        return grey * c
    if style == "background":
        return torch.where(grey > 0, grey, c)
    raise ConfigError(f"unknown colouring style {style!r}; valid: {', '.join(STYLES)}")


def biased_raw(raw: RawData, ratio: float, *, style: str = "digit", seed: int = 0) -> RawData:
    """``raw`` (grey images) made biased: a training split where ``ratio`` of every class is
    bias-conflicting, an unbiased test split balanced over (class, colour), each row's colour
    index in ``train_bias`` / ``test_bias``. Same arguments, same data."""
    ratio = check_conflict_ratio(ratio)
    x, y = to_nchw(raw.train_images), to_labels(raw.train_labels, "train labels")
    if raw.test_images is None:
        test = convention_test_rows(len(x))
        xt, yt, x, y = x[test], y[test], x[~test], y[~test]
    else:
        xt, yt = to_nchw(raw.test_images), to_labels(raw.test_labels, "test labels")
    k = raw.num_classes or int(y.max()) + 1
    if x.shape[1] != 1 or k > len(PALETTE):
        raise ConfigError(
            f"a biased dataset needs grey images and at most {len(PALETTE)} classes, got "
            f"{x.shape[1]} channels and {k} classes"
        )
    b = biased_attributes(y, ratio, k, torch.Generator().manual_seed(derive_seed(seed, "train")))
    bt = balanced_attributes(yt, k, torch.Generator().manual_seed(derive_seed(seed, "test")))
    return RawData(
        _eight_bit(paint(x, PALETTE[b], style)),
        y.numpy(),
        _eight_bit(paint(xt, PALETTE[bt], style)),
        yt.numpy(),
        class_names=raw.class_names,
        num_classes=k,
        train_bias=b.numpy(),
        test_bias=bt.numpy(),
    )


def _eight_bit(images: torch.Tensor) -> np.ndarray:
    """Images in ``[0, 1]`` as 8-bit arrays, as image files hold them (a quarter of the memory
    of float32 until :func:`~ddkit.data.dataset.from_arrays` normalises them)."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8).numpy()


_ARGUMENTS = re.compile(r"c(-?\d+(?:\.\d+)?)(?:-s(\d+))?")


def _family_loader(prefix: str, base: str, style: str, arguments: str) -> DatasetLoader:
    """The loader of ``<prefix>-<arguments>``: ``c<percent>[-s<seed>]`` of dataset ``base``."""
    match = _ARGUMENTS.fullmatch(arguments)
    if match is None:
        raise ConfigError(
            f"dataset {prefix}-{arguments}: write {prefix}-c<percent>[-s<seed>], "
            f"e.g. {prefix}-c5 for 5 % bias-conflicting rows"
        )
    ratio = check_conflict_ratio(float(match.group(1)) / 100)
    seed = int(match.group(2) or 0)
    base_loader = DATASETS.get(base)

    def load(root: str | None) -> RawData:
        return biased_raw(base_loader(root), ratio, style=style, seed=seed)

    load.needs_root = getattr(base_loader, "needs_root", False)  # type: ignore[attr-defined]
    load.builtin = getattr(base_loader, "builtin", False)  # type: ignore[attr-defined]
    return load


for _prefix, _base, _style, _help in (
    ("colored-mnist5k", "mnist5k", "digit", "mnist5k digits tinted by class colour (embedded)"),
    ("colored-mnist", "mnist", "digit", "MNIST digits tinted by class colour (data root)"),
    (
        "bg-fashionmnist",
        "fashionmnist",
        "background",
        "Fashion-MNIST on a background of the class colour (data root)",
    ),
):
    DATASETS.add_family(
        DatasetFamily(
            _prefix, "c<percent>[-s<seed>]", partial(_family_loader, _prefix, _base, _style)
        ),
        help=f"{_help}; <percent> % bias-conflicting train rows, unbiased test split",
    )
