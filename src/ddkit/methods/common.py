"""Pieces shared by distillation methods: initial synthetic sets and fresh networks."""

from __future__ import annotations

import torch
from torch import nn

from ddkit.augment.dsa import DSA, default_strategy, parse_strategy
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.models import create_model
from ddkit.rng import seeded_global_rng


def class_labels(num_classes: int, ipc: int) -> torch.Tensor:
    """Labels ``[0]*ipc + [1]*ipc + ...``: synthetic images are stored class by class."""
    return torch.arange(num_classes).repeat_interleave(ipc)


def initial_images(
    train: ImageDataset, ipc: int, generator: torch.Generator, init: str = "real"
) -> torch.Tensor:
    """``(K*ipc, C, H, W)`` starting images, class by class: random real images (``"real"``) or
    standard normal noise in the normalised space (``"noise"``)."""
    if init == "real":
        return train.images[train.sample_per_class(ipc, generator).flatten()].clone()
    if init == "noise":
        k = train.spec.num_classes
        return torch.randn((k * ipc, *train.spec.shape), generator=generator)
    from ddkit.errors import ConfigError

    raise ConfigError(f"unknown init {init!r}; valid: noise, real")


def fresh_network(name: str, train: ImageDataset, generator: torch.Generator) -> nn.Module:
    """A randomly initialised network whose init is drawn from ``generator`` (global RNG untouched)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with seeded_global_rng(seed):
        spec = train.spec
        return create_model(
            name,
            num_classes=spec.num_classes,
            in_channels=spec.channels,
            image_size=spec.image_size,
        )


def make_augment(setting: str, spec: DatasetSpec) -> DSA | None:
    """The Siamese augmentation for an ``augment`` option: ``"auto"`` (the dataset's DSA
    strategy, :func:`ddkit.augment.default_strategy`), ``"none"`` or an explicit strategy."""
    if setting == "auto":
        setting = default_strategy(spec.channels, spec.name)
    return DSA(setting) if parse_strategy(setting) else None
