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
2. per class, :func:`kmeans` (ours, in torch: ``ipc`` centres with k-means++ starts, then Lloyd
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
from ddkit.errors import ConfigError
from ddkit.methods.base import MethodConfig, register_method
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, Preset
from ddkit.methods.coreset.selectors import pad_by_class
from ddkit.methods.decoupled.methods import TeacherConfig, _TeacherMethod
from ddkit.methods.generative.dim import _autoencoder
from ddkit.models import predict
from ddkit.rng import draw_seed

__all__ = ["LatentPrototypes", "LatentPrototypesConfig", "kmeans", "kmeans_step"]


def kmeans_step(
    points: torch.Tensor, valid: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration for every group at once: ``points`` ``(K, M, D)`` with ``valid``
    ``(K, M)`` (padding rows are ignored), ``centres`` ``(K, n, D)``. Returns the new centres
    (each the mean of its members; a centre without members stays where it was) and the
    assignment ``(K, M)`` of each point to its nearest centre before the update."""
    dist = torch.cdist(points, centres)  # (K, M, n)
    assign = dist.argmin(2)
    member = torch.nn.functional.one_hot(assign, centres.shape[1]).to(points.dtype)
    member = member * valid.unsqueeze(-1).to(points.dtype)
    sums = member.transpose(1, 2) @ points  # (K, n, D)
    counts = member.sum(1).unsqueeze(-1)  # (K, n, 1)
    new = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return new, assign


def kmeans(
    points: torch.Tensor,
    valid: torch.Tensor,
    n: int,
    generator: torch.Generator,
    iterations: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, ``n`` k-means centres of the valid rows of ``points`` ``(K, M, D)``: k-means++
    starts drawn with ``generator`` (:func:`initial_centres`), then ``iterations`` Lloyd iterations
    (:func:`kmeans_step`), vectorised over groups. Returns ``(centres (K, n, D), assignment
    (K, M))``; a group needs at least ``n`` valid rows."""
    centres = initial_centres(points, valid, n, generator)
    for _ in range(iterations):
        centres = kmeans_step(points, valid, centres)[0]
    return centres, kmeans_step(points, valid, centres)[1]


def initial_centres(
    points: torch.Tensor, valid: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ starts (Arthur & Vassilvitskii, SODA 2007), every group at once: per group of
    ``points`` ``(K, M, D)``, a first valid row drawn uniformly, then each next one with
    probability proportional to its squared distance to the nearest row already drawn (all with
    ``generator``; uniformly again where every distance is 0). Returns ``(K, n, D)``."""
    counts = valid.sum(1)
    if int(counts.min()) < n:
        raise ConfigError(
            f"k-means with {n} centres needs at least {n} points per group; the smallest group "
            f"has {int(counts.min())}"
        )
    mask = valid.to(torch.float64).cpu()
    pick = torch.multinomial(mask, 1, generator=generator)  # (K, 1)
    picks = [pick]
    nearest = torch.full(valid.shape, float("inf"), dtype=torch.float64)
    for _ in range(1, n):
        last = _rows(points, pick.to(points.device))  # (K, 1, D)
        d2 = ((points - last) ** 2).sum(-1).double().cpu()
        nearest = torch.minimum(nearest, d2)
        weights = nearest * mask
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, mask)
        pick = torch.multinomial(weights, 1, generator=generator)
        picks.append(pick)
    return _rows(points, torch.cat(picks, 1).to(points.device)).clone()


def _rows(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``points[k, index[k, j]]`` for ``points`` ``(K, M, D)`` and ``index`` ``(K, n)``."""
    return points.gather(1, index.unsqueeze(-1).expand(-1, -1, points.shape[2]))


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
