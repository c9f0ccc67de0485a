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
recorded in ``meta['label_temperature']``. Stored logits (budget ``logits:K``) are decoded at
that temperature, or, for a set marked with :func:`with_label_schedule`, at every training
epoch's temperature of LPQLD's schedule (:func:`scheduled_labels`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit import distributed
from ddkit.augment.crops import crop_resize, sample_boxes
from ddkit.data.label_budget import (
    IMAGE_PREFIX,
    VIEW_PREFIX,
    LabelBudget,
    decode_probs,
    decoded_labels,
    label_tensor_keys,
    lpqld_temperature,
    parse_label_budget,
    stored_logits,
    view_parts,
)
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.meter import check_memory
from ddkit.models import predict

__all__ = [
    "LABEL_SCHEDULES",
    "VIEW_KEYS",
    "decompress_view_labels",
    "encode_labels",
    "expand_views",
    "has_view_labels",
    "regenerate_labels",
    "relabel",
    "scheduled_labels",
    "teacher_probs",
    "teacher_targets_fn",
    "view_label_bytes",
    "with_label_schedule",
]

#: temperature schedules a set of stored logits may ask its evaluation for
#: (``meta['label_schedule']``): ``"lpqld"``, :func:`ddkit.data.label_budget.lpqld_temperature`
LABEL_SCHEDULES = ("lpqld",)

VIEW_KEYS = (
    "view_boxes",
    "view_flip",
    "view_values",
    "view_logits",
    "view_indices",
    "view_scale",
)


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


def _teacher_outputs(
    teacher: nn.Module, x: torch.Tensor, temperature: float, logits: bool
) -> torch.Tensor:
    """One batch's :func:`teacher_probs`, or with ``logits`` the teacher's float32 logits."""
    if not logits:
        return teacher_probs(teacher, x, temperature, batch_size=_TEACHER_BATCH)
    teacher.eval()
    return predict(teacher, x, batch_size=_TEACHER_BATCH, post=lambda z: z.float().to(x.device))


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
    budget: str | None = None,
) -> SyntheticSet:
    """A copy of ``syn`` whose labels are the teacher's soft labels at ``temperature``.

    ``views = 0``: one probability vector per image. ``views = V > 0``: additionally ``V``
    FKD-style views per image (random-resized crops with area fraction in ``scale``, aspect
    ratio in [3/4, 4/3], horizontal flip unless the dataset is a digit set or ``flip=False``),
    stored compactly in ``extras`` (:data:`VIEW_KEYS`). ``generator`` draws the views (required
    when ``views > 0``; the same draws whatever the budget).

    ``budget`` (:mod:`ddkit.data.label_budget`: ``full``, ``fp16``, ``int8``, ``topk:K[+fp16|
    +int8]``, ``logits:K``, ``prune:R`` joined to the others, ``regen``) says how the
    probabilities are stored, recorded in ``meta['label_budget']``. ``prune:R`` keeps a random
    ``floor(V / R)`` of each image's views, drawn from ``generator`` after the views (so the
    views are those of any budget, and the same generator keeps the same ones), recorded in
    ``meta['label_views_kept']`` (``label_views`` stays ``V``); the teacher is asked about the
    kept views only. ``logits:K`` stores the teacher's top-``K`` logits (before the softmax;
    ``labels`` decodes them at ``temperature``). Per-image labels are encoded under ``label.*``
    (``labels`` holds them decoded), per-view labels under ``view_*`` with the per-image labels
    the mean of the decoded views (not stored); ``regen`` stores no probabilities: the labels stay the set's
    hard labels and the teacher recomputes the soft ones at evaluation
    (:func:`regenerate_labels`; the teacher is not asked here). ``None`` (the format before
    budgets): per-image float32 labels; per view the top-``topk`` probabilities (``None``: all
    classes) in float16 and the per-image labels, the mean of the full views, stored too.
    """
    n, k = len(syn), syn.spec.num_classes
    b = _budget(budget, topk, k)
    extras, meta = _unlabelled(syn)
    meta |= {"label_temperature": float(temperature), "label_views": int(views)}
    if views < 0:
        raise ConfigError(f"views must be >= 0, got {views}")
    if b is not None:
        b.kept_views(views)  # a prune the views cannot give is refused before the teacher runs
    if views == 0:
        if b is not None and b.regen:
            return _encoded(syn, syn.hard_labels, b, extras, meta, views=False)
        logits = b is not None and b.logits
        labels = _sharded_probs(
            teacher, n, 1, lambda rows: syn.images[rows], temperature, k, logits
        )
        return _encoded(syn, labels if logits else _renorm(labels), b, extras, meta)
    if generator is None:
        raise ConfigError("relabel with views > 0 needs a torch.Generator")
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
    if b is not None and b.prune:  # drawn after the views, so the views are those of any budget
        kept = b.prune_views(n, views, generator)
        rows = (torch.arange(n)[:, None] * views + kept).flatten()
        boxes, flips = boxes[rows], flips[rows]
        meta["label_views_kept"] = kept.shape[1]
    v = len(boxes) // max(n, 1)
    extras |= _view_params(boxes.view(n, v, 4), flips.view(n, v))
    if b is not None and b.regen:
        return _encoded(syn, syn.hard_labels, b, extras, meta, views=True)
    logits = b is not None and b.logits
    probs = _view_probs(syn, teacher, boxes, flips, temperature, logits).view(n, v, k)
    if b is None:  # the format before budgets: top-k float16 views, float32 per-image labels
        kk = k if topk is None or topk >= k else int(topk)
        legacy = LabelBudget(kk if kk < k else None, "fp16")
        extras |= {VIEW_PREFIX + key: v for key, v in legacy.encode(probs).items()}
        meta["label_topk"] = kk
        return _encoded(syn, _renorm(probs.mean(1)), None, extras, meta)
    return _encoded(syn, probs, b, extras, meta)


def _view_params(boxes: torch.Tensor, flips: torch.Tensor) -> dict[str, torch.Tensor]:
    """The stored parameters of views ``(N, V)``: crop boxes (int16 x4) and flips (uint8)."""
    return {"view_boxes": boxes.to(torch.int16), "view_flip": flips.to(torch.uint8)}


def view_label_bytes(budget: str, images: int, views: int, num_classes: int) -> int:
    """Bytes that :func:`relabel` stores for the per-view labels of ``images`` images with
    ``views`` views each under label ``budget`` (the kept views' boxes, flips and encoded
    labels), computed from the shapes alone: the same encoding run on tensors without data
    (the ``meta`` device). ``regen`` counts the boxes and flips (and not the hard labels the
    set keeps beside them, nor the teacher)."""
    b = parse_label_budget(budget).for_classes(num_classes)
    kept = b.kept_views(views)
    meta = torch.device("meta")
    parts = _view_params(
        torch.empty((images, kept, 4), device=meta), torch.empty((images, kept), device=meta)
    )
    if not b.regen:
        parts |= b.encode(torch.empty((images, kept, num_classes), device=meta))
    return sum(t.numel() * t.element_size() for t in parts.values())


def encode_labels(syn: SyntheticSet, budget: str) -> SyntheticSet:
    """``syn`` (soft labels ``(N, K)``, e.g. a method's own) with its labels stored under
    label budget ``budget`` (:mod:`ddkit.data.label_budget`; not ``regen``, which needs the
    labels to be the teacher's on the stored images or views: :func:`relabel`)."""
    if not syn.soft or syn.regression:
        raise DataError("a label budget stores probability vectors; this set has none")
    b = _budget(budget, None, syn.spec.num_classes)
    if b is None or b.regen or b.logits or b.prune:
        raise ConfigError(
            f"encode_labels stores per-image probabilities, not {budget!r}: regen, logits and "
            "prune need the teacher's views (ddkit.eval.relabel.relabel with views > 0)"
        )
    extras, meta = _unlabelled(syn)
    return _encoded(syn, syn.labels, b, extras, meta, views=False)


def _unlabelled(syn: SyntheticSet) -> tuple[dict[str, torch.Tensor], dict]:
    """``syn``'s extras and meta without what a new labelling replaces: its label extras but
    per-region labels (the method's own) and its label budget."""
    old = {key for key in label_tensor_keys(syn.extras) if key != "region_labels"}
    extras = {key: v for key, v in syn.extras.items() if key not in old}
    dropped = ("label_budget", "label_storage", "label_schedule")
    meta = {key: v for key, v in syn.meta.items() if key not in dropped}
    return extras, meta


def _budget(budget: str | None, topk: int | None, k: int) -> LabelBudget | None:
    """The parsed ``budget`` (``None``: the format before budgets), or a one-line refusal."""
    if topk is not None and topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}")
    if budget is None:
        return None
    if topk is not None:
        raise ConfigError(f"give the top-k in the label budget (topk:{topk}), not both")
    return parse_label_budget(budget).for_classes(k)


def _encoded(
    syn: SyntheticSet,
    probs: torch.Tensor,
    b: LabelBudget | None,
    extras: dict[str, torch.Tensor],
    meta: dict,
    views: bool | None = None,
) -> SyntheticSet:
    """``syn`` with labels ``probs`` (per image ``(N, K)``, per view ``(N, V, K)``, or hard
    labels under ``regen``) stored under budget ``b`` (``None``: as they are); ``views``: the
    set has per-view labels (default: ``probs`` is per view)."""
    views = probs.ndim == 3 if views is None else views
    if b is not None:
        meta |= {"label_budget": b.spelling, "label_storage": _storage_note(b, views)}
    if b is not None and not b.regen and (views or b.spelling != "full"):  # logits: not "full"
        prefix = VIEW_PREFIX if views else IMAGE_PREFIX
        extras |= {prefix + key: v for key, v in b.encode(probs).items()}
        probs = decoded_labels(meta, extras, syn.spec.num_classes).to(syn.images.device)
    return SyntheticSet(syn.images, probs, syn.spec, lr=syn.lr, meta=meta, extras=extras)


def _storage_note(b: LabelBudget, views: bool) -> str:
    """What the set's label bytes count (``meta['label_storage']``)."""
    if b.regen:
        return (
            "hard labels (int64)"
            + (" and each view's crop box (int16 x4) and flip (uint8)" if views else "")
            + "; the soft labels are recomputed by the recorded teacher (teacher_dir), whose "
            "weight bytes storage_report counts under 'teacher'"
        )
    where = "per view (view_*; per-image labels: their mean, not stored)" if views else "per image"
    what = "teacher logits" if b.logits else "probabilities"
    kept = f"; a random 1/{b.prune} of each image's views kept (boxes, flips, labels)"
    return f"{b.spelling} {what} {where}" + (kept if b.prune else "")


def _view_probs(
    syn: SyntheticSet,
    teacher: nn.Module,
    boxes: torch.Tensor,
    flips: torch.Tensor,
    temperature: float,
    logits: bool = False,
) -> torch.Tensor:
    """The teacher's probabilities ``(N * V, K)`` of every stored view (row ``i * V + v``: view
    ``v`` of image ``i``, crop ``boxes[row]``, flipped where ``flips[row]``); its logits
    with ``logits``."""
    n, k = len(syn), syn.spec.num_classes
    views = len(boxes) // max(n, 1)
    hw = syn.spec.image_size

    def crops(rows: torch.Tensor) -> torch.Tensor:
        return crop_resize(syn.images[rows // views], boxes[rows], hw, flips[rows])

    return _sharded_probs(teacher, n, views, crops, temperature, k, logits)


def regenerate_labels(
    syn: SyntheticSet,
    teacher: Any = None,
    device: torch.device | str = "cpu",
    *,
    budget: str = "full",
) -> SyntheticSet:
    """The soft labels of a set saved with label budget ``regen``, recomputed by the teacher
    (FKD-style: Shen & Xing, ECCV 2022, store crop coordinates and ask the teacher again).

    ``teacher``: a module or network source, or else the set's ``meta['teacher_dir']``
    (:func:`~ddkit.eval.teacher.resolve_teacher`, which checks the recorded SHA-256). The views
    are the stored crops and flips and the temperature ``meta['label_temperature']``, so the
    labels equal those :func:`relabel` would have stored with the same teacher and generator;
    they are held under ``budget`` (default ``full``). The result trains like any soft-label
    set (:func:`ddkit.eval.evaluate`)."""
    from ddkit.eval.teacher import resolve_teacher

    if syn.meta.get("label_budget") != "regen":
        raise DataError("this set stores its labels (label budget is not 'regen'): use it as it is")
    b = parse_label_budget(budget).for_classes(syn.spec.num_classes)
    if b.regen or b.prune or b.logits:
        raise ConfigError(
            f"regenerate_labels holds the recomputed probabilities of every stored view under "
            f"a budget of probabilities (full, fp16, int8, topk:K), not {budget!r}"
        )
    net, _ = resolve_teacher(syn, teacher, device)
    temperature = float(syn.meta.get("label_temperature", 1.0))
    extras, meta = _unlabelled(syn)
    meta["labels_regenerated"] = True
    n, k = len(syn), syn.spec.num_classes
    if "view_boxes" not in syn.extras:
        probs = _sharded_probs(net, n, 1, lambda rows: syn.images[rows], temperature, k)
        return _encoded(syn, _renorm(probs), b, extras, meta)
    boxes = syn.extras["view_boxes"]
    extras |= {key: syn.extras[key] for key in ("view_boxes", "view_flip")}
    views = boxes.shape[1]
    flat = boxes.long().reshape(n * views, 4)
    flips = syn.extras["view_flip"].bool().reshape(n * views)
    probs = _view_probs(syn, net, flat, flips, temperature).view(n, views, k)
    return _encoded(syn, probs, b, extras, meta)


def _sharded_probs(
    teacher: nn.Module,
    count: int,
    views: int,
    batch_of: Callable[[torch.Tensor], torch.Tensor],
    temperature: float,
    k: int,
    logits: bool = False,
) -> torch.Tensor:
    """:func:`teacher_probs` ``(count * views, k)`` of the rows ``i * views + v`` (view ``v`` of
    image ``i``), ``batch_of(rows)`` making each teacher batch's inputs when it is asked about,
    so that the ``count * views`` crops never exist at once; in a :mod:`ddkit.distributed`
    session each rank asks about its share of the images and every rank gets all rows back in
    order. ``logits``: the teacher's float32 logits instead (no temperature)."""
    mine = distributed.local_indices(count)
    owned = torch.arange(count) if mine is None else torch.as_tensor(mine, dtype=torch.long)
    rows = (owned[:, None] * views + torch.arange(views)).flatten()
    parts = [  # teacher_probs' own batches, so the same rows meet in each as in one call
        _teacher_outputs(teacher, batch_of(r), temperature, logits)
        for r in torch.split(rows, _TEACHER_BATCH)
    ]
    probs = torch.cat(parts) if parts else torch.zeros((0, k))
    if mine is None:
        return probs
    return distributed.all_gather_shards(probs.view(len(mine), views, k)).flatten(0, 1)


def decompress_view_labels(syn: SyntheticSet, temperature: float | None = None) -> torch.Tensor:
    """Per-view probability vectors ``(N, V, K)`` float32 from the compact extras
    (:func:`ddkit.data.label_budget.decode_probs`); stored logits at ``temperature`` (default
    ``meta['label_temperature']``)."""
    if not has_view_labels(syn):
        raise DataError("this set has no per-view soft labels (relabel with views > 0)")
    t = float(syn.meta.get("label_temperature", 1.0)) if temperature is None else temperature
    return decode_probs(view_parts(syn.extras), syn.spec.num_classes, t)


def with_label_schedule(syn: SyntheticSet, schedule: str | None) -> SyntheticSet:
    """A copy of ``syn`` whose evaluation decodes its stored logits at every epoch's
    temperature of ``schedule`` (:data:`LABEL_SCHEDULES`; ``"lpqld"``: LPQLD's Dynamic
    Knowledge Reuse, Xiao & He, TPAMI 2026, arXiv:2604.18135), recorded in
    ``meta['label_schedule']``; ``None`` takes the mark off (one temperature,
    ``label_temperature``, as before). A set without stored logits (a budget other than
    ``logits:K``) is refused."""
    meta = {key: v for key, v in syn.meta.items() if key != "label_schedule"}
    if schedule is not None:
        if schedule not in LABEL_SCHEDULES:
            raise ConfigError(
                f"unknown label schedule {schedule!r}; valid: {', '.join(LABEL_SCHEDULES)}"
            )
        if stored_logits(syn.extras) is None:
            raise DataError(
                f"label schedule {schedule!r} re-softens stored logits, and this set stores "
                "none: relabel it with a logits:K label budget"
            )
        meta["label_schedule"] = schedule
    return dataclasses.replace(syn, meta=meta)


def scheduled_labels(syn: SyntheticSet, epochs: int) -> Callable[[int], torch.Tensor] | None:
    """``labels_at(epoch)``: the probability rows a training of ``epochs`` epochs trains on at
    ``epoch`` when ``syn`` asks for a label schedule (:func:`with_label_schedule`): its stored
    logits decoded at :func:`~ddkit.data.label_budget.lpqld_temperature` of that epoch, one row
    per stored view (``(N*V, K)``, in :func:`expand_views`' order) or per image (``(N, K)``).
    LPQLD re-softens the stored logits every epoch, from 20 down to 2 in steps of a tenth of the
    epochs. ``None`` when ``syn`` asks for none (its labels train at ``label_temperature``)."""
    schedule = syn.meta.get("label_schedule")
    if schedule is None:
        return None
    if schedule not in LABEL_SCHEDULES:
        raise ConfigError(
            f"this set asks for the unknown label schedule {schedule!r}; valid: "
            f"{', '.join(LABEL_SCHEDULES)} (take it off with with_label_schedule(syn, None))"
        )
    parts = stored_logits(syn.extras)
    if parts is None:
        raise DataError(
            f"this set asks for label schedule {schedule!r} but stores no logits: take the mark "
            "off (with_label_schedule(syn, None)) or relabel it with a logits:K label budget"
        )
    parts = {key: v.cpu() for key, v in parts.items()}
    k, last = syn.spec.num_classes, {}

    def labels_at(epoch: int) -> torch.Tensor:
        t = lpqld_temperature(epoch, epochs)
        if last.get("temperature") != t:  # the schedule steps: decode once per step
            last.update(temperature=t, rows=decode_probs(parts, k, t).reshape(-1, k))
        return last["rows"]

    return labels_at


def has_view_labels(syn: SyntheticSet) -> bool:
    """Whether ``syn`` stores per-view labels (probabilities or logits) to train on."""
    return "view_values" in syn.extras or "view_logits" in syn.extras


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
