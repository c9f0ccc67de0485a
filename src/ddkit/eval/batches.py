"""The batches evaluation training feeds a network: rows of a small training set, augmented and
mixed with one run's generator (:class:`Augmenter`), with targets looked up by row or computed
on the fly from the augmented batch (:func:`_batch`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ddkit.augment.patches import PatchViews, is_patch_strategy
from ddkit.data.spec import DatasetSpec
from ddkit.eval.protocol import EvalProtocol

# ``batch_targets(x_augmented, batch_index) -> targets``: targets computed on the fly for one
# network (one run of :mod:`ddkit.eval.train`'s ``targets_fn``)
BatchTargets = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# ``augment(x, targets, generator) -> (x, targets)``: augmentation / mixing of one batch
AugmentFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]


class Augmenter:
    """Augmentation and mixing of one batch with one run's generator: an ``augment`` for
    :func:`~ddkit.eval.train.sgd_train`.

    ``strategy``: ``None``, ``"dsa"`` (the dataset's default DSA strategy), an explicit DSA
    strategy, or ``"dc"`` (DC's per-image evaluation augmentation with the strategy its code
    gives the dataset: :mod:`ddkit.augment.classic`), or ``"patches:F"`` (RDED's views of sets
    stitched from ``F x F`` patches: :mod:`ddkit.augment.patches`); ``mix``: ``None``, ``"mixup"`` or
    ``"cutmix"`` (class targets become one-hot vectors before mixing). Augmentation needs
    images: on other rows it is refused in one line (use the ``tabular`` or ``series``
    protocol).
    """

    def __init__(
        self,
        spec: DatasetSpec,
        strategy: str | None = None,
        mix: str | None = None,
        mix_alpha: float = 1.0,
    ) -> None:
        self.dsa = self.classic = self.patches = None
        if strategy:
            protocol = spec.kind.protocol or "tabular"
            spec.check_needs(
                "image", f"evaluation augmentation {strategy!r}", f"use the '{protocol}' protocol"
            )
        if strategy == "dc":
            from ddkit.augment.classic import ClassicAugment, dc_strategy

            self.classic = ClassicAugment(dc_strategy(spec.name))
        elif is_patch_strategy(strategy):
            self.patches = PatchViews(strategy)
        elif strategy:
            from ddkit.augment import DSA, default_strategy

            name = default_strategy(spec.channels, spec.name) if strategy == "dsa" else strategy
            self.dsa = DSA(name)
        self.mix = mix
        self.alpha = mix_alpha
        self.num_classes = spec.num_classes

    @classmethod
    def from_protocol(cls, protocol: EvalProtocol, spec: DatasetSpec) -> Augmenter:
        return cls(spec, protocol.augment, protocol.mix, protocol.mix_alpha)

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dsa is not None:
            x = self.dsa(x, g, shared=False)
        if self.classic is not None:
            x = self.classic(x, g)
        if self.patches is not None:
            x = self.patches(x, g)
        if self.mix is not None:
            from ddkit.augment import cutmix, mixup

            if not t.is_floating_point():
                t = F.one_hot(t, self.num_classes).float()
            x, t = (mixup if self.mix == "mixup" else cutmix)(x, t, self.alpha, g)
        return x, t


def _batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    idx: torch.Tensor,
    generator: torch.Generator,
    augment: AugmentFn | None,
    batch_targets: BatchTargets | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``idx``, augmented/mixed; on-the-fly targets see the augmented, mixed batch."""
    x, t = images[idx], targets[idx.to(targets.device)]
    if augment is not None:
        x, t = augment(x, t, generator)
    if batch_targets is not None:
        t = batch_targets(x, idx)
    return x, t
