"""In-memory labelled image sets with a per-class index, and construction from user arrays."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Normalised images ``(N, C, H, W)`` float32 with integer labels ``(N,)`` and their spec."""

    images: torch.Tensor
    labels: torch.Tensor
    spec: DatasetSpec

    def __post_init__(self) -> None:
        check_images(self.images, self.spec)
        check_labels(self.labels, len(self.images), self.spec.num_classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @cached_property
    def class_indices(self) -> list[torch.Tensor]:
        """Indices of each class's rows, in dataset order (the per-class sampling index)."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.spec.num_classes).tolist()
        return list(torch.split(order, counts))

    @property
    def class_counts(self) -> list[int]:
        return [len(ix) for ix in self.class_indices]

    def subset(self, index: torch.Tensor) -> ImageDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(self.images[index], self.labels[index], self.spec)

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

    def check_ipc(self, ipc: int) -> None:
        """Raise a clear error unless ``1 <= ipc <= smallest class size``."""
        if int(ipc) != ipc or ipc <= 0:
            raise ConfigError(f"IPC must be a positive integer, got {ipc}")
        smallest = min(self.class_counts)
        if smallest == 0:
            empty = [self.spec.class_names[c] for c, n in enumerate(self.class_counts) if n == 0]
            raise DataError(
                f"classes {', '.join(map(repr, empty[:10]))} have no training images; every "
                "class needs some (check the labels are 0..K-1)"
            )
        if ipc > smallest:
            c = self.class_counts.index(smallest)
            raise ConfigError(
                f"IPC {ipc} is larger than class {self.spec.class_names[c]!r}, "
                f"which has only {smallest} training images"
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
    if not torch.isfinite(images).all():
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


def to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert user images (N,H,W), (N,C,H,W) or (N,H,W,C with C in {1,3,4}) to float32 NCHW.

    8-bit integer images are scaled to ``[0, 1]``; float images are kept as they are.
    """
    if not isinstance(images, torch.Tensor):
        arr = np.asarray(images)
        if arr.dtype.kind not in "biuf":
            raise DataError(f"images must be real numbers, got dtype {arr.dtype}")
        images = arr
    elif images.is_complex():
        raise DataError(f"images must be real numbers, got dtype {images.dtype}")
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)
    elif x.ndim != 4:
        raise DataError(f"images must have shape (N, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype == torch.uint16:
        x = x.double() / 65535.0  # 16-bit images
    elif x.dtype == torch.bool or not x.is_floating_point():
        x = x.float()
    x = x.float().contiguous()
    if not torch.isfinite(x).all():
        raise DataError("images contain NaN or infinite values")
    return x


def to_labels(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    y = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim != 1:
        raise DataError(f"labels must be 1-D integers, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError("labels must be integers (found non-integer or NaN values)")
    elif y.dtype.kind not in "iub":
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    return torch.as_tensor(y.astype(np.int64))


def channel_stats(raw: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of raw ``(N, C, H, W)`` images (std floored to avoid /0)."""
    mean = raw.mean(dim=(0, 2, 3), dtype=torch.float64)
    std = raw.std(dim=(0, 2, 3)).double().clamp_min(1e-6)
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or std.max() > 1e18:
        big = float(raw.abs().max())
        raise DataError(
            f"pixel values up to {big:.3g} are too large to normalise; scale images to [0, 1]"
        )
    return tuple(mean.tolist()), tuple(std.tolist())


def normalise(raw: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=raw.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=raw.dtype).view(1, -1, 1, 1)
    return (raw - mean) / std


def denormalise(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * std + mean


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified split of row indices: returns ``(keep, held_out)`` with about
    ``fraction`` of every class held out (at least one row per class when ``fraction > 0``)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in torch.unique(labels).tolist():
        ix = torch.nonzero(labels == c).flatten()
        ix = ix[torch.randperm(len(ix), generator=g)]
        k = int(round(fraction * len(ix)))
        k = max(k, 1) if fraction > 0 and len(ix) > 1 else k
        k = min(k, len(ix) - 1)  # every class keeps at least one row
        held.append(ix[:k])
        keep.append(ix[k:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(held)).values


def _num_classes(y: torch.Tensor, yt: torch.Tensor, given: int | None) -> int:
    """The number of classes; labels must be ``0..K-1`` with every class in the train split."""
    top = int(max(y.max(), yt.max() if len(yt) else 0))
    if given is None and top >= len(y):
        raise DataError(
            f"labels go up to {top} but the train split has {len(y)} rows; labels must be "
            "0..K-1 (remap them) or pass num_classes"
        )
    k = int(given) if given is not None else top + 1
    for part, lab in (("train", y), ("test", yt)):
        if len(lab) and (lab.min() < 0 or lab.max() >= k):
            raise DataError(
                f"{part} labels out of range: found [{int(lab.min())}, {int(lab.max())}], "
                f"expected [0, {k - 1}]"
            )
    if k < 2:
        raise DataError(f"a dataset needs at least 2 classes, got {k}")
    empty = torch.nonzero(torch.bincount(y, minlength=k) == 0).flatten().tolist()
    if empty and given is None:  # with num_classes given, check_ipc names them
        shown = ", ".join(str(c) for c in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise DataError(
            f"classes {shown} have no training images; labels must be 0..K-1 with every class "
            "present (e.g. remap 1-based labels to 0-based)"
        )
    return k


def from_arrays(
    train_images: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_images: np.ndarray | torch.Tensor | None = None,
    test_labels: np.ndarray | torch.Tensor | None = None,
    *,
    name: str = "custom",
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetSplits:
    """Build :class:`DatasetSplits` from user arrays (no Dataset class needed).

    Images may be ``(N, H, W)``, ``(N, C, H, W)`` or channels-last; 8-bit images are scaled to
    ``[0, 1]``. Normalisation statistics come from the train split. Without test arrays, the
    test split is ``index % 5 == 0`` of the given rows (the ddkit convention).
    """
    x, y = to_nchw(train_images), to_labels(train_labels)
    if len(x) != len(y):
        raise DataError(f"{len(x)} train images but {len(y)} train labels")
    if test_images is None:
        if test_labels is not None:
            raise DataError("test_labels given without test_images")
        idx = torch.arange(len(x))
        xt, yt = x[idx % 5 == 0], y[idx % 5 == 0]
        x, y = x[idx % 5 != 0], y[idx % 5 != 0]
    else:
        if test_labels is None:
            raise DataError("test_images given without test_labels")
        xt, yt = to_nchw(test_images), to_labels(test_labels)
        if len(xt) != len(yt):
            raise DataError(f"{len(xt)} test images but {len(yt)} test labels")
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(
                f"test images have shape {tuple(xt.shape[1:])}, train images {tuple(x.shape[1:])}"
            )
    if len(x) == 0:
        raise DataError("the train split is empty")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    k = _num_classes(y, yt, num_classes)
    if class_names and len(class_names) != k:
        raise DataError(f"{len(class_names)} class names for {k} classes; give one name per class")
    mean, std = channel_stats(x)
    spec = DatasetSpec(
        name=name,
        num_classes=k,
        channels=x.shape[1],
        image_size=(x.shape[2], x.shape[3]),
        mean=mean,
        std=std,
        class_names=tuple(class_names) if class_names else (),
    )
    val = None
    if val_fraction > 0:
        keep, held = stratified_split(y, val_fraction, seed)
        val = ImageDataset(normalise(x[held], spec), y[held], spec)
        x, y = x[keep], y[keep]
    return DatasetSplits(
        train=ImageDataset(normalise(x, spec), y, spec),
        test=ImageDataset(normalise(xt, spec), yt, spec),
        val=val,
    )
