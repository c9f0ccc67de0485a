""":class:`Rows`: the behaviour of a modality whose splits are
:class:`~ddkit.data.dataset.ImageDataset` s of checked ``(N, C, H, W)`` rows that
:func:`ddkit.data.load_dataset` loads (every modality but pairs keeps it). It registers no
modality of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import Modality

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["Rows"]


class Rows(Modality):
    """A modality of rows in an :class:`~ddkit.data.dataset.ImageDataset`, loaded by
    :func:`ddkit.data.load_dataset`."""

    def to_rows(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows already in the ``(N, C, H, W)`` layout, checked
        (:func:`ddkit.data.dataset.checked_rows`)."""
        from ddkit.data.dataset import checked_rows

        return checked_rows(values, f"{self.name} rows")

    def dataset_type(self) -> type:
        from ddkit.data.dataset import ImageDataset

        return ImageDataset

    def load_splits(self, dataset: str, root: str | None) -> Any:
        from ddkit.data.builtin import load_dataset

        return load_dataset(dataset, root=root)
