"""Functional students for trajectory matching: a network as a function of one flat parameter
vector, the unrolled MTT step, and the TESLA constant-memory gradient of the same objective.

* MTT — Cazenavette et al., "Dataset Distillation by Matching Training Trajectories", CVPR 2022:
  from expert parameters ``θ*_t`` take ``N`` SGD steps on synthetic mini-batches with a learned
  step size ``α``; the loss is ``‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²``. Autograd holds the
  graph of all ``N`` steps, so memory grows linearly in ``N``.
* TESLA — Cui et al., "Scaling Up Dataset Distillation to ImageNet-1K with Constant Memory",
  ICML 2023: the same gradient, accumulated step by step. Here it is computed exactly by
  reverse-mode accumulation over the unrolled SGD map ``θ_{i+1} = θ_i − α g_i(θ_i, X_i)``:
  with ``λ_N = ∂L/∂θ_N``, walking back ``i = N−1 … 0``::

      ∂L/∂X   += vjp of X  ↦ θ_i − α g_i(θ_i, X)  at λ_{i+1}
      ∂L/∂α   += −⟨λ_{i+1}, g_i⟩
      λ_i      = λ_{i+1} − α H_i λ_{i+1}          (the same vjp, w.r.t. θ_i)

  Only one step's graph is alive at a time. The forward pass keeps a parameter checkpoint every
  ``k`` steps (default ``k = ⌈√N⌉``) and the backward walk recomputes each segment, so memory is
  ``O(√N · P + one step)`` instead of MTT's ``O(N · one step)``; the result equals MTT's
  autograd gradient up to floating-point rounding (tested in float64).

Every random choice of a step (mini-batch order, per-sample DSA draws) is drawn up front into a
:class:`StepPlan`, so the unrolled and the constant-memory paths see identical inputs.

Precision (a speed lever, issue 14): ``precision="bf16"`` runs the student's forward passes
inside the unroll under bf16 autocast (:func:`ddkit.eval.train.precision_context`); the
parameter vector, its gradient (taken with respect to float32 ``θ``), every update, the
matching loss and TESLA's reverse accumulation stay float32. ``"fp32"`` (the default) is the
plain path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddkit.augment import DSA, DSAParams
from ddkit.errors import ConfigError
from ddkit.eval.train import precision_context
from ddkit.models import has_batchnorm

__all__ = [
    "FlatModel",
    "StepPlan",
    "make_plan",
    "unrolled_step",
    "tesla_step",
    "inner_loss",
    "KeepMask",
]


class FlatModel:
    """A network evaluated at a flat parameter vector: ``fm(theta, x) == model(x)`` with the
    model's parameters replaced by the views of ``theta`` (``torch.func.functional_call``).

    BatchNorm is refused: trajectory matching needs a stateless, per-sample-independent student.
    """

    def __init__(self, model: nn.Module) -> None:
        if has_batchnorm(model):
            raise ConfigError(
                f"model {getattr(model, 'model_name', type(model).__name__)!r} has BatchNorm; trajectory "
                "matching unrolls a functional student and needs a model without it (e.g. 'convnet', "
                "instance norm)"
            )
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.num_params = int(sum(self.numels))
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self.base = copy.deepcopy(model).to("meta")
        self.model_name = getattr(model, "model_name", type(model).__name__)

    def flatten(self, model: nn.Module) -> torch.Tensor:
        """The model's parameters as one flat vector (a copy), in ``self.names`` order."""
        params = dict(model.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names]).clone()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        if theta.ndim != 1 or theta.numel() != self.num_params:
            raise ConfigError(
                f"parameter vector has {theta.numel()} entries, model {self.model_name!r} has {self.num_params}"
            )
        parts = torch.split(theta, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        bufs = {k: v.to(device=x.device) for k, v in self.buffers.items()}
        return functional_call(self.base, {**self.unflatten(theta), **bufs}, (x,))

    def param_layout(self) -> list[list]:
        """``[[name, shape], ...]``: recorded with expert files to check a model still fits."""
        return [[n, list(s)] for n, s in zip(self.names, self.shapes)]


@dataclass
class StepPlan:
    """The random choices of one distillation step: per student step, the synthetic rows of the
    mini-batch and (optionally) their per-sample DSA parameters."""

    batches: list[torch.Tensor]
    augs: list[DSAParams | None]

    def __len__(self) -> int:
        return len(self.batches)


def make_plan(
    n_images: int,
    steps: int,
    batch: int | None,
    generator: torch.Generator,
    dsa: DSA | None,
    image_size: tuple[int, int],
) -> StepPlan:
    """Mini-batches as in MTT: a fresh random permutation of the synthetic set is split into
    chunks of ``batch`` and consumed one chunk per step; DSA draws are per sample (not Siamese),
    as MTT applies ``DiffAugment`` to the student's batch alone."""
    bs = n_images if batch is None or batch <= 0 else min(int(batch), n_images)
    chunks: list[torch.Tensor] = []
    batches, augs = [], []
    for _ in range(int(steps)):
        if not chunks:
            chunks = list(torch.split(torch.randperm(n_images, generator=generator), bs))
        idx = chunks.pop()
        batches.append(idx)
        augs.append(
            dsa.sample(len(idx), generator, shared=False, image_size=image_size) if dsa else None
        )
    return StepPlan(batches, augs)


def inner_loss(
    fm: FlatModel,
    theta: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    idx: torch.Tensor,
    aug: DSAParams | None,
    dsa: DSA | None,
    label_mode: str,
    precision: str = "fp32",
) -> torch.Tensor:
    """The student's training loss on one synthetic mini-batch.

    ``label_mode``: ``"hard"`` (int labels, cross-entropy), ``"prob"`` (fixed probability
    vectors, soft cross-entropy) or ``"logits"`` (learnable logits; targets ``softmax(logits)``,
    as DATM's ``SoftCrossEntropy``). ``precision`` (resolved: ``"fp32"`` or ``"bf16"``) is the
    autocast of the forward pass; the loss is taken of logits in ``theta``'s dtype.
    """
    x = images[idx]
    if aug is not None:
        x = dsa.apply(x, aug)
    with precision_context(precision, x.device):
        logits = fm(theta, x).to(theta.dtype)
    t = labels[idx]
    if label_mode == "hard":
        return F.cross_entropy(logits, t)
    if label_mode == "logits":
        t = F.softmax(t, dim=-1)
    return -(t * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def _grad_fn(fm: FlatModel, dsa: DSA | None, label_mode: str, precision: str = "fp32"):
    def loss(theta, images, labels, idx, aug):
        return inner_loss(fm, theta, images, labels, idx, aug, dsa, label_mode, precision)

    return torch.func.grad(loss, argnums=0)


KeepMask = Callable[[torch.Tensor], torch.Tensor]
"""A parameter selection for the matching loss: given the per-parameter squared error
``(θ_N − θ*)²`` (detached), the boolean mask of the parameters the loss keeps; the loss and its
normaliser are then sums over the kept parameters only (PAD's parameter selection)."""


def _weights(keep: KeepMask | None, theta: torch.Tensor, target: torch.Tensor):
    if keep is None:
        return 1.0
    return keep((theta.detach() - target) ** 2).to(theta.dtype)


def _normaliser(start: torch.Tensor, target: torch.Tensor, w=1.0) -> torch.Tensor:
    return (w * (start - target) ** 2).sum()


def unrolled_step(
    fm: FlatModel,
    start: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor,
    lr: torch.Tensor,
    labels: torch.Tensor,
    plan: StepPlan,
    dsa: DSA | None,
    label_mode: str,
    *,
    precision: str = "fp32",
    keep: KeepMask | None = None,
) -> torch.Tensor:
    """MTT: the matching loss with the autograd graph of all ``N`` student steps (call
    ``.backward()``; memory grows with ``N``). ``precision``: the autocast of the student's
    forward passes (module notes). ``keep`` restricts the loss to some parameters
    (:data:`KeepMask`)."""
    grad = _grad_fn(fm, dsa, label_mode, precision)
    theta = start.detach()
    for idx, aug in zip(plan.batches, plan.augs):
        theta = theta - lr * grad(theta, images, labels, idx, aug)
    w = _weights(keep, theta, target)
    return (w * (theta - target) ** 2).sum() / _normaliser(start, target, w)


@dataclass
class TeslaResult:
    loss: float
    grad_images: torch.Tensor
    grad_lr: torch.Tensor
    grad_labels: torch.Tensor | None


def tesla_step(
    fm: FlatModel,
    start: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor,
    lr: torch.Tensor,
    labels: torch.Tensor,
    plan: StepPlan,
    dsa: DSA | None,
    label_mode: str,
    *,
    checkpoint_every: int = 0,
    precision: str = "fp32",
    keep: KeepMask | None = None,
) -> TeslaResult:
    """TESLA: the loss and its exact gradients w.r.t. ``images``, ``lr`` (and ``labels`` when
    ``label_mode == "logits"``) with memory independent of ``N`` up to ``⌈√N⌉`` parameter
    checkpoints (``checkpoint_every=k`` keeps every k-th θ_i; 1 keeps all). ``precision``: the
    autocast of the student's forward passes, in the forward walk and in every recomputed step
    and vector-Jacobian product of the backward walk (module notes). ``keep``: as in
    :func:`unrolled_step`."""
    grad = _grad_fn(fm, dsa, label_mode, precision)
    n = len(plan)
    k = (
        int(checkpoint_every)
        if checkpoint_every and checkpoint_every > 0
        else max(1, math.ceil(math.sqrt(n)))
    )
    images_d, lr_d, labels_d = images.detach(), lr.detach(), labels.detach()
    learn_labels = label_mode == "logits"

    def advance(theta: torch.Tensor, i: int) -> torch.Tensor:
        return theta - lr_d * grad(theta, images_d, labels_d, plan.batches[i], plan.augs[i])

    with torch.no_grad():
        theta = start.detach()
        ckpts = {0: theta}
        for i in range(n):
            theta = advance(theta, i)
            if (i + 1) % k == 0 and i + 1 < n:
                ckpts[i + 1] = theta
        w = _weights(keep, theta, target)
        denom = _normaliser(start.detach(), target, w)
        diff = theta - target
        loss = float((w * diff**2).sum() / denom)
        lam = 2.0 * w * diff / denom

        g_img = torch.zeros_like(images_d)
        g_lr = torch.zeros_like(lr_d)
        g_lab = torch.zeros_like(labels_d) if learn_labels else None
        for s in sorted(ckpts, reverse=True):
            e = min(s + k, n)
            thetas = [ckpts[s]]
            for i in range(s, e - 1):
                thetas.append(advance(thetas[-1], i))
            for i in range(e - 1, s - 1, -1):
                idx, aug = plan.batches[i], plan.augs[i]
                if learn_labels:

                    def f(th, x, a, y, idx=idx, aug=aug):
                        return th - a * grad(th, x, y, idx, aug)

                    _, vjp = torch.func.vjp(f, thetas[i - s], images_d, lr_d, labels_d)
                    lam, dx, da, dy = vjp(lam)
                    g_lab += dy
                else:

                    def f(th, x, a, idx=idx, aug=aug):
                        return th - a * grad(th, x, labels_d, idx, aug)

                    _, vjp = torch.func.vjp(f, thetas[i - s], images_d, lr_d)
                    lam, dx, da = vjp(lam)
                g_img += dx
                g_lr += da
            del thetas
    return TeslaResult(loss, g_img, g_lr, g_lab)
