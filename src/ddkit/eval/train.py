"""Training fresh networks on a small training set, one at a time or many at once.

:func:`sgd_train` is the primitive: one network, minibatch training for some epochs, data order
and augmentation drawn from one ``torch.Generator``. :func:`train_networks` trains
``len(seeds)`` independent networks of one architecture under an :class:`EvalProtocol`: one by
one with :func:`sgd_train`, or, without BatchNorm, *together*: parameters are stacked
(``torch.func.stack_module_state``) and the forward pass is ``vmap``-ed, so R small networks
cost about one larger forward. Each run keeps its own initialisation, data order and
augmentation draws (its own generator), so the vectorised and the one-by-one paths compute the
same thing.

The per-sample losses (:func:`loss_function`, :func:`per_sample_loss`, :func:`per_sample_mse`,
:func:`soft_cross_entropy`) moved to :mod:`ddkit.eval.losses`, and the making of a batch
(:class:`Augmenter`, its augmentation and mixing) to :mod:`ddkit.eval.batches`; both are still
importable from here.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, DataError
from ddkit.eval.batches import Augmenter, AugmentFn, BatchTargets, _batch
from ddkit.eval.losses import (
    loss_function,
    per_sample_loss,  # noqa: F401  (still importable from here)
    per_sample_mse,  # noqa: F401  (still importable from here)
    soft_cross_entropy,  # noqa: F401  (still importable from here)
)
from ddkit.eval.protocol import LOSSES, OPTIMIZERS, SCHEDULES, EvalProtocol
from ddkit.levers import (
    CompiledForward,
    precision_context,
    resolve_compile,
    resolve_precision,
    to_channels_last,
)
from ddkit.meter import BUDGET_ENV
from ddkit.models import build_network, has_batchnorm
from ddkit.models.footprint import training_batch

# ``targets_fn(x_augmented, batch_index, run) -> targets`` lets a protocol compute targets on
# the fly (teacher knowledge distillation); by default targets are looked up by index.
TargetsFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# ``targets_at(epoch) -> targets`` gives the stored targets of one epoch (rows as the images),
# for targets that follow a schedule (LPQLD's stepped temperature over stored logits:
# :func:`ddkit.eval.relabel.scheduled_labels`); called at every epoch's start, before any batch
# is drawn, so augmentation and CutMix mix that epoch's targets.
EpochTargets = Callable[[int], torch.Tensor]
# ``rows_at(epoch) -> indices`` gives the rows of the images one epoch walks, where not all (FKD's
# one stored view per image and epoch: :func:`ddkit.eval.prepare.training_data`); the same
# number every epoch.
EpochRows = Callable[[int], torch.Tensor]


def rows_per_epoch(images: torch.Tensor, rows_at: EpochRows | None) -> int:
    """The rows one epoch walks: every image's, or those ``rows_at`` names (:data:`EpochRows`)."""
    return len(images) if rows_at is None else len(rows_at(0))


@dataclass
class TrainResult:
    models: list[nn.Module]
    seconds: float
    images_seen: int
    vectorized: bool


@dataclass
class TrainStats:
    """What :func:`sgd_train` did: epochs, optimiser steps, images seen, wall time and the
    loss of the last batch."""

    epochs: int
    steps: int
    images_seen: int
    seconds: float
    last_loss: float


# ----------------------------------------------------------------------------- ingredients
def build_networks(
    name: str, spec: DatasetSpec, seeds: Sequence[int], device: torch.device | str = "cpu"
) -> list[nn.Module]:
    """Fresh networks, each initialised from its own seed (the global RNG is left as it was)."""
    return [build_network(name, spec, int(s)).to(device) for s in seeds]


def make_optimizer(
    params: list[torch.Tensor],
    name: str,
    lr: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    """``"sgd"`` (with ``momentum``), ``"adamw"`` (decoupled decay) or ``"adam"`` (decay as an L2
    term, as GCond's GCN), each with ``weight_decay``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


#: ``"warmup-cosine"``: epochs of linear warm-up (at most half the run) and the floor its
#: cosine decays to, as FRePo's evaluation (Zhou et al., NeurIPS 2022; its code's eval script:
#: 500 steps from 0, then cosine to 1 % of the step size)
WARMUP_EPOCHS, COSINE_FLOOR = 500, 0.01


def schedule_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based) of ``epochs``: ``"step"`` (x0.1 from
    half the epochs), ``"cosine"`` (from 1 towards 0), ``"constant"``, or ``"warmup-cosine"``
    (from 0 up to 1 over :data:`WARMUP_EPOCHS`, at most half the epochs, then cosine down to
    :data:`COSINE_FLOOR`)."""
    if schedule == "step":
        return 0.1 if epoch >= epochs // 2 else 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "constant":
        return 1.0
    if schedule == "warmup-cosine":
        warm = min(WARMUP_EPOCHS, epochs // 2)
        if epoch < warm:
            return epoch / warm
        t = (epoch - warm) / max(1, epochs - warm)
        return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ConfigError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def lr_factor(protocol: EvalProtocol, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based) under the protocol's schedule."""
    return schedule_factor(protocol.schedule, epoch, protocol.epochs)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# ----------------------------------------------------------------------------- one network
@torch.no_grad()
def sgd_step(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momenta: Sequence[torch.Tensor] | None = None,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> None:
    """One SGD step on parameter tensors, in place: ``torch.optim.SGD``'s rule with dampening
    0 (``d = g + weight_decay * p``; ``m = momentum * m + d``; ``p -= lr * m``), for training
    that keeps its parameters and momenta outside a module's optimiser (flat parameter vectors:
    IDM's model pool, expert trajectories). ``momenta`` start at zero and are updated in place;
    without momentum they are not used."""
    for i, (p, g) in enumerate(zip(params, grads)):
        d = g + weight_decay * p if weight_decay else g
        if momentum:
            d = momenta[i].mul_(momentum).add_(d)
        p.sub_(lr * d)


@torch.no_grad()
def adam_step(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    first: Sequence[torch.Tensor],
    second: Sequence[torch.Tensor],
    *,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """One Adam step on parameter tensors, in place: ``torch.optim.Adam``'s rule without weight
    decay (Kingma & Ba, ICLR 2015, arXiv:1412.6980), ``step`` counting from 1, with the first and
    second moments kept outside an optimiser (flat vectors of a :class:`ModelPool`) and updated
    in place."""
    b1, b2 = betas
    c1, c2 = 1 - b1**step, 1 - b2**step
    for p, g, m, v in zip(params, grads, first, second):
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.addcdiv_(m, (v / c2).sqrt_().add_(eps), value=-lr / c1)


@dataclass(frozen=True)
class TrainRecipe:
    """How :func:`sgd_train` trains one network: ``epochs`` of minibatches of ``batch_size``;
    the optimiser ``"sgd"`` (with ``momentum``) or ``"adamw"``, with ``weight_decay``, at
    ``lr`` times :func:`schedule_factor` of ``schedule``; the per-sample ``loss``
    (``"cross_entropy"``, with ``temperature`` for soft targets, or ``"mse"``); and the speed
    levers: ``precision`` ``"bf16"`` (forward under bf16 autocast; float32 weights, optimiser and
    loss) or ``"fp32"``, ``channels_last`` batches, ``compile`` (the forward through
    ``torch.compile``, eager where it is unavailable: :class:`CompiledForward`); the levers
    change rounding only. Checked when built."""

    epochs: int
    lr: float
    batch_size: int
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"
    loss: str = "cross_entropy"
    temperature: float = 1.0
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(
                f"training needs epochs >= 1, batch_size >= 1 and lr > 0, got {self.epochs}, "
                f"{self.batch_size}, {self.lr}"
            )
        for value, valid, what in (
            (self.optimizer, OPTIMIZERS, "optimizer"),
            (self.schedule, SCHEDULES, "schedule"),
            (self.loss, LOSSES, "loss"),
        ):
            if value not in valid:
                raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")

    @classmethod
    def of_protocol(
        cls,
        protocol: EvalProtocol,
        lr: float,
        device: torch.device | str = "cpu",
        images: int | None = None,
        row_values: int | None = None,
    ) -> TrainRecipe:
        """The recipe ``protocol`` fixes at ``lr``, its levers resolved (:mod:`ddkit.levers`)
        for ``device`` and a training set of ``images`` rows of ``row_values`` values each
        (``None``: a long run of large batches)."""
        steps = (
            None if images is None else protocol.epochs * math.ceil(images / protocol.batch_size)
        )
        batch_values = (
            None if images is None or row_values is None
            else min(images, protocol.batch_size) * row_values
        )  # fmt: skip
        compiled = resolve_compile(protocol.compile, steps, batch_values)
        channels_last = compiled if protocol.channels_last == "auto" else protocol.channels_last
        return cls(
            epochs=protocol.epochs,
            lr=lr,
            batch_size=protocol.batch_size,
            optimizer=protocol.optimizer,
            momentum=protocol.momentum,
            weight_decay=protocol.weight_decay,
            schedule=protocol.schedule,
            loss=protocol.loss,
            temperature=protocol.temperature,
            precision=resolve_precision(protocol.precision, device),
            channels_last=bool(channels_last),
            compile=compiled,
        )

    def with_(self, **changes: Any) -> TrainRecipe:
        return dataclasses.replace(self, **changes)

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """A fresh optimiser of ``params`` as the recipe says (at its base ``lr``)."""
        return make_optimizer(
            params, self.optimizer, self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )


def sgd_train(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | EpochTargets,
    recipe: TrainRecipe,
    *,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    augment: AugmentFn | None = None,
    batch_targets: BatchTargets | None = None,
    on_epoch: Callable[[int], None] | None = None,
    on_batch: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    start_epoch: int = 0,
    data_parallel: bool = False,
    rows_at: EpochRows | None = None,
) -> TrainStats:
    """Train ``net`` in place by minibatch gradient descent on ``(images, targets)`` as
    ``recipe`` says (:class:`TrainRecipe`).

    Every epoch draws a permutation of the rows from ``generator`` and walks it in batches of
    ``recipe.batch_size`` (the last one smaller); ``augment(x, t, generator)`` (e.g. an
    :class:`Augmenter`) then transforms each batch with the same generator, and
    ``batch_targets(x_augmented, index)``, when given, replaces its targets (teacher KD).
    ``optimizer``: an optimiser of ``net``'s parameters that the caller keeps (its state carries
    over between calls; the recipe then sets only its learning rate), else one the recipe
    builds. ``targets`` are classes ``(N,)`` or vectors ``(N, K)``, or ``targets(epoch)``
    giving them anew at every epoch's start (:data:`EpochTargets`). ``on_epoch(epoch)`` is
    called after every epoch (``net`` is put back in train mode at the start of each);
    ``on_batch(epoch, index, logits)`` sees every batch's rows and detached logits before the
    update (e.g. forgetting events). No other randomness is used, so the same generator state
    gives the same network. Returns with ``net`` in eval mode. ``rows_at(epoch)``: the rows an
    epoch walks (:data:`EpochRows`; default: all), permuted the same way.

    ``start_epoch`` resumes an interrupted run: epochs before it are skipped (the schedule still
    counts them). The caller restores ``net``'s weights, the state of an optimiser it keeps and
    the generator's state as they were after epoch ``start_epoch - 1``; the result is then
    bit-identical to an uninterrupted run. The returned stats count the epochs run here.

    ``data_parallel``: inside a :mod:`ddkit.distributed` session, every rank (holding the same
    network, optimiser and generator) draws every batch and its augmentation as one process
    does, keeps every ``WORLD_SIZE``-th row of it from position ``RANK``, and backpropagates
    its rows' share of the batch's mean loss; the ranks' gradients are summed
    (:func:`ddkit.distributed.sum_gradients`) and BatchNorm normalises by the whole batch
    (:func:`ddkit.distributed.synced_batchnorm`), so every rank takes the one-process step up
    to the rounding of the sums. ``on_batch`` then sees this rank's rows only. Outside a
    session it changes nothing.
    """
    from ddkit import distributed

    r = recipe
    if not 0 <= start_epoch <= r.epochs:
        raise ConfigError(f"sgd_train needs 0 <= start_epoch <= {r.epochs}, got {start_epoch}")
    loss_fn = loss_function(r.loss, r.temperature)
    opt = optimizer or r.make_optimizer(list(net.parameters()))
    forward = CompiledForward(net) if r.compile else net
    n = rows_per_epoch(images, rows_at)
    bs = min(r.batch_size, n)
    piece = _training_piece(net, bs, images)
    steps, last = 0, torch.zeros(())
    share = distributed.active() if data_parallel else None
    whole_batch = distributed.synced_batchnorm(net) if share else contextlib.nullcontext()
    t0 = time.perf_counter()
    with whole_batch:
        for epoch in range(start_epoch, r.epochs):
            _set_lr(opt, r.lr * schedule_factor(r.schedule, epoch, r.epochs))
            perm = _epoch_order(rows_at, epoch, n, generator, images.device)
            stored = _targets_of_epoch(targets, epoch, images.device, len(images))
            net.train()
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                x, t = _batch(images, stored, idx, generator, augment, batch_targets)
                if share is not None:  # the whole batch was drawn; this rank trains on its rows
                    rows = slice(share.rank, None, share.world_size)
                    x, t, idx = x[rows], t[rows], idx[rows]
                if r.channels_last:
                    x = to_channels_last(x)
                opt.zero_grad(set_to_none=True)
                if piece < len(x):
                    logits, last = _backward_in_pieces(
                        forward, loss_fn, x, t, piece, min(bs, n - start), r.precision, net, share
                    )
                else:
                    with precision_context(r.precision, images.device):
                        logits = forward(x).float()
                    last = _backward(loss_fn(logits, t), min(bs, n - start), net, share)
                if on_batch is not None:
                    on_batch(epoch, idx, logits.detach())
                opt.step()
                steps += 1
            if on_epoch:
                on_epoch(epoch)
    net.eval()
    run = r.epochs - start_epoch
    return TrainStats(run, steps, run * n, time.perf_counter() - t0, float(last))


def _epoch_order(
    rows_at: EpochRows | None,
    epoch: int,
    n: int,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """The rows ``epoch`` walks, in the order a permutation drawn from ``generator`` gives:
    all ``n`` rows, or the ``n`` rows ``rows_at(epoch)`` names."""
    perm = torch.randperm(n, generator=generator)
    if rows_at is not None:
        rows = rows_at(epoch)
        if len(rows) != n:
            raise DataError(f"epoch {epoch} walks {len(rows):,} rows, not {n:,} as the others")
        perm = rows[perm]
    return perm.to(device)


def _targets_of_epoch(
    targets: torch.Tensor | EpochTargets, epoch: int, device: torch.device, rows: int
) -> torch.Tensor:
    """The stored targets of ``epoch``: ``targets`` itself, or ``targets(epoch)`` on
    ``device``, which must give one target per image (``rows``)."""
    if not callable(targets):
        return targets
    out = targets(epoch)
    if len(out) != rows:
        raise DataError(f"epoch {epoch}'s targets have {len(out):,} rows for {rows:,} images")
    return out.to(device)


def _training_piece(net: nn.Module, batch_size: int, images: torch.Tensor) -> int:
    """The rows of a batch that one forward and backward may hold on the CPU: the whole batch
    where its kept activations fit half the memory budget, else as many rows as do
    (:func:`~ddkit.models.footprint.training_batch`; said once). On an accelerator: the batch."""
    if images.device.type != "cpu":
        return batch_size
    piece = training_batch(net, cap=batch_size)
    if piece < batch_size:
        h, w = images.shape[-2:]
        warnings.warn(
            f"a training batch of {batch_size:,} {h}x{w} images does not fit the memory budget "
            f"(${BUDGET_ENV}): each is trained in pieces of {piece:,} with their gradients "
            "summed (the same step; a BatchNorm network normalises each piece by its own "
            "statistics)",
            stacklevel=3,
        )
    return piece


def _backward_in_pieces(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    piece: int,
    batch_size: int,
    precision: str,
    net: nn.Module,
    share: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_backward` of a batch ``(x, t)`` a ``piece`` of rows at a time: each piece's
    share of the batch's mean loss backpropagated, the gradients summed in ``net``, so only one
    piece's activations are alive. Returns the batch's logits (detached) and mean loss."""
    total, logits = x.new_zeros((), dtype=torch.float32), []
    denominator = len(x) if share is None else batch_size
    for start in range(0, len(x), piece):
        rows = slice(start, start + piece)
        with precision_context(precision, x.device):
            out = forward(x[rows]).float()
        loss = loss_fn(out, t[rows]).sum() / denominator
        loss.backward()
        total += loss.detach()
        logits.append(out.detach())
    return torch.cat(logits), total if share is None else _summed_over_ranks(net, total)


def _backward(losses: torch.Tensor, batch_size: int, net: nn.Module, share: Any) -> torch.Tensor:
    """Backpropagate a batch's mean loss into ``net``'s gradients and return it (detached).
    With ``share`` (data-parallel training, see :func:`sgd_train`) ``losses`` are this rank's
    rows of a batch of ``batch_size``: each rank backpropagates its rows' share of the mean and
    the ranks' gradients (and shares) are summed."""
    if share is None:
        loss = losses.mean()
        loss.backward()
        return loss.detach()
    loss = losses.sum() / batch_size
    loss.backward()
    return _summed_over_ranks(net, loss)


def _summed_over_ranks(net: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """After each rank's backward pass of its rows' share of a batch's mean ``loss``: the
    ranks' gradients in ``net`` and their shares summed; returns the batch's loss (detached)."""
    from ddkit import distributed

    total = loss.detach().reshape(1)
    distributed.sum_gradients(list(net.parameters()), total)
    return total[0]


# ----------------------------------------------------------------------------- many networks
def run_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """Each run's data-order / augmentation stream (offset from its initialisation seed)."""
    return [torch.Generator().manual_seed(int(s) + 7919) for s in seeds]


def _can_vectorize(vectorize: bool | None, device: torch.device, nets: list[nn.Module]) -> bool:
    if vectorize is None:  # auto: vmap pays off on GPUs; on CPU grouped convs lose (BENCHMARKS.md)
        vectorize = device.type != "cpu"
    return bool(vectorize) and len(nets) > 1 and not has_batchnorm(nets[0])


def _run_targets(targets_fn: TargetsFn | None, run: int) -> BatchTargets | None:
    if targets_fn is None:
        return None
    return lambda x, idx: targets_fn(x, idx, run)


def _train_one_by_one(
    nets: list[nn.Module],
    gens: list[torch.Generator],
    images: torch.Tensor,
    targets: torch.Tensor | EpochTargets,
    protocol: EvalProtocol,
    augment: Augmenter,
    lr: float,
    targets_fn: TargetsFn | None,
    progress: Callable[[int], None] | None,
    rows_at: EpochRows | None,
) -> None:
    walked = rows_per_epoch(images, rows_at)
    recipe = TrainRecipe.of_protocol(
        protocol, lr, images.device, walked, images[0].numel() if len(images) else None
    )
    for run, (net, g) in enumerate(zip(nets, gens)):
        sgd_train(
            net,
            images,
            targets,
            recipe,
            generator=g,
            augment=augment,
            batch_targets=_run_targets(targets_fn, run),
            on_epoch=(lambda _epoch: progress(1)) if progress else None,
            rows_at=rows_at,
        )


def _train_vectorized(
    nets: list[nn.Module],
    gens: list[torch.Generator],
    images: torch.Tensor,
    targets: torch.Tensor | EpochTargets,
    protocol: EvalProtocol,
    augment: Augmenter,
    lr: float,
    targets_fn: TargetsFn | None,
    progress: Callable[[int], None] | None,
    rows_at: EpochRows | None,
) -> None:
    """All networks in one ``vmap``-ed forward per batch; each run draws from its generator."""
    base = copy.deepcopy(nets[0]).to("meta")
    params, buffers = stack_module_state(nets)
    opt = make_optimizer(
        list(params.values()),
        protocol.optimizer,
        lr,
        momentum=protocol.momentum,
        weight_decay=protocol.weight_decay,
    )
    loss_fn = loss_function(protocol.loss, protocol.temperature)

    def fwd(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = vmap(fwd, randomness="different")
    precision = resolve_precision(protocol.precision, images.device)
    run_targets = [_run_targets(targets_fn, r) for r in range(len(nets))]
    n = rows_per_epoch(images, rows_at)
    bs = min(protocol.batch_size, n)
    for epoch in range(protocol.epochs):
        _set_lr(opt, lr * lr_factor(protocol, epoch))
        perms = [_epoch_order(rows_at, epoch, n, g, images.device) for g in gens]
        stored = _targets_of_epoch(targets, epoch, images.device, len(images))
        for start in range(0, n, bs):
            xs, ts = zip(
                *(
                    _batch(images, stored, p[start : start + bs], g, augment, bt)
                    for p, g, bt in zip(perms, gens, run_targets)
                )
            )
            with precision_context(precision, images.device):
                logits = batched(params, buffers, torch.stack(xs)).float()
            loss = loss_fn(logits, torch.stack(ts)).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress:
            progress(len(nets))
    with torch.no_grad():
        for r, net in enumerate(nets):
            net.load_state_dict({k: v[r] for k, v in {**params, **buffers}.items()})


def train_networks(
    model: str,
    spec: DatasetSpec,
    images: torch.Tensor,
    targets: torch.Tensor | EpochTargets,
    protocol: EvalProtocol,
    seeds: Sequence[int],
    *,
    lr: float,
    vectorize: bool | None = None,
    targets_fn: TargetsFn | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
    rows_at: EpochRows | None = None,
) -> TrainResult:
    """Train one fresh ``model`` per seed on ``(images, targets)`` under ``protocol``
    (``rows_at(epoch)``: the rows each epoch walks, :data:`EpochRows`; default: all).

    ``targets`` are hard labels ``(N,)`` or vectors ``(N, K)``, or ``targets(epoch)`` giving
    them at every epoch's start (:data:`EpochTargets`, in both paths); ``targets_fn(x, index,
    run)`` computes them on the fly instead. The loss is the protocol's. Returns the trained networks
    in eval mode. ``progress(k)`` is called as training advances with the number ``k`` of
    network-epochs just completed (all ``len(seeds)`` per epoch when vectorised). ``vectorize``:
    ``True`` trains the networks together with ``vmap``, ``False`` one after another with
    :func:`sgd_train`, ``None`` picks by device (vmap on accelerators, one by one on CPU, where
    it measured faster). The protocol's ``channels_last`` and ``compile`` levers apply to the
    one-by-one path; the vmap path runs without them.
    """
    device = torch.device(device)
    images = images.to(device)
    targets = targets if callable(targets) else targets.to(device)
    nets = build_networks(model, spec, seeds, device)
    gens = run_generators(seeds)
    augment = Augmenter.from_protocol(protocol, spec)
    vectorized = _can_vectorize(vectorize, device, nets)
    train = _train_vectorized if vectorized else _train_one_by_one
    t0 = time.perf_counter()
    train(nets, gens, images, targets, protocol, augment, lr, targets_fn, progress, rows_at)
    for net in nets:
        net.eval()
    seen = protocol.epochs * rows_per_epoch(images, rows_at) * len(nets)
    return TrainResult(nets, time.perf_counter() - t0, seen, vectorized)


@torch.no_grad()
def accuracy(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> float:
    """Top-1 accuracy of ``net`` (in eval mode) on a labelled set (``precision`` as in
    :func:`sgd_train`, resolved)."""
    return fraction_correct(predicted_classes(net, images, batch_size, precision), labels)


def fraction_correct(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``predictions`` equal to ``labels`` (0 for no rows)."""
    return int((predictions.cpu() == labels.cpu()).sum()) / max(1, len(labels))


@torch.no_grad()
def predicted_classes(
    net: nn.Module, images: torch.Tensor, batch_size: int | None = None, precision: str = "fp32"
) -> torch.Tensor:
    """The arg-max class ``(N,)`` (on the CPU) that ``net``, in eval mode, gives each image
    (``batch_size`` rows at a time; default: as :func:`~ddkit.models.predict` sizes them)."""
    from ddkit.models import predict

    net.eval()
    with precision_context(precision, images.device):
        return predict(net, images, batch_size=batch_size, post=lambda z: z.argmax(1).cpu())
