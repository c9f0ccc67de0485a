"""DREAM: representative real batches (and a representative start) for the matching methods.

Y. Liu, J. Gu, K. Wang, Z. Zhu, W. Jiang and Y. You, "DREAM: Efficient Dataset Distillation by
Representative Matching", ICCV 2023 (arXiv:2302.14416; authors' code
github.com/lyq312318224/DREAM, built on IDC's). Instead of a random mini-batch of each class's
real rows, the real batch a matching step compares the synthetic images with is made of rows that
represent the class: the class's rows are embedded by the network being matched
(``embed``, its feature layer), clustered by k-means, and the row nearest each cluster's centre is
taken. The clustering is refreshed every ``dream_interval`` matching steps (the authors'
``--interval``, 10) with the network of that step, and its rows are reused in between. The
synthetic set may start from representative rows too (``init="dream"``, the authors'
``--init kmean``): per class, as many clusters as starting images, of the features of a freshly
initialised network of ``model``, and the row nearest each centre.

Options (:class:`RealBatchConfig`, shared by dc / dsa / idc and dm / idm / m3d / ncfm):
``real_batch`` (``"random"``, the default and the methods' published sampling, or ``"dream"``),
``dream_interval``, ``dream_clusters`` (``"auto"``: one cluster per batch row, as the authors'
code) and ``dream_kmeans_iterations``.

The k-means is ddkit's (:func:`ddkit.methods.clustering.representative_positions`: k-means++
starts from the run's generator, Lloyd iterations until the centres settle, every class at once)
where the authors call ``fast_pytorch_kmeans`` (random starts, up to 100 iterations). Where
there are fewer clusters than batch rows, rows are taken round-robin over the clusters, nearest
to the centre first (the authors' follow-up, DREAM+, takes the rows nearest each centre; the two
agree when each cluster has its share of members). Deviations: the interval counts matching
steps over the whole run (the authors' counter restarts with every network, which also
re-clusters at each network's first step; the two agree for dc / dsa at IPC 10, 10 matching
steps per network and interval 10); a batch larger than the smallest class is capped at that
class's size; under ``real_batch="dream"`` the features are those the step's network computes
(training mode where the method embeds in training mode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.methods.clustering import representative_positions
from ddkit.methods.codecs import CodecConfig
from ddkit.methods.common import real_batch_size
from ddkit.methods.config import AT_LEAST_ONE, Auto
from ddkit.methods.coreset.selectors import pad_by_class
from ddkit.models import predict

__all__ = ["RealBatchConfig", "RepresentativeBatches", "representative_rows", "start_rows"]

Embed = Callable[[torch.Tensor], torch.Tensor]

#: rows embedded per forward pass when a class's rows are clustered
EMBED_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class RealBatchConfig(CodecConfig):
    """Options shared by the matching methods: the stored codec (:class:`CodecConfig`) and how
    each matching step's real batch is chosen (DREAM, Liu et al., ICCV 2023; module docstring)."""

    real_batch: Literal["random", "dream"] = "random"  # dream: representative rows
    dream_interval: int = 10  # matching steps between re-clusterings (the authors' --interval)
    dream_clusters: int | Auto = "auto"  # k-means clusters per class; auto: one per batch row
    dream_kmeans_iterations: int = 50  # at most this many Lloyd iterations per clustering

    rules = {
        "dream_interval": AT_LEAST_ONE,
        "dream_clusters": AT_LEAST_ONE,
        "dream_kmeans_iterations": AT_LEAST_ONE,
    }


def representative_rows(
    train: ImageDataset,
    images: torch.Tensor,
    embed: Embed,
    size: int,
    generator: torch.Generator,
    *,
    clusters: int | None = None,
    iterations: int = 50,
) -> torch.Tensor:
    """Row indices ``(K, size)`` into ``train``: per class, ``size`` rows representing its
    ``clusters`` (default ``size``) k-means clusters of ``embed``'s features of ``images`` (the
    training images, on the device ``embed`` runs on), as DREAM picks them
    (:func:`~ddkit.methods.clustering.representative_positions`); k-means++ starts drawn from
    ``generator``."""
    features = predict(embed, images, batch_size=EMBED_CHUNK).flatten(1)
    points, rows, valid = pad_by_class(train, features)
    n = size if clusters is None else min(clusters, size)
    positions = representative_positions(points, valid, n, size, generator, iterations)
    return rows.gather(1, positions.to(rows.device)).cpu()


class RepresentativeBatches:
    """A run's DREAM real batches: :meth:`indices` re-clusters every ``dream_interval`` calls
    (one call per matching step) and returns the same rows in between. The rows and the call
    counter live in the method's ``state_`` (``dream_rows``, ``dream_steps``), so a resumed run
    continues bit for bit."""

    def __init__(
        self, cfg: RealBatchConfig, train: ImageDataset, size: int, state: dict[str, Any]
    ) -> None:
        self.cfg, self.train, self.state = cfg, train, state
        self.size = real_batch_size(size, train)
        k = train.spec.num_classes
        state["dream_rows"] = torch.zeros((k, self.size), dtype=torch.long)
        state["dream_steps"] = 0

    def indices(
        self, images: torch.Tensor, embed: Embed, generator: torch.Generator
    ) -> torch.Tensor:
        """Row indices ``(K, B)`` of this matching step's real batch; ``embed`` (the step's
        network) and ``generator`` are used only when the clustering is refreshed."""
        cfg, state = self.cfg, self.state
        if state["dream_steps"] % cfg.dream_interval == 0:
            clusters = None if cfg.dream_clusters == "auto" else int(cfg.dream_clusters)
            rows = representative_rows(
                self.train,
                images,
                embed,
                self.size,
                generator,
                clusters=clusters,
                iterations=cfg.dream_kmeans_iterations,
            )
            state["dream_rows"].copy_(rows)
        state["dream_steps"] += 1
        return state["dream_rows"]


def start_rows(
    cfg: RealBatchConfig,
    train: ImageDataset,
    images: torch.Tensor,
    n: int,
    generator: torch.Generator,
    draw_embed: Callable[[], Embed],
) -> torch.Tensor:
    """Row indices ``(K, n)`` of the real images a run starts from: random per class
    (:meth:`ImageDataset.sample_per_class`), or with ``init="dream"`` the row nearest each of
    ``n`` k-means centres per class of the features of ``images`` (the training images) under
    ``draw_embed()``, a freshly initialised network's feature layer (the authors' ``kmean``
    start)."""
    if getattr(cfg, "init", "real") != "dream":
        return train.sample_per_class(n, generator)
    embed = draw_embed()
    return representative_rows(
        train, images, embed, n, generator, iterations=cfg.dream_kmeans_iterations
    )
