"""The backdoor audit's trigger and poisoning: a square patch (:class:`Trigger`) stamped on
normalised images (:func:`stamp`), a training split with some non-target rows stamped and
relabelled to the target class (:func:`poison`), the stamped non-target test images
(:func:`triggered_test`) and the attack success rate of a network on them
(:func:`attack_success_rate`). The attacks and the metric are described in
:mod:`ddkit.audits.backdoor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ddkit.audits.base import check_fraction
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, DataError

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


@dataclass(frozen=True)
class Trigger:
    """A square patch of ``size`` x ``size`` pixels, all channels ``value`` (pixel scale
    ``[0, 1]``), at ``position``: a corner (one pixel in from the border, as BadNets' code,
    where the image leaves room), ``"center"``, or ``"ROW,COL"`` (its top-left pixel)."""

    size: int = 2
    position: str = "bottom-right"
    value: float = 1.0

    def check(self, spec: DatasetSpec) -> None:
        """A one-line :class:`ConfigError` unless the patch fits ``spec``'s images."""
        h, w = spec.image_size
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"trigger size must be an integer >= 1, got {self.size!r}")
        if self.size > min(h, w):
            raise ConfigError(
                f"trigger of {self.size}x{self.size} pixels is larger than the {h}x{w} images "
                f"of {spec.name!r}"
            )
        if not 0.0 <= float(self.value) <= 1.0:
            raise ConfigError(f"trigger value is a pixel value in [0, 1], got {self.value!r}")
        self.corner(spec)

    def corner(self, spec: DatasetSpec) -> tuple[int, int]:
        """The patch's top-left pixel ``(row, col)`` in ``spec``'s images."""
        h, w = spec.image_size
        s = self.size
        if self.position in POSITIONS:
            margin = 1 if s + 2 <= min(h, w) else 0
            rows = {"top": margin, "bottom": h - s - margin, "center": (h - s) // 2}
            cols = {"left": margin, "right": w - s - margin, "center": (w - s) // 2}
            vertical, _, horizontal = self.position.partition("-")
            return rows[vertical], cols[horizontal or "center"]
        try:
            r, c = (int(v) for v in str(self.position).split(","))
        except ValueError:
            raise ConfigError(
                f"trigger position must be one of {', '.join(POSITIONS)} or 'ROW,COL', "
                f"got {self.position!r}"
            ) from None
        if not (0 <= r <= h - s and 0 <= c <= w - s):
            raise ConfigError(
                f"a {s}x{s} trigger at row {r}, column {c} does not fit the {h}x{w} images"
            )
        return r, c

    def mask(self, spec: DatasetSpec) -> torch.Tensor:
        """``(1, C, H, W)``: 1 inside the patch, 0 elsewhere."""
        r, c = self.corner(spec)
        m = torch.zeros(1, *spec.shape)
        m[..., r : r + self.size, c : c + self.size] = 1.0
        return m

    def pattern(self, spec: DatasetSpec) -> torch.Tensor:
        """``(1, C, H, W)`` pixels: ``value`` inside the patch, 0 elsewhere."""
        return self.mask(spec) * float(self.value)


def stamp(
    images: torch.Tensor, spec: DatasetSpec, mask: torch.Tensor, pattern: torch.Tensor
) -> torch.Tensor:
    """Normalised ``images`` with the pixels under ``mask`` replaced by ``pattern`` (pixel
    scale), i.e. ``x * (1 - mask) + mask * normalise(pattern)``."""
    if spec.transform is not None:
        raise DataError(f"cannot stamp a trigger on {spec.transform}-transformed images")
    mean = torch.tensor(spec.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=images.dtype).view(1, -1, 1, 1)
    m = mask.to(images.dtype).to(images.device)
    patch = ((pattern.to(images.dtype) - mean) / std).to(images.device)
    return images * (1 - m) + m * patch


@dataclass
class Poisoned:
    """A poisoned copy of a training split: ``rows`` (stamped, relabelled to ``target``)."""

    train: ImageDataset
    rows: torch.Tensor
    target: int


def check_target(target: int, spec: DatasetSpec) -> int:
    """``target`` as a class index of ``spec``, else a one-line :class:`ConfigError`."""
    k = spec.num_classes
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < k:
        raise ConfigError(
            f"target class {target!r} does not exist: {spec.name!r} has classes 0..{k - 1}"
        )
    return target


def poison(
    train: ImageDataset,
    trigger: Trigger,
    *,
    fraction: float,
    target: int,
    generator: torch.Generator,
) -> Poisoned:
    """Stamp ``trigger`` on ``round(fraction * n)`` of
    the ``n`` rows whose class is not ``target`` (drawn from ``generator``) and relabel them to
    ``target``. ``train`` is left as it is."""
    trigger.check(train.spec)
    check_target(target, train.spec)
    fraction = check_fraction(fraction, "poison fraction")
    others = torch.nonzero(train.labels != target).flatten()
    n = int(round(fraction * len(others)))
    rows = others[torch.randperm(len(others), generator=generator)[:n]].sort().values
    images, labels = train.images.clone(), train.labels.clone()
    mask = trigger.mask(train.spec)
    images[rows] = stamp(images[rows], train.spec, mask, trigger.pattern(train.spec))
    labels[rows] = target
    return Poisoned(ImageDataset(images, labels, train.spec), rows, target)


def triggered_test(
    test: ImageDataset, mask: torch.Tensor, pattern: torch.Tensor, target: int
) -> ImageDataset:
    """The test images of the classes other than ``target``, stamped, with their true labels
    (:mod:`ddkit.audits.backdoor`: target-class images would inflate the ASR by about ``1/K``)."""
    rows = torch.nonzero(test.labels != target).flatten()
    return ImageDataset(stamp(test.images[rows], test.spec, mask, pattern), test.labels[rows],
                        test.spec)  # fmt: skip


def attack_success_rate(net: nn.Module, triggered: ImageDataset, target: int) -> float:
    """The fraction of ``triggered`` (stamped non-target test images, in the network's space)
    that ``net`` assigns to ``target``."""
    from ddkit.models import predict

    net.eval()
    with torch.no_grad():
        pred = predict(net, triggered.images, post=lambda z: z.argmax(1).cpu())
    return float((pred == target).float().mean()) if len(pred) else 0.0
