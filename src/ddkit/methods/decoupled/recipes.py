"""The recovery recipes that grew out of SRe2L: CDA's crop-scale curriculum and EDC's
category-aware statistics and flatness term, as pure functions ``sre2l`` switches on.

* CDA -- Yin & Shen, "Dataset Distillation via Curriculum Data Synthesis in Large Data Era",
  TMLR 2024 (arXiv 2311.18838). The recovery augments the images with a random-resized crop
  whose area fraction is drawn from ``[s_min(t), 1]``; ``s_min`` starts at 1 (the whole image,
  easy) and decays to ``crop_min`` (small crops, hard) over the first ``milestone`` fraction of
  the run, then stays there. :func:`crop_scale_floor` is the schedule of the authors'
  ``recover_cda_*.py`` (``--easy2hard-mode step | linear | cosine``, ``--milestone``).
* EDC -- Shao, Zhou, Shen et al., "Elucidating the Design Space of Dataset Condensation",
  NeurIPS 2024 (arXiv 2404.13733). *Category-aware matching*: besides the teacher's running
  statistics, the statistics of each class's synthetic images at every BatchNorm input are
  pulled towards the same statistics of that class's real images
  (:func:`class_bn_statistics`, :class:`ClassStatLoss`). *Flatness*: an exponential
  moving average of the synthetic images is kept, and the teacher's outputs on the current
  images are pulled towards its outputs on the averaged ones under the same augmentation
  (:func:`flatness_loss`, temperature 4 as the reference).

Deviations from the CDA reference code: each image gets its own crop (torchvision's transform
on a batch tensor crops the whole batch alike), and the roll jitter and flip are SRe2L's as in
``sre2l``. Deviations from the EDC reference code (``Branch_CIFAR_10/recover``): a class's real
statistics are the pooled mean and biased variance over all its un-augmented images and
positions (the reference averages per-image variances of augmented images, which leaves out the
spread between images); the class term matches each
class's synthetic images to its own class (the reference matches the whole mixed batch to the
average of its classes' statistics); the reference weighs the global and the class terms 0.5
each (``edc``'s default ``r_bn`` is half the scripts' ``r_loss``); the flatness KL is
``batchmean`` (the reference's element mean is this divided by the number of classes); the
reference's EMA of the *batch statistics* inside its hooks (``training_momentum``) and its
convolution-statistic hooks are not implemented.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.errors import ConfigError
from ddkit.methods.decoupled.bn import LayerLosses, bn_layers

__all__ = [
    "CropSchedule",
    "class_bn_statistics",
    "ClassStatLoss",
    "crop_scale_floor",
    "flatness_loss",
]

CropSchedule = Literal["none", "fixed", "step", "linear", "cosine"]


def crop_scale_floor(
    iteration: int,
    total: int,
    schedule: CropSchedule,
    *,
    low: float = 0.08,
    milestone: float = 1.0,
) -> float:
    """The lower bound of the crop's area fraction at ``iteration`` of ``total`` (CDA).

    Before ``milestone * total`` iterations: ``step`` keeps 1 (whole images), ``linear`` decays
    linearly from 1 to ``low``, ``cosine`` as ``low + (1 - low)(1 + cos(pi t / T_m)) / 2``;
    afterwards, and always for ``fixed``, it is ``low``. ``none`` has no crop (1)."""
    if schedule == "none":
        return 1.0
    span = milestone * max(int(total), 1)
    if schedule == "fixed" or iteration >= span:
        return float(low)
    frac = iteration / span
    if schedule == "step":
        return 1.0
    if schedule == "linear":
        return float(low + (1.0 - low) * (1.0 - frac))
    if schedule == "cosine":
        return float(low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * frac)))
    raise ConfigError(
        f"unknown crop schedule {schedule!r}; valid: none, fixed, step, linear, cosine"
    )


def _per_class_moments(
    x: torch.Tensor, classes: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled per-class channel mean and biased variance of ``x`` ``(N, C, ...)`` over rows of
    each class and every position: ``(K, C)`` each. Rows of absent classes give zeros."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    onehot = F.one_hot(classes.long(), num_classes).to(x.dtype)  # (N, K)
    count = onehot.sum(0).clamp_min(1).unsqueeze(1) * flat.shape[2]  # (K, 1)
    mean = onehot.T @ flat.sum(2) / count
    centred = (flat - mean[classes.long()].unsqueeze(2)).pow(2).sum(2)
    return mean, onehot.T @ centred / count


def class_bn_statistics(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    batch_size: int = 512,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm layer of ``teacher`` (forward order, eval mode), the pooled mean and biased
    variance of the layer's input over each class's real ``images``: ``[(mean, var)]`` with
    ``(K, C)`` float32 tensors (computed in float64 in batches)."""
    layers = bn_layers(teacher)
    sums: list[list[torch.Tensor]] = [[] for _ in layers]
    current: dict[str, torch.Tensor] = {}

    def hook(i: int):
        def fn(module, inputs, output) -> None:
            x = inputs[0].double()
            flat = x.reshape(x.shape[0], x.shape[1], -1)
            onehot = F.one_hot(current["y"].long(), num_classes).double()
            s1, s2 = onehot.T @ flat.sum(2), onehot.T @ flat.pow(2).sum(2)
            n = onehot.sum(0).unsqueeze(1) * flat.shape[2]
            if sums[i]:
                s1, s2, n = s1 + sums[i][0], s2 + sums[i][1], n + sums[i][2]
            sums[i] = [s1, s2, n]

        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(layers)]
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(images), batch_size):
                current["y"] = labels[s : s + batch_size]
                teacher(images[s : s + batch_size])
    finally:
        for h in handles:
            h.remove()
        teacher.train(was_training)
    out = []
    for s1, s2, n in sums:
        mean = s1 / n.clamp_min(1)
        var = (s2 / n.clamp_min(1) - mean.pow(2)).clamp_min(0)
        out.append((mean.float(), var.float()))
    return out


class ClassStatLoss(LayerLosses):
    """Hooks on the teacher's BN layers recording EDC's category-aware term::

        sum_l  sum_c  || mu_l^c(x) - mu_l^c(real) ||_2 + || var_l^c(x) - var_l^c(real) ||_2

    for synthetic rows of classes ``classes``; ``stats`` from :func:`class_bn_statistics`.
    Classes without synthetic rows in the batch are left out of the sum. A context manager like
    :class:`~ddkit.methods.decoupled.bn.BNStatLoss`."""

    def __init__(
        self,
        teacher: nn.Module,
        stats: list[tuple[torch.Tensor, torch.Tensor]],
        classes: torch.Tensor,
    ) -> None:
        self.layers = bn_layers(teacher)
        if len(self.layers) != len(stats):
            raise ConfigError("class statistics were computed for another teacher")
        self.stats, self.classes = stats, classes
        self.index = {id(m): i for i, m in enumerate(self.layers)}
        self.losses = []
        self._handles = []

    def _hook(self, module, inputs, output) -> None:
        x = inputs[0]
        real_mean, real_var = self.stats[self.index[id(module)]]
        k = real_mean.shape[0]
        mean, var = _per_class_moments(x, self.classes, k)
        present = torch.bincount(self.classes.long(), minlength=k) > 0
        d = torch.linalg.vector_norm(mean - real_mean.to(x.dtype), dim=1)
        d = d + torch.linalg.vector_norm(var - real_var.to(x.dtype), dim=1)
        self.losses.append(d[present].sum())


def flatness_loss(
    logits: torch.Tensor,
    ema_logits: torch.Tensor,
    temperature: float = 4.0,
    *,
    rows: int | None = None,
) -> torch.Tensor:
    """EDC's flatness term: ``KL(softmax(ema_logits / T) || softmax(logits / T))`` summed over
    rows and divided by ``rows`` (default: the rows given, their mean; a rank holding some of a
    batch's rows passes the whole batch's count); the gradient flows through ``logits`` only."""
    return F.kl_div(
        F.log_softmax(logits / temperature, dim=1),
        F.softmax(ema_logits.detach() / temperature, dim=1),
        reduction="sum",
    ) / (len(logits) if rows is None else rows)
