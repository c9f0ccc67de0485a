"""The pyramid image parameterisation of Linear Gradient Matching.

G. Cazenavette, A. Torralba and V. Sitzmann, "Dataset Distillation for Pre-Trained
Self-Supervised Vision Models", NeurIPS 2025 (arXiv:2511.16674), after the image
parameterisations of feature visualisation (Olah et al., "Feature Visualization", Distill 2017).

An image is the sum of ``L`` components of growing resolution, ``1x1, 2x2, 4x4, ...`` up to the
image's ``H x W``, each upsampled bilinearly to ``H x W``; for three-channel images the sum's
channels are mixed by a fixed colour-decorrelation matrix (the square root of natural images'
colour covariance, as in the authors' code and Lucid); the pixel is ``sigmoid(2 * sum)``, so it
always lies in ``(0, 1)``. Gradients reach the coarse components from every pixel, which biases the
optimisation towards smooth, low-frequency images, the property the authors credit for the sets'
transfer across backbones.

Here every level exists from the start (the authors append one every 200 iterations and rebuild
the optimiser); a level not yet grown is held fixed (no gradient), so a checkpoint holds the same
tensors at every iteration. :func:`encode` is the exact inverse of :func:`decode` (a Laplacian
decomposition of the pre-sigmoid map): a real image becomes a pyramid that decodes to it, up to
float rounding, for pixels strictly inside ``(0, 1)``; pixels at 0 or 1 are moved ``eps`` inside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ddkit.errors import ConfigError

__all__ = ["COLOR_SQRT", "decode", "encode", "level_sizes"]

#: The square root of natural images' RGB colour covariance (the feature-visualisation
#: literature's ``color_correlation_svd_sqrt``), scaled so that its largest column norm is 1.
_COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_SQRT = _COLOR / _COLOR.norm(dim=0).max()
#: Pixels at exactly 0 or 1 have no finite pre-sigmoid value; :func:`encode` moves them inside.
EPS = 1e-4


def level_sizes(image_size: tuple[int, int], levels: int | None = None) -> list[tuple[int, int]]:
    """The ``(h, w)`` of each level, coarsest first: ``1x1, 2x2, 4x4, ...`` (each side capped at
    the image's) up to the full size; ``levels`` keeps only the finest ``levels`` of them (the
    full size always last)."""
    h, w = int(image_size[0]), int(image_size[1])
    if h < 1 or w < 1:
        raise ConfigError(f"image size must be positive, got {h}x{w}")
    n = math.ceil(math.log2(max(h, w))) + 1
    sizes = [(min(2**i, h), min(2**i, w)) for i in range(n)]
    sizes = [s for i, s in enumerate(sizes) if i == 0 or s != sizes[i - 1]]
    if levels is not None:
        if levels < 1:
            raise ConfigError(f"pyramid levels must be >= 1, got {levels}")
        sizes = sizes[-levels:]
    return sizes


def _up(level: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(level.shape[-2:]) == tuple(size):
        return level
    return F.interpolate(level, size=size, mode="bilinear", align_corners=False)


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Channels of ``x`` ``(N, 3, H, W)`` mixed by ``matrix`` (out = matrix @ in per pixel)."""
    return torch.einsum("oc,nchw->nohw", matrix.to(x), x)


def decode(levels: list[torch.Tensor], *, decorrelate: bool = True) -> torch.Tensor:
    """Pixels in ``(0, 1)``, ``(N, C, H, W)`` with ``H x W`` the last level's size:
    ``sigmoid(2 * sum_l upsample(levels[l]))``, the sum's colours mixed by :data:`COLOR_SQRT`
    first when ``decorrelate`` and ``C == 3``; differentiable in every level."""
    size = tuple(levels[-1].shape[-2:])
    total = sum(_up(lv, size) for lv in levels)
    if decorrelate and total.shape[1] == 3:
        total = _mix(total, COLOR_SQRT)
    return torch.sigmoid(2 * total)


def encode(
    pixels: torch.Tensor, sizes: list[tuple[int, int]], *, decorrelate: bool = True
) -> list[torch.Tensor]:
    """Levels (of ``sizes``, coarsest first, the last the pixels' size) that :func:`decode`
    turns back into ``pixels`` ``(N, C, H, W)`` in ``[0, 1]``: each level is the area-average of
    what the coarser ones leave unexplained, the finest takes the rest exactly."""
    if tuple(sizes[-1]) != tuple(pixels.shape[-2:]):
        raise ConfigError(f"the finest level {sizes[-1]} must be the image size")
    p = pixels.clamp(EPS, 1 - EPS)
    target = torch.log(p / (1 - p)) / 2  # the pre-sigmoid sum
    if decorrelate and target.shape[1] == 3:
        target = _mix(target, torch.linalg.inv(COLOR_SQRT.double()).to(target))
    levels: list[torch.Tensor] = []
    explained = torch.zeros_like(target)
    for size in sizes:
        rest = target - explained
        level = (
            rest if tuple(size) == tuple(target.shape[-2:]) else F.adaptive_avg_pool2d(rest, size)
        )
        levels.append(level)
        explained = explained + _up(level, tuple(target.shape[-2:]))
    return levels
