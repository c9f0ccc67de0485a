"""``series``: a row is a time series of ``L`` steps with ``D`` channels, laid out
``(D, 1, L)``; learners that read series judge a set (:mod:`ddkit.data.series` reads the
files)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import check_one_high, register_modality
from ddkit.data.modalities.rows import Rows

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ddkit.data.spec import DatasetSpec


class SeriesModality(Rows):
    """Signals along the width, augmented by the series operations, judged by series learners."""

    def check_layout(self, spec: DatasetSpec) -> None:
        super().check_layout(spec)
        check_one_high(self, spec)

    def to_rows(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Series as ``(N, D, 1, L)``; they may also come as ``(N, L)`` or ``(N, D, L)``."""
        from ddkit.data.dataset import checked_rows

        return checked_rows(values, "series rows", lift=_series_layout)

    def rough_hint(self, spec: DatasetSpec) -> tuple[str, str]:
        return f"series of {spec.image_size[1]} steps", "'conv1d-d2' or 'conv1d-nopool'"

    def draw(self, syn: Any, path: str | Path, *, max_per_class: int, min_cell: int) -> Path:
        """Per-class line plots (:func:`ddkit.viz.series_lines`)."""
        from ddkit.data.dataset import denormalise
        from ddkit.viz import series_lines

        raw = denormalise(syn.images, syn.spec)[:, :, 0]
        return series_lines(
            raw, syn.hard_labels, syn.spec.class_names, path, max_per_class=max_per_class
        )

    def tiny(self) -> Any:
        return tiny_series()


def _series_layout(x: np.ndarray) -> np.ndarray:
    """``(N, L)`` and ``(N, D, L)`` series laid out ``(N, D, 1, L)``; other shapes as they are."""
    if x.ndim == 2:
        return x[:, None, None, :]
    return x[:, :, None, :] if x.ndim == 3 else x


@functools.lru_cache(maxsize=1)
def tiny_series(rows: int = 150, length: int = 64) -> Any:
    """A fabricated series set of ``rows`` series (test = every 5th row), 3 classes, 2 channels
    of ``length`` steps: channel 0 a sine of 1, 2 or 3 periods by class, channel 1 a ramp whose
    slope follows the class, both with a random phase / offset and noise. Seeded; cached; treat
    it as read-only."""
    import torch

    from ddkit.data.dataset import ArrayExtras, from_arrays

    g = torch.Generator().manual_seed(0)
    y = torch.arange(rows) % 3
    t = torch.linspace(0, 1, length)
    phase = torch.rand(rows, 1, generator=g) * 6.2832
    wave = torch.sin(6.2832 * (y[:, None] + 1) * t + phase)
    ramp = (y[:, None] - 1.0) * t + 0.3 * torch.randn(rows, 1, generator=g)
    x = torch.stack([wave, ramp], 1) + 0.1 * torch.randn(rows, 2, length, generator=g)
    return from_arrays(x, y, name="tiny-series", extras=ArrayExtras(modality="series"))


SERIES = register_modality(
    SeriesModality(
        "series",
        row="a time series of L steps with D channels",
        layout="(D, 1, L)",
        normalisation="per channel over all time steps, train-split statistics",
        augmentations=("series",),
        models=("conv1d", "resnet1d", "mlp"),
        protocol="series",
        learners=("rocket", "conv1d", "resnet1d", "knn"),
        learner_rows="series",
        needs_words="series",
    )
)
