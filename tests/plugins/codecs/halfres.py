"""``halfres``: images stored at half their resolution, decoded by bilinear upsampling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ddkit.data.codecs.base import Codec, image_bytes, register_codec
from ddkit.data.spec import DatasetSpec


@register_codec
class HalfResolution(Codec):
    """Images stored at half resolution (a test codec): about four fit the bytes of one."""

    name = "halfres"
    usage = "halfres"
    example = "halfres"
    counts_stored = True  # a saved set's bytes are the half-resolution images (and labels)

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        """As many as fit the bytes of ``ipc`` plain images and their labels, each stored
        image taking a quarter of a plain one plus its own label."""
        per_image = image_bytes(spec) // 4 + self.label_bytes
        return ipc * (image_bytes(spec) + self.label_bytes) // per_image

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.avg_pool2d(images, 2)

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return F.interpolate(stored, scale_factor=2, mode="bilinear", align_corners=False)

    def record(
        self, stored: torch.Tensor, spec: DatasetSpec
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {"halfres.stored": stored}

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        return extras["halfres.stored"]
