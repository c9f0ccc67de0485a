"""Seeded random-resized crops, vectorised (no torchvision).

A box is ``(y0, x0, h, w)`` in pixels. :func:`sample_boxes` draws boxes as torchvision's
``RandomResizedCrop`` does (area fraction ``~ U(scale)``, log aspect ratio ``~ U(log ratio)``)
except that an out-of-range box is clamped to the image instead of re-drawn up to 10 times.
:func:`crop_resize` resamples every box to a common output size with one bilinear
``grid_sample`` (``align_corners=False``: a full-image box at the input size is the identity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["crop_resize", "sample_boxes"]


def sample_boxes(
    n: int,
    size: tuple[int, int],
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    fit: bool = False,
) -> torch.Tensor:
    """``n`` boxes ``(n, 4)`` int64 ``(y0, x0, h, w)`` inside an image of ``size = (H, W)``.

    ``fit=True`` draws each box's aspect ratio only among those at which its area fits the
    image (what torchvision's re-draws converge to), so a box of area fraction 1 is the whole
    image; by default an out-of-range box is clamped (module docstring)."""
    h_img, w_img = int(size[0]), int(size[1])
    u = torch.rand((n, 4), generator=generator, dtype=torch.float64)
    frac = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    area = frac * h_img * w_img
    lo = torch.full_like(frac, math.log(ratio[0]))
    hi = torch.full_like(frac, math.log(ratio[1]))
    if fit:  # w = sqrt(A r) <= W and h = sqrt(A / r) <= H  <=>  f W / H <= r <= W / (f H)
        lo = torch.maximum(lo, torch.log(frac * w_img / h_img))
        hi = torch.maximum(torch.minimum(hi, torch.log(w_img / (frac * h_img))), lo)
    log_r = lo + (hi - lo) * u[:, 1]
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).round().clamp(1, w_img).long()
    h = torch.sqrt(area / r).round().clamp(1, h_img).long()
    y0 = torch.floor(u[:, 2] * (h_img - h + 1).double()).long()
    x0 = torch.floor(u[:, 3] * (w_img - w + 1).double()).long()
    return torch.stack([y0, x0, h, w], dim=1)


def crop_resize(
    x: torch.Tensor,
    boxes: torch.Tensor,
    out_size: tuple[int, int],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop ``boxes[i]`` out of ``x[i]`` and resize it to ``out_size`` (bilinear); ``flip[i]``
    (bool) mirrors the crop horizontally. ``x`` is ``(M, C, H, W)``, ``boxes`` ``(M, 4)``."""
    m, _, h_img, w_img = x.shape
    b = boxes.to(device=x.device, dtype=x.dtype)
    y0, x0, h, w = b.unbind(1)
    sx = w / w_img
    sy = h / h_img
    if flip is not None:
        sx = torch.where(flip.to(x.device).bool(), -sx, sx)
    theta = torch.zeros((m, 2, 3), dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = (2 * x0 + w) / w_img - 1
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = (2 * y0 + h) / h_img - 1
    grid = F.affine_grid(
        theta, [m, x.shape[1], int(out_size[0]), int(out_size[1])], align_corners=False
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
