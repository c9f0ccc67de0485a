"""Evaluation by linear probes on frozen backbones (distil with one, probe with others).

The setting of G. Cazenavette, A. Torralba and V. Sitzmann, "Dataset Distillation for
Pre-Trained Self-Supervised Vision Models", NeurIPS 2025 (arXiv:2511.16674): a set is judged by
the test accuracy of a linear classifier (multinomial logistic regression) trained on a frozen
backbone's features of the set's images, under several backbones, beside three baselines under
the identical recipe -- random real images (the same IPC), the real images nearest each class's
mean feature ("centroids"), and the full training data.

A backbone (:func:`resolve_backbone`) is a ddkit model name (trained on the training data as a
teacher by :func:`ddkit.eval.teacher.cached_teacher`, then frozen), a teacher folder or another
source :func:`ddkit.eval.teacher.resolve_teacher` reads, an ``nn.Module`` (its ``embed``, else its
output) or a function of a batch. Its features are the flattened output for images in the
normalisation it records (a teacher's ``spec``), else the data's.

The recipe (:class:`ProbeRecipe`, fixed for every row): features standardised by the mean and std
of the full training set's features under that backbone (a fixed affine map per backbone, the
same for every set: a batch norm without parameters, as in MAE's linear probing), weights drawn
from ``N(0, 0.01^2)`` and zero bias as in the authors' code, Adam with a cosine schedule for a
fixed number of *steps* (a 10-image set and 60,000 images get the same number of updates), full
batches up to ``batch_size`` rows, else shuffled mini-batches. Deviations from the authors'
evaluation: features are computed once, without augmentation, and no early stopping on the test
split (the authors keep the best test accuracy over epochs).

Vectorised: each backbone's features of the training and test data are computed once; the
probes of every seed train together as one batched tensor (Adam is elementwise and each seed's
loss touches only its own weights, so this is exactly ``runs`` separate trainings). Seeds are
those of :func:`ddkit.eval.evaluate.run_seeds`; a seed draws a probe's initialisation and batch
order, and for the random-real baseline its images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.data.dataset import ImageDataset, denormalise
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.evaluate import run_seeds

__all__ = [
    "BASELINES",
    "FrozenBackbone",
    "ProbeBaselines",
    "ProbeRecipe",
    "ProbeRow",
    "evaluate_probes",
    "is_model_name",
    "nearest_to_centroids",
    "probe_accuracies",
    "resolve_backbone",
    "train_probes",
]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
#: The baseline rows :func:`evaluate_probes` can add, in table order.
BASELINES = ("random", "centroid", "full")


# ------------------------------------------------------------------------------ backbones
@dataclass
class FrozenBackbone:
    """A frozen feature extractor: ``embed`` maps a batch normalised as ``space`` says (``None``:
    as the data it is given) to features; ``module`` is the network, ``source`` where it was
    read from (a teacher folder or a source string; ``None`` for one given from Python)."""

    name: str
    embed: FeatureFn
    space: DatasetSpec | None = None
    module: nn.Module | None = None
    source: str | None = None

    def features(self, images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
        """Flattened features ``(N, F)`` of ``images`` normalised as ``spec``; differentiable in
        ``images`` (the backbone's weights are not updated by anyone here)."""
        return self.embed(_to_space(images, spec, self.space)).flatten(1)

    def features_of(
        self, images: torch.Tensor, spec: DatasetSpec, batch_size: int = 512
    ) -> torch.Tensor:
        """:meth:`features` without autograd, ``batch_size`` rows at a time."""
        with torch.no_grad():
            parts = [
                self.features(images[i : i + batch_size], spec)
                for i in range(0, len(images), batch_size)
            ]
        return torch.cat(parts) if parts else torch.empty(0)


def _to_space(images: torch.Tensor, spec: DatasetSpec, space: DatasetSpec | None) -> torch.Tensor:
    if space is None or (tuple(space.mean), tuple(space.std)) == (
        tuple(spec.mean),
        tuple(spec.std),
    ):
        return images
    raw = denormalise(images, spec)
    mean = torch.tensor(space.mean, dtype=raw.dtype, device=raw.device).view(1, -1, 1, 1)
    std = torch.tensor(space.std, dtype=raw.dtype, device=raw.device).view(1, -1, 1, 1)
    return (raw - mean) / std


def is_model_name(text: str) -> bool:
    """Whether ``text`` names a ddkit model (a registered family, any variant)."""
    from ddkit.models import MODELS
    from ddkit.models.registry import split_name

    return ":" not in text and os.sep not in text and split_name(text)[0] in MODELS.names()


def resolve_backbone(
    source: str | nn.Module | FeatureFn,
    train: ImageDataset,
    *,
    features: FeatureFn | None = None,
    teacher_epochs: int = 30,
    teacher_lr: float = 0.05,
    teacher_seed: int = 0,
    teacher_cache: str | os.PathLike = "runs/teachers",
) -> FrozenBackbone:
    """A :class:`FrozenBackbone` from ``source``: a ddkit model name (trained on ``train`` by
    :func:`~ddkit.eval.teacher.cached_teacher` with the ``teacher_*`` recipe, cached, frozen), a
    teacher folder or other spelling :func:`~ddkit.eval.teacher.resolve_teacher` reads, an
    ``nn.Module`` or a function of a batch. ``features`` overrides how a module's features are
    read (default: its ``embed``, else its output). A backbone for other image shapes is
    refused in one line."""
    from ddkit.eval.teacher import cached_teacher, resolve_teacher

    device = train.images.device
    where: str | os.PathLike | None = None
    if isinstance(source, nn.Module):
        module, name = source.to(device).eval(), type(source).__name__
    elif isinstance(source, str) and is_model_name(source):
        module, where = cached_teacher(
            train, source, cache_root=teacher_cache, epochs=teacher_epochs, lr=teacher_lr,
            seed=teacher_seed,
        )  # fmt: skip
        name = source
    elif isinstance(source, str | os.PathLike):
        module, where = resolve_teacher(teacher=source, device=device)
        name = str(source)
    elif callable(source):
        return FrozenBackbone(getattr(source, "__name__", "features"), features or source)
    else:
        raise ConfigError(
            f"backbone must be a model name, a teacher folder, an nn.Module or a function, "
            f"got {type(source).__name__}"
        )
    for p in module.parameters():
        p.requires_grad_(False)
    space = _recorded_space(module, train.spec, name)
    embed = features or getattr(module, "embed", module)
    return FrozenBackbone(name, embed, space, module, None if where is None else os.fspath(where))


def _recorded_space(module: nn.Module, spec: DatasetSpec, name: str) -> DatasetSpec | None:
    """The normalisation a teacher records (``teacher_meta_['spec']``), checked against the
    data's image shape; ``None`` when the module records none."""
    meta = getattr(module, "teacher_meta_", None)
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        return None
    space = DatasetSpec.from_dict(meta["spec"])
    if (space.channels, tuple(space.image_size)) != (spec.channels, tuple(spec.image_size)):
        raise ConfigError(
            f"backbone {name!r} takes {space.channels}x{tuple(space.image_size)} images, the data "
            f"has {spec.channels}x{tuple(spec.image_size)}; use a backbone made for this shape"
        )
    return space


# ------------------------------------------------------------------------------ probes
@dataclass(frozen=True)
class ProbeRecipe:
    """How every linear probe is trained (module docstring); the same for every row."""

    steps: int = 1000
    lr: float = 0.01
    batch_size: int = 256
    weight_decay: float = 0.0
    init_std: float = 0.01
    standardize: bool = True

    def __post_init__(self) -> None:
        for field in ("steps", "batch_size"):
            if int(getattr(self, field)) < 1:
                raise ConfigError(f"probe {field} must be >= 1, got {getattr(self, field)}")
        if not self.lr > 0 or self.weight_decay < 0 or self.init_std < 0:
            raise ConfigError("probe lr must be > 0, weight_decay and init_std >= 0")


def _batches(n: int, size: int, seeds: Sequence[int], steps: int) -> Callable[[int], torch.Tensor]:
    """Row indices ``(S, B)`` of each step: every row when ``n <= size``, else consecutive
    slices of per-seed permutations, a fresh permutation each epoch."""
    if n <= size:
        every = torch.arange(n).expand(len(seeds), n)
        return lambda step: every
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    per_epoch = n // size
    perms: dict[int, torch.Tensor] = {}

    def rows(step: int) -> torch.Tensor:
        epoch, at = divmod(step, per_epoch)
        if epoch not in perms:
            perms.clear()
            perms[epoch] = torch.stack([torch.randperm(n, generator=g) for g in gens])
        return perms[epoch][:, at * size : (at + 1) * size]

    return rows


def train_probes(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    seeds: Sequence[int],
    recipe: ProbeRecipe = ProbeRecipe(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one linear probe per seed, all at once: ``feats`` ``(N, F)`` (shared) or
    ``(S, N, F)`` (one training set per seed) with ``labels`` ``(N,)`` / ``(S, N)``. Returns
    weights ``(S, F, K)`` and biases ``(S, K)``."""
    s = len(seeds)
    if feats.ndim == 2:
        feats, labels = feats.expand(s, *feats.shape), labels.expand(s, *labels.shape)
    if feats.shape[0] != s or labels.shape != feats.shape[:2]:
        raise DataError(
            f"{s} seeds for features {tuple(feats.shape)}, labels {tuple(labels.shape)}"
        )
    f, dev = feats.shape[2], feats.device
    inits = [
        torch.randn(f, num_classes, generator=torch.Generator().manual_seed(int(x))) for x in seeds
    ]
    w = (torch.stack(inits) * recipe.init_std).to(dev, feats.dtype).requires_grad_(True)
    b = torch.zeros(s, num_classes, device=dev, dtype=feats.dtype, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.steps)
    rows = _batches(feats.shape[1], recipe.batch_size, seeds, recipe.steps)
    seed_ix = torch.arange(s)[:, None]
    for step in range(recipe.steps):
        ix = rows(step)
        x, y = feats[seed_ix, ix], labels[seed_ix, ix]  # (S, B, F), (S, B)
        logits = torch.baddbmm(b[:, None, :], x, w)
        # each seed's mean cross-entropy, summed: every probe gets its own gradient
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / x.shape[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return w.detach(), b.detach()


def probe_accuracies(
    w: torch.Tensor, b: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor
) -> list[float]:
    """Accuracy (percent) of each probe ``(S, F, K)`` on test features ``(N, F)``."""
    logits = torch.einsum("nf,sfk->snk", feats, w) + b[:, None, :]
    return [float(a) * 100 for a in (logits.argmax(-1) == labels).float().mean(1)]


def nearest_to_centroids(
    feats: torch.Tensor, labels: torch.Tensor, ipc: int, k: int
) -> torch.Tensor:
    """Rows ``(k * ipc,)``, class-major: per class, the ``ipc`` rows whose features are nearest
    the class's mean feature (at IPC 1 the authors' "centroid" baseline)."""
    out = []
    for c in range(k):
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) < ipc:
            raise ConfigError(f"class {c} has {len(rows)} rows, fewer than IPC {ipc}")
        x = feats[rows]
        dist = (x - x.mean(0, keepdim=True)).norm(dim=1)
        out.append(rows[torch.argsort(dist, stable=True)[:ipc]])
    return torch.cat(out)


# ------------------------------------------------------------------------------ the table
@dataclass
class ProbeRow:
    """One cell of the probe table: a set (or baseline) under a backbone, one accuracy per
    seed (percent) and their mean and (population) std."""

    set: str
    backbone: str
    images: int
    accuracies: list[float]

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def std(self) -> float:
        m = self.mean
        return math.sqrt(sum((a - m) ** 2 for a in self.accuracies) / len(self.accuracies))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": self.mean, "std": self.std}


@dataclass
class _Features:
    """One backbone's standardised features of the training and test data."""

    train: torch.Tensor
    test: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor

    def of(self, backbone: FrozenBackbone, images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
        return (backbone.features_of(images, spec) - self.shift) / self.scale


def _backbone_features(
    backbone: FrozenBackbone, train: ImageDataset, test: ImageDataset, recipe: ProbeRecipe
) -> _Features:
    raw_train = backbone.features_of(train.images, train.spec)
    raw_test = backbone.features_of(test.images.to(train.images.device), test.spec)
    if recipe.standardize:
        shift, scale = raw_train.mean(0), raw_train.std(0).clamp_min(1e-6)
    else:
        shift, scale = torch.zeros(()), torch.ones(())
    shift, scale = shift.to(raw_train), scale.to(raw_train)
    return _Features((raw_train - shift) / scale, (raw_test - shift) / scale, shift, scale)


def _check_set(name: str, syn: SyntheticSet, train: ImageDataset) -> None:
    s, t = syn.spec, train.spec
    if s.shape != t.shape or s.num_classes != t.num_classes:
        raise DataError(
            f"set {name!r} ({s.shape}, {s.num_classes} classes) does not match the data "
            f"({t.shape}, {t.num_classes} classes)"
        )


def _random_rows(train: ImageDataset, ipc: int, seeds: Sequence[int]) -> torch.Tensor:
    """``(S, K * ipc)`` random real rows per seed, class-major."""
    return torch.stack(
        [
            train.sample_per_class(ipc, torch.Generator().manual_seed(int(s))).flatten()
            for s in seeds
        ]
    )


@dataclass(frozen=True)
class ProbeBaselines:
    """The baseline rows :func:`evaluate_probes` adds beside the sets: ``kinds`` (of
    :data:`BASELINES`: ``random`` real images, the real images nearest each class's mean
    feature, ``centroid``, and the ``full`` training data), ``ipc`` rows per class for the
    random and centroid ones (default: the first set's), the centroid images chosen under the
    backbone named ``select_with`` (default: the first; the one a set is distilled with) and
    probed under every backbone like a distilled set. An unknown kind is refused in one line."""

    kinds: Sequence[str] = BASELINES
    ipc: int | None = None
    select_with: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = sorted(set(self.kinds) - set(BASELINES))
        if unknown:
            raise ConfigError(f"unknown baseline {unknown[0]!r}; valid: {', '.join(BASELINES)}")


def evaluate_probes(
    sets: Mapping[str, SyntheticSet],
    backbones: Mapping[str, FrozenBackbone] | Sequence[FrozenBackbone],
    train: ImageDataset,
    test: ImageDataset,
    *,
    runs: int = 3,
    seed: int = 0,
    recipe: ProbeRecipe = ProbeRecipe(),
    baselines: ProbeBaselines = ProbeBaselines(),
) -> list[ProbeRow]:
    """Probe every set and baseline under every backbone: rows backbone by backbone, the sets
    first (in the order given) then the ``baselines`` (:class:`ProbeBaselines`: ``random``,
    ``centroid``, ``full``, sized and chosen as that record says)."""
    named = dict(backbones) if isinstance(backbones, Mapping) else {b.name: b for b in backbones}
    ipc = _check_request(sets, named, train, baselines)
    seeds = run_seeds(seed, runs)
    feats = {n: _backbone_features(b, train, test, recipe) for n, b in named.items()}
    chosen: dict[str, torch.Tensor] = {}  # baseline -> real rows, the same for every seed
    if "centroid" in baselines.kinds:
        chooser = baselines.select_with or next(iter(named))
        if chooser not in named:
            valid = ", ".join(named)
            raise ConfigError(f"select_with names no backbone: {chooser!r}; valid: {valid}")
        raw = feats[chooser].train * feats[chooser].scale  # distances in the raw feature space
        k = train.spec.num_classes
        chosen["centroid"] = nearest_to_centroids(raw, train.labels.to(raw.device), ipc, k)
    if "random" in baselines.kinds:
        chosen["random"] = _random_rows(train, ipc, seeds)
    rows: list[ProbeRow] = []
    for bname, backbone in named.items():
        probe = _Prober(bname, feats[bname], test.labels, train.spec.num_classes, seeds, recipe)
        for name, syn in sets.items():
            images = syn.images.to(train.images.device)
            x = feats[bname].of(backbone, images, syn.spec)
            rows.append(probe(name, x, syn.hard_labels.to(x.device)))
        rows += [
            probe.real(_BASELINE_NAMES[b], train.labels, chosen.get(b)) for b in baselines.kinds
        ]
    return rows


#: The row names of the baselines.
_BASELINE_NAMES = {"random": "random real", "centroid": "centroid nearest", "full": "full data"}


def _check_request(
    sets: Mapping[str, SyntheticSet],
    backbones: Mapping[str, FrozenBackbone],
    train: ImageDataset,
    baselines: ProbeBaselines,
) -> int:
    """Refuse a request :func:`evaluate_probes` cannot serve, in one line; return the IPC of
    the baselines."""
    if not backbones:
        raise ConfigError("no backbone to probe with; give at least one")
    for name, syn in sets.items():
        _check_set(name, syn, train)
    if baselines.ipc is not None:
        train.check_ipc(baselines.ipc)
        return int(baselines.ipc)
    if not sets and {"random", "centroid"} & set(baselines.kinds):
        raise ConfigError(
            "give ipc= for the random and centroid baselines (no set to read it from)"
        )
    return next(iter(sets.values())).ipc if sets else 0


@dataclass
class _Prober:
    """Trains and tests the probes of one backbone (its features ``feats``)."""

    backbone: str
    feats: _Features
    test_labels: torch.Tensor
    num_classes: int
    seeds: list[int]
    recipe: ProbeRecipe

    def __call__(self, label: str, x: torch.Tensor, y: torch.Tensor) -> ProbeRow:
        w, b = train_probes(x, y, self.num_classes, self.seeds, self.recipe)
        test = self.feats.test
        accuracies = probe_accuracies(w, b, test, self.test_labels.to(test.device))
        return ProbeRow(label, self.backbone, int(x.shape[-2]), accuracies)

    def real(self, label: str, labels: torch.Tensor, rows: torch.Tensor | None) -> ProbeRow:
        """A baseline: the training rows ``rows`` (``(n,)``, or ``(S, n)`` per seed; ``None``:
        all of them)."""
        x, labels = self.feats.train, labels.to(self.feats.train.device)
        if rows is None:
            return self(label, x, labels)
        rows = rows.to(x.device)
        return self(label, x[rows], labels[rows])
