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
  Its cost is the teacher's bytes, counted by :func:`ddkit.eval.accounting.storage_report`.

Decoding always gives a valid distribution: non-negative rows renormalised to sum to 1 (float32
``full`` rows are returned as stored). Decoding reads the stored dtypes (float32 / float16
values, uint8 codes with a ``scale``, ``indices`` when classes were dropped), so a set's tensors
describe themselves. A set's encoded per-image labels live in its extras under ``label.*``;
per-view labels under ``view_*`` (:data:`ddkit.eval.relabel.VIEW_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    "parse_label_budget",
    "view_parts",
]

#: extras prefix of a set's encoded per-image labels (``label.values`` ...)
IMAGE_PREFIX = "label."
#: extras prefix of per-view labels (``view_values``, ``view_indices``, ``view_scale``)
VIEW_PREFIX = "view_"
_PARTS = ("values", "indices", "scale")
_SPELLINGS = "full, fp16, int8, topk:K, topk:K+fp16, topk:K+int8 or regen"
_INT8_LEVELS = 255

Precision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class LabelBudget:
    """A parsed label budget (:func:`parse_label_budget`): ``topk`` classes kept per row
    (``None``: all), the ``precision`` of the stored values, or ``regen`` (nothing stored)."""

    topk: int | None = None
    precision: Precision = "fp32"
    regen: bool = False

    @property
    def spelling(self) -> str:
        """The canonical spelling (``topk:5+fp16``)."""
        if self.regen:
            return "regen"
        if self.topk is None:
            return "full" if self.precision == "fp32" else self.precision
        return f"topk:{self.topk}" + ("" if self.precision == "fp32" else f"+{self.precision}")

    def for_classes(self, k: int) -> LabelBudget:
        """This budget for ``k`` classes: ``topk >= k`` keeps every class (no indices)."""
        if self.topk is not None and self.topk >= k:
            return LabelBudget(None, self.precision, self.regen)
        return self

    def encode(self, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored tensors of probability rows ``(..., K)``: ``values`` (``(..., k)``
        float32 / float16 / uint8), ``indices`` when classes were dropped, ``scale``
        ``(..., 1)`` float32 for int8 codes."""
        if self.regen:
            raise ConfigError("label budget 'regen' stores no probabilities to encode")
        b = self.for_classes(probs.shape[-1])
        p = probs.detach().float()
        out: dict[str, torch.Tensor] = {}
        if b.topk is not None:
            p, idx = p.topk(b.topk, dim=-1)  # sorted, ties broken by torch.topk's order
            out["indices"] = idx.to(torch.int16 if probs.shape[-1] <= 32767 else torch.int32)
        if b.precision == "fp16":
            out["values"] = p.to(torch.float16)
        elif b.precision == "int8":
            scale = p.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            scale = scale / _INT8_LEVELS
            out["values"] = (p / scale).round().clamp(0, _INT8_LEVELS).to(torch.uint8)
            out["scale"] = scale
        else:
            out["values"] = p.clone()
        return {k: v.contiguous() for k, v in out.items()}


def parse_label_budget(text: str) -> LabelBudget:
    """A :class:`LabelBudget` from its spelling; anything else is refused in one line."""
    raw = str(text).strip()
    bad = ConfigError(f"label budget {text!r} is not understood; valid: {_SPELLINGS}")
    if raw == "regen":
        return LabelBudget(regen=True)
    if raw in ("full", "fp16", "int8"):
        return LabelBudget(None, "fp32" if raw == "full" else raw)  # type: ignore[arg-type]
    head, plus, precision = raw.partition("+")
    if plus and precision not in ("fp16", "int8"):
        raise bad
    name, colon, value = head.partition(":")
    if name != "topk" or not colon or not value.isdigit():
        raise bad
    if int(value) < 1:
        raise ConfigError(f"label budget {text!r}: topk needs K >= 1")
    return LabelBudget(int(value), precision or "fp32")  # type: ignore[arg-type]


def decode_probs(parts: dict[str, torch.Tensor], num_classes: int) -> torch.Tensor:
    """Probability rows ``(..., K)`` float32 from the tensors :meth:`LabelBudget.encode` made
    (read by dtype): valid distributions; float32 rows of every class come back as stored."""
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
    a set with a ``label_budget`` other than ``regen`` and ``label.values`` or ``view_values``."""
    budget = meta.get("label_budget")
    if not isinstance(budget, str) or budget == "regen":
        return False
    return IMAGE_PREFIX + "values" in extras or VIEW_PREFIX + "values" in extras


def decoded_labels(
    meta: dict, extras: dict[str, torch.Tensor], num_classes: int
) -> torch.Tensor | None:
    """A set's per-image soft labels decoded from its encoded labels: ``label.*``, or else the
    mean of its decoded per-view labels, renormalised; ``None`` when the set stores its labels
    themselves (:func:`labels_decoded`). Decoded on the CPU, so the result is the same bits
    wherever the set was made."""
    if not labels_decoded(meta, extras):
        return None
    cpu = {k: v.cpu() for k, v in extras.items()}
    if IMAGE_PREFIX + "values" in cpu:
        return decode_probs(_parts(cpu, IMAGE_PREFIX), num_classes)
    views = decode_probs(_parts(cpu, VIEW_PREFIX), num_classes)
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


def view_parts(extras: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoded per-view probabilities of a set (``values``, ``indices``, ``scale``)."""
    return _parts(extras, VIEW_PREFIX)
