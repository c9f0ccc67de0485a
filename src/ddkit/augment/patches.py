"""RDED's training views of stitched images: a random-resized crop of at least one patch, then
the patches shuffled (Sun et al., "On the Diversity and Realism of Distilled Dataset", CVPR
2024: the validation transform of its reference code, ``RandomResizedCrop(scale=(1 / factor,
1))`` after ``ShufflePatches(factor)``).

An RDED image of factor ``F`` tiles ``F x F`` patches, each a real crop of its class. Trained on
as they are, a network learns the tiling (on 28-pixel digits a tiled set trained under DSA alone
falls below chance on whole digits); these views show the student single patches at up to full
scale and the tiles in a new order each time. Strategy spelling ``patches:F`` (evaluation's
``augment``); every image of a batch gets its own crop and its own order, from one generator.
"""

from __future__ import annotations

import torch

from ddkit.augment.crops import crop_resize, sample_boxes
from ddkit.errors import ConfigError

__all__ = ["PREFIX", "PatchViews", "is_patch_strategy", "shuffle_patches"]

#: The strategy prefix: ``patches:F`` (``F`` patches per side).
PREFIX = "patches:"


def is_patch_strategy(strategy: str | None) -> bool:
    """Whether ``strategy`` names RDED's patch views (``patches:F``)."""
    return bool(strategy) and str(strategy).startswith(PREFIX)


def _strip_order(
    size: int, factor: int, batch: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(batch, size)`` source positions along one axis when each row's ``factor`` strips are
    put in a random order (the last strip keeps the remainder, as RDED's reference cuts them)."""
    width = size // factor
    strip = (torch.arange(size) // width).clamp(max=factor - 1)  # the strip each position is in
    perm = torch.rand((batch, factor), generator=generator).argsort(dim=1)  # slot -> strip
    rank = perm.argsort(dim=1)  # strip -> its slot
    key = rank[:, strip] * size + torch.arange(size)  # sort by slot, then by position in strip
    return key.argsort(dim=1).to(device)


def shuffle_patches(x: torch.Tensor, factor: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` with each image's ``factor`` column strips, then its ``factor`` row
    strips, put in a random order of their own."""
    n, c, h, w = x.shape
    cols = _strip_order(w, factor, n, generator, x.device)
    x = x.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    rows = _strip_order(h, factor, n, generator, x.device)
    return x.gather(2, rows[:, None, :, None].expand(n, c, h, w))


class PatchViews:
    """``patches:F``: per image, patches shuffled, then a random-resized crop of area fraction in
    ``[1 / F, 1]`` resized back to the image size (module docstring)."""

    def __init__(self, strategy: str) -> None:
        text = strategy[len(PREFIX) :]
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(
                f"augmentation {strategy!r}: write patches:F with F patches per side, a whole "
                "number of at least 1 (the factor the set was stitched with), e.g. patches:2"
            )
        self.factor = int(text)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.factor:
            raise ConfigError(
                f"augmentation patches:{self.factor} cuts {self.factor} patches per side from "
                f"{h}x{w} images: use a factor of at most {min(h, w)}"
            )
        x = shuffle_patches(x, self.factor, generator)
        boxes = sample_boxes(len(x), (h, w), generator, scale=(1 / self.factor, 1.0), fit=True)
        return crop_resize(x, boxes.to(x.device), (h, w))
