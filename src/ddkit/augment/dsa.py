"""Differentiable Siamese Augmentation (DSA), written as sample-then-apply.

Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation", ICML 2021.

The operations and their ranges follow the authors' reference code (``ParamDiffAug``):

=========  =====================================================================================
family     operation (``x`` is a normalised batch ``(B, C, H, W)``)
=========  =====================================================================================
color      brightness ``x + (r - 0.5) * 1.0``; saturation ``m_c + (x - m_c) * 2r`` with ``m_c``
           the mean over channels; contrast ``m + (x - m) * (r + 0.5)`` with ``m`` the mean over
           ``C, H, W``; three independent ``r ~ U(0, 1)``
crop       translate by an integer shift in ``[-round(H/8), round(H/8)]`` (same for ``W``), zero
           padding (a "pad then crop")
cutout     zero a square of ``round(H/2) x round(W/2)`` pixels centred at a random pixel
flip       horizontal flip with probability 0.5
scale      sampling grid scaled by ``s ~ U(1/1.2, 1.2)`` independently per axis (bilinear,
           ``align_corners=True``, zero padding)
rotate     rotation by ``U(-15, 15)`` degrees (bilinear, ``align_corners=True``, zero padding)
=========  =====================================================================================

Every operation is linear (affine for brightness) in ``x``, hence differentiable w.r.t. the
images for any fixed parameters. Random values are drawn by :meth:`DSA.sample` from an explicit
:class:`torch.Generator` and returned as :class:`DSAParams`; :meth:`DSA.apply` replays them, so
the real and the synthetic batch of a matching step get the same augmentation ("Siamese").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ddkit.errors import ConfigError, DataError, UnknownNameError

__all__ = ["DSA", "DSAParams", "FAMILIES", "default_strategy"]

#: The augmentation families a strategy string may name, in the reference's order.
FAMILIES: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
#: One line on each family (``ddkit list``).
FAMILY_HELP: dict[str, str] = {
    "color": "brightness, saturation and contrast jitter",
    "crop": "random translation (shift and pad)",
    "cutout": "one square zeroed at a random place",
    "flip": "horizontal flip",
    "scale": "random stretch along each axis",
    "rotate": "random rotation",
}

#: Parameter tensors each family samples (all of shape ``(n,)`` with ``n`` 1 or the batch size).
_KEYS: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("crop_dy", "crop_dx"),
    "cutout": ("cutout_cy", "cutout_cx"),
    "flip": ("flip",),
    "scale": ("scale_x", "scale_y"),
    "rotate": ("rotate",),
}

_DIGIT_MARKERS = ("mnist", "digits", "svhn", "usps")


def default_strategy(channels: int, dataset_name: str) -> str:
    """The reference DSA strategy for a dataset.

    Digit datasets (a name containing ``mnist``, ``digits``, ``svhn`` or ``usps``) get no flip,
    since a mirrored digit is another symbol; everything else gets
    ``'color_crop_cutout_flip_scale_rotate'``. ``channels`` is checked but does not change the
    choice (grey-scale natural images still flip).
    """
    if channels < 1:
        raise DataError(f"channels must be >= 1, got {channels}")
    name = dataset_name.lower()
    if any(marker in name for marker in _DIGIT_MARKERS):
        return "color_crop_cutout_scale_rotate"
    return "color_crop_cutout_flip_scale_rotate"


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Split a strategy such as ``'color_crop_flip'`` into its families.

    ``''``, ``'none'`` and ``'None'`` mean no augmentation. An unknown family raises
    :class:`~ddkit.errors.UnknownNameError`.
    """
    if strategy is None or strategy.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p for p in strategy.strip().lower().split("_") if p)
    for p in parts:
        if p not in _KEYS:
            valid = ", ".join(FAMILIES)
            raise UnknownNameError(
                f"unknown DSA operation {p!r} in strategy {strategy!r}; valid: {valid}"
            )
    return parts


@dataclass(frozen=True)
class DSAParams:
    """One sampled DSA augmentation, replayable on any number of batches.

    Attributes:
        families: the families applied, in order (one in ``mode='one'``; empty means identity).
        values: per-family random values, each a tensor of shape ``(n,)``: float tensors
            ``brightness``, ``saturation``, ``contrast`` (``U(0,1)`` draws), ``scale_x``,
            ``scale_y`` (factors), ``rotate`` (radians); ``crop_dy``, ``crop_dx`` (shifts in
            pixels) and ``cutout_cy``, ``cutout_cx`` (centres) as integer tensors, or as
            ``U(0,1)`` fractions resolved against the batch's ``H, W`` at apply time when the
            image size was not given to :meth:`DSA.sample`; bool tensor ``flip``.
        shared: ``True`` if one draw (``n == 1``) is broadcast to every sample of any batch.
    """

    families: tuple[str, ...]
    values: Mapping[str, torch.Tensor] = field(default_factory=dict)
    shared: bool = True

    @property
    def family(self) -> str:
        """The sampled family name (``'none'`` if empty, ``'+'``-joined in ``mode='all'``)."""
        return "+".join(self.families) if self.families else "none"

    @property
    def batch_size(self) -> int | None:
        """Number of per-sample draws, or ``None`` when shared (any batch size fits)."""
        if self.shared or not self.values:
            return None
        return int(next(iter(self.values.values())).shape[0])

    def to(self, device: torch.device | str | None) -> DSAParams:
        """A copy with every tensor on ``device``."""
        return DSAParams(
            self.families, {k: v.to(device) for k, v in self.values.items()}, self.shared
        )


class DSA:
    """Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021).

    Args:
        strategy: underscore-separated families, e.g. ``'color_crop_cutout_flip_scale_rotate'``
            (default, natural images) or ``'color_crop_cutout_scale_rotate'`` (digits).
        mode: ``'one'`` (default; the reference's per-call single-family mode) draws one family
            per call uniformly from the strategy; ``'all'`` applies every family in sequence.
        brightness, saturation, contrast, crop_pad, cutout, flip_prob, scale, rotate: the
            reference's ratios (``ParamDiffAug``); ``rotate`` is in degrees.

    >>> dsa = DSA()
    >>> p = dsa.sample(1, torch.Generator().manual_seed(0))  # one shared draw
    >>> real_aug, syn_aug = dsa.apply(real, p), dsa.apply(syn, p)  # doctest: +SKIP
    """

    def __init__(
        self,
        strategy: str = "color_crop_cutout_flip_scale_rotate",
        mode: str = "one",
        *,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        crop_pad: float = 0.125,
        cutout: float = 0.5,
        flip_prob: float = 0.5,
        scale: float = 1.2,
        rotate: float = 15.0,
    ) -> None:
        if mode not in ("one", "all"):
            raise ConfigError(f"unknown DSA mode {mode!r}; valid: one, all")
        if scale < 1.0:
            raise ConfigError(f"DSA scale ratio must be >= 1, got {scale}")
        self.strategy = strategy
        self.mode = mode
        self.families = parse_strategy(strategy)
        self.brightness = float(brightness)
        self.saturation = float(saturation)
        self.contrast = float(contrast)
        self.crop_pad = float(crop_pad)
        self.cutout = float(cutout)
        self.flip_prob = float(flip_prob)
        self.scale = float(scale)
        self.rotate = float(rotate)

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r}, mode={self.mode!r})"

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        *,
        shared: bool = True,
        device: torch.device | str | None = None,
        image_size: tuple[int, int] | int | None = None,
    ) -> DSAParams:
        """Draw one augmentation from ``generator``.

        Args:
            batch_size: samples to draw for when ``shared=False``; ignored when shared.
            generator: the only source of randomness (drawn on its own device).
            shared: ``True`` ("Siamese"): a single draw that :meth:`apply` broadcasts to any
                batch; ``False``: one draw per sample.
            device: where the returned tensors live (default: the generator's device).
            image_size: ``(H, W)`` of the images; needed by ``crop`` and ``cutout`` to bound the
                shift / centre. If omitted, crop shifts and cutout centres are stored as
                fractions and resolved against the batch in :meth:`apply`.
        """
        n, fams = draw_families("DSA", self.families, self.mode, batch_size, generator, shared)
        gdev = generator.device
        hw = (image_size, image_size) if isinstance(image_size, int) else image_size

        def rand() -> torch.Tensor:
            return torch.rand(n, generator=generator, device=gdev, dtype=torch.float64)

        values: dict[str, torch.Tensor] = {}
        for fam in fams:
            if fam == "color":
                values["brightness"] = rand()
                values["saturation"] = rand()
                values["contrast"] = rand()
            elif fam == "crop":
                # fractions in [0, 1); resolved to integer shifts once H, W are known
                values["crop_dy"] = rand()
                values["crop_dx"] = rand()
            elif fam == "cutout":
                values["cutout_cy"] = rand()
                values["cutout_cx"] = rand()
            elif fam == "flip":
                values["flip"] = rand() < self.flip_prob
            elif fam == "scale":
                lo, hi = 1.0 / self.scale, self.scale
                values["scale_x"] = rand() * (hi - lo) + lo
                values["scale_y"] = rand() * (hi - lo) + lo
            elif fam == "rotate":
                values["rotate"] = (rand() - 0.5) * 2.0 * math.radians(self.rotate)
        if hw is not None:
            values = self._resolve(values, hw)
        values = {k: v.to(device) if device is not None else v for k, v in values.items()}
        return DSAParams(fams, values, shared)

    def _resolve(
        self, values: dict[str, torch.Tensor], hw: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Turn fractional crop / cutout draws into integer shifts / centres for size ``hw``."""
        h, w = int(hw[0]), int(hw[1])
        out = dict(values)
        if "crop_dy" in out and out["crop_dy"].is_floating_point():
            sy, sx = int(h * self.crop_pad + 0.5), int(w * self.crop_pad + 0.5)
            out["crop_dy"] = _uniform_int(out["crop_dy"], -sy, sy)
            out["crop_dx"] = _uniform_int(out["crop_dx"], -sx, sx)
        if "cutout_cy" in out and out["cutout_cy"].is_floating_point():
            ch, cw = self._cutout_size(h, w)
            # reference: centre ~ randint(0, size + (1 - cut % 2))
            out["cutout_cy"] = _uniform_int(out["cutout_cy"], 0, h - ch % 2)
            out["cutout_cx"] = _uniform_int(out["cutout_cx"], 0, w - cw % 2)
        return out

    def _cutout_size(self, h: int, w: int) -> tuple[int, int]:
        return int(h * self.cutout + 0.5), int(w * self.cutout + 0.5)

    # ------------------------------------------------------------------ applying
    def apply(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Apply the sampled ``params`` to ``x`` ``(B, C, H, W)``; differentiable in ``x``.

        Shared params fit any batch size; per-sample params need ``B`` equal to their size.
        Shape and dtype are preserved.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"DSA expects a float tensor of shape (B, C, H, W), got {shape}")
        b = x.shape[0]
        if not params.shared and params.batch_size not in (None, b):
            raise DataError(
                f"DSA params were sampled for {params.batch_size} samples but the batch has {b}"
            )
        vals = self._resolve(dict(params.values), (x.shape[2], x.shape[3]))
        vals = {k: v.to(x.device) for k, v in vals.items()}
        for fam in params.families:
            x = getattr(self, f"_apply_{fam}")(x, vals)
        return x

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, *, shared: bool = False
    ) -> torch.Tensor:
        """Sample (one draw per sample unless ``shared``) and apply in one go."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"DSA expects a float tensor of shape (B, C, H, W), got {shape}")
        params = self.sample(
            x.shape[0], generator, shared=shared, image_size=(x.shape[2], x.shape[3])
        )
        return self.apply(x, params)

    # individual families; `v` holds (n,)-shaped tensors already on x.device
    def _apply_color(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        rb = _col(v["brightness"], x)
        x = x + (rb - 0.5) * self.brightness
        rs = _col(v["saturation"], x)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (rs * self.saturation) + m
        rc = _col(v["contrast"], x)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (rc + self.contrast) + m

    def _apply_crop(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # out[i, j] = x[i + dy, j + dx], zero where the source falls outside the image
        b, c, h, w = x.shape
        dy = v["crop_dy"].long().view(-1, 1)
        dx = v["crop_dx"].long().view(-1, 1)
        rows = torch.arange(h, device=x.device).view(1, h) + dy  # (n, H)
        cols = torch.arange(w, device=x.device).view(1, w) + dx  # (n, W)
        valid = ((rows >= 0) & (rows < h)).view(-1, 1, h, 1) & ((cols >= 0) & (cols < w)).view(
            -1, 1, 1, w
        )
        rows = rows.clamp(0, h - 1).view(-1, 1, h, 1).expand(b, c, h, w)
        out = torch.gather(x, 2, rows)
        cols = cols.clamp(0, w - 1).view(-1, 1, 1, w).expand(b, c, h, w)
        out = torch.gather(out, 3, cols)
        return out * valid.to(x.dtype)

    def _apply_cutout(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _, _, h, w = x.shape
        ch, cw = self._cutout_size(h, w)
        y0 = v["cutout_cy"].long().view(-1, 1) - ch // 2
        x0 = v["cutout_cx"].long().view(-1, 1) - cw // 2
        r = torch.arange(h, device=x.device).view(1, h)
        q = torch.arange(w, device=x.device).view(1, w)
        in_r = (r >= y0) & (r < y0 + ch)  # (n, H)
        in_c = (q >= x0) & (q < x0 + cw)  # (n, W)
        hole = in_r.view(-1, 1, h, 1) & in_c.view(-1, 1, 1, w)
        return x * (~hole).to(x.dtype)

    def _apply_flip(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.where(v["flip"].view(-1, 1, 1, 1), x.flip(3), x)

    def _apply_scale(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        sx, sy = v["scale_x"].to(x.dtype), v["scale_y"].to(x.dtype)
        zero = torch.zeros_like(sx)
        theta = torch.stack(
            [torch.stack([sx, zero, zero], -1), torch.stack([zero, sy, zero], -1)], -2
        )
        return _warp(x, theta)

    def _apply_rotate(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        a = v["rotate"].to(x.dtype)
        cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2
        )
        return _warp(x, theta)


def draw_families(
    who: str,
    families: tuple[str, ...],
    mode: str,
    batch_size: int,
    generator: torch.Generator,
    shared: bool,
) -> tuple[int, tuple[str, ...]]:
    """The start of every sample-then-apply augmentation's ``sample``: checks the generator and
    the batch size, and returns the number of draws (1 when ``shared``) and the families to
    apply (in ``mode='one'`` one of ``families``, drawn uniformly from ``generator``)."""
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"{who}.sample needs an explicit torch.Generator")
    if not shared and batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    n = 1 if shared else int(batch_size)
    if not families or mode != "one":
        return n, tuple(families)
    k = int(torch.randint(len(families), (1,), generator=generator, device=generator.device))
    return n, (families[k],)


def _uniform_int(u: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Map ``u ~ U[0, 1)`` to an integer uniform on ``{lo, ..., hi}``."""
    k = torch.floor(u * (hi - lo + 1)).long().clamp_(max=hi - lo)
    return k + lo


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` values -> ``(n, 1, 1, 1)`` in ``x``'s dtype."""
    return v.to(x.dtype).view(-1, 1, 1, 1)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Affine resampling as in the reference (bilinear, zeros, ``align_corners=True``)."""
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
