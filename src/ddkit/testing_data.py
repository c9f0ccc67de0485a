"""Tiny datasets of every modality, for tests and the conformance suite (:mod:`ddkit.testing`):
real 8x8 digits (:func:`tiny_digits`) and fabricated tables, series, a graph and image-caption
pairs (:func:`tiny_table`, :func:`tiny_series`, :func:`tiny_graph`, :func:`tiny_paired`). Each is seeded and cached; treat
it as read-only. Each modality gives its own (:meth:`ddkit.data.modalities.base.Modality.tiny`,
defined in its module of :mod:`ddkit.data.modalities`); these are their names for tests.
:func:`tiny_scenes` adds composed scenes whose pairs record attributes (for pretrained towers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ddkit.data.modalities.graph import tiny_graph
from ddkit.data.modalities.image import tiny_digits
from ddkit.data.modalities.paired import tiny_paired
from ddkit.data.modalities.series import tiny_series
from ddkit.data.modalities.table import tiny_table

__all__ = ["tiny_digits", "tiny_graph", "tiny_paired", "tiny_scenes", "tiny_series", "tiny_table"]


def tiny_scenes(n_train: int = 32, n_test: int = 12) -> Any:
    """Seeded paired splits of composed scenes (:mod:`ddkit.data.scenes`), 64 x 64, flat grey
    squares as the objects (two per digit kind): pairs that record their attributes, so their
    towers can be pretrained (:mod:`ddkit.eval.towers`)."""
    from ddkit.data.paired import paired_splits
    from ddkit.data.scenes import DIGITS, compose_scenes

    labels = torch.arange(len(DIGITS)).repeat_interleave(2)
    levels = (100 + 7 * labels).numpy().astype(np.uint8)
    objects = np.broadcast_to(levels[:, None, None], (len(labels), 28, 28)).copy()
    parts = {
        split: compose_scenes(objects, labels, DIGITS, n, seed=0, split=split)
        for split, n in (("train", n_train), ("test", n_test))
    }
    return paired_splits(parts, name="tiny-scenes")
