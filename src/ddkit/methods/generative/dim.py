"""DiM: a dataset distilled into a generator, sampled at any IPC.

K. Wang, J. Gu, D. Zhou, Z. Zhu, W. Jiang and Y. You, "DiM: Distilling Dataset into Generative
Model", arXiv:2303.04707 (2023). Instead of images, DiM ships a conditional generator trained so
that the images it emits match the real data under a matching objective; any number of images
per class is sampled from it when a network is to be trained.

Here the generator is the decoder of the ``latent:D`` codec's autoencoder
(:class:`~ddkit.data.codecs.latent.Latent`: trained on the real training images, seed 0), made
class-conditional by one diagonal Gaussian per class in its latent space, started at the mean
and spread of the encoder's codes of that class. Every iteration samples ``batch_syn`` fresh
latents per class, decodes them and lowers DM's objective -- the distance between the mean
embeddings of real and generated images of each class under a freshly initialised network,
with the same Siamese augmentation (:class:`~ddkit.methods.matching.distribution.DM`) -- by Adam
on the decoder's weights (``lr_img``) and the class Gaussians (``lr_latent``).

``ipc`` is the byte budget, as for the codecs: the generator must fit the bytes of ``ipc``
plain images and labels per class, or the method refuses to start. What is stored: the
decoder's weights and the class means and log-scales (``dim.decoder``,
``dim.means``, ``dim.log_scales``); :meth:`SyntheticSet.storage_bytes` counts these alone. The
saved set also holds ``samples`` images per class (default ``10 x ipc``) sampled with
``sample_seed``, so it evaluates like any other; :func:`resample` draws any other number from the stored generator. Labels are not
stored: a class-conditional generator emits each class's images on request.

Deviations from DiM: no adversarial (GAN) training and no logit matching against networks
trained on real data -- the generator starts as an autoencoder's decoder and is distilled with
DM's embedding objective on random networks; the class condition is a Gaussian per class in the
latent space rather than a label embedding fed to the generator.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ddkit.data.codecs import LABEL_BYTES, image_bytes
from ddkit.data.codecs.latent import Latent
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.meter import check_memory
from ddkit.methods.base import register_method
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Auto, Precision, Preset
from ddkit.methods.matching.distribution import (
    DM,
    DMConfig,
    _mean_match,
    match_embeddings,
    sample_class_draws,
)
from ddkit.methods.trajectory.student import FlatModel

__all__ = ["DiM", "DiMConfig", "resample"]

STORED = ("dim.decoder", "dim.means", "dim.log_scales")


@dataclasses.dataclass(frozen=True)
class DiMConfig(DMConfig):
    """DiM hyper-parameters: DM's embedding networks and real batches, plus the generator's."""

    iterations: int = 2000
    lr_img: float = 1e-4  # Adam on the generator's (decoder's) weights
    lr_latent: float = 1e-2  # Adam on the class means and log-scales
    latent_dim: int = 16
    width: int = 16  # channels after the generator's first layer (halved by the second)
    samples: int | Auto = "auto"  # images per class in the saved set; auto: 10 x ipc
    batch_syn: int = 64  # generated images per class per iteration
    autoencoder_steps: int = 2000  # Adam steps training the decoder's starting point (seed 0)
    sample_seed: int = 0  # the latents of the images saved with the set
    # the speed levers stay off by default here: validated for dm only (ddkit.levers)
    precision: Precision = "fp32"
    compile: bool | Auto = False

    rules = {
        "lr_latent": POSITIVE,
        "latent_dim": AT_LEAST_ONE,
        "width": AT_LEAST_ONE,
        "samples": AT_LEAST_ONE,
        "batch_syn": AT_LEAST_ONE,
        "autoencoder_steps": NON_NEGATIVE,
    }

    def check(self) -> None:
        if self.codec != "pixels" or self.init != "real" or self.momentum_img != 0.5:
            raise ConfigError(
                "dim stores a generator, starts it from an autoencoder and trains it with Adam: "
                "codec, init and momentum_img do not apply; leave them at their defaults"
            )


def _autoencoder(latent_dim: int, width: int, steps: int) -> Latent:
    codec = Latent(latent_dim)
    codec.width, codec.steps = width, steps
    return codec


def generator_bytes(latent_dim: int, width: int, spec: DatasetSpec) -> int:
    """Bytes of what a ``dim`` set stores: the decoder's weights and, per class, a latent mean
    and log-scale (float32)."""
    decoder = _autoencoder(latent_dim, width, 0)._networks(spec)[1]
    numel = sum(p.numel() for p in decoder.parameters()) + 2 * spec.num_classes * latent_dim
    return 4 * numel


def class_gaussians(
    codes: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """dim's starting class condition: per class, the mean and log standard deviation (floored
    at 1e-3) of the real images' latent ``codes``, each ``(num_classes, latent_dim)``."""
    means = torch.stack([codes[labels == c].mean(0) for c in range(num_classes)])
    spread = torch.stack([codes[labels == c].std(0) for c in range(num_classes)])
    return means, spread.clamp_min(1e-3).log()


def _decode(
    fm: FlatModel, weights: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
    per_class: int, generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """``per_class`` images per class (class-major), from fresh latents drawn with
    ``generator``: ``decoder(mean_c + exp(log_scale_c) * eps)``."""
    k, d = means.shape
    eps = torch.randn(k, per_class, d, generator=generator).to(means)
    z = means[:, None] + log_scales.exp()[:, None] * eps
    return fm(weights, z.flatten(0, 1))


@register_method
class DiM(DM):
    """dim: distil the data into a class-conditional generator, sampled at any IPC (Wang et al. 2023)."""

    name = "dim"
    needs = "image"
    Config = DiMConfig
    presets = (
        Preset("digits", "*", {"iterations": 1000, "batch_real": 128},
               "ddkit CPU scale: digits has ~144 train images per class (as dm)"),
        Preset("mnist5k", "*", {"iterations": 1000, "model": "convnet-w32"},
               "ddkit CPU scale: ConvNet-3 width 32, the standard suite's mnist5k network"),
    )  # fmt: skip
    test_overrides: ClassVar[dict[str, Any]] = {
        "batch_real": 8,
        "batch_syn": 4,
        "autoencoder_steps": 20,
        "width": 4,
        "latent_dim": 4,
    }

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg, spec = self.config, train.spec
        size = generator_bytes(cfg.latent_dim, cfg.width, spec)
        budget = ipc * spec.num_classes * (image_bytes(spec) + LABEL_BYTES)
        if size > budget:
            raise ConfigError(
                f"dim's generator takes {size} bytes, over the {budget} of IPC {ipc} "
                f"(plain images and labels); use a larger IPC or a smaller latent_dim / width"
            )
        self._setup(train, iterations)
        autoencoder = _autoencoder(cfg.latent_dim, cfg.width, cfg.autoencoder_steps)
        autoencoder.fit(train)
        self.autoencoder_ = autoencoder
        self.fm_ = FlatModel(autoencoder.decoder_)
        with torch.no_grad():
            codes = autoencoder.encoder_(train.images.float())
        means, log_scales = class_gaussians(codes, train.labels, train.spec.num_classes)
        weights = self.fm_.flatten(autoencoder.decoder_)
        tensors = {"weights": weights, "means": means, "log_scales": log_scales}
        for name, t in tensors.items():
            self.state_[name] = t.to(self.device_, self.dtype_).requires_grad_(True)
        self.state_["opt"] = torch.optim.Adam([self.state_["weights"]], lr=cfg.lr_img)
        self.state_["opt_latent"] = torch.optim.Adam(
            [self.state_["means"], self.state_["log_scales"]], lr=cfg.lr_latent
        )
        self.state_["generator"] = generator
        self._start_matching(train)

    def step(self, iteration: int) -> dict[str, float]:
        cfg, st = self.config, self.state_
        g = st["generator"]
        net = self._network(g)
        real = self._real_batch(g)
        draws = sample_class_draws(
            self.dsa_, self.train_.spec.num_classes, g, self.train_.spec.image_size
        )
        images = _decode(self.fm_, st["weights"], st["means"], st["log_scales"], cfg.batch_syn, g)
        real_mean, syn_emb = match_embeddings(
            net.embed, real, self._syn_view(images), self.dsa_, draws,
            vectorize=cfg.vectorize, chunk=self.embed_chunk_, mean_fn=self.real_mean_,
        )  # fmt: skip
        loss = _mean_match(real_mean, syn_emb)
        st["opt"].zero_grad(set_to_none=True)
        st["opt_latent"].zero_grad(set_to_none=True)
        loss.backward()
        st["opt"].step()
        st["opt_latent"].step()
        return {"loss": float(loss.detach()) / self.train_.spec.num_classes}

    def result(self) -> SyntheticSet:
        cfg, st = self.config, self.state_
        stored = {
            "dim.decoder": st["weights"].detach().float().cpu().clone(),
            "dim.means": st["means"].detach().float().cpu().clone(),
            "dim.log_scales": st["log_scales"].detach().float().cpu().clone(),
        }
        meta = {
            "stored_tensors": list(STORED),
            "latent_dim": cfg.latent_dim,
            "generator_width": self.autoencoder_.width,
            "decoder_reconstruction_mse": self.autoencoder_.reconstruction_mse_,
        }
        samples = 10 * self.ipc_ if cfg.samples == "auto" else cfg.samples
        return _sampled_set(self.train_.spec, stored, meta, samples, cfg.sample_seed)


def _sampled_set(
    spec: DatasetSpec, stored: dict[str, torch.Tensor], meta: dict[str, Any], per_class: int,
    seed: int,
) -> SyntheticSet:  # fmt: skip
    """A set of ``per_class`` images per class sampled from the stored generator."""
    codec = _autoencoder(int(meta["latent_dim"]), int(meta["generator_width"]), 0)
    fm = FlatModel(codec._networks(spec)[1])
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        images = _decode(
            fm, stored["dim.decoder"], stored["dim.means"], stored["dim.log_scales"], per_class, g
        )
    meta = {**meta, "emitted_per_class": per_class, "sample_seed": int(seed)}
    return SyntheticSet(
        images, class_labels(spec.num_classes, per_class), spec, meta=meta, extras=dict(stored)
    )


def resample(syn: SyntheticSet, per_class: int, seed: int = 0) -> SyntheticSet:
    """The set with ``per_class`` images per class freshly sampled (latents drawn from
    ``seed``) from the generator a ``dim`` set stores; its stored tensors and bytes are the
    same."""
    if any(k not in syn.extras for k in STORED) or "generator_width" not in syn.meta:
        raise DataError("this set stores no generator (only sets distilled by dim do)")
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    check_memory(
        f"{per_class:,} images per class",
        per_class * syn.spec.num_classes * image_bytes(syn.spec),
        "draw fewer per class",
    )
    stored = {k: syn.extras[k] for k in STORED}
    return _sampled_set(syn.spec, stored, dict(syn.meta), per_class, seed)
