"""Learned regression labels for the kernel methods (KIP's "label learning", FRePo's labels).

Nguyen et al. (ICLR 2021) and Zhou et al. (NeurIPS 2022) optimise the synthetic set's labels
with its images: each label is a real-valued vector the kernel regression predicts with, not a
class. Here they start as the zero-mean one-hot targets of :func:`regression_targets` and, with
``learn_labels=True``, move by Adam at ``lr_labels`` alongside the images. A set with learned
labels is saved with them as regression targets (``SyntheticSet(regression=True)``, shifted by
``1 / K`` so that unlearned labels are exact one-hot vectors); MSE protocols train on them,
cross-entropy protocols on their argmax.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ddkit.data.codecs import Codec
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.methods.codecs import CodecConfig, start_stored
from ddkit.methods.config import POSITIVE


@dataclasses.dataclass(frozen=True)
class LabelLearningConfig(CodecConfig):
    """The label options shared by ``kip`` and ``frepo`` (and what their sets store)."""

    learn_labels: bool = False  # optimise the label vectors with the images
    lr_labels: float = 0.01  # Adam on the label vectors

    rules = {"lr_labels": POSITIVE}

    @property
    def label_vectors(self) -> bool:
        """Whether the set stores a label vector per image (learned labels) instead of a class."""
        return self.learn_labels


def regression_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Zero-mean one-hot regression targets: ``one_hot(y) - 1 / K``."""
    return F.one_hot(labels, num_classes).to(torch.get_default_dtype()) - 1.0 / num_classes


def start_labels(
    num_classes: int,
    per_class: int,
    cfg: LabelLearningConfig,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The synthetic set's starting targets ``(K * per_class, K)`` (one per training image) on
    ``device``, trainable if ``learn_labels``."""
    labels = class_labels(num_classes, per_class).to(device)
    y = regression_targets(labels, num_classes)
    return y.requires_grad_(True) if cfg.learn_labels else y


def start_set(
    cfg: LabelLearningConfig, train: ImageDataset, ipc: int, generator: torch.Generator
) -> tuple[Codec, torch.Tensor, torch.Tensor]:
    """A kernel method's start: its codec, the stored tensor (from ``cfg.init`` images) and the
    targets, one per decoded image. A set that stores label vectors (``cfg.label_vectors``) has
    the codec's byte budget pay for them."""
    codec, stored = start_stored(
        cfg.codec, train, ipc, generator, cfg.init, label_vectors=cfg.label_vectors
    )
    per_class = codec.emitted_per_class(ipc, train.spec)
    return codec, stored, start_labels(train.spec.num_classes, per_class, cfg, stored.device)


def add_label_group(opt: torch.optim.Optimizer, y: torch.Tensor, cfg: LabelLearningConfig) -> None:
    """Let ``opt`` move the labels too (at ``lr_labels``) when they are learned."""
    if cfg.learn_labels:
        opt.add_param_group({"params": [y], "lr": cfg.lr_labels})


def labelled_set(
    codec: Codec, stored: torch.Tensor, y: torch.Tensor, spec: DatasetSpec,
    cfg: LabelLearningConfig,
) -> SyntheticSet:  # fmt: skip
    """The result, decoded from ``stored``: class labels, or (``cfg.label_vectors``) the
    vectors ``y`` as regression targets (one per decoded image)."""
    if not cfg.label_vectors:
        return SyntheticSet.from_codec(codec, stored.detach(), spec)
    k = spec.num_classes
    return SyntheticSet.from_codec(
        codec, stored.detach(), spec, labels=y.detach().clone() + 1.0 / k, regression=True
    )
