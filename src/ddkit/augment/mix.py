"""Mixup and CutMix for soft-label training.

Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018; Yun et al., "CutMix:
Regularization Strategy to Train Strong Classifiers with Localizable Features", ICCV 2019.

Both draw ``lam ~ Beta(alpha, alpha)`` and a batch permutation from an explicit
:class:`torch.Generator` and mix soft labels ``(B, K)`` with the same weight as the images
(for CutMix, the weight is the actual kept area after clipping the box to the image).
"""

from __future__ import annotations

import math

import torch

from ddkit.errors import ConfigError, DataError

__all__ = ["cutmix", "mixup", "sample_beta"]


def sample_beta(alpha: float, generator: torch.Generator) -> float:
    """One draw of ``Beta(alpha, alpha)`` from ``generator`` (as ``G1 / (G1 + G2)``)."""
    conc = torch.full((2,), float(alpha), dtype=torch.float64, device=generator.device)
    g = torch._standard_gamma(conc, generator=generator)
    total = float(g.sum())
    if total <= 0.0:  # both gammas underflowed (tiny alpha): Beta mass sits at 0 and 1
        return float(torch.rand((), generator=generator, device=generator.device) < 0.5)
    return float(g[0]) / total


def _check(x: torch.Tensor, y: torch.Tensor, alpha: float, name: str, image: bool) -> None:
    if not alpha >= 0:
        raise ConfigError(f"{name}: alpha must be >= 0, got {alpha}")
    if not isinstance(x, torch.Tensor) or (image and x.ndim != 4) or x.ndim < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        want = "(B, C, H, W)" if image else "(B, ...)"
        raise DataError(f"{name}: x must be a tensor {want}, got {shape}")
    if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataError(f"{name}: y must be soft labels (B, K) with B={x.shape[0]}, got {shape}")


def _perm(b: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randperm(b, generator=generator, device=generator.device).to(device)


def mixup(
    x: torch.Tensor, y_soft: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup: ``lam * x + (1 - lam) * x[perm]``, labels mixed alike.

    ``alpha == 0`` means no mixing (``lam = 1``): the inputs are returned unchanged and the
    generator is not used.
    """
    _check(x, y_soft, alpha, "mixup", image=False)
    if alpha == 0:
        return x, y_soft
    lam = sample_beta(alpha, generator)
    perm = _perm(x.shape[0], generator, x.device)
    xm = lam * x + (1.0 - lam) * x[perm]
    ym = lam * y_soft + (1.0 - lam) * y_soft[perm.to(y_soft.device)]
    return xm, ym


def cutmix(
    x: torch.Tensor, y_soft: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix: paste a box of ``x[perm]`` into ``x``; labels weighted by the actual areas.

    The box has sides ``H * sqrt(1 - lam)``, ``W * sqrt(1 - lam)`` (floored), a uniformly drawn
    centre, and is clipped to the image. ``alpha == 0`` returns the inputs unchanged.
    """
    _check(x, y_soft, alpha, "cutmix", image=True)
    if alpha == 0:
        return x, y_soft
    b, _, h, w = x.shape
    lam = sample_beta(alpha, generator)
    perm = _perm(b, generator, x.device)
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    gdev = generator.device
    cy = int(torch.randint(h, (1,), generator=generator, device=gdev))
    cx = int(torch.randint(w, (1,), generator=generator, device=gdev))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    box = ((rows >= y0) & (rows < y1)).view(h, 1) & ((cols >= x0) & (cols < x1)).view(1, w)
    xm = torch.where(box, x[perm], x)
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    ym = kept * y_soft + (1.0 - kept) * y_soft[perm.to(y_soft.device)]
    return xm, ym
