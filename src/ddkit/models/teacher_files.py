"""A teacher folder on disk (``ddkit teacher``, :mod:`ddkit.eval.teacher`) read back:
``teacher.safetensors`` (the ``state_dict``) and ``teacher.json`` (model name, dataset spec,
recipe, SHA-256 of the weights). Here, below evaluation, so that networks from outside
(:mod:`ddkit.models.external`) read teacher folders too; nothing is unpickled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.errors import FileFormatError, warn_at_caller
from ddkit.io import load_tensors, read_json, recover_replaced_dir, sha256_file
from ddkit.meter import BUDGET_ENV

WEIGHTS_FILE = "teacher.safetensors"
META_FILE = "teacher.json"
FORMAT = "ddkit.teacher"
#: a teacher agreeing with the hard labels of its own training data less often than this many
#: times chance (``1 / K``) is taken for untrained (:func:`untrained_below`)
UNTRAINED_TIMES_CHANCE = 2.0


def untrained_below(num_classes: int) -> float:
    """The training-data agreement under which a teacher of ``num_classes`` classes is warned
    about: :data:`UNTRAINED_TIMES_CHANCE` times chance, at most halfway from chance to every
    label right (two classes: 0.75, not 1)."""
    chance = 1.0 / max(int(num_classes), 1)
    return min(UNTRAINED_TIMES_CHANCE * chance, (1.0 + chance) / 2)


def warn_if_untrained(meta: dict[str, Any], where: str) -> None:
    """Warn (once per call, at the user's line) when ``meta``'s ``train_accuracy`` -- the
    teacher's agreement with the hard labels of its training data, measured when it was
    trained -- is below :func:`untrained_below`: its soft labels would carry next to nothing."""
    accuracy, spec = meta.get("train_accuracy"), meta.get("spec")
    classes = spec.get("num_classes") if isinstance(spec, dict) else None
    if not isinstance(accuracy, int | float) or not isinstance(classes, int) or classes < 2:
        return
    bar = untrained_below(classes)
    if accuracy < bar:
        warn_at_caller(
            f"teacher {where} agrees with only {100 * accuracy:.1f}% of its training labels "
            f"({classes} classes: chance is {100 / classes:.1f}%, the bar {100 * bar:.1f}%); it "
            "looks untrained and its soft labels carry next to nothing: train it for more "
            "epochs or with another lr"
        )


def load_teacher(
    path: str | os.PathLike, device: torch.device | str = "cpu", *, warn_untrained: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a teacher saved by :func:`save_teacher`: ``(model in eval mode, metadata)``.

    Weights are read with safetensors (no pickle); a tampered, truncated or mismatched file, or
    one naming a model larger than the memory budget (refused before it is built), raises
    :class:`~ddkit.errors.FileFormatError`. The returned model's parameters do not require
    gradients. A teacher whose recorded training accuracy says it is untrained is warned about
    (:func:`warn_if_untrained`) unless ``warn_untrained`` is false.
    """
    from ddkit.models import create_model
    from ddkit.models.registry import check_model_size

    recover_replaced_dir(path)

    p = Path(path)
    if not (p / META_FILE).is_file():
        raise FileFormatError(f"no teacher at {str(p)!r} (expected {META_FILE} and {WEIGHTS_FILE})")
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{str(p / META_FILE)!r} is not a ddkit teacher file")
    wfile = p / WEIGHTS_FILE
    if not wfile.is_file():
        raise FileFormatError(f"missing file {str(wfile)!r}")
    if meta.get("sha256") and sha256_file(wfile) != meta["sha256"]:
        raise FileFormatError(f"{str(wfile)!r} does not match its checksum in {META_FILE}")
    spec = DatasetSpec.from_dict(meta.get("spec", {}))
    shape = {"num_classes": spec.num_classes, "in_channels": spec.channels,
             "image_size": spec.image_size}  # fmt: skip
    check_model_size(
        meta["model"], **shape, error=FileFormatError,
        fix=f"the teacher in {str(p)!r} is not one this machine holds: train a smaller one, or "
        f"raise ${BUDGET_ENV}",
    )  # fmt: skip
    with torch.random.fork_rng(
        devices=[]
    ):  # the init is overwritten; keep the global RNG as it was
        net = create_model(meta["model"], **shape)
    try:
        net.load_state_dict(load_tensors(wfile), strict=True)
    except RuntimeError as e:
        raise FileFormatError(
            f"teacher weights in {str(p)!r} do not fit model {meta['model']!r}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    net = net.to(device).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    net.teacher_meta_ = meta
    if warn_untrained:
        warn_if_untrained(meta, repr(str(p)))
    return net, meta
