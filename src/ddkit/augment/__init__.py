"""Augmentation: DSA (sample once, apply to several batches), series operations, ZCA whitening,
mixup/cutmix."""

from ddkit.augment.dsa import DSA, FAMILIES, DSAParams, default_strategy, parse_strategy
from ddkit.augment.mix import cutmix, mixup, sample_beta
from ddkit.augment.series import SeriesAugment, augmenter, is_series_strategy
from ddkit.data.zca import ZCA

__all__ = [
    "DSA",
    "FAMILIES",
    "DSAParams",
    "SeriesAugment",
    "ZCA",
    "augmenter",
    "cutmix",
    "default_strategy",
    "is_series_strategy",
    "mixup",
    "parse_strategy",
    "sample_beta",
]
