"""``--method recommended``: the one path ddkit recommends for an image folder of any size on a
machine's own time (issue 82): distribution matching (DM, Zhao & Bilen, WACV 2023) from real
images, with the real batch sized so that a step's cost follows the number of classes, not the
folder's size, and the iterations fitted to a time budget (one hour unless ``--budget`` says
otherwise).

Why DM: its step is one no-grad embedding of real images and one forward and backward of the
synthetic ones, a class at a time if memory asks (``syn_chunk``); it needs no expert
trajectories or teacher to train first; and a set stopped at any step is a valid set (constant
learning rate), so a time budget cuts it anywhere. Its
published real batch of 256 images per class makes a step grow with the classes: 200 classes
embed 51,200 images per step. The recommendation keeps at most :data:`REAL_IMAGES_PER_STEP`
real images per step, all classes together (the published 256 per class up to 32 classes),
never fewer than :data:`MIN_BATCH_REAL` per class. Other families were not compared at scale;
the comparison with random real images of the same bytes is in
docs/benchmarks/data-at-scale.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ddkit.errors import ConfigError
from ddkit.methods.base import create_method, has_presets_for

#: the name that asks for the recommendation
RECOMMENDED = "recommended"
#: the method it chooses
METHOD = "dm"
#: real images embedded per step, all classes together, at most (where the classes allow)
REAL_IMAGES_PER_STEP = 8192
#: ...but never fewer than this many per class: a class's mean embedding from fewer is noise
MIN_BATCH_REAL = 16
#: the time budget of a recommended run that names none, in seconds
DEFAULT_BUDGET_SECONDS = 3600.0
#: the matching network on a CPU for data without a preset of the method: at the same depth
#: the published width (128) costs about 13 times the arithmetic per 64 px image of width 32,
#: so an hour of a CPU fits far fewer steps (width 32 is what the mnist5k preset uses)
CPU_MODEL = "convnet-w32"


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What ``--method recommended`` resolved to: a method, its options (the user's own on
    top) and why, in one line."""

    method: str
    options: dict[str, Any]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "options": dict(self.options), "why": self.why}


def recommended_batch_real(preset_batch: int, num_classes: int) -> int:
    """Real images per class per step: the method's own (``preset_batch``) unless
    ``num_classes`` of them would pass :data:`REAL_IMAGES_PER_STEP`, then as many as fit, at
    least :data:`MIN_BATCH_REAL`."""
    fit = max(MIN_BATCH_REAL, REAL_IMAGES_PER_STEP // max(1, num_classes))
    return min(int(preset_batch), fit)


def recommend(
    train: Any,
    dataset: str,
    ipc: int,
    options: dict[str, Any] | None = None,
    *,
    on_cpu: bool = True,
) -> Recommendation:
    """The recommended method and options for distilling ``train`` (the training split of
    ``dataset``) at ``ipc`` (``on_cpu``: where the run computes); ``options`` are the user's,
    which win over the recommendation's. Image data only: other rows are refused in one
    line."""
    kind = train.spec.kind
    if not (kind.pixels and kind.classes):  # dm moves the pixels of labelled pictures
        raise ConfigError(
            f"--method {RECOMMENDED} chooses for image data; {dataset!r} holds {kind.name} rows: "
            "pick a method for them (`ddkit list methods`)"
        )
    options = dict(options or {})
    classes = len(train.class_counts)
    chosen: dict[str, Any] = {}
    preset = create_method(METHOD, dataset=dataset, ipc=ipc)
    if "batch_real" not in options:
        chosen["batch_real"] = recommended_batch_real(preset.config.batch_real, classes)
    if on_cpu and "model" not in options and not has_presets_for(type(preset), dataset):
        chosen["model"] = CPU_MODEL
    settings = {**chosen, **options}
    batch = settings.get("batch_real", preset.config.batch_real)
    model = settings.get("model", preset.config.model)
    why = (
        f"{METHOD} (distribution matching from real images): no teacher or experts to train "
        f"first, a valid set at any step; batch_real {batch} x {classes:,} classes"
        + (
            f" (at most {REAL_IMAGES_PER_STEP:,} real images per step)"
            if "batch_real" in chosen
            else ""
        )
        + f"; network {model}"
        + (" (narrow on a CPU: more steps per hour)" if "model" in chosen else "")
    )
    return Recommendation(METHOD, settings, why)


def run_budget(method: str, budget: float | str | None) -> float | str | None:
    """The time budget of a run asked for ``method``: ``budget``, or for :data:`RECOMMENDED`
    without one :data:`DEFAULT_BUDGET_SECONDS` (the recommended run's own)."""
    return DEFAULT_BUDGET_SECONDS if method == RECOMMENDED and budget is None else budget


def resolve_method(
    method: str,
    train: Any,
    dataset: str,
    ipc: int,
    options: dict[str, Any] | None,
    device: Any = None,
) -> tuple[str, dict[str, Any], Recommendation | None]:
    """``(method, options, recommendation)`` for a run asked for ``method`` on ``device``
    (default: the CPU): unchanged unless it is :data:`RECOMMENDED`, which resolves through
    :func:`recommend` (its time budget: :func:`run_budget`)."""
    if method != RECOMMENDED:
        return method, dict(options or {}), None
    on_cpu = device is None or torch.device(device).type == "cpu"
    rec = recommend(train, dataset, ipc, options, on_cpu=on_cpu)
    return rec.method, rec.options, rec
