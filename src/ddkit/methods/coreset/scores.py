"""Data-pruning scores: pure, vectorised functions of what a proxy network saw while training.

Every function takes tensors and returns one value per training row; none trains or draws random
numbers. The training records they read are made by :mod:`ddkit.methods.coreset.records`.
Which end of a score is "hard" is stated by :data:`SCORES` (``hard="high"`` or ``"low"``).

* EL2N -- Paul, Ganguli & Dziugaite, "Deep learning on a data diet: finding important examples
  early in training", NeurIPS 2021 (arXiv 2107.07075): ``|| softmax(f(x)) - onehot(y) ||_2`` of
  a network trained a few epochs, averaged over independently initialised runs.
* GraNd -- same paper: the norm of the loss gradient. Here, as in the paper's practical variant,
  the gradient with respect to the last (linear) layer only, in closed form from the logits and
  the penultimate features. Deviation from DeepCore (Guo et al., 2022): the cross-entropy is
  applied to the logits, not to softmax outputs.
* Accumulated margin -- the area under the margin of Pleiss et al., "Identifying mislabeled
  data using the area under the margin ranking", NeurIPS 2020 (arXiv 2001.10528): the true-class
  logit minus the largest other logit, averaged over epochs. Low is hard.
* Forgetting -- Toneva et al., ICLR 2019 (:func:`ddkit.methods.coreset.selectors.forgetting_scores`).
* Dynamic uncertainty -- He et al., "Large-scale dataset pruning with dynamic uncertainty",
  CVPR 2024 workshops (arXiv 2306.05175): the standard deviation (unbiased, ``J - 1``) of the
  true-class probability over a sliding window of ``J`` epochs, averaged over the windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ddkit.errors import ConfigError
from ddkit.methods.coreset.selectors import forgetting_scores

__all__ = [
    "SCORES",
    "Score",
    "area_under_margin",
    "dynamic_uncertainty",
    "el2n",
    "grand",
    "hardness",
    "logit_margin",
    "true_class_prob",
]


def _error_vector(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``softmax(logits) - onehot(labels)`` in float64, shape of ``logits`` ``(..., N, K)``."""
    z = logits.double()
    onehot = F.one_hot(labels.long().to(z.device), z.shape[-1]).to(z.dtype)
    return torch.softmax(z, -1) - onehot


def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """EL2N (Paul et al., NeurIPS 2021): ``|| softmax(logits) - onehot(labels) ||_2`` per row.

    ``logits`` ``(..., N, K)`` (e.g. ``(seeds, N, K)``), ``labels`` ``(N,)``; returns ``(..., N)``
    float64. Average the leading seed axis (:func:`seed_mean`) for the paper's score."""
    return _error_vector(logits, labels).norm(dim=-1)


def grand(
    logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, *, bias: bool = True
) -> torch.Tensor:
    """GraNd of the last layer (Paul et al., NeurIPS 2021), in closed form.

    For ``logits = W h + b`` and cross-entropy on the logits, ``dL/dW = (p - y) h^T`` and
    ``dL/db = p - y``, so the Frobenius norm of the per-example gradient is
    ``||p - y|| * sqrt(||h||^2 + 1)`` (``+ 1`` only when the layer has a ``bias``).
    ``logits`` ``(..., N, K)``, ``features`` ``h`` ``(..., N, F)``; returns ``(..., N)`` float64.
    """
    h2 = features.double().pow(2).sum(-1)
    return el2n(logits, labels) * (h2 + (1.0 if bias else 0.0)).sqrt()


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{k != y} z_k`` per row (Pleiss et al., NeurIPS 2020); ``(..., N, K)`` ->
    ``(..., N)``. Negative when the row is misclassified."""
    z = logits.double()
    y = labels.long().to(z.device).expand(z.shape[:-1]).unsqueeze(-1)
    true = z.gather(-1, y).squeeze(-1)
    other = z.scatter(-1, y, float("-inf")).amax(-1)
    return true - other


def true_class_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the labelled class per row; ``(..., N, K)`` -> ``(..., N)``."""
    y = labels.long().to(logits.device).expand(logits.shape[:-1]).unsqueeze(-1)
    return torch.softmax(logits.double(), -1).gather(-1, y).squeeze(-1)


def area_under_margin(margins: torch.Tensor) -> torch.Tensor:
    """Accumulated margin: the mean over epochs (axis ``-2``) of per-epoch margins ``(..., T, N)``
    (:func:`logit_margin`), the area under the margin of Pleiss et al. 2020. Low is hard."""
    return margins.double().mean(-2)


def dynamic_uncertainty(true_prob: torch.Tensor, window: int) -> torch.Tensor:
    """Dynamic uncertainty (He et al., CVPR 2024 workshops, arXiv 2306.05175).

    ``true_prob`` ``(..., T, N)``: the true-class probability after each of ``T`` epochs. For
    every window of ``window`` consecutive epochs, the unbiased standard deviation over the window;
    returns the mean over the ``T - window + 1`` windows, ``(..., N)`` float64. High is hard."""
    t = true_prob.shape[-2]
    if not 2 <= window <= t:
        raise ConfigError(
            f"the dynamic-uncertainty window must be in [2, {t}] epochs, got {window}"
        )
    windows = true_prob.double().unfold(-2, window, 1)  # (..., T - J + 1, N, J)
    return windows.std(-1, correction=1).mean(-2)


def seed_mean(scores: torch.Tensor) -> torch.Tensor:
    """The mean over the leading axis (independent proxy runs) of per-run scores ``(S, N)``."""
    return scores.double().mean(0)


@dataclass(frozen=True)
class Score:
    """A pruning score: its ``name``, which end is ``hard``, and ``compute(records, window)``
    giving one float64 value per row from a :class:`~ddkit.methods.coreset.records.Records`."""

    name: str
    hard: Literal["high", "low"]
    compute: Callable[[Any, int], torch.Tensor]
    help: str


def _forgetting(records: Any, window: int) -> torch.Tensor:
    return seed_mean(torch.stack([forgetting_scores(c) for c in records.correct]))


SCORES: dict[str, Score] = {
    s.name: s
    for s in (
        Score("el2n", "high", lambda r, w: seed_mean(r.el2n), "error L2 norm early in training"),
        Score("grand", "high", lambda r, w: seed_mean(r.grand), "last-layer gradient norm"),
        Score(
            "margin",
            "low",
            lambda r, w: seed_mean(area_under_margin(r.margin)),
            "area under the margin",
        ),
        Score(
            "dyn-unc",
            "high",
            lambda r, w: seed_mean(dynamic_uncertainty(r.true_prob, w)),
            "dynamic uncertainty",
        ),
        Score("forgetting", "high", _forgetting, "forgetting events"),
    )
}


def score_named(name: str) -> Score:
    """The :class:`Score` called ``name``; an unknown name is a one-line :class:`ConfigError`."""
    if name not in SCORES:
        raise ConfigError(f"unknown score {name!r}; valid: {', '.join(sorted(SCORES))}")
    return SCORES[name]


def hardness(values: torch.Tensor, hard: Literal["high", "low"]) -> torch.Tensor:
    """``values`` turned so that higher always means harder (``-values`` for a low-is-hard
    score)."""
    return values.double() if hard == "high" else -values.double()
