""":class:`Rows`: the behaviour of a modality whose splits are
:class:`~ddkit.data.dataset.ImageDataset` s of checked ``(N, C, H, W)`` rows that
:func:`ddkit.data.load_dataset` loads (every modality but pairs keeps it). It registers no
modality of its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import Modality

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["Rows"]


class Rows(Modality):
    """A modality of rows in an :class:`~ddkit.data.dataset.ImageDataset`, loaded by
    :func:`ddkit.data.load_dataset`, drawn as images or per-class histograms."""

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

    def draw(self, syn: Any, path: str | Path, *, max_per_class: int, min_cell: int) -> Path:
        """Pictures as a grid, one row of up to ``max_per_class`` images per class
        (:func:`ddkit.viz.image_grid`); other rows as per-class histograms of each stored value
        in the raw scale (:func:`ddkit.viz.feature_histograms`)."""
        from ddkit.data.dataset import denormalise
        from ddkit.viz import feature_histograms, image_grid

        if not self.pixels:
            raw = denormalise(syn.images, syn.spec).flatten(1)
            columns = [(f"x{i}", (), raw[:, i]) for i in range(raw.shape[1])]
            return feature_histograms(columns, syn.hard_labels, syn.spec.class_names, path)
        return image_grid(
            syn.pixels,  # the shown rows, a block at a time
            syn.hard_labels,
            syn.spec.num_classes,
            path,
            max_per_class=max_per_class,
            min_cell=min_cell,
            class_names=syn.spec.class_names,
        )
