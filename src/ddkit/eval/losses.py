"""Per-sample losses of evaluation training: cross-entropy against classes or probabilities
(with a knowledge-distillation temperature) and mean squared error, chosen by a protocol's
``loss`` name (:func:`loss_function`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ddkit.errors import ConfigError
from ddkit.eval.protocol import LOSSES

# ``loss(outputs, targets) -> per-sample losses`` (leading dimensions kept)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-sample cross-entropy against probability targets, scaled by T^2 when T != 1 (KD)."""
    logp = F.log_softmax(logits / temperature, dim=-1)
    return -(target * logp).sum(-1) * (temperature**2)


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample cross-entropy: against classes (int targets) or probabilities (float)."""
    if target.ndim == logits.ndim - 1 and not target.is_floating_point():
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
        ).view(target.shape)
    return soft_cross_entropy(logits, target, temperature)


def per_sample_mse(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error averaged over the ``K`` outputs; int (class) targets become
    one-hot vectors (1 for the class, 0 elsewhere)."""
    if target.ndim == outputs.ndim - 1 and not target.is_floating_point():
        target = F.one_hot(target, outputs.shape[-1]).to(outputs.dtype)
    return (outputs - target).pow(2).mean(-1)


def loss_function(name: str, temperature: float = 1.0) -> LossFn:
    """The per-sample loss ``"cross_entropy"`` (with KD ``temperature``) or ``"mse"``."""
    if name == "cross_entropy":
        return lambda logits, target: per_sample_loss(logits, target, temperature)
    if name == "mse":
        return per_sample_mse
    raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
