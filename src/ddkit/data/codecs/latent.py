"""``latent:D`` -- latent codes through a frozen decoder (GLaD: Cazenavette et al., CVPR 2023,
optimise a pretrained generator's latents with any matching objective). No pretrained
generator is at hand, so the codec trains a small convolutional autoencoder on the real
training images (seed 0, so every run shares it) and stores ``D`` numbers per image plus the
decoder's weights, which count against the budget (GLaD ships a public generator and counts
none of it). The autoencoder is an artifact: trained once per dataset and settings and kept in a
folder (:mod:`ddkit.data.codecs.autoencoder`). Codes start as the encoder's codes of
real images. Deviations: a deterministic
autoencoder instead of a GAN or VAE, trained briefly (2,000 Adam steps), no intermediate-layer
latents.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from ddkit.data.codecs.autoencoder import obtain_autoencoder
from ddkit.data.codecs.base import Codec, image_bytes, register_codec
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, FileFormatError
from ddkit.meter import check_memory
from ddkit.rng import seeded_global_rng


@register_codec
class Latent(Codec):
    """Latent codes through a frozen decoder that ddkit trains on the real images (module
    docstring): ``latent:D`` stores ``D`` numbers per image plus the decoder's weights."""

    name = "latent"
    help = "D-number codes through a frozen decoder trained on the real images (GLaD-like)"
    argument = int
    usage = "latent:D (D >= 1)"
    counts_stored = True
    example = "latent:4"
    test_settings = {"steps": 40}
    steps = 2000  # autoencoder training steps (Adam, lr 1e-3, batch 128, seed 0)
    width = 16  # channels after the decoder's first layer (halved by the second)

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ConfigError(f"latent codes need at least one dimension, got {dim}")
        self.dim = int(dim)

    @property
    def spec_string(self) -> str:
        return f"latent:{self.dim}"

    def _decoder_params(self, spec: DatasetSpec) -> int:
        """The number of the decoder's parameters (counted, not built)."""
        c, (h, w), m, d = spec.channels, spec.image_size, self.width, self.dim
        small = m * (h // 4) * (w // 4)
        return d * small + small + m * (m // 2) * 16 + m // 2 + (m // 2) * c * 16 + c

    def _networks(self, spec: DatasetSpec) -> tuple[nn.Module, nn.Module]:
        """A fresh encoder and decoder for ``spec``'s images, initialised from seed 0."""
        c, (h, w), m = spec.channels, spec.image_size, self.width
        if h % 4 or w % 4:
            raise ConfigError(f"latent codecs need image sides divisible by 4, got {h}x{w}")
        small = m * (h // 4) * (w // 4)
        check_memory(  # the encoder has about as many parameters as the decoder
            f"latent:{self.dim}'s autoencoder", 8 * self._decoder_params(spec), "use a smaller D"
        )
        with seeded_global_rng(0):  # layer initialisers draw from the global RNG
            encoder = nn.Sequential(
                nn.Conv2d(c, m // 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(m // 2, m, 3, 2, 1),
                nn.ReLU(), nn.Flatten(), nn.Linear(small, self.dim),
            )  # fmt: skip
            decoder = nn.Sequential(
                nn.Linear(self.dim, small), nn.ReLU(), nn.Unflatten(1, (m, h // 4, w // 4)),
                nn.ConvTranspose2d(m, m // 2, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(m // 2, c, 4, 2, 1),
            )  # fmt: skip
        return encoder, decoder

    def _decoder_bytes(self, spec: DatasetSpec) -> int:
        check_memory(
            f"latent:{self.dim}'s decoder", 4 * self._decoder_params(spec), "use a smaller D"
        )
        return 4 * self._decoder_params(spec)

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        k = spec.num_classes
        budget = k * ipc * (image_bytes(spec) + self.label_bytes) - self._decoder_bytes(spec)
        n = budget // (k * (4 * self.dim + self.label_bytes))
        if n < 1:
            raise ConfigError(
                f"latent:{self.dim} does not fit the bytes of IPC {ipc}: its decoder alone "
                f"takes {self._decoder_bytes(spec)} bytes; use a larger IPC or a smaller D"
            )
        return int(n)

    def fit(self, train: ImageDataset) -> None:
        """The autoencoder of ``train``'s images (seed 0: every run shares it), loaded from its
        artifact folder when one was trained before with the same data and settings
        (:mod:`ddkit.data.codecs.autoencoder`); its decoder is frozen."""
        device = train.images.device
        self.encoder_, self.decoder_ = (net.to(device) for net in self._networks(train.spec))
        settings = {"latent_dim": self.dim, "width": self.width, "steps": self.steps,
                    "seed": 0, "lr": 1e-3, "batch": 128}  # fmt: skip
        meta = obtain_autoencoder(
            train, settings, {"encoder": self.encoder_, "decoder": self.decoder_},
            lambda: self._train(train),
        )  # fmt: skip
        self.reconstruction_mse_ = float(meta["reconstruction_mse"])
        self.decoder_.requires_grad_(False).eval()

    def _train(self, train: ImageDataset) -> dict[str, float]:
        """``steps`` Adam steps (lr 1e-3, batches of 128, shuffled from seed 0) on the
        reconstruction error; returns the final error on the first 1,024 images."""
        g = torch.Generator().manual_seed(0)
        params = [*self.encoder_.parameters(), *self.decoder_.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3)
        x = train.images
        epochs = (torch.randperm(len(x), generator=g).split(128) for _ in itertools.count())
        for idx in itertools.islice(itertools.chain.from_iterable(epochs), self.steps):
            loss = (self.decoder_(self.encoder_(x[idx])) - x[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            mse = (self.decoder_(self.encoder_(x[:1024])) - x[:1024]).pow(2).mean()
        return {"reconstruction_mse": float(mse)}

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        self.width = meta.get("latent_width", self.width)
        weights = extras["latent.decoder"]
        if not isinstance(self.width, int) or self.width < 2:
            raise FileFormatError(f"latent_width must be an integer >= 2, got {self.width!r}")
        if weights.ndim != 1 or len(weights) != self._decoder_params(spec):
            raise FileFormatError(  # checked before the decoder is built
                f"the set stores a decoder of {weights.numel()} numbers, not the "
                f"{self._decoder_params(spec)} of latent:{self.dim} at width {self.width}"
            )
        _, self.decoder_ = self._networks(spec)
        nn.utils.vector_to_parameters(weights, self.decoder_.parameters())
        self.decoder_.requires_grad_(False).eval()
        return extras["latent.codes"]

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder_(images.float()).to(images.dtype)

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return self.decoder_.to(stored.dtype)(stored)

    def record(
        self, stored: torch.Tensor, spec: DatasetSpec
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        weights = torch.cat([p.detach().flatten() for p in self.decoder_.parameters()])
        meta = {"latent_dim": self.dim, "latent_width": self.width,
                "decoder_reconstruction_mse": self.reconstruction_mse_}  # fmt: skip
        return meta, {"latent.codes": stored, "latent.decoder": weights}
