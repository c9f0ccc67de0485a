"""Tiny datasets of every modality, for tests and the conformance suite (:mod:`ddkit.testing`):
real 8x8 digits (:func:`tiny_digits`) and fabricated tables, series and a graph
(:func:`tiny_table`, :func:`tiny_series`, :func:`tiny_graph`). Each is seeded and cached; treat
it as read-only."""

from __future__ import annotations

import functools

import torch

from ddkit.data.dataset import DatasetSplits, from_arrays

TINY_ROWS = 300


@functools.lru_cache(maxsize=1)
def tiny_digits(rows: int = TINY_ROWS) -> DatasetSplits:
    """The first ``rows`` of sklearn's 8x8 digits as splits (test = every 5th row): about
    240 train images, 20-28 per class. Cached; treat it as read-only."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return from_arrays(d.images[:rows] / 16.0, d.target[:rows], name="tiny-digits", num_classes=10)


@functools.lru_cache(maxsize=1)
def tiny_table(rows: int = 150) -> DatasetSplits:
    """A fabricated table of ``rows`` rows (test = every 5th row), 3 classes: two numeric
    columns shifted by class and a categorical column of three categories that follows the
    class most of the time. Seeded; cached; treat it as read-only."""
    from ddkit.data.spec import Column

    g = torch.Generator().manual_seed(0)
    y = torch.arange(rows) % 3
    cat = torch.where(
        torch.rand(rows, generator=g) < 0.8, y, torch.randint(3, (rows,), generator=g)
    )
    x = torch.cat(
        [
            (y[:, None] * 2.0 + torch.randn(rows, 2, generator=g)) * torch.tensor([1.0, 10.0]),
            torch.nn.functional.one_hot(cat, 3).float(),
        ],
        dim=1,
    )
    columns = (Column("a"), Column("b"), Column("kind", "categorical", ("p", "q", "r")))
    return from_arrays(x[:, :, None, None], y, name="tiny-table", modality="table", columns=columns)


@functools.lru_cache(maxsize=1)
def tiny_series(rows: int = 150, length: int = 64) -> DatasetSplits:
    """A fabricated series set of ``rows`` series (test = every 5th row), 3 classes, 2 channels
    of ``length`` steps: channel 0 a sine of 1, 2 or 3 periods by class, channel 1 a ramp whose
    slope follows the class, both with a random phase / offset and noise. Seeded; cached; treat
    it as read-only."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(rows) % 3
    t = torch.linspace(0, 1, length)
    phase = torch.rand(rows, 1, generator=g) * 6.2832
    wave = torch.sin(6.2832 * (y[:, None] + 1) * t + phase)
    ramp = (y[:, None] - 1.0) * t + 0.3 * torch.randn(rows, 1, generator=g)
    x = torch.stack([wave, ramp], 1) + 0.1 * torch.randn(rows, 2, length, generator=g)
    return from_arrays(x, y, name="tiny-series", modality="series")


@functools.lru_cache(maxsize=1)
def tiny_graph(nodes_per_class: int = 30) -> DatasetSplits:
    """A fabricated graph of 3 classes x ``nodes_per_class`` nodes (test = every 5th node): a
    stochastic block model (edge probability 0.2 within a class, 0.02 across) drawn from a seeded
    generator, 8 features around a class centre, with noise. Plain torch (no networkx); seeded;
    cached; treat it as read-only."""
    from ddkit.data.graph import from_graph

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(nodes_per_class)
    n = len(y)
    p = torch.where(y[:, None] == y[None, :], 0.2, 0.02)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    centres = torch.randn(3, 8, generator=g)
    x = centres[y] + 1.5 * torch.randn(n, 8, generator=g)
    return from_graph(upper.nonzero().T, x, y, name="tiny-graph")
