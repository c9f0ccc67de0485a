"""Training fresh networks on a small training set, many at once.

:func:`train_networks` trains ``len(seeds)`` independent networks of one architecture. Without
BatchNorm they are trained *together*: parameters are stacked (``torch.func.stack_module_state``)
and the forward pass is ``vmap``-ed, so R small networks cost about one larger forward. Each run
keeps its own initialisation, data order and augmentation draws (its own ``torch.Generator``),
so the vectorised and the one-by-one paths compute the same thing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ddkit.data.spec import DatasetSpec
from ddkit.eval.protocol import EvalProtocol
from ddkit.models import create_model, has_batchnorm
from ddkit.rng import seeded_global_rng

# ``targets_fn(x_augmented, batch_index, run) -> targets`` lets a protocol compute targets on
# the fly (teacher knowledge distillation); by default targets are looked up by index.
TargetsFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass
class TrainResult:
    models: list[nn.Module]
    seconds: float
    images_seen: int
    vectorized: bool


def build_networks(
    name: str, spec: DatasetSpec, seeds: Sequence[int], device: torch.device | str = "cpu"
) -> list[nn.Module]:
    """Fresh networks, each initialised from its own seed (the global RNG is left as it was)."""
    nets = []
    for s in seeds:
        with seeded_global_rng(s):
            net = create_model(
                name,
                num_classes=spec.num_classes,
                in_channels=spec.channels,
                image_size=spec.image_size,
            )
        nets.append(net.to(device))
    return nets


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-sample cross-entropy against probability targets, scaled by T^2 when T != 1 (KD)."""
    logp = F.log_softmax(logits / temperature, dim=-1)
    return -(target * logp).sum(-1) * (temperature**2)


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    if target.ndim == logits.ndim - 1 and not target.is_floating_point():
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
        ).view(target.shape)
    return soft_cross_entropy(logits, target, temperature)


def _make_optimizer(
    params: list[torch.Tensor], protocol: EvalProtocol, lr: float
) -> torch.optim.Optimizer:
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=protocol.weight_decay)


def lr_factor(protocol: EvalProtocol, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based) under the protocol's schedule."""
    if protocol.schedule == "step":
        return 0.1 if epoch >= protocol.epochs // 2 else 1.0
    if protocol.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / protocol.epochs))
    return 1.0


class _Augmenter:
    """Applies the protocol's augmentation / mixing to one run's batch with that run's generator."""

    def __init__(self, protocol: EvalProtocol, spec: DatasetSpec) -> None:
        self.dsa = None
        if protocol.augment:
            from ddkit.augment import DSA, default_strategy

            strategy = (
                default_strategy(spec.channels, spec.name)
                if protocol.augment == "dsa"
                else protocol.augment
            )
            self.dsa = DSA(strategy)
        self.mix = protocol.mix
        self.alpha = protocol.mix_alpha

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, g: torch.Generator, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dsa is not None:
            x = self.dsa(x, g, shared=False)
        if self.mix is not None:
            from ddkit.augment import cutmix, mixup

            if not t.is_floating_point():
                t = F.one_hot(t, num_classes).float()
            x, t = (mixup if self.mix == "mixup" else cutmix)(x, t, self.alpha, g)
        return x, t


def train_networks(
    model: str,
    spec: DatasetSpec,
    images: torch.Tensor,
    targets: torch.Tensor,
    protocol: EvalProtocol,
    seeds: Sequence[int],
    *,
    lr: float,
    vectorize: bool | None = None,
    targets_fn: TargetsFn | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train one fresh ``model`` per seed on ``(images, targets)`` under ``protocol``.

    ``targets`` are hard labels ``(N,)`` or probability vectors ``(N, K)``. Returns the trained
    networks in eval mode. ``progress(epoch)`` is called after every epoch. ``vectorize``:
    ``True`` trains the networks together with ``vmap``, ``False`` one after another, ``None``
    picks by device (vmap on accelerators, one by one on CPU, where it measured faster).
    """
    import time

    device = torch.device(device)
    images, targets = images.to(device), targets.to(device)
    nets = build_networks(model, spec, seeds, device)
    gens = [torch.Generator().manual_seed(int(s) + 7919) for s in seeds]  # data-order/aug streams
    aug = _Augmenter(protocol, spec)
    if vectorize is None:  # auto: vmap pays off on GPUs; on CPU grouped convs lose (BENCHMARKS.md)
        vectorize = device.type != "cpu"
    vectorized = vectorize and len(nets) > 1 and not has_batchnorm(nets[0])
    n = len(images)
    bs = min(protocol.batch_size, n)
    t0 = time.perf_counter()

    def batches(epoch_perms: list[torch.Tensor]):
        for start in range(0, n, bs):
            yield [p[start : start + bs] for p in epoch_perms]

    def batch_for(run: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, t = aug(images[idx], targets[idx], gens[run], spec.num_classes)
        if targets_fn is not None:  # on-the-fly targets (teacher KD) see the augmented/mixed batch
            t = targets_fn(x, idx, run)
        return x, t

    if vectorized:
        base = copy.deepcopy(nets[0]).to("meta")
        params, buffers = stack_module_state(nets)
        opt = _make_optimizer(list(params.values()), protocol, lr)

        def fwd(p, b, x):
            return functional_call(base, (p, b), (x,))

        batched = vmap(fwd, randomness="different")
        for epoch in range(protocol.epochs):
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(protocol, epoch)
            perms = [torch.randperm(n, generator=g).to(device) for g in gens]
            for idxs in batches(perms):
                xs, ts = zip(*(batch_for(r, ix) for r, ix in enumerate(idxs)))
                logits = batched(params, buffers, torch.stack(xs))
                loss = per_sample_loss(logits, torch.stack(ts), protocol.temperature).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if progress:
                progress(epoch)
        with torch.no_grad():
            for r, net in enumerate(nets):
                net.load_state_dict({k: v[r] for k, v in {**params, **buffers}.items()})
    else:
        opts = [_make_optimizer(list(net.parameters()), protocol, lr) for net in nets]
        for epoch in range(protocol.epochs):
            for o in opts:
                for group in o.param_groups:
                    group["lr"] = lr * lr_factor(protocol, epoch)
            perms = [torch.randperm(n, generator=g).to(device) for g in gens]
            for net in nets:
                net.train()
            for idxs in batches(perms):
                for r, (net, o, ix) in enumerate(zip(nets, opts, idxs)):
                    x, t = batch_for(r, ix)
                    loss = per_sample_loss(net(x), t, protocol.temperature).mean()
                    o.zero_grad(set_to_none=True)
                    loss.backward()
                    o.step()
            if progress:
                progress(epoch)
    for net in nets:
        net.eval()
    return TrainResult(nets, time.perf_counter() - t0, protocol.epochs * n * len(nets), vectorized)


@torch.no_grad()
def accuracy(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> float:
    """Top-1 accuracy of ``net`` (in eval mode) on a labelled set."""
    net.eval()
    dev = next(net.parameters()).device
    correct = 0
    for s in range(0, len(images), batch_size):
        pred = net(images[s : s + batch_size].to(dev)).argmax(1).cpu()
        correct += int((pred == labels[s : s + batch_size]).sum())
    return correct / max(1, len(images))
