"""RFAD: dataset distillation with a random-feature approximation of the ConvNet NNGP.

N. Loo, R. Hasani, A. Amini and D. Rus, "Efficient Dataset Distillation using Random Feature
Approximation", NeurIPS 2022 (arXiv:2210.12067). RFAD is KIP
(:mod:`~ddkit.methods.performance.kip`) with the infinite-width kernel replaced by a Monte-Carlo
estimate: each step draws ``models`` fresh, untrained, un-normalised ConvNets in the NNGP
parameterisation (weights of variance ``weight_var / fan_in``, biases of variance ``bias_var``),
takes the flattened output of their convolutional trunk as random features ``phi_m``, and uses

    ``K(x, x') = weight_var * mean_m phi_m(x) . phi_m(x') / d + bias_var``

(``d`` the feature size; the two constants are the NNGP's dense readout layer), whose cost grows
linearly with the support set instead of quadratically. Real batches are predicted by kernel
ridge regression from the synthetic set (:func:`~ddkit.methods.performance.kernels.krr_predict`)
and the synthetic images move by Adam to lower either the MSE of those predictions (``loss="mse"``,
as KIP) or RFAD's Platt-scaling loss (``loss="platt"``): cross-entropy of the predictions times a
temperature, learned with the images as ``exp(log_temperature)`` or fixed.

``norm="in"`` gives the random ConvNets the instance norm of ddkit's evaluation ConvNet (the
kernel is then an estimate of that architecture's random-feature kernel, not an NNGP).

Labels are fixed zero-mean one-hot targets or learned with the images (``learn_labels``,
:mod:`~ddkit.methods.performance.labels`); what the set stores is the ``codec`` option (plain
pixels by default, :mod:`~ddkit.data.codecs`), as for kip. Deviations from the authors' (PyTorch) code: Adam
instead of AdaBelief; no learned linear transform of the images and no early stopping on a
validation split (a fixed number of ``iterations``); the real batch is class-balanced
(``batch_real`` images per class; the authors draw 4 x 1280 images at random); the networks run
one after another (no ``vmap``: on CPU its grouped convolutions are slower); ddkit's ConvNet pads
28x28 images by 3 in its first layer (the authors' does not); the regression is solved by a
Cholesky factorisation in the default dtype (the authors: ``torch.linalg.solve`` in float64).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.meter import check_memory
from ddkit.methods.base import Distiller, register_method
from ddkit.methods.common import real_batch_size
from ddkit.methods.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    MethodConfig,
    Preset,
    also_for,
    interval,
)
from ddkit.methods.performance.kernels import check_kernel_matrices, krr_predict
from ddkit.methods.performance.labels import (
    LabelLearningConfig,
    add_label_group,
    labelled_set,
    regression_targets,
    start_set,
)
from ddkit.models import build_network
from ddkit.models.convnet import CONVNET_DEPTHS


class RandomFeatureMap:
    """Random features of ``models`` networks that share the architecture of ``trunk`` (an
    ``nn.Module`` of convolutions / linear layers, ReLUs and pooling: e.g. a ConvNet's
    ``features``), drawn in the NNGP parameterisation.

    :meth:`draw` samples every network's parameters at once from a generator (Gaussian weights
    of variance ``weight_var / fan_in``, biases of variance ``bias_var``); :meth:`__call__`
    returns ``(n, models * d)`` features scaled so that ``phi(a) @ phi(b).T`` is the mean over
    networks of ``phi_m(a) . phi_m(b) / d``. ``trunk`` gives the architecture (run through
    ``torch.func.functional_call``); of its own parameters only those of group / instance norm
    layers are used, at their identity start (weight 1, bias 0), and none is changed.
    """

    def __init__(
        self,
        trunk: nn.Module,
        *,
        models: int,
        weight_var: float = 2.0,
        bias_var: float = 0.01,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.models, self.weight_var, self.bias_var = models, weight_var, bias_var
        self.dtype = dtype or torch.get_default_dtype()
        self.trunk = trunk.to(self.dtype).requires_grad_(False)
        # the draws happen on the CPU (the same seed, the same networks on every device), then
        # move to the trunk's device
        self.device = next(trunk.parameters()).device
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in trunk.modules()):
            raise ConfigError(
                "batch norm mixes examples, so it has no random-feature kernel; build the trunk "
                "with norm 'in' or 'none'"
            )
        kept = {
            f"{prefix}.{name}" if prefix else name
            for prefix, module in trunk.named_modules()
            if isinstance(module, nn.GroupNorm)
            for name, _ in module.named_parameters(recurse=False)
        }
        self.shapes = {n: p.shape for n, p in trunk.named_parameters() if n not in kept}

    def draw(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Parameters ``{name: (models, *shape)}`` of ``models`` fresh networks."""
        params = {}
        for name, shape in self.shapes.items():
            if len(shape) > 1:  # a weight: fan_in = everything but the output dimension
                std = math.sqrt(self.weight_var / math.prod(shape[1:]))
            else:
                std = math.sqrt(self.bias_var)
            z = torch.randn((self.models, *shape), generator=generator, dtype=self.dtype)
            params[name] = (std * z).to(self.device)
        return params

    def __call__(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scaled, concatenated features ``(n, models * d)`` of ``x`` under ``params``."""
        feats = [
            functional_call(self.trunk, {k: v[m] for k, v in params.items()}, (x,)).flatten(1)
            for m in range(self.models)
        ]
        phi = torch.cat(feats, 1)
        return phi / math.sqrt(phi.shape[1])

    def kernel(self, phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
        """``weight_var * phi_a @ phi_b.T + bias_var``: the NNGP of the networks with a dense
        readout layer on top of the features, estimated from these draws."""
        return self.weight_var * phi_a @ phi_b.T + self.bias_var


def convnet_trunk(spec: DatasetSpec, depth: int, width: int, norm: str = "none") -> nn.Module:
    """The convolutional trunk of ddkit's ConvNet (``depth`` blocks of ``width`` channels,
    average pooling) with normalisation ``norm``, for ``spec``'s images: RFAD's random
    networks."""
    return build_network(f"convnet{depth}-w{width}-{norm}", spec, 0).features


@dataclasses.dataclass(frozen=True)
class RFADConfig(LabelLearningConfig):
    """RFAD hyper-parameters (defaults: the authors' code where it states one)."""

    iterations: int = 1000
    models: int = 8  # random networks per step
    depth: int = 3  # ConvNet blocks
    width: int = 256  # channels of each random ConvNet
    # the random ConvNets' normalisation: none (the NNGP's, the paper's) or in (the instance
    # norm of the evaluation ConvNet; the kernel is then no longer an NNGP)
    norm: Literal["none", "in"] = "none"
    weight_var: float = 2.0
    bias_var: float = 0.01
    reg: float = 5e-3  # ridge, relative to the mean diagonal of K_ss
    loss: Literal["platt", "mse"] = "platt"
    temperature: float = 1.0  # Platt scaling: the start (or fixed) temperature; mse ignores it
    learn_temperature: bool = True
    lr_temperature: float = 0.01  # Adam on log(temperature)
    lr_img: float = 0.001  # Adam on the synthetic images
    batch_real: int = 512  # real target images per class per step
    init: Literal["real", "noise"] = "real"

    rules = {
        "models": AT_LEAST_ONE,
        "depth": interval(1, max(CONVNET_DEPTHS)),  # the registered convnet<N> models
        "width": AT_LEAST_ONE,
        "weight_var": POSITIVE,
        "bias_var": NON_NEGATIVE,
        "reg": POSITIVE,
        "temperature": POSITIVE,
        "lr_temperature": POSITIVE,
        "lr_img": POSITIVE,
        "batch_real": AT_LEAST_ONE,
    }

    def check(self) -> None:
        super().check()
        # the random networks' weights (3 input channels at most), before any is drawn
        weights = 9 * self.width * (3 + (self.depth - 1) * self.width)
        check_memory(f"{self.models} random ConvNets of width {self.width}",
                     4 * self.models * weights, "use a smaller width or fewer models")  # fmt: skip


@register_method
class RFAD(Distiller):
    """rfad: KIP with a random-feature estimate of the ConvNet NNGP and Platt-scaled cross-entropy (Loo et al., NeurIPS 2022)."""

    name = "rfad"
    Config: ClassVar[type[MethodConfig]] = RFADConfig
    presets = also_for(
        (
            Preset(
                "digits",
                "*",
                {"iterations": 300, "batch_real": 50, "depth": 2, "width": 64},
                "ddkit CPU scale, ConvNet-2 for 8x8 images (as frepo); the authors' lr_img (the "
                "default) beats larger ones at IPC 10 on the validation split: "
                "benchmarks/results/tune_rfad_digits_ipc10_lr_img.json",
            ),
            Preset(
                "digits",
                1,
                {"iterations": 300, "batch_real": 50, "depth": 2, "width": 64, "lr_img": 0.03},
                "lr_img chosen on the validation split: "
                "benchmarks/results/tune_rfad_digits_ipc1_lr_img.json",
            ),
            Preset(
                "mnist5k",
                "*",
                {"iterations": 500, "batch_real": 50, "width": 32},
                "ddkit CPU scale: ConvNet-3 width 32, the standard suite's mnist5k network",
            ),
            Preset(
                "mnist5k",
                1,
                {"lr_img": 0.1, "norm": "in"},
                "validation split, 200 iterations: a larger image step and the evaluation "
                "ConvNet's instance norm in the random networks: "
                "benchmarks/results/tune_rfad_mnist5k_ipc1_{lr_img,norm_in}.json",
            ),
        ),
        "mnist5k",
        "mnist",
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        "batch_real": 8,
        "models": 2,
        "depth": 2,
        "width": 8,
    }

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        self.codec_, images, labels = start_set(cfg, train, ipc, generator)
        self.batch_ = real_batch_size(cfg.batch_real, train)
        k = train.spec.num_classes
        check_kernel_matrices(
            "rfad", self.batch_ * k, self.codec_.emitted_per_class(ipc, train.spec) * k,
            "use a smaller batch_real or IPC",
        )  # fmt: skip
        self.features_ = RandomFeatureMap(
            convnet_trunk(train.spec, cfg.depth, cfg.width, cfg.norm).to(train.images.device),
            models=cfg.models,
            weight_var=cfg.weight_var,
            bias_var=cfg.bias_var,
        )
        learned = cfg.loss == "platt" and cfg.learn_temperature
        log_t = torch.tensor(math.log(cfg.temperature), device=train.images.device)
        log_t.requires_grad_(learned)
        self.state_["labels"] = labels
        self.state_["images"] = images
        self.state_["log_temperature"] = log_t
        self.state_["opt"] = torch.optim.Adam([images], lr=cfg.lr_img)
        add_label_group(self.state_["opt"], self.state_["labels"], cfg)
        if learned:
            self.state_["opt"].add_param_group({"params": [log_t], "lr": cfg.lr_temperature})
        self.state_["generator"] = generator

    def step(self, iteration: int) -> dict[str, float]:
        train, g = self.train_, self.state_["generator"]
        images = self.codec_.decode(self.state_["images"])  # the support, from what is stored
        idx = train.sample_per_class(self.batch_, g).flatten()
        fmap = self.features_
        params = fmap.draw(g)
        with torch.no_grad():
            phi_real = fmap(train.images[idx], params)
        phi_syn = fmap(images, params)
        pred = krr_predict(
            fmap.kernel(phi_real, phi_syn),
            fmap.kernel(phi_syn, phi_syn),
            self.state_["labels"],
            self.config.reg,
        )
        loss = self._loss(pred, train.labels[idx], train.spec.num_classes)
        opt = self.state_["opt"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        accuracy = (pred.argmax(1) == train.labels[idx]).float().mean()
        return {
            "loss": float(loss.detach()),
            "batch_accuracy": float(accuracy),
            "temperature": float(self.state_["log_temperature"].detach().exp()),
        }

    def _loss(self, pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Platt scaling (cross-entropy of ``temperature * pred``) or KIP's MSE."""
        if self.config.loss == "platt":
            return F.cross_entropy(self.state_["log_temperature"].exp() * pred, labels)
        return 0.5 * ((pred - regression_targets(labels, num_classes)) ** 2).sum(1).mean()

    def result(self) -> SyntheticSet:
        st = self.state_
        syn = labelled_set(self.codec_, st["images"], st["labels"], self.train_.spec, self.config)
        if self.config.loss == "platt":
            syn.meta["temperature"] = float(self.state_["log_temperature"].detach().exp())
        return syn
