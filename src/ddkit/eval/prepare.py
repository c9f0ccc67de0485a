"""What fresh networks are trained on and tested against under an evaluation protocol, and how
one model's networks are trained: the parts :func:`ddkit.eval.evaluate` and the estimate of its
cost (:mod:`ddkit.eval.estimate`) share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ddkit.data.dataset import ImageDataset, denormalise, normalise
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError, warn_at_caller
from ddkit.eval.protocol import EvalProtocol
from ddkit.eval.relabel import (
    expand_views,
    has_view_labels,
    regenerate_labels,
    scheduled_labels,
    teacher_targets_fn,
)
from ddkit.eval.teacher import resolve_teacher
from ddkit.eval.train import (
    EpochRows,
    EpochTargets,
    TargetsFn,
    TrainResult,
    rows_per_epoch,
    train_networks,
)
from ddkit.levers import threads_for
from ddkit.meter import check_memory


def with_changes(protocol: EvalProtocol, changes: Mapping[str, Any]) -> EvalProtocol:
    """``protocol`` with the fields ``changes`` names changed, as the evaluation's entry points
    take them (``evaluate(syn, test, "dsa", runs=1, epochs=100)``): a ``None`` value leaves its
    field as it is, ``models`` may be any sequence of names (an empty one leaves them too). A
    name that is no field of :class:`~ddkit.eval.protocol.EvalProtocol` is refused in one line."""
    known = {f.name for f in fields(EvalProtocol)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(
            f"unknown protocol field {unknown[0]!r} (an evaluation's keywords other than its "
            f"own change its protocol); valid: {', '.join(sorted(known))}"
        )
    models = changes.get("models")
    return protocol.with_(**{**changes, "models": tuple(models) if models else None})


def run_seeds(seed: int, runs: int) -> list[int]:
    """Per-run seeds derived from one evaluation seed (recorded in the report); a run count
    whose seeds alone pass the memory budget is refused before they are drawn."""
    check_memory(f"the seeds of {runs:,} evaluation runs", 64 * runs, "use fewer --runs")
    g = torch.Generator().manual_seed(int(seed))
    return [int(s) for s in torch.randint(0, 2**31 - 1, (runs,), generator=g)]


@dataclass
class TrainingData:
    """What the networks are trained on under a protocol: images, targets (classes ``(M,)`` or
    vectors ``(M, K)``), on-the-fly targets from a teacher, notes for the report's meta, and
    ``targets_at(epoch)``: each epoch's targets where they follow a schedule (LPQLD's
    temperature over stored logits), which then replace ``targets`` (those of the set's
    ``label_temperature``) at every epoch's start; ``rows_at(epoch)``: the rows of ``images``
    an epoch walks, where not all (one stored view per image: protocol ``views="one"``)."""

    images: torch.Tensor
    targets: torch.Tensor
    targets_fn: TargetsFn | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    targets_at: EpochTargets | None = None
    rows_at: EpochRows | None = None

    @property
    def rows_per_epoch(self) -> int:
        """The rows one epoch trains on."""
        return rows_per_epoch(self.images, self.rows_at)


def training_data(
    syn: SyntheticSet,
    p: EvalProtocol,
    teacher: Any = None,
    device: torch.device | str = "cpu",
) -> TrainingData:
    """The training images and targets protocol ``p`` asks of ``syn``.

    ``targets="hard"``, or a set of regression labels under cross-entropy: the images with the
    argmax of their labels. ``"stored"``: the labels as
    stored; a set with FKD per-view soft labels (``relabel(..., views=V)``) is trained on all its
    ``N*V`` stored views, each crop replayed and labelled with its own stored label
    (:func:`~ddkit.eval.relabel.expand_views`; every epoch sees every view once),
    since those labels belong to the views, not to the whole images. (FKD draws one view per
    image per epoch from many stored epochs' views; with the few views stored here, replaying
    all of them uses every stored label every epoch and needs no extra random stream.) A set
    whose views were pruned (label budget ``prune:R``) trains on its kept views only, each
    reused about ``R`` times an epoch; stored logits (``logits:K``) train as their softmax at
    the set's ``label_temperature``, or, for a set marked with
    :func:`~ddkit.eval.relabel.with_label_schedule`, at each epoch's temperature of LPQLD's
    schedule over the protocol's epochs
    (``targets_at``: :func:`~ddkit.eval.relabel.scheduled_labels`).
    ``"teacher"``: the images,
    with targets computed by the teacher on every augmented batch; the teacher is ``teacher``
    (a module or a ``ddkit teacher`` folder) or else the folder in ``syn.meta['teacher_dir']``.
    """
    if p.targets == "hard":
        return TrainingData(syn.images, syn.hard_labels)
    if syn.regression and p.loss == "cross_entropy":  # regression targets are no distribution
        return TrainingData(
            syn.images, syn.hard_labels, meta={"targets": "argmax of regression labels"}
        )
    if p.needs_teacher:
        net, folder = resolve_teacher(syn, teacher, device)
        meta = {"teacher_dir": str(folder)} if folder is not None else {}
        return TrainingData(syn.images, syn.labels, teacher_targets_fn(net, p.temperature), meta)
    regen = syn.meta.get("label_budget") == "regen"
    if regen:  # FKD-style: the teacher recomputes the labels of the stored views
        syn = regenerate_labels(syn, teacher, device)
    note = {"labels_regenerated": True} if regen else {}
    labels_at = scheduled_labels(syn, p.epochs)
    if labels_at is not None:
        note["label_schedule"] = syn.meta["label_schedule"]
    if has_view_labels(syn):
        if p.views == "one":
            return _one_view_per_epoch(syn, note, labels_at)
        return _view_training_data(syn, note, labels_at)
    return TrainingData(syn.images, syn.labels, meta=note, targets_at=labels_at)


def _view_training_data(
    syn: SyntheticSet, note: dict[str, Any], labels_at: EpochTargets | None
) -> TrainingData:
    """The stored views of ``syn`` as training rows (:func:`~ddkit.eval.relabel.expand_views`).
    A pruned set (``label_views_kept`` of ``label_views`` views kept, label budget ``prune:R``)
    reuses its kept views in turn until an epoch has as many rows as the ``V`` drawn views
    would give (LPLD trains the unpruned number of steps, sampling from the kept labels), so
    pruning changes the labels, not the amount of training. ``labels_at(epoch)``: the views'
    labels of each epoch (:func:`~ddkit.eval.relabel.scheduled_labels`), reused the same way."""
    views = expand_views(syn)
    kept = int(views.meta["expanded_views"])
    drawn = max(int(syn.meta.get("label_views", kept)), kept)
    meta = {"expanded_views": kept, **note}
    if drawn == kept:
        return TrainingData(views.images, views.labels, meta=meta, targets_at=labels_at)
    total = len(syn) * drawn
    check_memory(
        f"the {len(views):,} kept views reused to {total:,} rows an epoch",
        total * (views.images[0].numel() + syn.spec.num_classes) * 4 if len(views) else 0,
        "prune less (a smaller R in prune:R) or draw fewer views (label_views)",
    )
    rows = torch.arange(total) % max(len(views), 1)
    meta |= {"label_views_drawn": drawn, "view_reuse": drawn / kept}
    at = None if labels_at is None else (lambda epoch: labels_at(epoch)[rows])
    return TrainingData(views.images[rows], views.labels[rows], meta=meta, targets_at=at)


def _one_view_per_epoch(
    syn: SyntheticSet, note: dict[str, Any], labels_at: EpochTargets | None
) -> TrainingData:
    """The stored views of ``syn`` as training rows, epoch ``e`` walking view ``e mod V`` of
    each image's ``V`` stored (for a pruned set: kept) views, as FKD trains (protocol
    ``views="one"``); every epoch has one row per image, whatever the budget."""
    views = expand_views(syn)
    kept = int(views.meta["expanded_views"])
    first = torch.arange(len(syn)) * kept  # expand_views puts image i's views at i*V ... i*V+V-1
    meta = {"expanded_views": kept, "views_per_epoch": 1, **note}
    return TrainingData(
        views.images, views.labels, meta=meta, targets_at=labels_at,
        rows_at=lambda epoch: first + epoch % max(kept, 1),
    )  # fmt: skip


def test_in_set_space(syn: SyntheticSet, test: ImageDataset) -> ImageDataset:
    """The test split as networks trained on ``syn`` must see it: normalised with the set's
    statistics and put through the set's recorded transform (ZCA whitening for the trajectory
    methods' CIFAR presets). A set of another shape or number of classes is refused; a set
    distilled from another dataset is evaluated with a warning."""
    s, t = syn.spec, test.spec
    if s.shape != t.shape or s.num_classes != t.num_classes:
        raise DataError(
            f"synthetic set ({s.name}, {s.shape}, {s.num_classes} classes) does not "
            f"match the test data ({t.name}, {t.shape}, {t.num_classes} classes)"
        )
    if s.name != t.name:
        warn_at_caller(
            f"evaluating a set distilled from {s.name!r} on the test split of {t.name!r}",
            UserWarning,
        )
    if t.transform is not None:
        raise DataError(f"the test split is already transformed ({t.transform!r}); pass raw data")
    images = test.images
    if (s.mean, s.std) != (t.mean, t.std):
        images = normalise(denormalise(images, t), s)
    zca = syn.zca()
    if zca is not None:
        images = zca.transform(images)
    return ImageDataset(images, test.labels, s, test.bias)


def train_model(
    name: str,
    syn: SyntheticSet,
    data: TrainingData,
    p: EvalProtocol,
    seeds: Sequence[int],
    lr: float,
    *,
    vectorize: bool | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """One fresh ``name`` network per seed trained on ``data`` under ``p``
    (:func:`~ddkit.eval.train.train_networks`; each epoch's targets from ``data.targets_at``
    where it is set), tiny batches on one CPU thread (:func:`ddkit.levers.threads_for`)."""
    rows = data.images
    batch_values = min(data.rows_per_epoch, p.batch_size) * (rows[0].numel() if len(rows) else 0)
    targets = data.targets if data.targets_at is None else data.targets_at
    with threads_for(batch_values, device):
        return train_networks(
            name, syn.spec, rows, targets, p, seeds, lr=lr, vectorize=vectorize,
            targets_fn=data.targets_fn, device=device, progress=progress, rows_at=data.rows_at,
        )  # fmt: skip
