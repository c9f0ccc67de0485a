"""Modality-collapse diagnostics of a synthetic image-text set: pure functions of the image and
text embeddings of its pairs (rows paired), for watching a learned similarity during ``vl-mtt``
(:mod:`ddkit.methods.vision_language.mtt`).

X. Zhang, Z. Zhang, J. Du, Z. Liu and J. T. Zhou, "Beyond Modality Collapse: Representations
Blending for Multimodal Dataset Distillation" (RepBlend), NeurIPS 2025 (arXiv:2505.14705),
name *modality collapse* the state of a distilled set whose intra-modal representations are
over-concentrated and whose two modalities drift apart, and show it for LoRS's learned
similarity (Xu et al., ICML 2024, arXiv:2406.03793). Three numbers measure it here:

* :func:`intra_modal_cosine` -- the mean cosine similarity over the distinct pairs of one
  modality's embeddings (1 when they all point the same way; RepBlend's intra-modal similarity);
* :func:`concentration_ratio` -- the share of the row-normalised embeddings' energy along their
  top singular direction, ``s_1^2 / sum_i s_i^2`` (the inverse of the matrix's stable rank): 1
  when every embedding lies on one line, ``1 / min(n, d)`` when they are orthonormal;
* :func:`modality_gap` -- the distance between the centroids of the normalised image and text
  embeddings, the "modality gap" of W. Liang, Y. Zhang, Y. Kwon, S. Yeung and J. Zou, "Mind the
  Gap", NeurIPS 2022 (arXiv:2203.02053).

Deviations: the exact formulas of RepBlend's measures were not available to us (its released
code does not compute them); the concentration ratio as defined above and the use of Liang et
al.'s gap for RepBlend's "distributional gap across modalities" are ddkit's choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ddkit.errors import DataError

__all__ = [
    "COLLAPSE_KEYS",
    "collapse_metrics",
    "concentration_ratio",
    "intra_modal_cosine",
    "modality_gap",
]

#: The names :func:`collapse_metrics` reports, in order.
COLLAPSE_KEYS = (
    "image_cosine",
    "text_cosine",
    "image_concentration",
    "text_concentration",
    "modality_gap",
)


def _rows(z: torch.Tensor, who: str, least: int = 1) -> torch.Tensor:
    """``z`` as unit rows in float64; a one-line DataError for fewer than ``least`` rows or a
    shape other than ``(n, d)``."""
    if z.dim() != 2 or len(z) < least:
        raise DataError(
            f"{who} needs an (n, d) matrix of at least {least} embeddings, got shape "
            f"{tuple(z.shape)}"
        )
    return F.normalize(z.detach().double(), dim=1)


def intra_modal_cosine(z: torch.Tensor) -> float:
    """The mean cosine similarity over the ``n (n - 1)`` ordered pairs of distinct rows of
    ``z`` ``(n, d)``, ``n >= 2`` (RepBlend's intra-modal similarity): 1 for rows pointing the
    same way, 0 for orthogonal rows."""
    u = _rows(z, "intra_modal_cosine", least=2)
    n = len(u)
    total = u.sum(0).square().sum() - u.square().sum()  # sum over i != j of <u_i, u_j>
    return float(total / (n * (n - 1)))


def concentration_ratio(z: torch.Tensor) -> float:
    """The share of the energy of ``z``'s unit rows along their top singular direction,
    ``s_1^2 / sum_i s_i^2`` (ddkit's measure of over-concentration, module docstring): 1 when
    the rows lie on one line, ``1 / min(n, d)`` at the least (orthonormal rows)."""
    s = torch.linalg.svdvals(_rows(z, "concentration_ratio"))
    return float(s[0].square() / s.square().sum())


def modality_gap(image: torch.Tensor, text: torch.Tensor) -> float:
    """The Euclidean distance between the centroids of the unit rows of ``image`` and ``text``
    (Liang et al.'s modality gap, NeurIPS 2022): 0 when the two clouds share a centre, at most
    2."""
    a, b = _rows(image, "modality_gap"), _rows(text, "modality_gap")
    return float(torch.linalg.vector_norm(a.mean(0) - b.mean(0)))


def collapse_metrics(image: torch.Tensor, text: torch.Tensor) -> dict[str, float]:
    """Every diagnostic of a synthetic set whose pairs embed to ``image`` and ``text``
    ``(n, d)``: the keys of :data:`COLLAPSE_KEYS`."""
    if image.shape != text.shape:
        raise DataError(
            f"the image and text embeddings of a set's pairs must have one shape, got "
            f"{tuple(image.shape)} and {tuple(text.shape)}"
        )
    values = (
        intra_modal_cosine(image),
        intra_modal_cosine(text),
        concentration_ratio(image),
        concentration_ratio(text),
        modality_gap(image, text),
    )
    return dict(zip(COLLAPSE_KEYS, values))
