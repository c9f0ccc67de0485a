"""``fred:R`` -- frequency domain (FreD: Shin et al., NeurIPS 2023): each image keeps only the
fraction ``R`` of its 2-D DCT coefficients (orthonormal DCT-II per channel) at the positions
where the real training images' coefficients carry the most energy, so about ``ipc / R`` images fit per
class; decoding zero-fills the rest and inverts the DCT. The positions (a mask shared by the
whole set) are stored too. Deviations from FreD: the positions are chosen by the mean
squared coefficient of the real data at each position (FreD ranks by explained variance;
the mean square also keeps the images' mean, which normalised backgrounds need) and stay
fixed; no per-dataset tuned ratios.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ddkit.data.codecs.base import Codec, image_bytes, register_codec
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ x`` transforms a length-``n`` signal;
    ``D.T`` inverts it)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


@register_codec
class Frequency(Codec):
    """FreD-style frequency-domain storage keeping a fraction ``keep`` of DCT coefficients."""

    name = "fred"
    help = (
        "frequency domain: keep a fraction R of each image's DCT coefficients (FreD, NeurIPS 2023)"
    )
    argument = float
    usage = "fred:R (0 < R <= 1)"
    counts_stored = True
    example = "fred:0.25"

    def __init__(self, keep: float) -> None:
        if not 0 < keep <= 1:
            raise ConfigError(f"fred keeps a fraction of coefficients in (0, 1], got {keep}")
        self.keep = float(keep)
        self.index_: torch.Tensor | None = None  # (C, kept) flat positions per channel

    @property
    def spec_string(self) -> str:
        return f"fred:{self.keep:g}"

    def _kept(self, spec: DatasetSpec) -> int:
        h, w = spec.image_size
        return max(1, round(self.keep * h * w))

    def fit(self, train: ImageDataset) -> None:
        self._set_shape(train.spec)
        coefficients = self._forward(train.images)  # (N, C, H, W)
        energy = coefficients.flatten(2).pow(2).mean(0)  # (C, H*W)
        kept = self._kept(train.spec)
        self.index_ = energy.topk(kept, dim=1).indices.sort(dim=1).values

    def _set_shape(self, spec: DatasetSpec) -> None:
        h, w = spec.image_size
        self.dh_, self.dw_ = dct_matrix(h), dct_matrix(w)
        self.shape_ = spec.shape

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        self._set_shape(spec)
        self.index_ = extras["fred.positions"].long()
        return extras["fred.coefficients"]

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        k, c = spec.num_classes, spec.channels
        budget = k * ipc * (image_bytes(spec) + self.label_bytes) - c * self._kept(spec) * 4
        per_image = c * self._kept(spec) * 4 + self.label_bytes
        n = budget // (k * per_image)
        if n < 1:
            raise ConfigError(f"fred:{self.keep:g} leaves no room for an image at IPC {ipc}")
        return int(n)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dh_ @ images @ self.dw_.T

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flat = self._forward(images).flatten(2)  # (N, C, H*W)
        return torch.gather(flat, 2, self.index_.expand(len(images), -1, -1)).clone()

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        n = len(stored)
        c, h, w = self.shape_
        full = stored.new_zeros(n, c, h * w)
        full = full.scatter(2, self.index_.expand(n, -1, -1), stored)
        return self.dh_.T @ full.view(n, c, h, w) @ self.dw_

    def record(
        self, stored: torch.Tensor, spec: DatasetSpec
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {"fred.coefficients": stored, "fred.positions": self.index_.to(torch.int32)}
        return {"kept_coefficients": int(self.index_.shape[1])}, tensors
