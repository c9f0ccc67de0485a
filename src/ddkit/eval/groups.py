"""Accuracy per group on a biased dataset: unbiased, bias-aligned, bias-conflicting and
worst-group accuracy.

A biased dataset (:mod:`ddkit.data.biased`) gives every test row a bias attribute (its colour);
value ``c`` is class ``c``'s majority attribute in the training split. The groups are the
``(class, attribute)`` pairs present in the test split. The four figures are those reported by
the dataset-bias study of J. Cui, R. Wang, Y. Xiong and C.-J. Hsieh ("Mitigating Bias in Dataset
Distillation", ICML 2024, arXiv:2406.06609; unbiased accuracy) and by the group-robustness
literature (worst-group accuracy: Sagawa et al., "Distributionally Robust Neural Networks",
ICLR 2020, arXiv:1911.08731).
"""

from __future__ import annotations

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.errors import ConfigError

__all__ = ["GROUP_METRICS", "group_accuracy", "require_groups"]

#: The figures :func:`group_accuracy` returns, in report order.
GROUP_METRICS = ("unbiased", "aligned", "conflicting", "worst_group")


def require_groups(test: ImageDataset) -> torch.Tensor:
    """The bias attributes of ``test``; a one-line :class:`ConfigError` for a dataset that
    defines no groups."""
    if test.bias is None:
        raise ConfigError(
            f"dataset {test.spec.name!r} defines no groups (no bias attribute per row); group "
            "accuracy needs a biased dataset such as colored-mnist5k-c5, or leave it off"
        )
    return test.bias


def group_accuracy(
    predictions: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor
) -> dict[str, float]:
    """Accuracy of predicted classes ``(N,)`` on rows with ``labels`` and bias attributes
    ``bias``: ``unbiased`` (all rows: the plain accuracy on an unbiased test split), ``aligned``
    (rows with ``bias == label``), ``conflicting`` (the others) and ``worst_group`` (the lowest
    accuracy over the ``(label, bias)`` groups that hold rows). A part without rows is NaN."""
    correct = (predictions.cpu() == labels.cpu()).double()
    labels, bias = labels.cpu(), bias.cpu()
    aligned = bias == labels
    width = int(bias.max()) + 1 if len(bias) else 1
    group = labels * width + bias
    rows = torch.bincount(group, minlength=1)
    hits = torch.bincount(group, weights=correct, minlength=1)
    per_group = hits[rows > 0] / rows[rows > 0]
    return {
        "unbiased": _mean(correct),
        "aligned": _mean(correct[aligned]),
        "conflicting": _mean(correct[~aligned]),
        "worst_group": float(per_group.min()) if len(per_group) else float("nan"),
    }


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if len(values) else float("nan")
