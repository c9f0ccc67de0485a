"""Multi-formation: one stored image holds a ``factor x factor`` grid of small images.

J.-H. Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization", ICML 2022
(IDC, arXiv:2205.14959); used by IDM (Zhao et al., CVPR 2023). Each stored image is split into
tiles that are upsampled to full size for training, so ``ipc`` stored images per class give
``ipc * factor^2`` training images at the storage cost of ``ipc``. As a codec: ``formation:F``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ddkit.data.codecs.base import STORED_IMAGES, Codec, register_codec
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError

__all__ = ["Formation", "decode", "default_factor", "encode_real", "merge", "partition"]

#: Below this image side, tiles of half the side hold too little of an image to train on.
MIN_SIDE_FOR_TILES = 16


def default_factor(image_size: tuple[int, int]) -> int:
    """The formation factor used when a method is not told one: 2 for images of at least
    :data:`MIN_SIDE_FOR_TILES` pixels a side (IDC's MNIST/CIFAR setting), else 1 (4x4 tiles of an
    8x8 image are not an image)."""
    return 2 if min(image_size) >= MIN_SIDE_FOR_TILES else 1


def _patch(h: int, w: int, factor: int) -> tuple[int, int]:
    return -(-h // factor), -(-w // factor)


def partition(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Split ``(N, C, H, W)`` into ``factor x factor`` tiles ``(N * factor^2, C, ph, pw)``,
    row-major per image; sizes not divisible by ``factor`` are edge-padded first."""
    n, c, h, w = x.shape
    ph, pw = _patch(h, w, factor)
    if (ph * factor, pw * factor) != (h, w):
        x = F.pad(x, (0, pw * factor - w, 0, ph * factor - h), mode="replicate")
    t = x.reshape(n, c, factor, ph, factor, pw).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(n * factor * factor, c, ph, pw)


def merge(tiles: torch.Tensor, factor: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`partition`: tiles ``(N * factor^2, C, ph, pw)`` -> ``(N, C, H, W)``."""
    m, c, ph, pw = tiles.shape
    n = m // (factor * factor)
    x = tiles.reshape(n, factor, factor, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
    x = x.reshape(n, c, factor * ph, factor * pw)
    return x[:, :, : size[0], : size[1]]


def decode(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Multi-formation decoding: every stored image ``(N, C, H, W)`` becomes ``factor^2``
    training images ``(N * factor^2, C, H, W)`` (its tiles, bilinearly upsampled to ``H x W``),
    kept next to each other so class-major order is preserved. ``factor == 1``: unchanged."""
    if factor == 1:
        return x
    h, w = x.shape[2:]
    return F.interpolate(partition(x, factor), size=(h, w), mode="bilinear", align_corners=False)


def encode_real(images: torch.Tensor, factor: int) -> torch.Tensor:
    """IDM's real initialisation for ``factor > 1``: downscale each group of ``factor^2``
    consecutive images to tile size and stitch them into one stored image."""
    if factor == 1:
        return images
    h, w = images.shape[2:]
    small = F.interpolate(images, size=_patch(h, w, factor), mode="bilinear", align_corners=False)
    return merge(small, factor, (h, w))


@register_codec
class Formation(Codec):
    """Multi-formation with ``factor x factor`` tiles per stored image (module docstring)."""

    name = "formation"
    help = "multi-formation: F x F tiles per stored image, each upsampled to a training image (IDC, ICML 2022)"
    argument = int
    usage = "formation:F (F >= 1)"
    example = "formation:2"

    def __init__(self, factor: int) -> None:
        if factor < 1:
            raise ConfigError(f"formation factor must be >= 1, got {factor}")
        self.factor = int(factor)

    @property
    def spec_string(self) -> str:
        return f"formation:{self.factor}"

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        if min(spec.image_size) < self.factor:
            raise ConfigError(f"factor {self.factor} is larger than the images {spec.image_size}")
        return ipc * self.factor**2

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return encode_real(images, self.factor)

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return decode(stored, self.factor)

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        return extras.get(STORED_IMAGES) if self.factor > 1 else None

    def record(
        self, stored: torch.Tensor, spec: DatasetSpec
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        ipc = len(stored) // spec.num_classes
        meta = {"formation_factor": self.factor, "stored_ipc": ipc,
                "stored_images": len(stored), "decoded_ipc": ipc * self.factor**2}  # fmt: skip
        return meta, ({STORED_IMAGES: stored} if self.factor > 1 else {})
