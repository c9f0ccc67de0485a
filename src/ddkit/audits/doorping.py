"""DOORPING (Liu et al., NDSS 2023, arXiv:2301.01197), the backdoor attack that re-optimises its
trigger while a set is distilled: :class:`DoorpingConfig` (its settings), the methods it refuses
(:func:`doorping_refusal`), the trigger step on a network's top embedding neurons
(:func:`top_neurons`, :func:`optimise_trigger`) and :class:`DoorpingCallback`, which runs that
step during any method's fit and re-stamps the poisoned rows (and the method's own copies of
them) with the new trigger. The attack and its deviations from the authors' code are described
in :mod:`ddkit.audits.backdoor`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.audits.backdoor_trigger import Poisoned, Trigger, stamp
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.methods.base import Callback, Distiller
from ddkit.rng import derive_seed, draw_seed


@dataclass(frozen=True)
class DoorpingConfig:
    """DOORPING's trigger updates (:mod:`ddkit.audits.backdoor`): every ``every`` iterations a fresh
    ``model`` trained ``net_epochs`` epochs (SGD, ``net_lr``) on the current set; Adam
    (``lr``, pixel scale) for at most ``steps`` steps on the ``topk`` neurons, towards ``alpha``
    times their first activation on ``carriers`` stamped poisoned rows, stopping once the loss is
    below ``threshold``."""

    every: int = 1
    model: str = "auto"  # auto: the distilling method's own network (else the dataset's convnet)
    net_epochs: int = 10
    net_lr: float = 0.01
    topk: int = 1
    alpha: float = 10.0
    steps: int = 100
    lr: float = 0.02
    threshold: float = 0.5
    carriers: int = 128

    def __post_init__(self) -> None:
        ints = {"every": 1, "net_epochs": 0, "topk": 1, "steps": 1, "carriers": 1}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"doorping {name} must be an integer >= {low}, got {v!r}")
        for name in ("net_lr", "alpha", "lr"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"doorping {name} must be > 0, got {getattr(self, name)!r}")
        if not float(self.threshold) >= 0:
            raise ConfigError(f"doorping threshold must be >= 0, got {self.threshold!r}")

    def check(self, spec: DatasetSpec) -> None:
        """Refuse, before any work, a ``model`` DOORPING cannot read neurons from on ``spec``'s
        images, or a ``topk`` larger than its embedding (one untrained network is built)."""
        from ddkit.models import build_network

        top_neurons(build_network(self.network_for(None), spec, 0), self.topk)

    def network_for(self, method: Distiller | None) -> str:
        """The trigger network's name: ``model``, or for ``"auto"`` the network ``method``
        distils with (DC's matching network in the authors' code), else ``"convnet"``."""
        if self.model != "auto":
            return self.model
        own = getattr(getattr(method, "config", None), "model", None)
        return own if isinstance(own, str) else "convnet"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DoorpingConfig:
        """From ``key=value`` options; an unknown key is a one-line :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown doorping option {unknown[0]!r}; valid: {', '.join(sorted(known))}"
            )
        return cls(**options)


#: Method families (folders of :mod:`ddkit.methods`) whose steps never read the real images.
NO_REAL_IMAGES_IN_STEPS = {
    "trajectory": "it learns from expert trajectories trained before distillation, so its "
    "steps never read the real images",
    "decoupled": "it learns from a teacher trained before distillation, so its steps never "
    "read the real images",
}


def doorping_refusal(cls: type[Distiller]) -> str | None:
    """Why DOORPING cannot attack method class ``cls`` (a one-line error), or ``None``."""
    why = None
    if cls.kind == "selector":
        why = "it is a selector: it picks real rows once and has no steps to re-stamp between"
    parts = cls.__module__.split(".")
    if len(parts) > 2 and parts[:2] == ["ddkit", "methods"]:
        why = why or NO_REAL_IMAGES_IN_STEPS.get(parts[2])
    return (
        None if why is None else f"DOORPING cannot attack {cls.name!r}: {why}; use --attack naive"
    )


def real_image_copies(method: Distiller, images: torch.Tensor) -> list[torch.Tensor]:
    """Tensors of ``method`` (trailing-underscore attributes) that hold their own copy of the
    real ``images`` (another device or dtype), to be re-stamped with them. A tensor of their
    shape with other values, or another dataset, is a transformed copy: a one-line
    :class:`ConfigError`, since re-stamping could not reach it."""
    copies = []
    for key, value in vars(method).items():
        if not key.endswith("_") or key == "train_":
            continue
        if isinstance(value, ImageDataset) and value.images is not images:
            raise ConfigError(
                f"{method.name!r} keeps a transformed copy of the real images ({key}); "
                "DOORPING cannot re-stamp it"
            )
        if not isinstance(value, torch.Tensor) or value.shape != images.shape:
            continue
        if value.data_ptr() == images.data_ptr():
            continue
        if not torch.allclose(value.detach().cpu().to(images.dtype), images, atol=1e-5):
            raise ConfigError(
                f"{method.name!r} keeps a transformed copy of the real images ({key}); "
                "DOORPING cannot re-stamp it"
            )
        copies.append(value)
    return copies


def top_neurons(net: nn.Module, k: int) -> torch.Tensor:
    """The ``k`` embedding features of ``net`` with the largest summed absolute weights into
    its classifier."""
    weight = getattr(getattr(net, "classifier", None), "weight", None)
    if weight is None or not hasattr(net, "embed"):
        raise ConfigError("DOORPING needs a network with embed() and a linear classifier")
    if k > weight.shape[1]:
        raise ConfigError(f"doorping topk {k} exceeds the {weight.shape[1]} embedding features")
    return weight.detach().abs().sum(0).topk(k).indices


def optimise_trigger(
    net: nn.Module,
    carriers: torch.Tensor,
    spec: DatasetSpec,
    mask: torch.Tensor,
    pattern: torch.Tensor,
    neurons: torch.Tensor,
    config: DoorpingConfig,
) -> tuple[torch.Tensor, float]:
    """DOORPING's trigger step: Adam on the patch (kept in ``[0, 1]``), stamped on the
    normalised ``carriers`` images, towards ``alpha`` times the first activation of ``neurons``
    of ``net``'s embedding. Returns the new pattern and the last loss."""
    net.eval().requires_grad_(False)
    p = (pattern * mask).clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=config.lr, betas=(0.9, 0.99))
    goal, loss = None, torch.zeros(())
    for _ in range(config.steps):
        act = net.embed(stamp(carriers, spec, mask, p))[:, neurons]
        if goal is None:
            first = act.detach()
            goal = config.alpha * torch.where(first != 0, first, torch.ones_like(first))
        loss = F.mse_loss(act, goal)
        if float(loss.detach()) < config.threshold:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        p.grad.mul_(mask)
        opt.step()
        with torch.no_grad():
            p.clamp_(0.0, 1.0)
    return (p.detach() * mask), float(loss.detach())


class DoorpingCallback(Callback):
    """Re-optimises the trigger during a fit and re-stamps ``poisoned.rows`` of the method's
    real data with it (:mod:`ddkit.audits.backdoor`). The fit must run on ``poisoned.train``; the rows are
    changed in place. ``pattern_`` is the current trigger, ``history_`` one entry per update."""

    def __init__(
        self, poisoned: Poisoned, trigger: Trigger, config: DoorpingConfig, *, seed: int
    ) -> None:
        self.poisoned, self.config = poisoned, config
        spec = poisoned.train.spec
        self.mask_ = trigger.mask(spec)
        self.pattern_ = trigger.pattern(spec)
        self.generator_ = torch.Generator().manual_seed(derive_seed(seed, "doorping"))
        self.history_: list[dict[str, Any]] = []
        self.copies_: list[torch.Tensor] = []
        self.model_ = config.network_for(None)

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        reason = doorping_refusal(type(method))
        if reason is not None:
            raise ConfigError(reason)
        images = self.poisoned.train.images
        if method.train_.images is not images:
            raise ConfigError("DOORPING's callback must see the fit of its poisoned split")
        self.copies_ = real_image_copies(method, images)
        self.model_ = self.config.network_for(method)

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        if (iteration + 1) % self.config.every:
            return
        net = self._network(method.result())
        neurons = top_neurons(net, self.config.topk)
        spec = self.poisoned.train.spec
        rows = self.poisoned.rows
        pick = torch.randperm(len(rows), generator=self.generator_)[: self.config.carriers]
        carriers = self.poisoned.train.images[rows[pick]]  # stamped rows: restamping replaces
        self.pattern_, loss = optimise_trigger(
            net, carriers, spec, self.mask_, self.pattern_, neurons, self.config
        )
        self._restamp()
        self.history_.append(
            {"iteration": iteration + 1, "loss": loss, "neurons": neurons.tolist()}
        )

    def _network(self, syn: SyntheticSet) -> nn.Module:
        """A fresh network trained ``net_epochs`` epochs on the current set (hard labels)."""
        from ddkit.eval.train import TrainRecipe, sgd_train
        from ddkit.models import build_network

        c = self.config
        net = build_network(self.model_, syn.spec, draw_seed(self.generator_))
        if c.net_epochs:
            g = torch.Generator().manual_seed(draw_seed(self.generator_))
            images = syn.images
            zca = syn.zca()
            if zca is not None:
                images = zca.inverse(images)
            recipe = TrainRecipe(epochs=c.net_epochs, lr=c.net_lr, batch_size=256)
            sgd_train(net, images, syn.hard_labels, recipe, generator=g)
        return net

    def _restamp(self) -> None:
        train, rows = self.poisoned.train, self.poisoned.rows
        with torch.no_grad():
            stamped = stamp(train.images[rows], train.spec, self.mask_, self.pattern_)
            train.images[rows] = stamped
            for copy in self.copies_:
                copy[rows.to(copy.device)] = stamped.to(copy.device, copy.dtype)
