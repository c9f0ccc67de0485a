"""DP-SGD (Abadi et al., CCS 2016, arXiv:1607.00133) through opacus: the differentially private
reference beside which a distilled set's privacy is judged (Carlini et al. 2022,
arXiv:2209.14987, found it better than distillation on both accuracy and privacy).

Per-example gradients are clipped to ``max_grad_norm`` and Gaussian noise is added; batches are
Poisson samples of the rows (expected size ``batch_size``); the noise multiplier is calibrated by
opacus so that ``epochs`` epochs spend ``(epsilon, delta)`` under its accountant, and the epsilon
the accountant reports after training is returned. Sampling and noise come from
``torch.Generator`` objects seeded from ``seed``; the network is initialised as every ddkit
network is (:func:`ddkit.models.helpers.build_network`). opacus is the ``privacy`` extra.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.data.dataset import ImageDataset
from ddkit.errors import ConfigError, require_extra
from ddkit.models.helpers import build_network
from ddkit.models.registry import has_batchnorm, set_inplace_activations
from ddkit.rng import derive_seed


@dataclass(frozen=True)
class DPRecipe:
    """How DP-SGD trains: privacy budget ``(epsilon, delta)``, ``epochs``, expected batch size,
    SGD learning rate and momentum, the per-example clipping norm, and opacus' accountant."""

    epsilon: float
    delta: float = 1e-5
    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.5
    momentum: float = 0.0
    max_grad_norm: float = 1.0
    accountant: str = "prv"

    def check(self, rows: int) -> None:
        """A one-line :class:`ConfigError` for a budget or setting DP-SGD cannot use."""
        if not self.epsilon > 0:
            raise ConfigError(f"DP-SGD epsilon must be > 0, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"DP-SGD delta must lie in (0, 1), got {self.delta!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("DP-SGD epochs and batch size must be >= 1")
        if self.batch_size > rows:
            raise ConfigError(
                f"DP-SGD batch size {self.batch_size} exceeds the {rows} training rows of a network; "
                "lower it (--dp-batch) or give more rows (--pool)"
            )
        if not (self.lr > 0 and self.max_grad_norm > 0 and 0 <= self.momentum < 1):
            raise ConfigError("DP-SGD needs lr > 0, max_grad_norm > 0 and momentum in [0, 1)")


@dataclass
class DPResult:
    """A network trained by DP-SGD (eval mode), with the noise multiplier used, the epsilon
    the accountant reports for ``delta`` after training, the optimiser steps and the seconds."""

    network: nn.Module
    noise_multiplier: float
    epsilon_spent: float
    steps: int
    seconds: float


def train_dp_sgd(
    data: ImageDataset,
    model: str,
    recipe: DPRecipe,
    *,
    seed: int,
    device: torch.device | str = "cpu",
) -> DPResult:
    """Train ``model`` (a registered name, without batch norm) on ``data`` by DP-SGD
    (module docstring), on ``device``. Same seed => same network on the same device: the
    Poisson batches are drawn on the CPU, the noise on ``device`` (opacus draws it there)."""
    opacus = require_extra("opacus", "privacy", "DP-SGD")
    recipe.check(len(data))
    device = torch.device(device)
    net = build_network(model, data.spec, derive_seed(seed, "dp-init")).to(device)
    if has_batchnorm(net):
        raise ConfigError(f"DP-SGD cannot train {model!r}: batch norm mixes examples; use -in")
    set_inplace_activations(net, False)  # opacus' backward hooks refuse in-place outputs
    sampling = torch.Generator().manual_seed(derive_seed(seed, "dp-sampling"))
    noise = torch.Generator(device=device).manual_seed(derive_seed(seed, "dp-noise"))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.images.cpu(), data.labels.cpu()),
        batch_size=recipe.batch_size, shuffle=True, generator=sampling,
    )  # fmt: skip
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opacus' notes on secure RNG and hook modes
        engine = opacus.PrivacyEngine(accountant=recipe.accountant)
        private, optimizer, loader = engine.make_private_with_epsilon(
            module=net, optimizer=optimizer, data_loader=loader, target_epsilon=recipe.epsilon,
            target_delta=recipe.delta, epochs=recipe.epochs, max_grad_norm=recipe.max_grad_norm,
            noise_generator=noise,
        )  # fmt: skip
        private.train()
        steps = 0
        for _ in range(recipe.epochs):
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(private(x), y).backward()
                optimizer.step()
                steps += 1
        spent = float(engine.get_epsilon(recipe.delta))
    seconds = time.perf_counter() - t0
    if hasattr(private, "remove_hooks"):
        private.remove_hooks()
    for p in net.parameters():
        p.grad_sample = None
        p.grad = None
    return DPResult(net.eval(), float(optimizer.noise_multiplier), spent, steps, seconds)
