"""Augmentation: DSA (sample once, apply to several batches), ZCA whitening, mixup/cutmix."""

from ddkit.augment.dsa import DSA, FAMILIES, DSAParams, default_strategy, parse_strategy
from ddkit.augment.mix import cutmix, mixup, sample_beta
from ddkit.data.zca import ZCA

__all__ = [
    "DSA",
    "FAMILIES",
    "DSAParams",
    "ZCA",
    "cutmix",
    "default_strategy",
    "mixup",
    "parse_strategy",
    "sample_beta",
]
