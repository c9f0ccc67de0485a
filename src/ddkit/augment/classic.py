"""DC's evaluation augmentation: one of crop / scale / rotate / noise per image.

Zhao, Mopuri & Bilen, "Dataset Condensation with Gradient Matching", ICLR 2021. Before DSA, the
authors' code trained its evaluation networks on MNIST with a per-image augmentation (their
``augment`` and ``get_daparam``): every image of a batch gets one family drawn uniformly from the
strategy, and only MNIST (with ConvNet) gets a strategy at all, ``crop_scale_rotate``; the other
datasets, Fashion-MNIST included, are trained without augmentation. The operations (``x`` one
image, ``m_c`` the batch's mean of channel ``c``):

=========  =====================================================================================
family     operation
=========  =====================================================================================
crop       pad by ``crop`` pixels filled with ``m_c``, cut an ``H x W`` window at a random offset:
           a shift by an integer in ``[-crop, crop - 1]`` per axis
scale      resize to ``int(U(1 - scale, 1 + scale) * H)`` rows and, drawn separately, as many
           columns (nearest neighbour), centred on a zero canvas, centre ``H x W`` cut
rotate     rotate about the centre by an integer angle in ``[-rotate, rotate - 1]`` degrees, the
           uncovered area filled with the mean of the ``m_c``
noise      add ``noise * N(0, 1)`` per pixel
=========  =====================================================================================

Deviations: the reference rotates with scipy's cubic spline (``ndimage.rotate``); here it is
``grid_sample``'s bicubic convolution about the same centre. Everything is vectorised over the
batch and draws from one explicit :class:`torch.Generator`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ddkit.errors import UnknownNameError

__all__ = ["CLASSIC_FAMILIES", "ClassicAugment", "dc_strategy"]

#: The families a DC augmentation strategy may name, in the reference's order.
CLASSIC_FAMILIES: tuple[str, ...] = ("crop", "scale", "rotate", "noise")

#: MNIST and ddkit's subsets of it (DC's code tests ``dataset == 'MNIST'``: Fashion-MNIST and
#: the other datasets get no augmentation).
_MNIST_NAMES = ("mnist", "mnist5k")


def dc_strategy(dataset_name: str) -> str:
    """The strategy DC's code gives a dataset: ``crop_scale_rotate`` for MNIST, ``''`` (no
    augmentation) otherwise."""
    return "crop_scale_rotate" if dataset_name.lower() in _MNIST_NAMES else ""


class ClassicAugment:
    """DC's per-image augmentation (see the module docstring).

    Args:
        strategy: underscore-separated families from :data:`CLASSIC_FAMILIES`; ``''`` is the
            identity.
        crop, scale, rotate, noise: the reference's parameters (pixels, ratio, degrees, std).
    """

    def __init__(
        self,
        strategy: str = "crop_scale_rotate",
        *,
        crop: int = 4,
        scale: float = 0.2,
        rotate: int = 45,
        noise: float = 0.001,
    ) -> None:
        self.families = tuple(p for p in strategy.lower().split("_") if p)
        for p in self.families:
            if p not in CLASSIC_FAMILIES:
                raise UnknownNameError(
                    f"unknown DC augmentation {p!r} in strategy {strategy!r}; "
                    f"valid: {', '.join(CLASSIC_FAMILIES)}"
                )
        self.strategy = strategy
        self.crop, self.scale, self.rotate, self.noise = int(crop), float(scale), int(rotate), noise

    def __repr__(self) -> str:
        return f"ClassicAugment(strategy={self.strategy!r})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x`` ``(B, C, H, W)`` augmented, each image by one family drawn from ``generator``."""
        if not self.families or len(x) == 0:
            return x
        channel_mean = x.mean(dim=(0, 2, 3))
        choice = torch.randint(len(self.families), (len(x),), generator=generator)
        out = x.clone()
        for k, family in enumerate(self.families):
            rows = (choice == k).nonzero().flatten().to(x.device)
            if len(rows):
                out[rows] = getattr(self, f"_{family}")(x[rows], channel_mean, generator)
        return out

    # ------------------------------------------------------------------ one family each
    def _crop(self, x: torch.Tensor, mean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        shift = torch.randint(-self.crop, self.crop, (2, b), generator=g).to(x.device)
        padded = F.pad(x - mean[:, None, None], (self.crop,) * 4) + mean[:, None, None]
        ys = torch.arange(h, device=x.device) + self.crop + shift[0][:, None]  # (b, h)
        xs = torch.arange(w, device=x.device) + self.crop + shift[1][:, None]  # (b, w)
        return _pick_pixels(padded, ys, xs)

    def _scale(self, x: torch.Tensor, mean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        factors = torch.rand(2, b, generator=g, dtype=torch.float64) * 2 * self.scale
        factors = factors + 1 - self.scale
        new_h = (factors[0] * h).long().clamp(min=1).to(x.device)
        new_w = (factors[1] * w).long().clamp(min=1).to(x.device)
        canvas = torch.stack([new_h, new_w, torch.full_like(new_h, max(h, w))]).amax(dim=0)
        ys, valid_y = _nearest_source(h, new_h, canvas)
        xs, valid_x = _nearest_source(w, new_w, canvas)
        valid = (valid_y[:, :, None] & valid_x[:, None, :])[:, None].to(x.dtype)
        return _pick_pixels(x, ys, xs) * valid

    def _rotate(self, x: torch.Tensor, mean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        degrees = torch.randint(-self.rotate, self.rotate, (len(x),), generator=g)
        return rotate_about_centre(x, degrees.to(x.dtype).to(x.device), float(mean.mean()))

    def _noise(self, x: torch.Tensor, mean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x + self.noise * torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)


def _pick_pixels(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``out[b, :, i, j] = x[b, :, ys[b, i], xs[b, j]]``: each image's rows ``ys[b]`` ``(H,)``
    and columns ``xs[b]`` ``(W,)``."""
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)


def _nearest_source(
    size: int, new: torch.Tensor, canvas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For an image resized (nearest neighbour) from ``size`` to ``new[b]`` pixels along one
    axis and placed centred on a square canvas of ``canvas[b]`` pixels whose centre ``size``
    pixels are kept (the reference's offsets, rounded down): each kept pixel's source index
    (clamped) and whether it lies on the resized image."""
    on_canvas = torch.arange(size, device=new.device) + ((canvas - size) // 2)[:, None]
    on_image = on_canvas - ((canvas - new) // 2)[:, None]
    valid = (on_image >= 0) & (on_image < new[:, None])
    source = torch.div(on_image.clamp(min=0) * size, new[:, None], rounding_mode="floor")
    return source.clamp(max=size - 1), valid


def rotate_about_centre(x: torch.Tensor, degrees: torch.Tensor, fill: float) -> torch.Tensor:
    """Each image of ``x`` ``(B, C, H, W)`` rotated by ``degrees[b]`` about its centre (bicubic),
    uncovered pixels set to ``fill``."""
    theta = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    h, w = x.shape[-2:]
    zero = torch.zeros_like(cos)
    # normalised coordinates with align_corners=True: pixel centres span [-1, 1]; the aspect
    # ratio keeps the rotation rigid in pixels for non-square images
    matrix = torch.stack(
        [
            torch.stack([cos, -sin * (h - 1) / max(w - 1, 1), zero], dim=1),
            torch.stack([sin * (w - 1) / max(h - 1, 1), cos, zero], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(matrix, list(x.shape), align_corners=True)
    rotated = F.grid_sample(
        x - fill, grid, mode="bicubic", padding_mode="zeros", align_corners=True
    )
    return rotated + fill
