"""Debiasing by kernel-density re-weighting of the real rows (the ``reweight="kde"`` option of
the matching methods: dm, idm and dim weight the matched real mean, dc, dsa and idc the real
gradient's cross-entropy; m3d and ncfm, which match whole embedding sets, refuse it).

J. Cui, R. Wang, Y. Xiong and C.-J. Hsieh, "Mitigating Bias in Dataset Distillation", ICML 2024
(arXiv:2406.06609). Rows that carry a spurious attribute (a colour tied to the class) crowd
together in embedding space; the rare rows without it (bias-conflicting) lie where the density
is low. Weighting every real row by the inverse of a kernel density estimate of its embedding
makes the matched real mean a weighted mean in which the rare rows count more, so the
synthetic images stop copying the majority attribute.

Here, for each class's real batch ``z_1..z_B`` (embeddings of the matching network, after the
Siamese augmentation):

* density ``p_i = (1/B) sum_j exp(-||z_i - z_j||^2 / (2 h^2))`` (a Gaussian KDE evaluated at the
  batch's own points), with bandwidth ``h = bandwidth x`` the median pairwise distance of the
  class's batch (a scaled median heuristic; the default 0.4 keeps kernels narrow enough that a
  minority of a few percent is not smoothed into the majority's density);
* weight ``w_i = p_i^(-1/temperature) / sum_j p_j^(-1/temperature)``: at ``temperature = 1``
  plainly proportional to ``1 / p_i``; a larger temperature flattens the weights towards the
  plain mean, a smaller one sharpens them.

Deviations from the paper (no code was released): the paper estimates the density in the
feature space of a separately trained (supervised-contrastive) model over the whole class; here
it is estimated in the matching network's own feature space, over the real batch of the
iteration, which needs no extra model. Because that network changes every iteration (a fresh
random network in DM, a queue network in IDM) and its feature scale with it, the bandwidth is
relative to the batch's median distance rather than absolute.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from ddkit.methods.config import POSITIVE
from ddkit.methods.matching.dream import RealBatchConfig

__all__ = ["ReweightConfig", "kde_weights", "weighted_mean"]


@dataclasses.dataclass(frozen=True)
class ReweightConfig(RealBatchConfig):
    """The matching methods' real-batch options (:class:`RealBatchConfig`) plus how the real
    rows of a class's batch are weighted: ``reweight="kde"`` by the inverse kernel density of
    their embedding (module docstring), ``"none"`` equally."""

    reweight: Literal["none", "kde"] = "none"
    # x the median pairwise distance of the class's real batch (wider kernels smooth a minority
    # of a few percent into the majority's density on Colored MNIST)
    kde_bandwidth: float = 0.4
    kde_temperature: float = 1.0  # weights ~ density^(-1/temperature)

    rules = {"kde_bandwidth": POSITIVE, "kde_temperature": POSITIVE}


def kde_weights(
    embeddings: torch.Tensor, bandwidth: float = 0.4, temperature: float = 1.0
) -> torch.Tensor:
    """Weights ``(K, B)`` (each class's row sums to 1) proportional to the inverse kernel
    density of each embedding among its class's ``embeddings`` ``(K, B, F)`` (module
    docstring). One row alone, or rows all at one point, get equal weights."""
    k, b = embeddings.shape[:2]
    if b < 2:
        return torch.ones(k, b, dtype=embeddings.dtype, device=embeddings.device)
    dist = torch.cdist(embeddings, embeddings)  # (K, B, B)
    upper = torch.triu_indices(b, b, offset=1, device=embeddings.device)
    median = dist[:, upper[0], upper[1]].median(dim=1).values  # (K,)
    h = (bandwidth * median).clamp_min(torch.finfo(dist.dtype).tiny ** 0.25).view(k, 1, 1)
    log_density = torch.logsumexp(-(dist**2) / (2 * h**2), dim=2) - math.log(b)
    return torch.softmax(-log_density / temperature, dim=1)


def weighted_mean(embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i weights[k, i] * embeddings[k, i]``: the weighted class means ``(K, F)``."""
    return torch.einsum("kb,kbf->kf", weights.to(embeddings.dtype), embeddings)
