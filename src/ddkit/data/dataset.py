"""In-memory labelled sets with a per-class index, and construction from user arrays.

The class is named for images, its first modality; a table or a series lies in the same
``(N, C, H, W)`` tensor (:mod:`ddkit.data.spec` gives each modality's layout)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

import numpy as np
import torch

from ddkit.data.byte_images import stored_rows
from ddkit.data.modalities.base import DEFAULT_MODALITY, get_modality
from ddkit.data.spec import Column, DatasetSpec
from ddkit.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class ImageDataset(torch.utils.data.Dataset):
    """Normalised images ``(N, C, H, W)`` float32 with integer labels ``(N,)`` and their spec.

    ``bias`` (optional, int64 ``(N,)``) is each row's bias attribute on a biased dataset
    (:mod:`ddkit.data.biased`: the colour index of Colored MNIST). Attribute value ``c`` is class
    ``c``'s majority ("bias-aligned") attribute, so a row is aligned when ``bias == label``; the
    groups of a dataset are its ``(label, bias)`` pairs (:func:`ddkit.eval.groups.group_accuracy`).
    """

    images: torch.Tensor
    labels: torch.Tensor
    spec: DatasetSpec
    bias: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_images(self.images, self.spec)
        check_labels(self.labels, len(self.images), self.spec.num_classes)
        if self.bias is not None:
            check_bias(self.bias, len(self.images))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images[index], labels[index])``: a split (or a set's :meth:`as_dataset`) goes
        into a ``torch.utils.data.DataLoader`` as it is."""
        return self.images[index], self.labels[index]

    @cached_property
    def class_indices(self) -> list[torch.Tensor]:
        """Indices of each class's rows, in dataset order (the per-class sampling index)."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.spec.num_classes).tolist()
        return list(torch.split(order, counts))

    @property
    def aligned(self) -> torch.Tensor | None:
        """Per row, whether its bias attribute is its class's (``None`` without attributes)."""
        return None if self.bias is None else self.bias == self.labels

    @property
    def class_counts(self) -> list[int]:
        return [len(ix) for ix in self.class_indices]

    def subset(self, index: torch.Tensor) -> ImageDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        bias = None if self.bias is None else self.bias[index]
        return ImageDataset(stored_rows(self.images, index), self.labels[index], self.spec, bias)

    def sample_per_class(
        self, n: int, generator: torch.Generator, classes: list[int] | None = None
    ) -> torch.Tensor:
        """Indices ``(K, n)``: ``n`` rows drawn without replacement from each class (with
        replacement where a class has fewer than ``n`` rows)."""
        rows = []
        for c in classes if classes is not None else range(self.spec.num_classes):
            ix = self.class_indices[c]
            if len(ix) >= n:
                pick = torch.randperm(len(ix), generator=generator)[:n]
            else:
                pick = torch.randint(len(ix), (n,), generator=generator)
            rows.append(ix[pick])
        return torch.stack(rows)

    def to(self, device: torch.device | str) -> ImageDataset:
        """This dataset with its tensors on ``device``: a method fitted on it computes there
        (``splits.train.to("cuda")``)."""
        import dataclasses

        bias = None if self.bias is None else self.bias.to(device)
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device), bias=bias
        )

    def check_ipc(self, ipc: int) -> None:
        """Raise a clear error unless ``1 <= ipc <= smallest class size``."""
        if int(ipc) != ipc or ipc <= 0:
            raise ConfigError(f"IPC must be a positive integer, got {ipc}")
        smallest = min(self.class_counts)
        if ipc > smallest:
            c = self.class_counts.index(smallest)
            raise ConfigError(
                f"IPC {ipc} is larger than class {self.spec.class_names[c]!r}, "
                f"which has only {smallest} training " + self.spec.kind.noun
            )


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Train / test (and optional validation) splits sharing one spec."""

    train: ImageDataset
    test: ImageDataset
    val: ImageDataset | None = None

    @property
    def spec(self) -> DatasetSpec:
        return self.train.spec


def class_labels(num_classes: int, ipc: int) -> torch.Tensor:
    """Labels ``[0]*ipc + [1]*ipc + ...``: synthetic images are stored class by class."""
    return torch.arange(num_classes).repeat_interleave(ipc)


def check_images(images: torch.Tensor, spec: DatasetSpec | None = None) -> None:
    """Validate an ``(N, C, H, W)`` float tensor of finite values matching ``spec``."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise DataError("images must be a floating-point torch.Tensor")
    if images.ndim != 4:
        raise DataError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if spec is not None and tuple(images.shape[1:]) != spec.shape:
        raise DataError(
            f"images have shape (C, H, W) = {tuple(images.shape[1:])}, "
            f"dataset {spec.name!r} expects {spec.shape}"
        )
    # a block of rows at a time: its masks and |x| (isfinite's temporaries) stay small
    step = max(1, _CHECK_VALUES // max(1, math.prod(images.shape[1:])))
    if not all(torch.isfinite(images[i : i + step]).all() for i in range(0, len(images), step)):
        raise DataError("images contain NaN or infinite values")


def check_labels(labels: torch.Tensor, n: int, num_classes: int) -> None:
    """Validate hard labels ``(n,)`` int64 in ``[0, num_classes)``."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long or labels.ndim != 1:
        raise DataError("labels must be a 1-D int64 tensor")
    if labels.shape[0] != n:
        raise DataError(f"{n} images but {labels.shape[0]} labels")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"labels out of range: found [{int(labels.min())}, {int(labels.max())}], "
            f"expected [0, {num_classes - 1}]"
        )


def check_bias(bias: torch.Tensor, n: int) -> None:
    """Validate per-row bias attributes ``(n,)`` int64, ``>= 0``."""
    if not isinstance(bias, torch.Tensor) or bias.dtype != torch.long or bias.ndim != 1:
        raise DataError("bias attributes must be a 1-D int64 tensor")
    if bias.shape[0] != n:
        raise DataError(f"{n} images but {bias.shape[0]} bias attributes")
    if n and bias.min() < 0:
        raise DataError(f"bias attributes must be >= 0, found {int(bias.min())}")


def convention_test_rows(n: int) -> torch.Tensor:
    """The ddkit convention for data without a test split: rows whose index ``% 5 == 0`` are
    the test split (a boolean mask over ``n`` rows)."""
    return torch.arange(n) % 5 == 0


_CHUNK_ROWS = 1024
#: Values :func:`check_images` checks at once.
_CHECK_VALUES = 2**22
_MAX_LABEL = 2**31 - 1


def _real_array(values: object, what: str) -> np.ndarray:
    """``values`` as a numpy array of real numbers or bools; any other dtype is a DataError."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.is_complex():
            raise DataError(f"{what} must be real numbers, got complex dtype {values.dtype}")
        if values.dtype == torch.bfloat16:
            values = values.float()
        values = values.numpy()
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"{what} must be a rectangular numeric array ({type(err).__name__})"
        ) from None
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{what} must be real numbers (int, float or bool), got dtype {arr.dtype}; "
            "convert them to a numeric array"
        )
    return arr


def to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert user images (N,H,W), (N,C,H,W) or (N,H,W,C with C in {1,3,4}) to float32 NCHW.

    Accepts real numbers and bools (as 0/1); complex, object and string arrays are refused.
    8-bit and 16-bit unsigned images are scaled to ``[0, 1]``; other values are kept as they are.
    Values that are NaN, infinite or beyond the float32 range raise :class:`DataError`.
    """
    x = _real_array(images, "images")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise DataError(f"images must have shape (N, H, W) or (N, C, H, W), got {x.shape}")
    if 0 in x.shape[1:]:
        raise DataError(f"images must have at least one channel and pixel, got shape {x.shape}")
    if x.dtype == np.uint8:
        out = x.astype(np.float32) / np.float32(255.0)
    elif x.dtype == np.uint16:  # 16-bit images, as the image-folder reader scales them
        out = x.astype(np.float32) / np.float32(65535.0)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            out = x.astype(np.float32)
    if not np.isfinite(out).all():
        if x.dtype.kind == "f" and np.isfinite(x).all():
            raise DataError("images have values beyond the float32 range; rescale them")
        raise DataError("images contain NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(out))


def to_labels(labels: np.ndarray | torch.Tensor, what: str = "labels") -> torch.Tensor:
    """Convert user labels to a 1-D int64 tensor of class indices ``>= 0``.

    Integers, bools and floats holding whole numbers are accepted; fractional, NaN, negative
    or implausibly large values raise :class:`DataError` (never truncated). ``what`` names
    the labels in messages (a file, a split).
    """
    y = _real_array(labels, what)
    if y.ndim != 1:
        raise DataError(f"{what} must be 1-D integers, got shape {y.shape}")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or (y != np.round(y)).any()):
        bad = y[~np.isfinite(y) | (y != np.round(y))][0]
        raise DataError(f"{what} must be integers (class indices), found {float(bad)}; remap them")
    if y.size and y.min() < 0:
        raise DataError(f"{what} must be class indices 0..K-1, found {y.min().item()}; remap them")
    if y.size and float(y.max()) > _MAX_LABEL:
        raise DataError(f"{what} must be class indices 0..K-1, found {y.max().item()}; remap them")
    return torch.as_tensor(y.astype(np.int64))


def _std_float64(raw: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Per-channel unbiased std accumulated in float64 by row chunks (no float32 overflow)."""
    count = raw.shape[0] * raw.shape[2] * raw.shape[3]
    centre = mean.view(1, -1, 1, 1)
    sq = sum(((c.double() - centre) ** 2).sum(dim=(0, 2, 3)) for c in torch.split(raw, _CHUNK_ROWS))
    return (sq / max(count - 1, 1)).sqrt()


def channel_stats(raw: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of raw ``(N, C, H, W)`` images (std floored to avoid /0).

    The mean is summed in float64, the std computed by torch in float32 (with float64
    accumulation); the std is recomputed in float64 where float32 overflows (values near the
    float32 limit); statistics that are still not finite raise :class:`DataError`.
    """
    mean = raw.mean(dim=(0, 2, 3), dtype=torch.float64)
    std = raw.std(dim=(0, 2, 3)).double()
    if not torch.isfinite(std).all():
        std = _std_float64(raw, mean)
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise DataError("image statistics are not finite (values too large); rescale the images")
    return tuple(mean.tolist()), tuple(std.clamp_min(1e-6).tolist())


def to_rows(values: np.ndarray | torch.Tensor, modality: str = DEFAULT_MODALITY) -> torch.Tensor:
    """User rows as float32 ``(N, C, H, W)``, as the ``modality`` lays them out
    (:meth:`~ddkit.data.modalities.base.Modality.to_rows`): images through :func:`to_nchw`;
    rows of another modality in its layout, checked by :func:`checked_rows`."""
    return get_modality(modality).to_rows(values)


def checked_rows(
    values: np.ndarray | torch.Tensor,
    what: str,
    lift: Callable[[np.ndarray], np.ndarray] | None = None,
) -> torch.Tensor:
    """Rows already in their ``(N, C, H, W)`` layout (after ``lift``, which lays out shapes
    a modality also accepts) as float32, checked: real numbers, finite, within the float32
    range; ``what`` names them in errors."""
    x = _real_array(values, what)
    if lift is not None:
        x = lift(x)
    if x.ndim != 4:
        raise DataError(f"{what} must be laid out (N, C, H, W), got shape {x.shape}")
    if 0 in x.shape[1:]:
        raise DataError(f"{what} hold no values (shape {x.shape}); give each row some")
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{what} contain missing (NaN), infinite or too large values")
    return torch.from_numpy(np.ascontiguousarray(out))


def column_stats(
    raw: torch.Tensor, columns: tuple[Column, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`channel_stats`, except that one-hot channels of categorical ``columns`` keep
    mean 0 and std 1 (stored as they are, so a distilled row's scores read back directly)."""
    mean, std = channel_stats(raw)
    if not columns:
        return mean, std
    mean_l, std_l, at = list(mean), list(std), 0
    for col in columns:
        if col.kind == "categorical":
            mean_l[at : at + col.width] = [0.0] * col.width
            std_l[at : at + col.width] = [1.0] * col.width
        at += col.width
    return tuple(mean_l), tuple(std_l)


def normalise(raw: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=raw.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=raw.dtype).view(1, -1, 1, 1)
    return (raw - mean) / std


def _normalised(raw: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """:func:`normalise`, refusing values whose distance to the mean overflows float32."""
    x = normalise(raw, spec)
    if not torch.isfinite(x).all():
        raise DataError("images span more than the float32 range around their mean; rescale them")
    return x


def denormalise(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * std + mean


def check_val_fraction(fraction: object) -> float:
    """``fraction`` as a float in ``[0, 1)``, else a :class:`ConfigError`."""
    ok = isinstance(fraction, int | float | np.integer | np.floating) and not isinstance(
        fraction, bool
    )
    if not ok or not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(f"validation fraction must be a number in [0, 1), got {fraction!r}")
    return float(fraction)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified split of row indices: returns ``(keep, held_out)`` with about
    ``fraction`` of every class held out (at least one row per class when ``fraction > 0``).

    Every class keeps at least one row: a fraction that would empty a class raises
    :class:`ConfigError`.
    """
    fraction = check_val_fraction(fraction)
    keep, held = [], []
    for c, ix in _shuffled_classes(labels, seed):
        k = int(round(fraction * len(ix)))
        k = max(k, 1) if fraction > 0 and len(ix) > 1 else k
        if k >= len(ix):
            raise ConfigError(
                f"validation fraction {fraction} leaves class {c} ({len(ix)} rows) with no "
                "training rows; use a smaller fraction"
            )
        held.append(ix[:k])
        keep.append(ix[k:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(held)).values


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """Seeded stratified folds of row indices: each class's rows, in the order
    :func:`stratified_split` draws with ``seed``, cut into ``folds`` nearly equal runs; fold
    ``i`` (sorted indices) holds run ``i`` of every class, so every row is in one fold, and the
    first fold holds the rows ``stratified_split(labels, 1 / folds, seed)`` holds out."""
    runs: list[list[torch.Tensor]] = [[] for _ in range(folds)]
    for _, ix in _shuffled_classes(labels, seed):
        bounds = [round(i * len(ix) / folds) for i in range(folds + 1)]
        for i in range(folds):
            runs[i].append(ix[bounds[i] : bounds[i + 1]])
    return [torch.sort(torch.cat(parts)).values for parts in runs]


def _shuffled_classes(labels: torch.Tensor, seed: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Each class of ``labels`` (in ascending order) with its row indices in a seeded order,
    one generator drawing every class's permutation in turn."""
    g = torch.Generator().manual_seed(seed)
    for c in torch.unique(labels).tolist():
        ix = torch.nonzero(labels == c).flatten()
        yield c, ix[torch.randperm(len(ix), generator=g)]


def count_classes(
    y: torch.Tensor, yt: torch.Tensor, num_classes: object, *, convention: bool = False
) -> int:
    """The number of classes: ``num_classes`` or ``max label + 1``, checked so that there
    are at least two classes and every class has a training row. ``convention``: the test
    rows ``yt`` are the every-5th rows of the given ones (no test arrays were given), which
    the advice for a class found only there names."""
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise ConfigError(f"num_classes must be an integer, got {num_classes!r}")
        k = int(num_classes)
        if k > len(y):
            raise ConfigError(
                f"num_classes={k} but only {len(y)} training rows: every class needs a training row"
            )
    else:
        k = int(max(y.max(), yt.max() if len(yt) else 0)) + 1
        if k > len(y):
            raise DataError(
                f"labels go up to {k - 1} but there are only {len(y)} training rows, so most "
                "classes would be empty; remap the labels to 0..K-1"
            )
    for part, lab in (("train", y), ("test", yt)):
        if len(lab) and lab.max() >= k:
            raise DataError(
                f"{part} labels out of range: found [{int(lab.min())}, {int(lab.max())}], "
                f"expected [0, {k - 1}]"
            )
    present = torch.unique(y)
    if len(present) < 2:
        raise DataError(
            f"the training rows hold a single class ({int(present[0])}); "
            "distillation needs at least 2 classes"
        )
    if len(present) < k:
        empty = sorted(set(range(k)) - set(present.tolist()))
        _refuse_empty_classes(empty, k, y, yt, convention)
    return k


def _refuse_empty_classes(
    empty: list[int], k: int, y: torch.Tensor, yt: torch.Tensor, convention: bool
) -> NoReturn:
    """The one-line refusal of classes without training rows, with the advice that fits:
    rows only in the test split (the every-5th rows under ``convention``: shuffle, or give
    test arrays), or no rows at all (labels that are not 0..K-1: remap them)."""
    tested = set(yt.tolist())
    in_test = [c for c in empty if c in tested]
    nowhere = [c for c in empty if c not in tested]
    if in_test:
        also = (f"; class(es) {_classes(nowhere)} have no rows at all: remap the labels to "
                "0..K-1" if nowhere else "")  # fmt: skip
        shown = _classes(in_test)
        if convention:
            raise DataError(
                f"class(es) {shown} have no training rows: all their rows are every 5th row from "
                "the first, the test split when no test arrays are given (labels that repeat "
                "with a period of 5, or a multiple of 5, do this); shuffle the rows, or give "
                f"test arrays (x_test, y_test){also}"
            )
        raise DataError(
            f"class(es) {shown} have test rows but no training rows; give every class training "
            f"rows, or drop those classes from the test arrays{also}"
        )
    values = sorted(set(y.tolist()) | set(yt.tolist()))
    found = (f"{values[0]}..{values[-1]}" if values[-1] - values[0] == len(values) - 1
             else ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else ""))  # fmt: skip
    raise DataError(
        f"class(es) {_classes(empty)} have no training rows ({len(empty)} of {k} classes empty; "
        f"labels found: {found}); remap the labels to 0..K-1 so that every class has training "
        "rows (np.unique(labels, return_inverse=True) does)"
    )


def _classes(ids: list[int]) -> str:
    """Up to 8 class indices, for a message."""
    return ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")


@dataclass(frozen=True)
class ArrayExtras:
    """What arrays of rows may carry besides the rows, their class indices and the dataset's
    name (:func:`from_arrays`): the classes' names (``class_names``, one per class); per-row
    bias attributes of a biased dataset (``train_bias``, and ``test_bias`` with test arrays:
    :attr:`ImageDataset.bias`), kept with their rows through every split; and what a row is,
    its ``modality`` (:mod:`ddkit.data.spec`) with a table's ``columns``."""

    class_names: list[str] | None = None
    train_bias: np.ndarray | torch.Tensor | None = None
    test_bias: np.ndarray | torch.Tensor | None = None
    modality: str = DEFAULT_MODALITY
    columns: tuple[Column, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))


def from_arrays(
    train_images: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_images: np.ndarray | torch.Tensor | None = None,
    test_labels: np.ndarray | torch.Tensor | None = None,
    *,
    name: str = "custom",
    num_classes: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    extras: ArrayExtras | None = None,
) -> DatasetSplits:
    """Build :class:`DatasetSplits` from user arrays (no Dataset class needed).

    ``extras`` (:class:`ArrayExtras`): class names, bias attributes and what a row is. Its
    ``modality`` says what a row is (:mod:`ddkit.data.spec`); rows other than images come
    already in their layout (a table through :func:`ddkit.data.table.from_table`, which also
    passes its ``columns``); series may also come as ``(N, L)`` or ``(N, D, L)``
    (:func:`ddkit.data.series.from_series` also takes lists of rows and names the row and step
    of a missing value).

    Images may be ``(N, H, W)``, ``(N, C, H, W)`` or channels-last; 8-bit images are scaled to
    ``[0, 1]``. Normalisation statistics come from the train split. Without test arrays, the
    test split is ``index % 5 == 0`` of the given rows (the ddkit convention).
    ``val_fraction`` carves a seeded (``seed``), stratified validation split out of train.

    Labels are class indices ``0..K-1`` with ``K = num_classes`` (or ``max label + 1``): there
    must be at least two classes and every class needs a training row, with or without
    ``num_classes`` (an empty class cannot be distilled), so sparse labels such as ``{3, 7}``
    must be remapped. Bias attributes are kept with their rows through every split. Problems
    raise :class:`DataError` / :class:`ConfigError`.
    """
    e = extras or ArrayExtras()
    class_names, modality, columns = e.class_names, e.modality, e.columns
    train_bias, test_bias = e.train_bias, e.test_bias
    val_fraction = check_val_fraction(val_fraction)
    x, y = to_rows(train_images, modality), to_labels(train_labels, "train labels")
    if len(x) != len(y):
        raise DataError(f"{len(x)} train images but {len(y)} train labels")
    b = None if train_bias is None else to_labels(train_bias, "train bias attributes")
    if b is not None and len(b) != len(y):
        raise DataError(f"{len(y)} train labels but {len(b)} train bias attributes")
    (x, y, b), (xt, yt, bt) = _train_and_test(
        x, y, b, test_images, test_labels, test_bias, modality
    )
    if len(x) == 0 and test_images is None:
        raise DataError(
            f"the train split is empty: without test rows, every 5th row from the first goes to "
            f"the test split, which leaves {len(yt)} row(s) none; give each class at least 2 rows"
        )
    if len(x) == 0:
        raise DataError("the train split is empty; give training rows")
    k = count_classes(y, yt, num_classes, convention=test_images is None)
    if class_names and len(class_names) != k:
        raise DataError(f"{len(class_names)} class names for {k} classes")
    mean, std = column_stats(x, tuple(columns))
    spec = DatasetSpec(
        name=name,
        num_classes=k,
        channels=x.shape[1],
        image_size=(x.shape[2], x.shape[3]),
        mean=mean,
        std=std,
        class_names=tuple(class_names) if class_names else (),
        modality=modality,
        columns=tuple(columns),
    )
    val = None
    if val_fraction > 0:
        keep, held = stratified_split(y, val_fraction, seed)
        val = ImageDataset(_normalised(x[held], spec), y[held], spec, _rows(b, held))
        x, y, b = x[keep], y[keep], _rows(b, keep)
    return DatasetSplits(
        train=ImageDataset(_normalised(x, spec), y, spec, b),
        test=ImageDataset(_normalised(xt, spec), yt, spec, bt),
        val=val,
    )


def _rows(values: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """``values[index]``, or ``None`` for a dataset without them."""
    return None if values is None else values[index]


_Rows = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _train_and_test(
    x: torch.Tensor,
    y: torch.Tensor,
    b: torch.Tensor | None,
    test_images: np.ndarray | torch.Tensor | None,
    test_labels: np.ndarray | torch.Tensor | None,
    test_bias: np.ndarray | torch.Tensor | None,
    modality: str = DEFAULT_MODALITY,
) -> tuple[_Rows, _Rows]:
    """(images, labels, bias) of the train and the test split: the given test arrays, checked
    against the train ones, or without them the convention split of the train rows."""
    if test_images is None:
        if test_labels is not None:
            raise DataError("test_labels given without test_images")
        if test_bias is not None:
            raise DataError("test_bias given without test_images")
        rows = convention_test_rows(len(x))
        return (x[~rows], y[~rows], _rows(b, ~rows)), (x[rows], y[rows], _rows(b, rows))
    if test_labels is None:
        raise DataError("test_images given without test_labels")
    xt, yt = to_rows(test_images, modality), to_labels(test_labels, "test labels")
    bt = None if test_bias is None else to_labels(test_bias, "test bias attributes")
    if len(xt) != len(yt):
        raise DataError(f"{len(xt)} test images but {len(yt)} test labels")
    if xt.shape[1:] != x.shape[1:]:
        raise DataError(
            f"test images have shape {tuple(xt.shape[1:])}, train images {tuple(x.shape[1:])}"
        )
    if (b is None) != (bt is None):
        raise DataError("bias attributes given for one split only; give both or neither")
    return (x, y, b), (xt, yt, bt)
