"""Pieces shared by distillation methods: initial synthetic sets, fresh networks and the
speed levers' precision rule."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ddkit import distributed
from ddkit.augment.dsa import DSA, default_strategy, parse_strategy
from ddkit.augment.series import SeriesAugment, is_series_strategy
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, warn_at_caller
from ddkit.models import build_network, reinitializable, reinitialize
from ddkit.rng import draw_seed


def initial_images(
    train: ImageDataset, ipc: int, generator: torch.Generator, init: str = "real"
) -> torch.Tensor:
    """``(K*ipc, C, H, W)`` starting images, class by class: random real images (``"real"``) or
    standard normal noise in the normalised space (``"noise"``)."""
    if init == "real":
        return train.images[train.sample_per_class(ipc, generator).flatten()].clone()
    if init == "noise":
        k = train.spec.num_classes
        noise = torch.randn((k * ipc, *train.spec.shape), generator=generator)
        return noise.to(train.images.device)
    from ddkit.errors import ConfigError

    raise ConfigError(f"unknown init {init!r}; valid: noise, real")


def real_batch_size(requested: int, train: ImageDataset) -> int:
    """The real images per class one step draws: ``requested``, capped at the smallest class's
    rows, so that a step never draws one image twice and its cost follows the data (a class of
    10 images gives a batch of 10, not 256 draws of the same 10). The authors' samplers do the
    same: a class's shuffled rows, cut at the batch size."""
    return max(1, min(int(requested), min(train.class_counts)))


def real_batch_note(batch: int, requested: int, num_classes: int, option: str) -> str:
    """What a step's real side costs, in words: ``"2,000 real images per step: batch_real 10 x
    200 classes (capped from 256 at the smallest class); --set batch_real=N changes it"``."""
    capped = f" (capped from {requested:,} at the smallest class)" if batch < requested else ""
    return (
        f"{batch * num_classes:,} real images per step: {option} {batch:,} x {num_classes:,} "
        f"classes{capped}; --set {option}=N changes it"
    )


def fresh_network(name: str, train: ImageDataset, generator: torch.Generator) -> nn.Module:
    """A new randomly initialised network whose init seed is drawn from ``generator``
    (:func:`~ddkit.rng.draw_seed`; global RNG untouched). To draw one every iteration, build a
    :class:`RandomNetwork` once instead. The network lives where ``train``'s images do."""
    return build_network(name, train.spec, draw_seed(generator)).to(train.images.device)


class RandomNetwork:
    """One module of ``name`` that :meth:`draw` re-initialises from a seed drawn from a
    generator: each draw gives exactly the network :func:`fresh_network` would build from the
    same generator state, without building a module per draw.

    The module is built once (CPU, float32). A draw re-initialises it in place
    (:func:`ddkit.models.reinitialize`) and, for another ``device`` or ``dtype``, copies the
    weights into a converted copy (the same seed draws other numbers on another device or in
    float64, so the draw itself always happens in CPU float32). A model that cannot be
    re-initialised in place (:func:`ddkit.models.reinitializable` is false) is rebuilt per draw.
    ``network`` is the module the draws return; its ``requires_grad`` flags and train/eval mode
    are the caller's (a draw only resets values and clears ``.grad``).
    """

    def __init__(
        self,
        name: str,
        spec: DatasetSpec,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.name, self.spec = name, spec
        self.device, self.dtype = torch.device(device), dtype
        self.source = build_network(name, spec, 0)  # fails early on a bad model name
        self.in_place = reinitializable(self.source)
        converted = self.device.type != "cpu" or dtype != torch.float32
        self.network = (
            copy.deepcopy(self.source).to(self.device, dtype) if converted else self.source
        )

    def draw(self, generator: torch.Generator) -> nn.Module:
        """Re-initialise :attr:`network` from ``draw_seed(generator)`` and return it."""
        seed = draw_seed(generator)
        if self.in_place:
            reinitialize(self.source, seed)
            fresh = self.source
        else:
            fresh = build_network(self.name, self.spec, seed)
        if fresh is not self.network:
            with torch.no_grad():
                for dst, src in zip(self.network.parameters(), fresh.parameters()):
                    dst.copy_(src)
                for dst, src in zip(self.network.buffers(), fresh.buffers()):
                    dst.copy_(src)
        for p in self.network.parameters():
            p.grad = None
        return self.network


def warn_if_rough(net: nn.Module, name: str, spec: DatasetSpec, objective: str) -> None:
    """Warn when ``net`` normalises groups of fewer than
    :data:`~ddkit.models.helpers.MIN_NORMALISED_VALUES` values on ``spec``'s images: the
    ``objective`` is then too rough to optimise and the images get worse, not better."""
    from ddkit.models.helpers import MIN_NORMALISED_VALUES, smallest_normalised_group

    n = smallest_normalised_group(net, spec.shape)
    if n is not None and n < MIN_NORMALISED_VALUES:
        rows, fix = spec.kind.rough_hint(spec)
        warn_at_caller(
            f"model {name!r} normalises groups of only {n} values on {rows}; the "
            f"{objective} objective is then too rough to optimise. Use a shallower network "
            f"(e.g. {fix})."
        )


def make_augment(setting: str, spec: DatasetSpec) -> DSA | SeriesAugment | None:
    """The Siamese augmentation for an ``augment`` option: ``"auto"`` (the dataset's own: its
    DSA strategy, :func:`ddkit.augment.default_strategy`, on images; every series operation,
    :class:`ddkit.augment.SeriesAugment`, on series; none on tables), ``"none"``, an explicit
    DSA strategy (refused in one line on rows other than images) or series operations
    (``"series"``, ``"jitter_slice"``: refused in one line on rows other than series)."""
    if setting == "auto":
        if "series" in spec.kind.augmentations:
            return SeriesAugment()
        if "dsa" not in spec.kind.augmentations:
            return None
        setting = default_strategy(spec.channels, spec.name)
    if is_series_strategy(setting):
        spec.check_needs("series", f"series augmentation {setting!r}", "use augment='auto'")
        return SeriesAugment(setting)
    if not parse_strategy(setting):
        return None
    fix = "use augment=" + " or ".join(repr(a) for a in (*spec.kind.augmentations, "none"))
    spec.check_needs("image", f"DSA augmentation {setting!r}", fix)
    return DSA(setting)


def local_classes(num_classes: int) -> list[int] | None:
    """The classes whose share of the synthetic images' gradient this rank computes in a
    :mod:`ddkit.distributed` session (``Distiller.scale_out = "classes"``): every
    ``WORLD_SIZE``-th class from ``RANK``; ``None`` in a single process (all classes, today's
    code path). More ranks than classes is a one-line :class:`ConfigError`."""
    classes = distributed.local_indices(num_classes)
    if classes is not None and not classes:
        launch = distributed.active()
        raise ConfigError(
            f"{launch.world_size} processes for {num_classes} classes leave rank "
            f"{launch.rank} without a class; launch at most {num_classes} processes"
        )
    return classes


def summed_over_ranks(images: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """After each rank's backward pass over its :func:`local_classes`: ``images.grad`` becomes
    the sum of the ranks' gradients and the returned loss the sum of their losses (one
    collective; ``loss`` may be a vector of several sums over classes, each summed). The
    classes' rows are disjoint, so every gradient entry is one rank's value exactly and the
    images step as in one process. Outside a session: ``loss`` unchanged."""
    if distributed.active() is None:
        return loss
    if images.grad is None:
        images.grad = torch.zeros_like(images)
    total = loss.detach().reshape(-1).to(images.grad.dtype)
    distributed.sum_across_ranks([images.grad, total])
    return total.view(loss.shape)


def method_precision(
    precision: str, dtype: torch.dtype | str, device: torch.device | str = "cpu"
) -> str:
    """The resolved precision (``"fp32"`` or ``"bf16"``) of a method computing in ``dtype``.

    bf16 autocast only changes float32 computations, so ``precision="bf16"`` with another dtype
    (float64 numerical checks) is a :class:`ConfigError`, and ``"auto"`` resolves to fp32 there.
    """
    from ddkit.levers import resolve_precision

    name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    if name != "float32":
        if precision == "bf16":
            raise ConfigError(
                f"precision bf16 autocasts float32 computations; dtype must be float32, "
                f"got {name!r}"
            )
        return "fp32"
    return resolve_precision(precision, device)


def record_levers(
    syn: SyntheticSet, precision: str, cfg: Any, compiled: bool | None = None
) -> SyntheticSet:
    """Record the speed levers a run used in ``syn.meta``: the resolved ``precision``, whether
    it was ``compile``-d (``compiled``, else ``cfg.compile``) and ``channels_last`` where
    ``cfg`` has it switched on."""
    syn.meta["precision"] = precision
    syn.meta["compile"] = bool(getattr(cfg, "compile", False) if compiled is None else compiled)
    if getattr(cfg, "channels_last", False):
        syn.meta["channels_last"] = True
    return syn
