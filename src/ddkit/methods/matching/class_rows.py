"""A per-class real batch kept as row indices until a piece of it is embedded (issue 68).

Distribution matching draws ``B`` real rows for each of ``K`` classes per iteration; at
Tiny-ImageNet's 200 classes and DM's 256 rows that is 51,200 images, 2.5 GB at 64 px before
augmentation doubles it. :class:`ClassRows` holds the ``(K, B)`` indices instead and gathers
the images of the classes being embedded; :func:`embed_chunk` sizes those pieces from the
network's activation footprint and the memory budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddkit.meter import memory_budget
from ddkit.models.footprint import Footprint

#: The share of the memory budget one embedded piece of the real batch may take...
CHUNK_SHARE = 8
#: ...and at most this many bytes, whatever the budget: past it a CPU computes no faster, and
#: a large machine's budget would otherwise let one step's pieces take gigabytes.
PIECE_MAX_BYTES = 512 * 2**20


def piece_bytes() -> int:
    """The bytes one piece of a matching step (real images embedded, or synthetic classes with
    their kept activations) may take: ``1 / CHUNK_SHARE`` of the memory budget, at most
    :data:`PIECE_MAX_BYTES`."""
    return min(memory_budget() // CHUNK_SHARE, PIECE_MAX_BYTES)


@dataclass(frozen=True)
class ClassRows:
    """Real rows ``source[index]`` viewed as a batch ``(K, B, C, H, W)``: indexing by a class
    or a slice of classes gathers those images; :meth:`classes` keeps a subset lazy."""

    source: torch.Tensor  # (N, C, H, W)
    index: torch.Tensor  # (K, B) rows of source

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.index.shape, *self.source.shape[1:]))

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, key: int | slice) -> torch.Tensor:
        idx = self.index[key]
        return self.source[idx.flatten()].view(*idx.shape, *self.source.shape[1:])

    def classes(self, which: list[int]) -> ClassRows:
        """The batch of classes ``which`` only, still as indices."""
        return ClassRows(self.source, self.index[which])


def embed_chunk(requested: int, footprint: Footprint, image_bytes: int) -> int:
    """The most real images embedded at once: ``requested`` (0: all at once), lowered so that
    their activations and augmented copies take at most :func:`piece_bytes` (at least one
    image: a class is the smallest piece)."""
    per_image = footprint.inference + 2 * image_bytes
    fits = max(1, piece_bytes() // per_image)
    return fits if requested <= 0 else min(requested, fits)
