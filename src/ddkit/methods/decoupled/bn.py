"""BatchNorm-statistic matching, the "recover" loss of SRe2L.

Yin, Xing & Shen, "Squeeze, Recover and Relabel: Dataset Condensation at ImageNet Scale From A
New Perspective", NeurIPS 2023 (after DeepInversion, Yin et al., CVPR 2020). For every BatchNorm
layer ``l`` of a trained teacher (in eval mode), the statistics of the layer's *input* over a
batch of synthetic images are pulled towards the running statistics learned on real data::

    R_bn = sum_l  || mu_l(x) - mu_l^run ||_2  +  || var_l(x) - var_l^run ||_2

with the batch mean and the *biased* batch variance per channel (as the reference
``BNFeatureHook``). SRe2L scales the first layer's term by ``first_bn_multiplier`` (10).

``groups`` splits the batch into equal consecutive groups whose statistics are matched
separately and summed: SRe2L optimises one batch of one image per class at a time, so recovering
``ipc`` such batches at once is ``groups = ipc`` (rows ordered group by group). Since the teacher
is in eval mode, every image's forward pass is independent of the others and each group receives
exactly the gradient it would get in a separate run.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BNStatLoss", "LayerLosses", "bn_layers", "bn_statistic_loss"]


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers with running statistics, in forward-definition order."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]


class LayerLosses:
    """Forward hooks on BN layers (``self.layers``) each recording one loss per forward pass
    through ``_hook(module, inputs, output)``; a context manager (hooks removed on exit) whose
    :meth:`total` sums the recorded losses."""

    layers: list[nn.modules.batchnorm._BatchNorm]
    losses: list[torch.Tensor]
    _handles: list

    def _hook(self, module, inputs, output) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.losses = []
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def total(self, first_multiplier: float = 1.0) -> torch.Tensor:
        """Sum over layers of the recorded losses (first layer times ``first_multiplier``)."""
        if not self.losses:
            raise RuntimeError("no forward pass recorded")
        scale = [float(first_multiplier)] + [1.0] * (len(self.losses) - 1)
        return torch.stack([s * v for s, v in zip(scale, self.losses)]).sum()


class BNStatLoss(LayerLosses):
    """Forward hooks on every BN layer of ``model`` that record the per-layer matching loss.

    Use as a context manager (hooks are removed on exit)::

        with BNStatLoss(teacher, groups=ipc) as bn:
            logits = teacher(x)
            loss = bn.total(first_multiplier=10.0)
    """

    def __init__(self, model: nn.Module, groups: int = 1) -> None:
        self.layers = bn_layers(model)
        if not self.layers:
            from ddkit.errors import ConfigError

            raise ConfigError(
                f"model {getattr(model, 'model_name', type(model).__name__)!r} has no BatchNorm "
                "layers with running statistics (use a '-bn' model as teacher)"
            )
        self.groups = int(groups)
        self.losses: list[torch.Tensor] = []
        self._handles: list = []

    def _hook(
        self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[torch.Tensor, ...], output
    ) -> None:
        x = inputs[0]
        n, c = x.shape[0], x.shape[1]
        g = self.groups
        if n % g:
            raise ValueError(f"batch of {n} cannot be split into {g} equal groups")
        flat = x.reshape(g, n // g, c, -1).transpose(1, 2).reshape(g, c, -1)  # (G, C, rows*spatial)
        mean = flat.mean(-1)
        var = (flat - mean.unsqueeze(-1)).pow(2).mean(-1)  # biased, as BN normalises in training
        rm = module.running_mean.to(x.dtype)
        rv = module.running_var.to(x.dtype)
        loss = torch.linalg.vector_norm(mean - rm, dim=1) + torch.linalg.vector_norm(
            var - rv, dim=1
        )
        self.losses.append(loss.sum())


def bn_statistic_loss(
    model: nn.Module, x: torch.Tensor, *, groups: int = 1, first_multiplier: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, R_bn)`` for a batch ``x`` through ``model`` (which should be in eval mode)."""
    with BNStatLoss(model, groups) as bn:
        logits = model(x)
    return logits, bn.total(first_multiplier)
