"""Soft labels under a byte budget: how a set's probability vectors are stored, and decoded.

A soft label costs ``4 K`` bytes per image (per view for FKD-style per-view labels), which at
ImageNet scale outweighs the images themselves. A *label budget* says how the probabilities are
stored; its spelling (the decoupled methods' ``label_budget``, ``relabel(..., budget=)``) is

* ``full`` -- float32, every class (``4 K`` bytes a row);
* ``fp16`` -- float16, every class (``2 K``);
* ``int8`` -- 8-bit codes ``q = round(p / s)`` (uint8, since probabilities are non-negative) with
  a per-row float32 scale ``s = max(p) / 255`` (``K + 4``);
* ``topk:k`` -- the ``k`` largest probabilities (float32) and their class indices (int16; int32
  beyond 32,767 classes), ``6 k`` bytes; ``topk:k+fp16`` / ``topk:k+int8`` store those values
  as above. The mass outside the top ``k`` is spread uniformly over the other ``K - k`` classes
  (FKD's marginal smoothing: Shen & Xing, "A Fast Knowledge Distillation Framework for Visual
  Recognition", ECCV 2022; top-k soft labels for distilled sets: Xiao & He, "Are Large-scale
  Soft Labels Necessary for Large-scale Dataset Distillation?", NeurIPS 2024). ``k >= K`` is
  ``full`` (or the precision given): nothing is dropped, no indices are stored;
* ``regen`` -- no probabilities at all: the set keeps its hard labels and, for per-view labels,
  the crop/flip parameters of every view; the teacher the set records recomputes the soft labels
  at evaluation (FKD's stored crop coordinates; :func:`ddkit.eval.relabel.regenerate_labels`).
  Its cost is the teacher's bytes, counted by :func:`ddkit.eval.accounting.storage_report`;
* ``prune:R`` (per-view labels only) -- keep a seeded random ``floor(V / R)`` of each image's
  ``V`` stored views (their crop boxes, flips and labels; the others are not stored) and train
  on the kept ones, each reused about ``R`` times so an epoch has as many samples as the ``V``
  views would give (LPLD's random label pruning: Xiao & He, "Are Large-scale Soft Labels
  Necessary for Large-scale Dataset Distillation?", NeurIPS 2024, arXiv:2410.15919). It
  composes with the rest: ``prune:4+int8``, ``prune:2+topk:5+fp16``. Deviation: the authors'
  code stores the labels of 1/R of the relabel's batches (each a random batch of images with
  fresh random views) and samples every training epoch's batches from that pool, so an image
  keeps a varying number of labels; here every image keeps the same number (rectangular
  ``(N, V / R)`` tensors with no per-view image index to store), and every kept view is reused
  about ``R`` times an epoch instead of a random number of times;
* ``logits:k`` -- the ``k`` largest teacher *logits* (before the softmax) and their indices,
  decoded as the softmax of those ``k`` logits at a temperature, zero elsewhere (LPQLD's label
  quantisation "MR-k", marginal re-normalisation: Xiao & He, "Soft Label Pruning and
  Quantization for Large-Scale Dataset Distillation", TPAMI 2026, arXiv:2604.18135); ``+fp16``
  as above (``int8`` codes are for probabilities and refused). LPQLD on ImageNet-1K is
  ``prune:10+logits:50+fp16`` (and ``logits:10`` / ``logits:100``). LPQLD re-softens the
  stored logits every epoch with a stepped temperature (Dynamic Knowledge Reuse,
  :func:`lpqld_temperature`); ddkit's evaluation does so for a set whose
  ``meta['label_schedule']`` is ``"lpqld"`` (:func:`ddkit.eval.relabel.with_label_schedule`),
  and otherwise decodes them once, at the set's ``label_temperature``. Deviation: LPQLD also
  calibrates the student's temperature; ddkit uses the protocol's loss.

A budget is spelled as ``+``-joined parts in any order; its canonical spelling
(:attr:`LabelBudget.spelling`) is ``prune:R+topk:k+fp16`` (prune, then classes, then precision).

Decoding always gives a valid distribution: non-negative rows renormalised to sum to 1 (float32
``full`` rows are returned as stored). Decoding reads the stored dtypes (float32 / float16
values, uint8 codes with a ``scale``, ``indices`` when classes were dropped), so a set's tensors
describe themselves. A set's encoded per-image labels live in its extras under ``label.*``;
per-view labels under ``view_*`` (:data:`ddkit.eval.relabel.VIEW_KEYS`); stored logits under
``*logits`` instead of ``*values``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from ddkit.errors import ConfigError, DataError

__all__ = [
    "IMAGE_PREFIX",
    "VIEW_PREFIX",
    "LabelBudget",
    "check_view_boxes",
    "decode_probs",
    "decoded_labels",
    "label_tensor_keys",
    "labels_decoded",
    "lpqld_temperature",
    "parse_label_budget",
    "stored_logits",
    "view_parts",
]

#: extras prefix of a set's encoded per-image labels (``label.values`` ...)
IMAGE_PREFIX = "label."
#: extras prefix of per-view labels (``view_values``, ``view_indices``, ``view_scale``)
VIEW_PREFIX = "view_"
_PARTS = ("values", "logits", "indices", "scale")
_STORED = ("values", "logits")  # the parts that hold a row's numbers
_SPELLINGS = "full, fp16, int8, topk:K, logits:K, prune:R, +-joined (prune:4+topk:5+fp16), or regen"
_INT8_LEVELS = 255

Precision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class LabelBudget:
    """A parsed label budget (:func:`parse_label_budget`): ``topk`` classes kept per row
    (``None``: all), the ``precision`` of the stored values, ``regen`` (nothing stored),
    ``prune`` (keep ``floor(V / prune)`` of each image's ``V`` views; ``None``: all) and
    ``logits`` (the teacher's logits are stored, not its probabilities)."""

    topk: int | None = None
    precision: Precision = "fp32"
    regen: bool = False
    prune: int | None = None
    logits: bool = False

    @property
    def spelling(self) -> str:
        """The canonical spelling (``prune:4+topk:5+fp16``)."""
        if self.regen:
            return "regen"
        parts = [f"prune:{self.prune}"] if self.prune else []
        if self.logits:
            parts.append("logits" if self.topk is None else f"logits:{self.topk}")
        elif self.topk is not None:
            parts.append(f"topk:{self.topk}")
        if self.precision != "fp32":
            parts.append(self.precision)
        return "+".join(parts) or "full"

    def for_classes(self, k: int) -> LabelBudget:
        """This budget for ``k`` classes: ``topk >= k`` keeps every class (no indices)."""
        if self.topk is not None and self.topk >= k:
            return replace(self, topk=None)
        return self

    def kept_views(self, views: int) -> int:
        """How many of ``views`` stored views per image this budget keeps: ``floor(V / R)``
        under ``prune:R``; a prune larger than the views is refused in one line."""
        if self.prune is None:
            return int(views)
        if views < 1:
            raise ConfigError(
                f"label budget {self.spelling!r} prunes per-view labels; the set has none "
                "(relabel with views > 0, or labels='views' with label_views > 0)"
            )
        if self.prune > views:
            raise ConfigError(
                f"label budget {self.spelling!r} keeps 1/{self.prune} of {views} views per image, "
                f"i.e. none; use prune:R with R <= {views} or draw more views (label_views)"
            )
        return views // self.prune

    def prune_views(self, count: int, views: int, generator: torch.Generator) -> torch.Tensor:
        """The kept views ``(count, kept)`` (ascending view indices per image) of ``count``
        images with ``views`` views each: a random subset per image drawn from ``generator``
        (one ``randperm`` per image, in image order), so the same generator state keeps the
        same views. Without ``prune``: every view."""
        kept = self.kept_views(views)
        if self.prune is None:
            return torch.arange(views).expand(count, views).clone()
        rows = [torch.randperm(views, generator=generator)[:kept] for _ in range(count)]
        out = torch.stack(rows) if rows else torch.zeros((0, kept), dtype=torch.long)
        return out.sort(dim=1).values

    def encode(self, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored tensors of probability rows ``(..., K)`` (teacher logits for a ``logits``
        budget): ``values`` (``(..., k)`` float32 / float16 / uint8; ``logits`` for a logits
        budget), ``indices`` when classes were dropped, ``scale`` ``(..., 1)`` float32 for int8
        codes. Pruning is not applied here (it selects views: :meth:`prune_views`)."""
        if self.regen:
            raise ConfigError("label budget 'regen' stores no probabilities to encode")
        b = self.for_classes(probs.shape[-1])
        p = probs.detach().float()
        out: dict[str, torch.Tensor] = {}
        if b.topk is not None:
            p, idx = p.topk(b.topk, dim=-1)  # sorted, ties broken by torch.topk's order
            out["indices"] = idx.to(torch.int16 if probs.shape[-1] <= 32767 else torch.int32)
        key = "logits" if b.logits else "values"
        if b.precision == "fp16":
            out[key] = p.to(torch.float16)
        elif b.precision == "int8":
            scale = p.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            scale = scale / _INT8_LEVELS
            out[key] = (p / scale).round().clamp(0, _INT8_LEVELS).to(torch.uint8)
            out["scale"] = scale
        else:
            out[key] = p.clone()
        return {k: v.contiguous() for k, v in out.items()}


def parse_label_budget(text: str) -> LabelBudget:
    """A :class:`LabelBudget` from its spelling (``+``-joined parts in any order); anything
    else, a part given twice, ``topk`` beside ``logits``, ``regen`` beside anything, ``int8``
    logits or a count below 1 is refused in one line."""
    raw = str(text).strip()
    bad = ConfigError(f"label budget {text!r} is not understood; valid: {_SPELLINGS}")
    found: dict[str, str] = {}
    for part in raw.split("+"):
        name, colon, value = part.partition(":")
        kind = "precision" if name in ("full", "fp16", "int8") and not colon else name
        if kind not in ("precision", "regen", "topk", "logits", "prune") or kind in found:
            raise bad
        if colon and not value.isdigit() or (kind in ("topk", "prune") and not colon):
            if colon and value.lstrip("-").replace(".", "", 1).isdigit():
                raise ConfigError(f"label budget {text!r}: {name} needs a whole number >= 1")
            raise bad
        if kind in ("regen", "precision") and colon:
            raise bad
        found[kind] = value if colon else name
    if "regen" in found and len(found) > 1:
        raise ConfigError(
            f"label budget {text!r}: regen stores no labels, so nothing to prune, quantise or "
            "cut to top-k; for fewer regenerated views relabel with fewer views (label_views)"
        )
    if "regen" in found:
        return LabelBudget(regen=True)
    if "topk" in found and "logits" in found:
        raise ConfigError(f"label budget {text!r}: give topk:K or logits:K, not both")
    counts = {k: int(found[k]) for k in ("topk", "prune") if k in found}
    if "logits" in found and found["logits"] != "logits":
        counts["topk"] = int(found["logits"])
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f"label budget {text!r}: {name} needs a whole number >= 1")
    precision = found.get("precision", "full")
    if "logits" in found and precision == "int8":
        raise ConfigError(
            f"label budget {text!r}: logits are signed and int8 codes are for probabilities; "
            "store logits as fp16 or fp32"
        )
    prune = counts.get("prune")
    return LabelBudget(
        counts.get("topk"),
        "fp32" if precision == "full" else precision,  # type: ignore[arg-type]
        prune=None if prune == 1 else prune,
        logits="logits" in found,
    )


def lpqld_temperature(
    epoch: int, epochs: int, start: float = 20.0, gamma: float = 0.7, floor: float = 2.0
) -> float:
    """LPQLD's Dynamic Knowledge Reuse temperature for training epoch ``epoch`` of ``epochs``:
    ``start * gamma ** (epoch // step)`` but not below ``floor``, with ``step`` a tenth of the
    epochs (their ImageNet-1K script: T = 20, gamma 0.7, every 30 of 300 epochs, floor 2;
    Xiao & He, TPAMI 2026, arXiv:2604.18135, Sec. III-D). Applied at evaluation to a set
    that asks for it (:func:`ddkit.eval.relabel.scheduled_labels`)."""
    if epochs < 1 or not 0 <= epoch:
        raise ConfigError(
            f"lpqld_temperature needs 0 <= epoch and epochs >= 1, got {epoch}/{epochs}"
        )
    step = max(1, epochs // 10)
    return max(float(floor), float(start) * float(gamma) ** (epoch // step))


def decode_probs(
    parts: dict[str, torch.Tensor], num_classes: int, temperature: float = 1.0
) -> torch.Tensor:
    """Probability rows ``(..., K)`` float32 from the tensors :meth:`LabelBudget.encode` made
    (read by dtype): valid distributions; float32 rows of every class come back as stored.
    Stored ``logits`` decode as their softmax at ``temperature`` over the stored classes, zero
    elsewhere (LPQLD's marginal re-normalisation)."""
    if "logits" in parts:
        return _decode_logits(parts, num_classes, temperature)
    if "values" not in parts:
        raise DataError("encoded labels lack their values")
    vals, idx = parts["values"], parts.get("indices")
    if vals.dtype == torch.uint8:
        v = vals.float() * _int8_scale(parts, vals)
    else:
        v = vals.float()
    kk, k = v.shape[-1], int(num_classes)
    if idx is None:
        if kk != k:
            raise DataError(f"labels have {kk} values but the set has {k} classes and no indices")
        return v.clone() if vals.dtype == torch.float32 else _renorm(v)
    if idx.shape != vals.shape or (len(idx.flatten()) and (idx.min() < 0 or idx.max() >= k)):
        raise DataError(f"label indices do not fit the values or the {k} classes")
    rest = (1.0 - v.sum(-1, keepdim=True)).clamp_min(0.0) / max(k - kk, 1)
    full = rest.expand(*v.shape[:-1], k).clone()
    full.scatter_(-1, idx.long(), v)
    return _renorm(full)


def _decode_logits(
    parts: dict[str, torch.Tensor], num_classes: int, temperature: float
) -> torch.Tensor:
    """Stored logits ``(..., k)`` (with ``indices`` when classes were dropped) as probability
    rows ``(..., K)``: the softmax of the stored logits at ``temperature``, zero elsewhere."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    z, idx, k = parts["logits"].float(), parts.get("indices"), int(num_classes)
    if idx is None:
        if z.shape[-1] != k:
            raise DataError(f"{z.shape[-1]} logits per row but the set has {k} classes")
        return torch.softmax(z / temperature, dim=-1)
    if idx.shape != z.shape or (len(idx.flatten()) and (idx.min() < 0 or idx.max() >= k)):
        raise DataError(f"label indices do not fit the logits or the {k} classes")
    full = z.new_zeros((*z.shape[:-1], k))
    return full.scatter_(-1, idx.long(), torch.softmax(z / temperature, dim=-1))


def _int8_scale(parts: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """The per-row scale ``(..., 1)`` of 8-bit ``codes``, float32; a missing one, one of
    another shape, or one that is not finite and positive (its rows would decode to nothing)
    is a one-line :class:`DataError`."""
    scale = parts.get("scale")
    if scale is None:
        raise DataError("8-bit label codes lack their per-row scale")
    if tuple(scale.shape) != (*codes.shape[:-1], 1):
        raise DataError(
            f"8-bit label codes {tuple(codes.shape)} need a scale of shape "
            f"{(*codes.shape[:-1], 1)}, got {tuple(scale.shape)}"
        )
    scale = scale.float()
    bad = ~(torch.isfinite(scale) & (scale > 0))
    if bad.any():
        value = scale[bad][0].item()
        raise DataError(
            f"8-bit label codes need a finite positive scale per row, got {value:g} in "
            f"{int(bad.sum())} of {scale.numel():,} rows; the labels cannot be decoded: encode "
            "them again (ddkit.eval.relabel.encode_labels)"
        )
    return scale


def check_view_boxes(extras: dict[str, torch.Tensor], size: tuple[int, int], count: int) -> None:
    """Refuse (one-line :class:`DataError`) recorded crop boxes ``view_boxes`` (``(N, V, 4)``
    of ``(y0, x0, h, w)`` pixels, with ``view_flip`` ``(N, V)``) that are not one per view of
    each of the ``count`` images, or that do not lie inside an image of ``size = (H, W)``:
    labels regenerated or views replayed from them would be of other pictures."""
    if "view_boxes" not in extras:
        return
    boxes, flips = extras["view_boxes"], extras.get("view_flip")
    if boxes.ndim != 3 or boxes.shape[0] != count or boxes.shape[2] != 4:
        raise DataError(f"view_boxes must be ({count}, V, 4) crop boxes, got {tuple(boxes.shape)}")
    if flips is None or tuple(flips.shape) != tuple(boxes.shape[:2]):
        got = None if flips is None else tuple(flips.shape)
        raise DataError(f"view_flip must be {tuple(boxes.shape[:2])}, got {got}")
    if boxes.dtype.is_floating_point or boxes.dtype == torch.bool or boxes.is_complex():
        raise DataError(f"view_boxes must be whole pixel counts, got {boxes.dtype}")
    h_img, w_img = (int(v) for v in size)
    y0, x0, h, w = boxes.long().unbind(-1)
    inside = (y0 >= 0) & (x0 >= 0) & (h >= 1) & (w >= 1) & (y0 + h <= h_img) & (x0 + w <= w_img)
    if not bool(inside.all()):
        first = boxes.reshape(-1, 4)[(~inside).flatten().nonzero()[0, 0]].tolist()
        raise DataError(
            f"{int((~inside).sum())} recorded crop box(es) lie outside the {h_img}x{w_img} "
            f"images, e.g. (y0, x0, h, w) = {tuple(first)}; the views cannot be replayed: "
            "relabel the set (ddkit.eval.relabel.relabel)"
        )


def _renorm(p: torch.Tensor) -> torch.Tensor:
    p = p.float().clamp_min(0.0)
    return p / p.sum(-1, keepdim=True).clamp_min(1e-12)


def _parts(extras: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {p: extras[prefix + p] for p in _PARTS if prefix + p in extras}


def labels_decoded(meta: dict, extras: dict[str, torch.Tensor]) -> bool:
    """Whether a set's labels are decoded from its encoded labels (so not stored themselves):
    a set with a ``label_budget`` other than ``regen`` and ``label.values`` or ``view_values``
    (``*logits`` for stored logits)."""
    budget = meta.get("label_budget")
    if not isinstance(budget, str) or budget == "regen":
        return False
    return any(p + key in extras for p in (IMAGE_PREFIX, VIEW_PREFIX) for key in _STORED)


def decoded_labels(
    meta: dict, extras: dict[str, torch.Tensor], num_classes: int
) -> torch.Tensor | None:
    """A set's per-image soft labels decoded from its encoded labels: ``label.*``, or else the
    mean of its decoded per-view labels, renormalised; ``None`` when the set stores its labels
    themselves (:func:`labels_decoded`). Stored logits decode at ``meta['label_temperature']``.
    Decoded on the CPU, so the result is the same bits wherever the set was made."""
    if not labels_decoded(meta, extras):
        return None
    cpu = {k: v.cpu() for k, v in extras.items()}
    temperature = float(meta.get("label_temperature", 1.0))
    if any(IMAGE_PREFIX + key in cpu for key in _STORED):
        return decode_probs(_parts(cpu, IMAGE_PREFIX), num_classes, temperature)
    views = decode_probs(_parts(cpu, VIEW_PREFIX), num_classes, temperature)
    if views.ndim != 3:
        raise DataError(f"per-view labels must be (N, V, K), got {tuple(views.shape)}")
    return _renorm(views.mean(1))


def label_tensor_keys(extras: dict[str, torch.Tensor]) -> list[str]:
    """The extras that hold labels: encoded per-image labels (``label.*``), per-view labels and
    their view parameters (``view_*``) and per-region labels (``region_labels``)."""
    return [
        k
        for k in extras
        if k.startswith(IMAGE_PREFIX) or k.startswith(VIEW_PREFIX) or k == "region_labels"
    ]


def stored_logits(extras: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A set's stored logits (``logits`` and ``indices``): its per-view ones (``view_*``, rows
    ``(N, V, k)``), else its per-image ones (``label.*``, ``(N, k)``); ``None`` when it stores
    probabilities or nothing (budgets other than ``logits:K``)."""
    for prefix in (VIEW_PREFIX, IMAGE_PREFIX):
        if prefix + "logits" in extras:
            return _parts(extras, prefix)
    return None


def view_parts(extras: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoded per-view labels of a set (``values`` or ``logits``, ``indices``, ``scale``)."""
    return _parts(extras, VIEW_PREFIX)
