"""Relabeling: soft labels from a teacher, stored with the set or computed on the fly.

Three ways to give a synthetic set the teacher's knowledge, from cheapest to costliest in
stored bytes:

* **on the fly** (:func:`teacher_targets_fn`): nothing is stored; the evaluation ships the
  teacher and asks it about every augmented/mixed batch (SRe2L's CIFAR recipe, RDED's and
  DD-Ranking's ``soft_label_mode='M'``). Its cost is the teacher's bytes.
* **per image** (:func:`relabel` with ``views=0``): one probability vector per image, stored as
  the set's labels (DD-Ranking's ``soft_label_mode='S'``): ``N*K`` float32.
* **per augmented view**, FKD-style (Shen & Xing, "A Fast Knowledge Distillation Framework for
  Visual Recognition", ECCV 2022, used by SRe2L's relabel stage): for every image, ``V``
  random-resized-crop/flip views are drawn and the teacher's soft label for each view is stored
  *compactly*: the view parameters (box ``int16 x4``, flip ``uint8``) and the top-``k``
  probabilities (``float16`` values + ``int16`` class indices; all ``K`` values and no indices
  when ``k >= K``). :func:`expand_views` turns such a set into one image per view with its
  label, trainable by any soft-label protocol. :func:`decompress_view_labels` spreads the mass
  outside the top-``k`` uniformly over the other classes (FKD keeps only the top-k).

In a :mod:`ddkit.distributed` session :func:`relabel` splits the teacher's work by image (the
views are drawn for every image first, so the random stream is that of one process) and every
rank gets the whole set back.

Temperatures: stored probabilities are ``softmax(teacher(x) / T)``; the temperature used is
recorded in ``meta['label_temperature']``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ddkit import distributed
from ddkit.augment.crops import crop_resize, sample_boxes
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.meter import check_memory
from ddkit.models import predict

__all__ = [
    "VIEW_KEYS",
    "decompress_view_labels",
    "expand_views",
    "relabel",
    "teacher_probs",
    "teacher_targets_fn",
]

VIEW_KEYS = ("view_boxes", "view_flip", "view_values", "view_indices")


_TEACHER_BATCH = 512


def teacher_probs(
    teacher: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = _TEACHER_BATCH
) -> torch.Tensor:
    """``softmax(teacher(x) / T)`` in batches without gradients (:func:`ddkit.models.predict`),
    float32 ``(N, K)`` on ``x``'s device; leaves the teacher in eval mode."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    teacher.eval()
    if not len(x):
        return torch.zeros((0, 0))
    return predict(
        teacher,
        x,
        batch_size=batch_size,
        post=lambda z: F.softmax(z.float() / temperature, dim=1).to(x.device),
    )


def teacher_targets_fn(
    teacher: nn.Module, temperature: float = 1.0
) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """``targets_fn(x_augmented, batch_index, run) -> softmax(teacher(x) / T)`` for
    :func:`ddkit.eval.evaluate`: knowledge distillation from the teacher on every augmented and
    mixed batch. The teacher is put in eval mode (BN running statistics are not touched)."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    teacher.eval()

    @torch.no_grad()
    def fn(x: torch.Tensor, index: torch.Tensor, run: int) -> torch.Tensor:
        dev = next(teacher.parameters()).device
        return F.softmax(teacher(x.to(dev)).float() / temperature, dim=1).to(x.device)

    return fn


def relabel(
    syn: SyntheticSet,
    teacher: nn.Module,
    temperature: float = 1.0,
    views: int = 0,
    generator: torch.Generator | None = None,
    *,
    topk: int | None = None,
    scale: tuple[float, float] = (0.25, 1.0),
    flip: bool | None = None,
) -> SyntheticSet:
    """A copy of ``syn`` whose labels are the teacher's soft labels at ``temperature``.

    ``views = 0``: one probability vector per image. ``views = V > 0``: additionally ``V``
    FKD-style views per image (random-resized crops with area fraction in ``scale``, aspect
    ratio in [3/4, 4/3], horizontal flip unless the dataset is a digit set or ``flip=False``),
    stored compactly in ``extras`` (:data:`VIEW_KEYS`) with the top-``topk`` probabilities
    (``None``: all classes). The per-image labels are then the average over the views.
    ``generator`` draws the views (required when ``views > 0``).
    """
    n, k = len(syn), syn.spec.num_classes
    extras = {key: v for key, v in syn.extras.items() if key not in VIEW_KEYS}
    meta = {**syn.meta, "label_temperature": float(temperature), "label_views": int(views)}
    if views < 0:
        raise ConfigError(f"views must be >= 0, got {views}")
    if views == 0:
        labels = _sharded_probs(teacher, n, 1, lambda rows: syn.images[rows], temperature, k)
        return SyntheticSet(
            syn.images, _renorm(labels), syn.spec, lr=syn.lr, meta=meta, extras=extras
        )
    if generator is None:
        raise ConfigError("relabel with views > 0 needs a torch.Generator")
    kk = k if topk is None or topk >= k else int(topk)
    if kk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}")
    if flip is None:
        from ddkit.augment import default_strategy

        flip = "flip" in default_strategy(syn.spec.channels, syn.spec.name).split("_")
    h, w = syn.spec.image_size
    check_memory(
        f"relabel's soft labels of {n:,} images x {views} views x {k:,} classes",
        n * views * k * 4 * 2,  # the float32 probabilities and their top-k / float16 copies
        "use fewer label views (label_views) or a smaller IPC",
    )
    boxes = sample_boxes(n * views, (h, w), generator, scale=scale)
    flips = (
        (torch.rand(n * views, generator=generator) < 0.5)
        if flip
        else torch.zeros(n * views, dtype=torch.bool)
    )

    def crops(rows: torch.Tensor) -> torch.Tensor:  # view v of image i is row i * views + v
        return crop_resize(syn.images[rows // views], boxes[rows], (h, w), flips[rows])

    probs = _sharded_probs(teacher, n, views, crops, temperature, k)  # (N*V, K)
    if kk < k:
        vals, idx = probs.topk(kk, dim=1)  # sorted, ties broken by torch.topk's order
        extras["view_indices"] = idx.to(torch.int16).view(n, views, kk)
    else:
        vals = probs
    extras["view_values"] = vals.to(torch.float16).view(n, views, kk)
    extras["view_boxes"] = boxes.to(torch.int16).view(n, views, 4)
    extras["view_flip"] = flips.to(torch.uint8).view(n, views)
    meta["label_topk"] = kk
    labels = _renorm(probs.view(n, views, k).mean(1))
    return SyntheticSet(syn.images, labels, syn.spec, lr=syn.lr, meta=meta, extras=extras)


def _sharded_probs(
    teacher: nn.Module,
    count: int,
    views: int,
    batch_of: Callable[[torch.Tensor], torch.Tensor],
    temperature: float,
    k: int,
) -> torch.Tensor:
    """:func:`teacher_probs` ``(count * views, k)`` of the rows ``i * views + v`` (view ``v`` of
    image ``i``), ``batch_of(rows)`` making each teacher batch's inputs when it is asked about,
    so that the ``count * views`` crops never exist at once; in a :mod:`ddkit.distributed`
    session each rank asks about its share of the images and every rank gets all rows back in
    order."""
    mine = distributed.local_indices(count)
    owned = torch.arange(count) if mine is None else torch.as_tensor(mine, dtype=torch.long)
    rows = (owned[:, None] * views + torch.arange(views)).flatten()
    parts = [  # teacher_probs' own batches, so the same rows meet in each as in one call
        teacher_probs(teacher, batch_of(r), temperature, batch_size=_TEACHER_BATCH)
        for r in torch.split(rows, _TEACHER_BATCH)
    ]
    probs = torch.cat(parts) if parts else torch.zeros((0, k))
    if mine is None:
        return probs
    return distributed.all_gather_shards(probs.view(len(mine), views, k)).flatten(0, 1)


def decompress_view_labels(syn: SyntheticSet) -> torch.Tensor:
    """Per-view probability vectors ``(N, V, K)`` float32 from the compact extras."""
    if "view_values" not in syn.extras:
        raise DataError("this set has no per-view soft labels (relabel with views > 0)")
    vals = syn.extras["view_values"].float()
    n, v, kk = vals.shape
    k = syn.spec.num_classes
    if "view_indices" not in syn.extras:
        if kk != k:
            raise DataError(
                f"view labels have {kk} values but the set has {k} classes and no indices"
            )
        return _renorm(vals.reshape(n * v, k)).view(n, v, k)
    idx = syn.extras["view_indices"].long()
    rest = (1.0 - vals.sum(-1, keepdim=True)).clamp_min(0.0) / max(k - kk, 1)
    full = rest.expand(n, v, k).clone()
    full.scatter_(-1, idx, vals)
    return _renorm(full.reshape(n * v, k)).view(n, v, k)


def expand_views(syn: SyntheticSet) -> SyntheticSet:
    """One image per stored view (crop/flip replayed) labelled with its stored soft label: a
    plain soft-label set of ``N*V`` images for :func:`ddkit.eval.evaluate` (train-time only; the
    storage cost is that of the compact set)."""
    labels = decompress_view_labels(syn)
    n, v, k = labels.shape
    check_memory(
        f"the set's {n:,} images expanded to {n * v:,} views",
        n * v * syn.images[0].numel() * 4,
        "evaluate with a protocol that asks the teacher (teacher-kd) instead of stored views",
    )
    h, w = syn.spec.image_size
    boxes = syn.extras["view_boxes"].long().view(n * v, 4)
    flips = syn.extras["view_flip"].bool().view(n * v)
    x = crop_resize(syn.images.repeat_interleave(v, 0), boxes, (h, w), flips)
    meta = {**syn.meta, "expanded_views": int(v)}
    return SyntheticSet(x, labels.view(n * v, k), syn.spec, lr=syn.lr, meta=meta)


def _renorm(p: torch.Tensor) -> torch.Tensor:
    p = p.float().clamp_min(0.0)
    return p / p.sum(1, keepdim=True).clamp_min(1e-12)
