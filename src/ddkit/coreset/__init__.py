"""Coreset selection baselines (random, herding, k-center, forgetting)."""

from ddkit.coreset.base import RandomSelector, Selector

__all__ = ["RandomSelector", "Selector"]
