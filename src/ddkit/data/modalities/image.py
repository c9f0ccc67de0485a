"""``image``: a row is an image of ``C`` channels, ``H x W`` pixels (the first modality, and the
one of every spec and dataset that names none)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import register_modality
from ddkit.data.modalities.rows import Rows

if TYPE_CHECKING:
    import numpy as np
    import torch


class ImageModality(Rows):
    """Pixels: any network fits, DSA augments them, networks judge a set (:attr:`evaluator`)."""

    def to_rows(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images as float32 ``(N, C, H, W)`` (:func:`ddkit.data.dataset.to_nchw`: ``(N, H, W)``
        grey, channels-last and uint8 too)."""
        from ddkit.data.dataset import to_nchw

        return to_nchw(values)

    def tiny(self) -> Any:
        return tiny_digits()


@functools.lru_cache(maxsize=1)
def tiny_digits(rows: int = 300) -> Any:
    """The first ``rows`` of sklearn's 8x8 digits as splits (test = every 5th row): about
    240 train images, 20-28 per class. Cached; treat it as read-only."""
    from sklearn.datasets import load_digits

    from ddkit.data.dataset import from_arrays

    d = load_digits()
    return from_arrays(d.images[:rows] / 16.0, d.target[:rows], name="tiny-digits", num_classes=10)


IMAGE = register_modality(
    ImageModality(
        "image",
        row="an image of C channels, H x W pixels",
        layout="(C, H, W)",
        normalisation="per channel, train-split statistics",
        augmentations=("dsa",),
        models=("convnet", "mlp", "lenet", "alexnet", "vgg", "resnet", "vit"),
        noun="images",
        open_models=True,
        pixels=True,
        evaluator="networks",
        needs_words="images",
    )
)
