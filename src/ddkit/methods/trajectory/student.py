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

Several processes (issue 38): :meth:`StepPlan.share` gives a rank rows ``RANK, RANK + N, ...`` of
every mini-batch (drawn, with its DSA parameters, as one process draws them). The student stays
one: each rank computes its rows' share of every step's gradient (their losses summed and divided
by the whole mini-batch's size), the shares are summed over the ranks (:mod:`ddkit.distributed`),
and every rank takes the same step. TESLA's backward walk sums the ranks' Hessian-vector products
the same way; each rank's gradients of the images, the step size and the labels are its rows'
share, summed by the caller after the walk (:func:`sum_shares`). The unrolled path sums each
step's gradient with a differentiable sum; the caller back-propagates the loss divided by ``N``
on every rank and sums the leaves' gradients (:func:`sum_shares`). Only the order of the
floating-point sums differs from one process.

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

from ddkit import distributed
from ddkit.augment import DSA, DSAParams
from ddkit.errors import ConfigError
from ddkit.levers import precision_context
from ddkit.models import has_batchnorm

__all__ = [
    "FlatModel",
    "Student",
    "StepPlan",
    "make_plan",
    "unrolled_step",
    "tesla_step",
    "inner_loss",
    "KeepMask",
    "sum_shares",
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


@dataclass(frozen=True)
class Student:
    """How the functional student trains, fixed for a distillation: the network ``fm`` at a
    flat parameter vector, the augmentation ``dsa`` its mini-batches' draws are applied with
    (``None``: none), its ``label_mode`` (``"hard"``: int labels, cross-entropy; ``"prob"``:
    fixed probability vectors, soft cross-entropy; ``"logits"``: learnable logits, targets
    ``softmax(logits)`` as DATM's ``SoftCrossEntropy``) and the ``precision`` of its forward
    passes (resolved: ``"fp32"`` or ``"bf16"`` autocast; module notes)."""

    fm: FlatModel
    dsa: DSA | None = None
    label_mode: str = "hard"
    precision: str = "fp32"


@dataclass
class StepPlan:
    """The random choices of one distillation step: per student step, the synthetic rows of the
    mini-batch and (optionally) their per-sample DSA parameters."""

    batches: list[torch.Tensor]
    augs: list[DSAParams | None]
    #: the sizes of the whole mini-batches when ``batches`` hold one rank's share of them
    #: (:meth:`share`); ``None`` for a one-process plan (each loss is its batch's mean)
    totals: list[int] | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def share(self, rank: int, world: int) -> StepPlan:
        """Rank ``rank``'s share of every mini-batch of this (whole) plan: its rows
        ``rank, rank + world, ...`` and their DSA parameters. Every share must hold a row (a
        collective a rank skipped would stall the others): a mini-batch smaller than ``world``
        is a one-line :class:`ConfigError`."""
        small = min(len(b) for b in self.batches)
        if small < world:
            raise ConfigError(
                f"a student mini-batch of {small} image(s) leaves a process without a row; "
                f"launch at most {small} processes or choose batch_syn (0: the whole set) so "
                f"that every mini-batch holds at least {world}"
            )
        augs = [None if a is None else _rows(a, rank, world) for a in self.augs]
        return StepPlan(
            [b[rank::world] for b in self.batches], augs, [len(b) for b in self.batches]
        )

    def total(self, i: int) -> int | None:
        """The size of step ``i``'s whole mini-batch for a rank's share, else ``None``."""
        return None if self.totals is None else self.totals[i]


def _rows(aug: DSAParams, rank: int, world: int) -> DSAParams:
    if aug.shared:
        return aug
    return DSAParams(aug.families, {k: v[rank::world] for k, v in aug.values.items()}, False)


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
    student: Student,
    theta: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    idx: torch.Tensor,
    aug: DSAParams | None,
    total: int | None = None,
) -> torch.Tensor:
    """The student's training loss on one synthetic mini-batch: rows ``idx`` of ``images``
    (augmented with ``student.dsa`` and the draws ``aug`` where given) against their
    ``labels``, as ``student.label_mode`` says; the forward pass runs under
    ``student.precision``, the loss is taken of logits in ``theta``'s dtype. ``total``: ``idx``
    is a rank's share of a mini-batch of ``total`` rows, and the loss is the sum over the share
    divided by ``total`` (its part of the whole batch's mean).
    """
    label_mode = student.label_mode
    x = images[idx]
    if aug is not None:
        x = student.dsa.apply(x, aug)
    with precision_context(student.precision, x.device):
        logits = student.fm(theta, x).to(theta.dtype)
    t = labels[idx]
    if total is not None:
        if label_mode == "hard":
            return F.cross_entropy(logits, t, reduction="sum") / total
        if label_mode == "logits":
            t = F.softmax(t, dim=-1)
        return -(t * F.log_softmax(logits, dim=-1)).sum() / total
    if label_mode == "hard":
        return F.cross_entropy(logits, t)
    if label_mode == "logits":
        t = F.softmax(t, dim=-1)
    return -(t * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def _grad_fn(student: Student):
    def loss(theta, images, labels, idx, aug, total=None):
        return inner_loss(student, theta, images, labels, idx, aug, total)

    return torch.func.grad(loss, argnums=0)


def _summed(share: torch.Tensor) -> torch.Tensor:
    """The sum of the ranks' ``share`` (a copy; no autograd)."""
    total = share.clone()
    distributed.sum_across_ranks([total])
    return total


def sum_shares(*leaves: torch.Tensor | None, scale: float = 1.0) -> None:
    """After a rank's backward pass over its :meth:`StepPlan.share`: each leaf's ``.grad``
    (times ``scale``) becomes the sum over the ranks, in one collective; a missing gradient
    counts as zeros. No-op outside a :mod:`ddkit.distributed` session."""
    if distributed.active() is None:
        return
    grads = []
    for leaf in leaves:
        if leaf is None:
            continue
        if leaf.grad is None:
            leaf.grad = torch.zeros_like(leaf)
        elif scale != 1.0:
            leaf.grad.mul_(scale)
        grads.append(leaf.grad)
    distributed.sum_across_ranks(grads)


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
    student: Student,
    start: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor,
    lr: torch.Tensor,
    labels: torch.Tensor,
    plan: StepPlan,
    *,
    keep: KeepMask | None = None,
) -> torch.Tensor:
    """MTT: the matching loss with the autograd graph of all ``N`` student steps (call
    ``.backward()``; memory grows with ``N``), the :class:`Student` trained from ``start`` on
    ``plan``'s mini-batches with step size ``lr`` and compared with ``target``. ``keep``
    restricts the loss to some parameters (:data:`KeepMask`). A rank's
    :meth:`StepPlan.share` sums each step's gradient over the ranks differentiably; the caller
    back-propagates ``loss / N`` and calls :func:`sum_shares` (module notes)."""
    grad = _grad_fn(student)
    theta = start.detach()
    for i, (idx, aug) in enumerate(zip(plan.batches, plan.augs)):
        if plan.totals is None:
            theta = theta - lr * grad(theta, images, labels, idx, aug)
        else:
            step = grad(theta, images, labels, idx, aug, plan.total(i))
            theta = theta - lr * distributed.summed(step)
    w = _weights(keep, theta, target)
    return (w * (theta - target) ** 2).sum() / _normaliser(start, target, w)


@dataclass
class TeslaResult:
    loss: float
    grad_images: torch.Tensor
    grad_lr: torch.Tensor
    grad_labels: torch.Tensor | None


def tesla_step(
    student: Student,
    start: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor,
    lr: torch.Tensor,
    labels: torch.Tensor,
    plan: StepPlan,
    *,
    checkpoint_every: int = 0,
    keep: KeepMask | None = None,
) -> TeslaResult:
    """TESLA: the loss and its exact gradients w.r.t. ``images``, ``lr`` (and ``labels`` when
    ``student.label_mode == "logits"``) with memory independent of ``N`` up to ``⌈√N⌉``
    parameter checkpoints (``checkpoint_every=k`` keeps every k-th θ_i; 1 keeps all). The
    student's precision holds in the forward walk and in every recomputed step and
    vector-Jacobian product of the backward walk (module notes). ``keep``: as in
    :func:`unrolled_step`. With a rank's :meth:`StepPlan.share` every step's gradient and
    Hessian-vector product are summed over the ranks; the returned gradients are this rank's
    rows' share (summed by the caller: :func:`sum_shares`), the loss is the whole loss."""
    whole = _grad_fn(student)
    shared = plan.totals is not None

    def grad(theta, images, labels, i):
        if not shared:
            return whole(theta, images, labels, plan.batches[i], plan.augs[i])
        return whole(theta, images, labels, plan.batches[i], plan.augs[i], plan.total(i))

    n = len(plan)
    k = (
        int(checkpoint_every)
        if checkpoint_every and checkpoint_every > 0
        else max(1, math.ceil(math.sqrt(n)))
    )
    images_d, lr_d, labels_d = images.detach(), lr.detach(), labels.detach()
    learn_labels = student.label_mode == "logits"

    def advance(theta: torch.Tensor, i: int) -> torch.Tensor:
        step = grad(theta, images_d, labels_d, i)
        return theta - lr_d * (_summed(step) if shared else step)

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
                if shared:
                    lam, dx, da, dy = _shared_vjp(grad, i, thetas[i - s], images_d, lr_d,
                                                  labels_d, lam, learn_labels)  # fmt: skip
                elif learn_labels:

                    def f(th, x, a, y, i=i):
                        return th - a * grad(th, x, y, i)

                    _, vjp = torch.func.vjp(f, thetas[i - s], images_d, lr_d, labels_d)
                    lam, dx, da, dy = vjp(lam)
                else:

                    def f(th, x, a, i=i):
                        return th - a * grad(th, x, labels_d, i)

                    _, vjp = torch.func.vjp(f, thetas[i - s], images_d, lr_d)
                    lam, dx, da = vjp(lam)
                    dy = None
                g_img += dx
                g_lr += da
                if dy is not None:
                    g_lab += dy
            del thetas
    return TeslaResult(loss, g_img, g_lr, g_lab)


def _shared_vjp(grad, i, theta, images, lr, labels, lam, learn_labels):  # noqa: ANN001, ANN202
    """One step of TESLA's backward walk over a rank's share of step ``i``'s mini-batch: the
    vector-Jacobian product of ``-lr * g_share`` at ``lam``; the parameters' part (a share of
    ``-lr H lam``) is summed over the ranks before it joins ``lam``, the rest stays this rank's."""
    if learn_labels:

        def f(th, x, a, y):
            return -a * grad(th, x, y, i)

        _, vjp = torch.func.vjp(f, theta, images, lr, labels)
        d_theta, dx, da, dy = vjp(lam)
    else:

        def f(th, x, a):
            return -a * grad(th, x, labels, i)

        _, vjp = torch.func.vjp(f, theta, images, lr)
        (d_theta, dx, da), dy = vjp(lam), None
    return lam + _summed(d_theta), dx, da, dy
