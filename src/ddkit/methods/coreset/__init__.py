"""Coreset selection: a :class:`Selector` returns indices into the real set (random, herding,
k-center, forgetting), evaluated by the same code as distilled sets."""

from ddkit.methods.coreset.base import RandomSelector, Selector
from ddkit.methods.coreset.selectors import (
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
