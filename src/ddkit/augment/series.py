"""Augmentations that fit time series, written as sample-then-apply like :mod:`ddkit.augment.dsa`
(so matching methods use them as DSA: one draw replayed on the real and the synthetic batch).

Operations on a normalised batch ``(B, D, 1, L)`` and their defaults follow Iwana & Uchida, "An
empirical survey of data augmentation for time series classification with neural networks",
PLOS ONE 2021 (their reference code's defaults):

=========  =====================================================================================
family     operation
=========  =====================================================================================
jitter     add Gaussian noise ``N(0, 0.03^2)`` to every step (Um et al., ICMI 2017)
scaling    multiply the series by ``s ~ N(1, 0.1^2)`` (one factor for all channels: a deviation
           from the survey's per-channel factors, so that a draw is one number per series)
slice      window slicing (Le Guennec, Malinowski & Tavenard, AALTD 2016): a window of
           ``ceil(0.9 L)`` steps at a random start, stretched back to ``L`` steps by linear
           interpolation
warp       magnitude warping (Um et al. 2017): multiply by a smooth curve through 6 evenly
           spaced knots ``~ N(1, 0.2^2)`` (4 inner knots and the ends; cosine interpolation
           between knots instead of the survey's cubic spline)
=========  =====================================================================================

Every operation is linear in ``x`` for fixed parameters (jitter affine), hence differentiable
w.r.t. the series. Draws come from an explicit :class:`torch.Generator` in :meth:`sample` and are
returned as :class:`~ddkit.augment.dsa.DSAParams` holding one number per series and key; the
jitter noise is a counter-based function of a drawn integer key and the position (a splitmix64
hash), so a draw replays exactly on any batch, device or grouping of rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ddkit.augment.dsa import DSA, DSAParams, draw_families
from ddkit.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "SERIES_FAMILIES",
    "SeriesAugment",
    "augmenter",
    "is_series_strategy",
    "parse_series_strategy",
]

#: The series operations a strategy may name; ``"series"`` names all of them.
SERIES_FAMILIES: tuple[str, ...] = ("jitter", "scaling", "slice", "warp")
#: One line on each operation (``ddkit list``).
SERIES_HELP: dict[str, str] = {
    "jitter": "additive Gaussian noise on every step",
    "scaling": "the whole series multiplied by one random factor near 1",
    "slice": "a random window stretched back to the full length",
    "warp": "magnitude warping by a smooth random curve",
}
KNOTS = 6


def parse_series_strategy(strategy: str) -> tuple[str, ...]:
    """The families of a series strategy: ``"series"`` (all of :data:`SERIES_FAMILIES`) or
    families joined by ``_`` (e.g. ``"jitter_slice"``); an unknown one is a one-line
    :class:`UnknownNameError`."""
    text = str(strategy).strip().lower()
    if text == "series":
        return SERIES_FAMILIES
    parts = tuple(p for p in text.split("_") if p)
    for p in parts:
        if p not in SERIES_FAMILIES:
            raise UnknownNameError(
                f"unknown series operation {p!r} in {strategy!r}; valid: series or "
                f"{', '.join(SERIES_FAMILIES)} joined by '_'"
            )
    return parts


def is_series_strategy(strategy: object) -> bool:
    """Whether ``strategy`` names series operations (``"series"``, ``"jitter_scaling"``, ...)."""
    if not isinstance(strategy, str):
        return False
    parts = [p for p in strategy.strip().lower().split("_") if p]
    return strategy.strip().lower() == "series" or (
        bool(parts) and all(p in SERIES_FAMILIES for p in parts)
    )


# splitmix64's constants as signed int64 (torch's int64 arithmetic wraps)
_GOLDEN, _MIX1, _MIX2 = -7046029254386353131, -4658895280553007687, -7723592293110705685


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser (Steele, Lea & Flood, OOPSLA 2014) on int64 tensors."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def hashed_normal(keys: torch.Tensor, count: int, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal numbers ``(n, count)``: entry ``(i, j)`` depends only on ``keys[i]`` and
    ``j`` (two hashed uniforms through Box-Muller), so the same key gives the same noise on any
    device and in any batch."""
    base = _mix(keys.long().view(-1, 1)) + 2 * torch.arange(count, device=keys.device).view(1, -1)
    u1, u2 = ((_shr(_mix(base + j), 11).double() + 0.5) * 2.0**-53 for j in (0, 1))
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).to(dtype)


def _ramp(positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, D, 1, L)`` read at fractional time ``positions`` ``(n, L)`` by linear
    interpolation (``n`` is 1 or ``B``)."""
    b, d, _, length = x.shape
    lo = positions.floor().clamp(0, length - 1)
    frac = (positions - lo).to(x.dtype).view(-1, 1, 1, length)
    lo = lo.long()
    hi = (lo + 1).clamp(max=length - 1)

    def at(index: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 3, index.view(-1, 1, 1, length).expand(b, d, 1, length))

    return at(lo) * (1 - frac) + at(hi) * frac


class SeriesAugment:
    """Siamese augmentation for series (the operations of the module docstring).

    Args:
        strategy: ``"series"`` (all families) or families joined by ``_``.
        mode: ``"one"`` (default, as DSA) draws one family per call; ``"all"`` applies every
            family in turn.
        jitter, scaling, warp: the standard deviations of the noise, the factor and the knots;
        slice_ratio: the window's share of the series, in ``(0, 1]``.
    """

    def __init__(
        self,
        strategy: str = "series",
        mode: str = "one",
        *,
        jitter: float = 0.03,
        scaling: float = 0.1,
        slice_ratio: float = 0.9,
        warp: float = 0.2,
    ) -> None:
        if mode not in ("one", "all"):
            raise ConfigError(f"unknown series augmentation mode {mode!r}; valid: one, all")
        if not 0.0 < slice_ratio <= 1.0:
            raise ConfigError(f"slice_ratio must be in (0, 1], got {slice_ratio}")
        if min(jitter, scaling, warp) < 0:
            raise ConfigError("series augmentation strengths must be >= 0")
        self.strategy = strategy
        self.mode = mode
        self.families = parse_series_strategy(strategy)
        self.jitter, self.scaling = float(jitter), float(scaling)
        self.slice_ratio, self.warp = float(slice_ratio), float(warp)

    def __repr__(self) -> str:
        return f"SeriesAugment(strategy={self.strategy!r}, mode={self.mode!r})"

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        *,
        shared: bool = True,
        device: torch.device | str | None = None,
        image_size: tuple[int, int] | int | None = None,
    ) -> DSAParams:
        """Draw one augmentation from ``generator``: one number per key (``shared``) or per
        series. ``image_size`` is accepted for DSA's signature and not needed."""
        n, fams = draw_families(
            "SeriesAugment", self.families, self.mode, batch_size, generator, shared
        )
        gdev = generator.device
        values: dict[str, torch.Tensor] = {}
        for fam in fams:
            if fam == "jitter":
                values["jitter_key"] = torch.randint(
                    -(2**62), 2**62, (n,), generator=generator, device=gdev
                )
            elif fam == "scaling":
                values["scaling"] = 1.0 + self.scaling * _normal(n, 1, generator)[:, 0]
            elif fam == "slice":
                values["slice_start"] = torch.rand(
                    n, generator=generator, device=gdev, dtype=torch.float64
                )
            elif fam == "warp":
                knots = 1.0 + self.warp * _normal(n, KNOTS, generator)
                values.update({f"warp_{i}": knots[:, i] for i in range(KNOTS)})
        values = {k: v.to(device) if device is not None else v for k, v in values.items()}
        return DSAParams(fams, values, shared)

    def apply(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Apply ``params`` to series ``x`` ``(B, D, 1, L)``; differentiable in ``x``; shape
        and dtype kept."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[2] != 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"series augmentation expects a batch (B, D, 1, L), got {shape}")
        if not params.shared and params.batch_size not in (None, x.shape[0]):
            raise DataError(
                f"series augmentation params were sampled for {params.batch_size} series but "
                f"the batch has {x.shape[0]}"
            )
        vals = {k: v.to(x.device) for k, v in params.values.items()}
        for fam in params.families:
            x = getattr(self, f"_apply_{fam}")(x, vals)
        return x

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, *, shared: bool = False
    ) -> torch.Tensor:
        """Sample (one draw per series unless ``shared``) and apply in one go."""
        return self.apply(x, self.sample(len(x), generator, shared=shared))

    def _apply_jitter(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        noise = hashed_normal(v["jitter_key"], x[0].numel(), x.dtype).view(-1, *x.shape[1:])
        return x + self.jitter * noise

    def _apply_scaling(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return x * v["scaling"].to(x.dtype).view(-1, 1, 1, 1)

    def _apply_slice(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        length = x.shape[3]
        window = min(length, math.ceil(self.slice_ratio * length))
        start = torch.floor(v["slice_start"] * (length - window + 1)).clamp(max=length - window)
        steps = torch.linspace(0, window - 1, length, dtype=torch.float64, device=x.device)
        return _ramp(start.view(-1, 1) + steps.view(1, -1), x)

    def _apply_warp(self, x: torch.Tensor, v: Mapping[str, torch.Tensor]) -> torch.Tensor:
        length = x.shape[3]
        knots = torch.stack([v[f"warp_{i}"] for i in range(KNOTS)], 1)  # (n, KNOTS)
        pos = torch.linspace(0, KNOTS - 1, length, dtype=torch.float64, device=x.device)
        left = pos.floor().long().clamp(max=KNOTS - 2)
        t = (1 - torch.cos(math.pi * (pos - left))) / 2  # cosine ease between knots
        curve = knots[:, left] * (1 - t) + knots[:, left + 1] * t  # (n, L)
        return x * curve.to(x.dtype).view(-1, 1, 1, length)


def _normal(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, k, generator=generator, device=generator.device, dtype=torch.float64)


def augmenter(strategy: str) -> DSA | SeriesAugment:
    """The augmentation a strategy names: series operations (:func:`is_series_strategy`) or
    DSA families."""
    return SeriesAugment(strategy) if is_series_strategy(strategy) else DSA(strategy)
