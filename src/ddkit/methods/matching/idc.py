"""IDC: gradient matching into a multi-formation set, with networks trained on real data.

J.-H. Kim, J. Kim, S. J. Oh, S. Yun, H. Song, J. Jeong, J.-W. Ha and H. O. Song, "Dataset
Condensation via Efficient Synthetic-Data Parameterization", ICML 2022 (arXiv:2205.14959).
Two changes to DC (:mod:`ddkit.methods.matching.gradient`):

* **What is stored**: each stored image holds ``factor x factor`` tiles, each upsampled to a
  full training image (multi-formation, the ``formation:F`` codec of
  :mod:`ddkit.data.codecs`), initialised from downscaled real images; the set emits
  ``factor^2`` times more images than it stores, at the bytes of ``ipc`` images per class.
  ``codec="auto"`` takes factor 2 (the paper's MNIST and CIFAR setting) on images of at least
  16 pixels a side and plain pixels below (IDM's rule: 4x4 tiles of 8x8 ``digits`` hold too
  little of a digit); any codec can be named instead.
* **The networks whose gradients are matched** are trained on *real* data between matching
  steps (``net_images`` real images, one epoch, SGD with momentum and weight decay, per
  matching step), not on the synthetic set, so matching sees networks of the kind the set must
  train. Matching uses IDC's distance, the L1 difference of the convolution weights' gradients
  (biases, norms and the classifier excluded: metric ``l1-conv``), under one augmentation draw
  of all of ``color_crop_cutout`` shared by the real and the synthetic batch of a class.

Each outer iteration draws a fresh network and runs ``outer_loop`` (IDC's "inner loop", 100)
matching steps, each followed by the network update; stored pixels are clamped to the valid
pixel range at the start of every outer iteration, as in the authors' code. IDC's image
learning rate ``5e-3 * ipc/10 * (HW/28^2)`` is for images in ``[0, 1]``; ddkit's images are
normalised by the data's std, so ``lr_img="auto"`` divides it by ``std^2`` (the same step in
pixels).

Deviations: the authors train the matching networks with CutMix (probability 0.5 on MNIST),
here plain DSA ``color_crop`` augmentation; the per-class image steps of the authors are one step
on the summed per-class losses here, which is the same update (class ``c``'s loss depends only on
class ``c``'s images); budgets are CPU-sized (the paper runs 500 networks x 100 steps).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from ddkit.augment.dsa import DSA as DSAAugment
from ddkit.data.codecs.formation import Formation, default_factor
from ddkit.data.codecs.pixels import Pixels
from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.methods.base import register_method
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Auto, Preset
from ddkit.methods.matching.gradient import DC, DCConfig

__all__ = ["IDC", "IDCConfig", "idc_image_lr", "pixel_bounds"]


@dataclasses.dataclass(frozen=True)
class IDCConfig(DCConfig):
    """IDC hyper-parameters (defaults: the authors' code, budgets aside)."""

    iterations: int = 500  # networks, each with outer_loop matching steps
    codec: str | Auto = "auto"  # auto: formation:2 on images >= 16 px a side, else pixels
    auto_codec: ClassVar[bool] = True
    metric: str = "l1-conv"
    augment: str = "color_crop_cutout"  # all three applied, one draw shared per class
    outer_loop: int | Auto = 100  # matching steps per network (IDC's "inner_loop")
    inner_loop: int | Auto = 1  # epochs over net_images real images after each matching step
    batch_real: int = 64
    lr_img: float | Auto = "auto"  # 5e-3 * ipc/10 * HW/28^2 in pixels, over std^2
    momentum_img: float = 0.5
    lr_net: float = 0.01
    momentum_net: float = 0.9
    weight_decay_net: float = 5e-4
    net_images: int = 500  # real images each network update trains on (one epoch)
    batch_net: int = 64
    net_augment: str = "color_crop"  # per-image augmentation of the network updates

    rules = {
        **DCConfig.rules,
        "lr_img": POSITIVE,
        "weight_decay_net": NON_NEGATIVE,
        "net_images": AT_LEAST_ONE,
    }


def pixel_bounds(spec: DatasetSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(low, high)`` of normalised images whose raw pixels lie in ``[0, 1]``,
    shaped ``(C, 1, 1)``."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (0.0 - mean) / std, (1.0 - mean) / std


def idc_image_lr(ipc: int, spec: DatasetSpec) -> float:
    """IDC's image learning rate for ``ipc`` (``5e-3 * ipc/10 * HW/28^2``, tuned for pixels in
    ``[0, 1]``), divided by the mean squared std for ddkit's normalised images."""
    h, w = spec.image_size
    pixels = 5e-3 * (ipc / 10) * (h * w / 28**2)
    return pixels / (sum(s * s for s in spec.std) / len(spec.std))


@register_method
class IDC(DC):
    """idc: multi-formation gradient matching against networks trained on real data (Kim et al., ICML 2022)."""

    name = "idc"
    needs = "image"
    Config = IDCConfig
    presets = (
        Preset("digits", "*", {"iterations": 10, "model": "convnet2", "outer_loop": 50},
               "ddkit CPU scale; ConvNet-2 for 8x8 images (as DC)"),
        Preset("mnist5k", "*", {"iterations": 10, "model": "convnet-w32", "outer_loop": 50},
               "ddkit CPU scale: ConvNet-3 width 32, the standard suite's mnist5k network"),
    )  # fmt: skip
    test_overrides: ClassVar[dict[str, Any]] = {
        "model": "convnet2-w8",
        "outer_loop": 2,
        "batch_real": 8,
        "net_images": 32,
        "batch_net": 16,
    }

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        super().init(train, ipc, generator, iterations)
        self.dsa_ = None if self.dsa_ is None else DSAAugment(self.dsa_.strategy, mode="all")
        self.net_augment_ = DSAAugment(cfg.net_augment) if cfg.net_augment != "none" else None
        device = train.images.device
        self.bounds_ = (
            tuple(b.to(device) for b in pixel_bounds(train.spec))
            if isinstance(self.codec_, (Pixels, Formation))
            else None
        )

    def step(self, iteration: int) -> dict[str, float]:
        if self.bounds_ is not None:
            low, high = self.bounds_
            with torch.no_grad():
                images = self.state_["images"]
                images.copy_(torch.maximum(torch.minimum(images, high), low))
        return super().step(iteration)

    def network_data(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``net_images`` real images drawn from the whole training set (IDC's ``n_data``);
        ``inner_loop`` is IDC's ``net_epoch``."""
        rows = torch.randperm(len(self.train_), generator=g)[: self.config.net_images]
        return self.train_.images[rows], self.train_.labels[rows]

    def network_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        return torch.optim.SGD(
            net.parameters(),
            lr=cfg.lr_net,
            momentum=cfg.momentum_net,
            weight_decay=cfg.weight_decay_net,
        )

    def codec_for(self, spec: DatasetSpec) -> str:
        codec = self.config.codec
        if codec != "auto":
            return codec
        factor = default_factor(spec.image_size)
        return f"formation:{factor}" if factor > 1 else "pixels"

    def image_lr(self, ipc: int, spec: DatasetSpec) -> float:
        lr = self.config.lr_img
        return idc_image_lr(ipc, spec) if lr == "auto" else float(lr)

    def loops(self, ipc: int) -> tuple[int, int]:
        cfg = self.config
        return (
            cfg.outer_loop if cfg.outer_loop != "auto" else 100,
            cfg.inner_loop if cfg.inner_loop != "auto" else 1,
        )

    def result(self) -> SyntheticSet:
        syn = super().result()
        syn.meta["lr_img"] = self.image_lr(self.ipc_, self.train_.spec)
        return syn
