"""``pixels``: the images themselves."""

from __future__ import annotations

import torch

from ddkit.data.codecs.base import Codec, register_codec
from ddkit.data.spec import DatasetSpec


@register_codec
class Pixels(Codec):
    """The images themselves."""

    name = "pixels"
    help = "the images themselves"
    usage = "pixels"
    example = "pixels"

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        return ipc

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.clone()

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return stored
