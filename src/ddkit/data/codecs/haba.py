"""``haba:H`` -- factorisation (HaBa: Liu, Wang, Yang & Wang, NeurIPS 2022): per class a few
*bases* (images) and, shared by all classes, ``H`` small *hallucinator* networks (a 3x3
convolution, a learned scale and shift, tanh, a 3x3 convolution back, added to the base);
every base through every hallucinator gives ``H`` training images. The hallucinators' weights
are stored too, so fewer bases fit than plain images (none at IPC 1 on small images: the
codec then says so). The hallucinators' weights are stored divided by ``weight_scale``
(0.1), so the objective's image optimiser moves them ``weight_scale`` times as far as their
stored numbers under Adam and ``weight_scale**2`` as far under SGD -- HaBa gives them an
optimiser of their own; sharing the pixels' step at scale 1, a weight's gradient sums over
every emitted image and the hallucinators blew the images far off their bases
(``benchmarks/studies/probe_haba.py``). Sets saved before the scale existed decode at scale 1.
Deviations from HaBa: no adversarial contrastive term keeping the
hallucinators apart (their encoders start random and their decoders at zero, so each starts
as the identity); the emitted images' hard labels are counted per image.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ddkit.data.codecs.base import Codec, image_bytes, register_codec
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError


@register_codec
class Factorisation(Codec):
    """HaBa-style factorisation: bases x hallucinators (module docstring)."""

    name = "haba"
    help = "bases through H shared hallucinator networks (HaBa, NeurIPS 2022)"
    argument = int
    usage = "haba:H (H >= 1)"
    counts_stored = True
    example = "haba:2"
    width = 4  # channels inside a hallucinator
    weight_scale = 0.1  # hallucinator weights = weight_scale x their stored numbers

    def __init__(self, hallucinators: int) -> None:
        if hallucinators < 1:
            raise ConfigError(f"haba needs at least one hallucinator, got {hallucinators}")
        self.h = int(hallucinators)

    @property
    def spec_string(self) -> str:
        return f"haba:{self.h}"

    def _sizes(self, channels: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the hallucinators' parameters, all ``h`` stacked (grouped convolutions)."""
        h, c, w = self.h, channels, self.width
        return {"enc": (h * w, c, 3, 3), "scale": (h * w,), "shift": (h * w,),
                "dec": (h * c, w, 3, 3), "dec_bias": (h * c,)}  # fmt: skip

    def _num_params(self, channels: int) -> int:
        return sum(math.prod(v) for v in self._sizes(channels).values())

    def bases_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        k = spec.num_classes
        budget = k * ipc * (image_bytes(spec) + self.label_bytes)
        budget -= 4 * self._num_params(spec.channels)
        return int(budget // (k * (image_bytes(spec) + self.h * self.label_bytes)))

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        b = self.bases_per_class(ipc, spec)
        if b < 1:
            raise ConfigError(
                f"haba:{self.h} does not fit the bytes of IPC {ipc}: its hallucinators alone "
                f"take {4 * self._num_params(spec.channels)} bytes; use a larger IPC or fewer"
            )
        return b * self.h

    def real_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        return self.emitted_per_class(ipc, spec) // self.h  # the bases; refuses what cannot fit

    def fit(self, train: ImageDataset) -> None:
        self.shape_ = train.spec.shape

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        self.shape_ = spec.shape
        scale = meta.get("hallucinator_weight_scale", 1.0)  # older sets: 1
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e6:
            raise ConfigError(f"hallucinator_weight_scale must be a positive number, got {scale!r}")
        self.weight_scale = float(scale)
        return extras["haba.stored"]

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Bases start as the real images; hallucinators as the identity (their decoder is
        zero) with random encoders, so they differ as soon as they learn."""
        c = self.shape_[0]
        sizes = self._sizes(c)
        enc = torch.randn(sizes["enc"], generator=generator) / math.sqrt(9 * c)
        weights = [enc.flatten(), torch.ones(sizes["scale"]), torch.zeros(sizes["shift"]),
                   torch.zeros(sizes["dec"]).flatten(), torch.zeros(sizes["dec_bias"])]  # fmt: skip
        stored = [images.flatten(), *(w / self.weight_scale for w in weights)]
        return torch.cat([p.to(images.dtype) for p in stored])

    def _unpack(self, stored: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.shape_[0]
        sizes = self._sizes(c)
        n_params = self._num_params(c)
        bases = stored[: len(stored) - n_params].view(-1, *self.shape_)
        params, start = {}, len(stored) - n_params
        for key, shape in sizes.items():
            n = math.prod(shape)
            params[key] = self.weight_scale * stored[start : start + n].view(shape)
            start += n
        return bases, params

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """Every base through every hallucinator: ``base + dec(tanh(scale * enc(base) +
        shift))``, base-major (each base's ``h`` images together, so classes stay in order)."""
        bases, p = self._unpack(stored)
        n, (c, hh, ww) = len(bases), self.shape_
        x = bases.repeat(1, self.h, 1, 1)  # (N, h*C, H, W): one copy per hallucinator
        f = torch.nn.functional.conv2d(x, p["enc"], padding=1, groups=self.h)
        f = torch.tanh(f * p["scale"].view(1, -1, 1, 1) + p["shift"].view(1, -1, 1, 1))
        out = torch.nn.functional.conv2d(f, p["dec"], p["dec_bias"], padding=1, groups=self.h)
        return (x + out).view(n * self.h, c, hh, ww)

    def record(
        self, stored: torch.Tensor, spec: DatasetSpec
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        bases, _ = self._unpack(stored.detach())
        meta = {"hallucinators": self.h, "bases_per_class": len(bases) // spec.num_classes,
                "hallucinator_weight_scale": self.weight_scale}  # fmt: skip
        return meta, {"haba.stored": stored}
