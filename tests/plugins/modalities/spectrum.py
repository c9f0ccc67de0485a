"""``spectrum``: a row is a spectrum of ``F`` bins of one signal, laid out ``(1, 1, F)``,
judged by learners on its flat bins (a test modality), and ``toy-spectra``, a seeded dataset of
it: one new file, and ``load_dataset``, ``ddkit distill`` / ``evaluate`` and the modality
checks take it."""

from __future__ import annotations

import functools
from typing import Any

from ddkit.data.modalities.base import check_one_high, register_modality
from ddkit.data.modalities.rows import Rows
from ddkit.errors import DataError


class SpectrumModality(Rows):
    """One channel of bins along the width."""

    def check_layout(self, spec: Any) -> None:
        super().check_layout(spec)
        check_one_high(self, spec)
        if spec.channels != 1:
            raise DataError(f"a spectrum has one channel, got {spec.channels}")

    def tiny(self) -> Any:
        return _toy_splits()


SPECTRUM = register_modality(
    SpectrumModality(
        "spectrum",
        row="a spectrum of F bins",
        layout="(1, 1, F)",
        normalisation="per channel, train-split statistics",
        augmentations=(),
        models=("mlp",),
        protocol="tabular",
        needs_words="spectra",
    )
)


def _toy_raw(root: str | None = None) -> Any:
    """120 spectra of 32 bins, 3 classes: a peak whose bin follows the class, with noise."""
    import torch

    from ddkit.data.builtin import RawData

    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 3
    bins = torch.arange(32).float()
    peak = torch.exp(-((bins[None, :] - (8.0 + 8.0 * y[:, None])) ** 2) / 8.0)
    x = peak + 0.2 * torch.randn(120, 32, generator=g)
    return RawData(x[:, None, None, :].numpy(), y.numpy(), num_classes=3, modality="spectrum")


@functools.lru_cache(maxsize=1)
def _toy_splits() -> Any:
    from ddkit.data import load_dataset

    return load_dataset("toy-spectra")


def _register_dataset() -> None:
    from ddkit.data.builtin import register_dataset

    register_dataset("toy-spectra", builtin=True, modality="spectrum", help="toy spectra")(_toy_raw)


_register_dataset()
