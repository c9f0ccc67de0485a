"""Backdoor attacks through distillation (``ddkit audit backdoor``).

An attacker who controls part of the training data stamps a trigger on some rows and relabels
them to a target class *before* distillation; the question is whether networks trained on the
distilled set learn the backdoor. Two attacks of Liu et al., "Backdoor Attacks Against Dataset
Distillation" (NDSS 2023, arXiv:2301.01197):

* ``naive`` (their NAIVEATTACK, i.e. BadNets, Gu, Dolan-Gavitt & Garg, arXiv:1708.06733): a
  square patch of ``size`` pixels, every pixel ``value`` (on the ``[0, 1]`` pixel scale) at
  ``position``, is stamped on a random ``fraction`` of the training rows of the non-target
  classes, which are relabelled to ``target``; then any registered method distils the poisoned
  split as it would a clean one.
* ``doorping`` (their DOORPING): the same poisoned rows, but the trigger is re-optimised while
  the set is distilled, and the poisoned rows are re-stamped with it each time, so the set keeps
  up with the trigger. :class:`DoorpingCallback` does this for any method through the
  :class:`~ddkit.methods.base.Callback` hook at the end of a step: every ``every`` iterations a
  fresh network (``model``; by default the one the method distils with) is trained for
  ``net_epochs`` epochs on the current synthetic set
  (as DC's matching network is trained on it between matching steps), its ``topk`` embedding
  neurons most strongly wired to the classifier are chosen, and the trigger patch, stamped on
  ``carriers`` poisoned rows drawn at random, is moved by Adam until those neurons reach
  ``alpha`` times their first activation (mean squared error, stopped early below
  ``threshold``); then the poisoned rows of
  the method's real data are stamped with the new trigger. Methods whose steps never read the
  real images are refused in one line: trajectory matching learns from expert trajectories and
  the decoupled methods from a teacher, both trained before distillation, and selectors have no
  steps. The networks are tested with the final trigger; a set initialised from real images
  starts from rows stamped with the first one, so DOORPING needs enough iterations to move the
  set along with its trigger.

Metrics, per network trained on a set as the evaluation protocol trains it: clean test accuracy,
and the attack success rate (ASR): the fraction of *triggered test images of the non-target
classes* that the network assigns to the target class. Target-class images are left out because
a network that ignores the trigger still labels most of them ``target`` -- they are that class
-- which would add about ``1/K`` (the target's share of the test split) to the ASR of a network
with no backdoor at all (Liu et al.'s code triggers and counts the whole test split). Floors,
for comparison: the ASR of a set distilled by the same method from the clean split, and of
random real images (same IPC) of the poisoned split.

Deviations from Liu et al.'s code: the poisoned rows are drawn among the non-target classes (a
stamped target-class row teaches nothing) and ``fraction`` is of those rows; the initial trigger
is the constant patch, not random values; the trigger is optimised on the pixel scale and kept
in ``[0, 1]`` (theirs is unbounded, in normalised units, with Adam at lr 0.08 -- about 0.02 pixels
for a std near 0.25 -- and up to 1,000 steps); it is optimised stamped on real poisoned rows,
not alone on an empty image: on MNIST, whose background is black, a patch alone on a black image
met its target by fading to black (an instance-normalised network fires on an empty image), a
trigger no network can see; the neurons are features of the network's
embedding (the classifier's input), ranked by the summed absolute classifier weights leaving
them (theirs: the outputs of the layer before the classifier, ranked by the summed weights
entering them); where those neurons are silent on the first trigger, the target is ``alpha``
itself (theirs stays 0); the network is a fresh one trained on the current synthetic set (theirs
is DC's own matching network, so only DC-like methods had one).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.audits.base import (
    Audit,
    Budgets,
    add_training_arguments,
    audit_record,
    budgets_json,
    check_fraction,
    distil,
    iterations_of,
    kept_json,
    models_option,
    random_real,
    register_audit,
    train_on_set,
    unit_key,
)
from ddkit.commands import device_option, number_list
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.methods import method_names
from ddkit.methods.base import Callback, Distiller
from ddkit.progress import ProgressSetting
from ddkit.rng import derive_seed, draw_seed

ATTACKS = ("naive", "doorping")
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


# ============================================================================ the trigger
@dataclass(frozen=True)
class Trigger:
    """A square patch of ``size`` x ``size`` pixels, all channels ``value`` (pixel scale
    ``[0, 1]``), at ``position``: a corner (one pixel in from the border, as BadNets' code,
    where the image leaves room), ``"center"``, or ``"ROW,COL"`` (its top-left pixel)."""

    size: int = 2
    position: str = "bottom-right"
    value: float = 1.0

    def check(self, spec: DatasetSpec) -> None:
        """A one-line :class:`ConfigError` unless the patch fits ``spec``'s images."""
        h, w = spec.image_size
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"trigger size must be an integer >= 1, got {self.size!r}")
        if self.size > min(h, w):
            raise ConfigError(
                f"trigger of {self.size}x{self.size} pixels is larger than the {h}x{w} images "
                f"of {spec.name!r}"
            )
        if not 0.0 <= float(self.value) <= 1.0:
            raise ConfigError(f"trigger value is a pixel value in [0, 1], got {self.value!r}")
        self.corner(spec)

    def corner(self, spec: DatasetSpec) -> tuple[int, int]:
        """The patch's top-left pixel ``(row, col)`` in ``spec``'s images."""
        h, w = spec.image_size
        s = self.size
        if self.position in POSITIONS:
            margin = 1 if s + 2 <= min(h, w) else 0
            rows = {"top": margin, "bottom": h - s - margin, "center": (h - s) // 2}
            cols = {"left": margin, "right": w - s - margin, "center": (w - s) // 2}
            vertical, _, horizontal = self.position.partition("-")
            return rows[vertical], cols[horizontal or "center"]
        try:
            r, c = (int(v) for v in str(self.position).split(","))
        except ValueError:
            raise ConfigError(
                f"trigger position must be one of {', '.join(POSITIONS)} or 'ROW,COL', "
                f"got {self.position!r}"
            ) from None
        if not (0 <= r <= h - s and 0 <= c <= w - s):
            raise ConfigError(
                f"a {s}x{s} trigger at row {r}, column {c} does not fit the {h}x{w} images"
            )
        return r, c

    def mask(self, spec: DatasetSpec) -> torch.Tensor:
        """``(1, C, H, W)``: 1 inside the patch, 0 elsewhere."""
        r, c = self.corner(spec)
        m = torch.zeros(1, *spec.shape)
        m[..., r : r + self.size, c : c + self.size] = 1.0
        return m

    def pattern(self, spec: DatasetSpec) -> torch.Tensor:
        """``(1, C, H, W)`` pixels: ``value`` inside the patch, 0 elsewhere."""
        return self.mask(spec) * float(self.value)


def stamp(
    images: torch.Tensor, spec: DatasetSpec, mask: torch.Tensor, pattern: torch.Tensor
) -> torch.Tensor:
    """Normalised ``images`` with the pixels under ``mask`` replaced by ``pattern`` (pixel
    scale), i.e. ``x * (1 - mask) + mask * normalise(pattern)``."""
    if spec.transform is not None:
        raise DataError(f"cannot stamp a trigger on {spec.transform}-transformed images")
    mean = torch.tensor(spec.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=images.dtype).view(1, -1, 1, 1)
    m = mask.to(images.dtype).to(images.device)
    patch = ((pattern.to(images.dtype) - mean) / std).to(images.device)
    return images * (1 - m) + m * patch


@dataclass
class Poisoned:
    """A poisoned copy of a training split: ``rows`` (stamped, relabelled to ``target``)."""

    train: ImageDataset
    rows: torch.Tensor
    target: int


def check_target(target: int, spec: DatasetSpec) -> int:
    """``target`` as a class index of ``spec``, else a one-line :class:`ConfigError`."""
    k = spec.num_classes
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < k:
        raise ConfigError(
            f"target class {target!r} does not exist: {spec.name!r} has classes 0..{k - 1}"
        )
    return target


def poison(
    train: ImageDataset,
    trigger: Trigger,
    *,
    fraction: float,
    target: int,
    generator: torch.Generator,
) -> Poisoned:
    """Stamp ``trigger`` on ``round(fraction * n)`` of
    the ``n`` rows whose class is not ``target`` (drawn from ``generator``) and relabel them to
    ``target``. ``train`` is left as it is."""
    trigger.check(train.spec)
    check_target(target, train.spec)
    fraction = check_fraction(fraction, "poison fraction")
    others = torch.nonzero(train.labels != target).flatten()
    n = int(round(fraction * len(others)))
    rows = others[torch.randperm(len(others), generator=generator)[:n]].sort().values
    images, labels = train.images.clone(), train.labels.clone()
    mask = trigger.mask(train.spec)
    images[rows] = stamp(images[rows], train.spec, mask, trigger.pattern(train.spec))
    labels[rows] = target
    return Poisoned(ImageDataset(images, labels, train.spec), rows, target)


def triggered_test(
    test: ImageDataset, mask: torch.Tensor, pattern: torch.Tensor, target: int
) -> ImageDataset:
    """The test images of the classes other than ``target``, stamped, with their true labels
    (module docstring: target-class images would inflate the ASR by about ``1/K``)."""
    rows = torch.nonzero(test.labels != target).flatten()
    return ImageDataset(stamp(test.images[rows], test.spec, mask, pattern), test.labels[rows],
                        test.spec)  # fmt: skip


def attack_success_rate(net: nn.Module, triggered: ImageDataset, target: int) -> float:
    """The fraction of ``triggered`` (stamped non-target test images, in the network's space)
    that ``net`` assigns to ``target``."""
    from ddkit.models import predict

    net.eval()
    with torch.no_grad():
        pred = predict(net, triggered.images, post=lambda z: z.argmax(1).cpu())
    return float((pred == target).float().mean()) if len(pred) else 0.0


# ============================================================================ DOORPING
@dataclass(frozen=True)
class DoorpingConfig:
    """DOORPING's trigger updates (module docstring): every ``every`` iterations a fresh
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
    real data with it (module docstring). The fit must run on ``poisoned.train``; the rows are
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


# ============================================================================ the audit
def _scores(
    syn: SyntheticSet,
    pattern: torch.Tensor,
    *,
    name: str,
    splits: DatasetSplits,
    mask: torch.Tensor,
    target: int,
    protocol: EvalProtocol,
    seed: int,
    device: torch.device | str,
    progress: ProgressSetting,
) -> dict[str, Any]:
    """Clean accuracy and ASR of networks trained on ``syn`` (as ``protocol`` trains them)."""
    from ddkit.eval.evaluate import test_in_set_space
    from ddkit.eval.train import accuracy

    trained = train_on_set(syn, splits.test, protocol, seed=seed, device=device, progress=progress)
    triggered = test_in_set_space(syn, triggered_test(splits.test, mask, pattern, target))
    test = trained.test
    nets = [
        {
            **row,
            "clean_accuracy": accuracy(net, test.images.to(device), test.labels),
            "asr": attack_success_rate(net, _to(triggered, device), target),
        }
        for row, net in zip(trained.rows(), trained.networks)
    ]
    info = {k: syn.meta[k] for k in ("method", "ipc", "seed", "iterations") if k in syn.meta}
    return {
        **info,
        "num_images": len(syn),
        "train_seconds": trained.seconds,
        "networks": nets,
        "mean": {k: statistics.fmean(n[k] for n in nets) for k in ("clean_accuracy", "asr")},
    }


def _to(data: ImageDataset, device: torch.device | str) -> ImageDataset:
    if torch.device(device).type == "cpu":
        return data
    return ImageDataset(data.images.to(device), data.labels.to(device), data.spec)


def _check_attack(attack: str, methods: str | Sequence[str], ipcs: Sequence[int]) -> list[str]:
    """The methods, checked (names, DOORPING support, IPC) before any work."""
    from ddkit.methods import METHODS

    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")
    names = method_names(methods)
    if attack == "doorping":
        for m in names:
            reason = doorping_refusal(METHODS.get(m))
            if reason is not None:
                raise ConfigError(reason)
    number_list(list(ipcs), "IPC", kind=int, minimum=1)
    return names


def _poisoned_ipc_check(poisoned: Poisoned, ipcs: Sequence[int], fraction: float) -> None:
    try:
        for ipc in ipcs:
            poisoned.train.check_ipc(ipc)
    except ConfigError as e:
        raise ConfigError(f"after poisoning {fraction:g} of the non-target rows, {e}") from None


def backdoor_audit(
    splits: DatasetSplits,
    methods: Sequence[str],
    ipcs: Sequence[int],
    *,
    attack: str = "naive",
    trigger: Trigger = Trigger(),
    fraction: float = 0.1,
    target: int = 0,
    iterations: int | Budgets | None = None,
    options: dict[str, Any] | None = None,
    doorping: DoorpingConfig = DoorpingConfig(),
    protocol: str | EvalProtocol = "dc",
    runs: int | None = None,
    epochs: int | None = None,
    models: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    keep: Path | None = None,
    progress: ProgressSetting = False,
) -> dict[str, Any]:
    """Poison ``splits.train`` (``trigger`` on ``fraction`` of the non-target rows, relabelled
    to ``target``), distil it with each of ``methods`` at each of ``ipcs`` (``attack``:
    ``"naive"`` or ``"doorping"``), and measure clean accuracy and ASR (module docstring) of
    networks trained on each backdoored set, on the same method's set distilled from the clean
    split, and on random real images of the poisoned split.

    Everything is checked before any work. Every set is distilled with ``seed`` and every
    network trained with the same run seeds; the poisoned rows come from a generator seeded
    by ``(seed, "backdoor-rows")``. Same seed => same result. With ``keep`` (a folder), each
    method's rows are kept there as soon as they exist and a re-run reuses them
    (:func:`~ddkit.audits.base.kept_json`). Returns a JSON-ready dict."""
    names = _check_attack(attack, methods, ipcs)
    spec = splits.spec
    trigger.check(spec)
    check_target(target, spec)
    fraction = check_fraction(fraction, "poison fraction")
    p = get_protocol(protocol).with_(
        models=tuple(models) if models else None, runs=runs, epochs=epochs
    )
    rows_seed = derive_seed(seed, "backdoor-rows")
    poisoned = poison(splits.train, trigger, fraction=fraction, target=target,
                      generator=torch.Generator().manual_seed(rows_seed))  # fmt: skip
    _poisoned_ipc_check(poisoned, ipcs, fraction)
    budgets = {
        "attack": attack,
        "fraction": fraction,
        "target": target,
        "poisoned_rows": len(poisoned.rows),
        "poisoned_rows_seed": rows_seed,
        "trigger": {**dataclasses.asdict(trigger), "corner": list(trigger.corner(spec))},
        "distillation_iterations": budgets_json(iterations),
        "method_options": dict(options or {}),
        "asr_test_images": int((splits.test.labels != target).sum()),
        **({"doorping": dataclasses.asdict(doorping)} if attack == "doorping" else {}),
    }
    out = audit_record("backdoor", seed=seed, protocol=p, budgets=budgets)
    out.update({"dataset": spec.name, "sets": {}})
    score = functools.partial(_scores, splits=splits, mask=trigger.mask(spec), target=target,
                              protocol=p, seed=seed, device=device, progress=progress)  # fmt: skip
    fit = dict(options=options, seed=seed, progress=progress, device=device)
    data = (splits.train.images, splits.train.labels)

    def key(m: str, ipc: int, budget: int | None) -> str:  # its own budget, not the others'
        own = {**budgets, "distillation_iterations": budget}
        return unit_key(m, ipc, own, p.settled().to_dict(), seed, *data)

    for ipc in ipcs:
        for m in (m for m in names if m != "random"):  # random real images: the floor below
            budget = iterations_of(iterations, m, ipc)
            out["sets"].update(kept_json(
                keep / "results" / f"{m}-ipc{ipc}.json" if keep is not None else None,
                key(m, ipc, budget),
                lambda m=m, ipc=ipc, budget=budget: _method_rows(
                    m, ipc, splits, poisoned, trigger, attack, doorping, score,
                    {**fit, "iterations": budget}),
            ))  # fmt: skip

        def random_row(ipc: int = ipc) -> dict[str, Any]:
            rand = random_real(poisoned.train, ipc, seed=seed)
            return {
                "role": "floor: random real images of the poisoned split",
                "poisoned_images": _count_poisoned(rand, poisoned),
                **score(rand, trigger.pattern(spec), name=f"random/ipc{ipc}"),
            }

        out["sets"][f"random/ipc{ipc}/poisoned"] = kept_json(
            keep / "results" / f"random-ipc{ipc}.json" if keep is not None else None,
            key("random", ipc, iterations_of(iterations, "random", ipc)),
            random_row,
        )
    return out


def _method_rows(
    method: str,
    ipc: int,
    splits: DatasetSplits,
    poisoned: Poisoned,
    trigger: Trigger,
    attack: str,
    doorping: DoorpingConfig,
    score: Callable[..., dict[str, Any]],
    fit: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """The backdoored set of ``method`` at ``ipc`` and its clean floor (the same method on the
    clean split), each scored with the trigger the attack ends with."""
    syn, final, extra = _backdoored_set(poisoned, trigger, method, ipc, attack, doorping, **fit)
    clean = distil(splits.train, method, ipc, **fit)
    key = f"{method}/ipc{ipc}"
    return {
        f"{key}/poisoned": {"role": "backdoored", **extra, **score(syn, final, name=key)},
        f"{key}/clean": {
            "role": "floor: distilled from the clean split",
            **score(clean, final, name=f"{key}/clean"),
        },
    }


def _count_poisoned(rand: SyntheticSet, poisoned: Poisoned) -> int:
    picked = set(rand.meta.get("indices", []))
    return len(picked & set(poisoned.rows.tolist()))


def _backdoored_set(
    poisoned: Poisoned,
    trigger: Trigger,
    method: str,
    ipc: int,
    attack: str,
    doorping: DoorpingConfig,
    *,
    iterations: int | None,
    options: dict[str, Any] | None,
    seed: int,
    progress: ProgressSetting,
    device: torch.device | str = "cpu",
) -> tuple[SyntheticSet, torch.Tensor, dict[str, Any]]:
    """The set ``method`` distils from the poisoned split, the trigger to test it with, and
    what the attack records (DOORPING: the final trigger and its updates). The naive attack's
    set is distilled on ``device``; DOORPING's on the CPU, where its callback re-stamps the
    very rows the method reads."""
    spec = poisoned.train.spec
    if attack == "naive":
        syn = distil(poisoned.train, method, ipc, iterations=iterations, seed=seed,
                     options=options, progress=progress, device=device)  # fmt: skip
        return syn, trigger.pattern(spec), {}
    own = Poisoned(ImageDataset(poisoned.train.images.clone(), poisoned.train.labels,
                                spec), poisoned.rows, poisoned.target)  # fmt: skip
    cb = DoorpingCallback(own, trigger, doorping, seed=seed)
    syn = distil(own.train, method, ipc, iterations=iterations, seed=seed, options=options,
                 callbacks=[cb], progress=progress)  # fmt: skip
    r, c = trigger.corner(spec)
    s = trigger.size
    patch = cb.pattern_[0, :, r : r + s, c : c + s]
    return syn, cb.pattern_, {"trigger_patch": patch.tolist(), "trigger_updates": cb.history_}


def plot_backdoor(result: Mapping[str, Any], path: str | Path) -> Path:
    """Attack success rate and clean accuracy per training set (bars, in %)."""
    from ddkit.plots import new_figure, save_figure

    names = list(result["sets"])
    fig, (ax,) = new_figure(width=max(5.0, 0.9 * len(names) + 2), height=4.0)
    xs = torch.arange(len(names)).float()
    asr = [100 * result["sets"][n]["mean"]["asr"] for n in names]
    acc = [100 * result["sets"][n]["mean"]["clean_accuracy"] for n in names]
    ax.bar(xs - 0.2, asr, width=0.4, color="tab:red", label="attack success rate")
    ax.bar(xs + 0.2, acc, width=0.4, color="tab:blue", label="clean test accuracy")
    ax.set_xticks(xs.tolist(), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    b = result["budgets"]
    ax.set_title(
        f"{result['dataset']}: {b['attack']} attack, {b['poisoned_rows']} rows to class "
        f"{b['target']}; ASR on non-target test images",
        fontsize=8,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


@register_audit
class BackdoorAudit(Audit):
    """``ddkit audit backdoor``."""

    name = "backdoor"
    help = "backdoor (BadNets, DOORPING) through distillation: attack success rate vs floors"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_training_arguments(parser, methods="dm", ipc="10", out="runs/audit-backdoor")
        parser.add_argument("--attack", choices=ATTACKS, default="naive")
        parser.add_argument("--fraction", type=float, default=0.1,
                            help="poisoned share of the non-target training rows")  # fmt: skip
        parser.add_argument("--target", type=int, default=0, help="target class index")
        parser.add_argument("--trigger-size", type=int, default=2, help="patch side (pixels)")
        parser.add_argument("--trigger-position", default="bottom-right",
                            help=f"{', '.join(POSITIONS)} or ROW,COL")  # fmt: skip
        parser.add_argument("--trigger-value", type=float, default=1.0, help="pixel value")
        parser.add_argument(
            "--doorping", action="append", default=[], metavar="KEY=VALUE",
            help="DOORPING option (every, model, net_epochs, net_lr, topk, alpha, steps, lr, "
            "threshold, carriers)",
        )  # fmt: skip

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json, ensure_writable_dir
        from ddkit.methods.config import parse_options

        ipcs = number_list(args.ipc, "--ipc", kind=int, minimum=1)
        fraction = check_fraction(args.fraction, "--fraction")
        trigger = Trigger(args.trigger_size, args.trigger_position, args.trigger_value)
        doorping = DoorpingConfig.from_options(parse_options(args.doorping))
        options = parse_options(args.set)
        get_protocol(args.protocol)
        _check_attack(args.attack, args.methods, ipcs)
        iterations = Budgets.parse(args.iterations)
        iterations.check()
        device = device_option(args)
        splits = load_dataset(args.dataset, root=args.root)
        models = models_option(args, splits.spec)
        trigger.check(splits.spec)
        check_target(args.target, splits.spec)
        if args.attack == "doorping":
            doorping.check(splits.spec)
        out = ensure_writable_dir(args.out)
        result = backdoor_audit(
            splits, args.methods, ipcs, attack=args.attack, trigger=trigger, fraction=fraction,
            target=args.target, iterations=iterations, options=options, doorping=doorping,
            protocol=args.protocol, runs=args.runs, epochs=args.epochs, models=models, seed=args.seed,
            device=device, keep=out, progress=not args.quiet,
        )  # fmt: skip
        atomic_write_json(out / "backdoor.json", result)
        plot_backdoor(result, out / "backdoor.png")
        print(f"{'set':<28} {'ASR':>7} {'clean':>7} (%)")
        for name, row in result["sets"].items():
            m = row["mean"]
            print(f"{name:<28} {100 * m['asr']:7.2f} {100 * m['clean_accuracy']:7.2f}")
        print(f"wrote {out / 'backdoor.json'} and {out / 'backdoor.png'}")
        return 0
