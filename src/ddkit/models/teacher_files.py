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
from ddkit.errors import FileFormatError
from ddkit.io import load_tensors, read_json, recover_replaced_dir, sha256_file

WEIGHTS_FILE = "teacher.safetensors"
META_FILE = "teacher.json"
FORMAT = "ddkit.teacher"


def load_teacher(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a teacher saved by :func:`save_teacher`: ``(model in eval mode, metadata)``.

    Weights are read with safetensors (no pickle); a tampered, truncated or mismatched file
    raises :class:`~ddkit.errors.FileFormatError`. The returned model's parameters do not
    require gradients.
    """
    from ddkit.models import create_model

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
    with torch.random.fork_rng(
        devices=[]
    ):  # the init is overwritten; keep the global RNG as it was
        net = create_model(
            meta["model"],
            num_classes=spec.num_classes,
            in_channels=spec.channels,
            image_size=spec.image_size,
        )
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
    return net, meta
