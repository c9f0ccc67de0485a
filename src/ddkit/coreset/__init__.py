"""Coreset selection baselines (random, herding, k-center, forgetting)."""

from ddkit.coreset.base import RandomSelector, Selector
from ddkit.coreset.selectors import (
    ForgettingSelector,
    HerdingSelector,
    KCenterSelector,
    train_feature_net,
)

__all__ = [
    "ForgettingSelector",
    "HerdingSelector",
    "KCenterSelector",
    "RandomSelector",
    "Selector",
    "train_feature_net",
]
