"""Latent prototypes: per-class k-means centroids in an autoencoder's latent space, decoded.

An offline analogue of D4M (D. Su, J. Hou, W. Gao, Y. Tian and B. Tang, "D^4M: Dataset
Distillation via Disentangled Diffusion Model", CVPR 2024, arXiv:2407.15138) -- not D4M itself.
D4M encodes the real images of each class with a pretrained Stable Diffusion VAE, clusters the
latents with k-means (one cluster per image to make), and turns each centroid into an image
through the diffusion model's denoising, conditioned on the class's text embedding; the images
are then trained on with soft labels from a teacher. No pretrained diffusion model is at hand
here, so ``latent-prototypes`` keeps the skeleton and swaps the generator:

1. the latent space is that of the small autoencoder ddkit trains on the real training images
   (the ``latent:D`` codec's, :mod:`ddkit.data.codecs.autoencoder`: trained once per dataset and
   settings, seed 0, shared with ``dim`` and the codec);
2. per class, :func:`~ddkit.methods.clustering.kmeans` (ours, in torch: ``ipc`` centres with k-means++ starts, then Lloyd
   iterations -- one per method iteration, every class at once) over the
   encoder's codes of the class's training images;
3. the ``ipc`` centroids of each class are decoded by the autoencoder's decoder (no diffusion,
   no text condition);
4. labels (``labels``): ``"hard"`` (default) is the class each prototype was made for;
   ``"soft"`` / ``"views"`` relabel by a teacher exactly as the decoupled family does
   (:class:`~ddkit.methods.decoupled.methods.TeacherConfig`: teacher options, cached teacher,
   :func:`ddkit.eval.relabel.relabel`), the analogue of D4M's soft-label training.

The set stores the decoded images (pixels: IPC images per class). A k-means centre that loses
every member keeps its position.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch

from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.synthetic import SyntheticSet
from ddkit.methods.base import MethodConfig, register_method
from ddkit.methods.clustering import initial_centres, kmeans, kmeans_step
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, Preset
from ddkit.methods.coreset.selectors import pad_by_class
from ddkit.methods.decoupled.methods import TeacherConfig, _TeacherMethod
from ddkit.methods.generative.dim import _autoencoder
from ddkit.models import predict
from ddkit.rng import draw_seed

__all__ = ["LatentPrototypes", "LatentPrototypesConfig", "kmeans", "kmeans_step"]


@dataclasses.dataclass(frozen=True)
class LatentPrototypesConfig(TeacherConfig):
    """latent-prototypes hyper-parameters: the autoencoder's, k-means' and the labels'."""

    iterations: int = 50  # Lloyd iterations of the per-class k-means
    latent_dim: int = 16  # the autoencoder of `dim` and the latent codec (same artifact)
    width: int = 16
    autoencoder_steps: int = 2000
    labels: Literal["hard", "soft", "views"] = "hard"

    rules = {"latent_dim": AT_LEAST_ONE, "width": AT_LEAST_ONE, "autoencoder_steps": NON_NEGATIVE}


@register_method
class LatentPrototypes(_TeacherMethod):
    """latent-prototypes: decoded per-class k-means centroids of an autoencoder's latents (an offline analogue of D4M, Su et al., CVPR 2024)."""

    name = "latent-prototypes"
    needs = "image"
    Config: ClassVar[type[MethodConfig]] = LatentPrototypesConfig
    presets = (
        Preset(
            "mnist5k",
            "*",
            {"teacher_model": "convnet3-bn-w32", "teacher_epochs": 15},
            "ddkit CPU scale: the decoupled family's mnist5k teacher (used with labels=soft)",
        ),
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        "autoencoder_steps": 20,
        "width": 4,
        "latent_dim": 4,
        "iterations": 3,
    }

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        autoencoder = _autoencoder(cfg.latent_dim, cfg.width, cfg.autoencoder_steps)
        autoencoder.fit(train)
        self.autoencoder_ = autoencoder
        codes = predict(autoencoder.encoder_, train.images.float())
        self.codes_, _, self.valid_ = pad_by_class(train, codes)
        self.state_["centres"] = initial_centres(self.codes_, self.valid_, ipc, generator)
        if cfg.labels != "hard":
            self._init_teacher(train)
            self.state_["relabel_seed"] = draw_seed(generator)

    def step(self, iteration: int) -> dict[str, float]:
        old = self.state_["centres"]
        new, _ = kmeans_step(self.codes_, self.valid_, old)
        self.state_["centres"] = new
        return {"centre_shift": float((new - old).norm(dim=-1).mean())}

    def result(self) -> SyntheticSet:
        k = self.train_.spec.num_classes
        centres = self.state_["centres"]
        with torch.no_grad():
            images = self.autoencoder_.decoder_(centres.flatten(0, 1)).detach().clone()
        classes = class_labels(k, self.ipc_)
        meta = {
            "latent_dim": self.config.latent_dim,
            "generator_width": self.autoencoder_.width,
            "decoder_reconstruction_mse": self.autoencoder_.reconstruction_mse_,
        }
        if self.config.labels == "hard":
            return SyntheticSet(images, classes, self.train_.spec, meta=meta)
        out = self._labelled(images, classes)
        out.meta.update(meta)
        return out
