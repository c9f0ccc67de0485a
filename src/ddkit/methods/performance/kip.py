"""KIP: Kernel Inducing Points.

T. Nguyen, Z. Chen and J. Lee, "Dataset Meta-Learning from Kernel Ridge-Regression", ICLR 2021
(arXiv:2011.00050). The synthetic set is the support of a kernel ridge regression: each step
draws a batch of real images (the targets), predicts their labels from the synthetic set through
``K_ts (K_ss + lambda I)^-1 y_s`` and lowers the mean squared error of those predictions by Adam
on the synthetic images. The kernel is the infinite-width NTK (or NNGP) of a fully connected
ReLU network, of 3x3 convolutions without pooling (``architecture="conv"``), or of the ConvNet
of KIP's convolutional paper (``architecture="convnet"``: a stem convolution, then ``depth``
blocks of convolution, ReLU and 2x2 average pooling; Nguyen, Novak, Xiao and Lee, NeurIPS 2021,
arXiv:2107.13034), the published variant together with ``learn_labels=True``
(:mod:`ddkit.methods.performance.kernels`). Its cost grows with the square of the image area
(an ``(H, W, H, W)`` map per pair of images), which bounds the real batch on a CPU.

Labels are fixed zero-mean one-hot targets, learned with the images (``learn_labels``,
:mod:`~ddkit.methods.performance.labels`), or solved in closed form at the end (KIP's "label
solve", ``label_solve_real``: the labels whose predictions fit that many real images per class
best; :func:`~ddkit.methods.performance.kernels.solve_labels`). Deviations from the authors'
(JAX, neural-tangents) code: the label solve runs once, after the images are learned, on a
class-balanced sample of real images rather than the whole training set; ``"conv"`` has no
pooling (a dense readout of the flattened features, whose cost grows with the image area, not
its square; ``"convnet"`` pools as the paper does); regression targets are one-hot vectors minus ``1 / K``
(zero-mean) for real and synthetic images alike; the real batch is class-balanced
(``batch_real`` images per class).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.meter import check_memory
from ddkit.methods.base import Distiller, register_method
from ddkit.methods.common import real_batch_size
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, MethodConfig, Preset
from ddkit.methods.performance.kernels import (
    check_kernel_matrices,
    convnet_kernel_block_bytes,
    krr_predict,
    relu_conv_kernel,
    relu_convnet_kernel,
    relu_fc_kernel,
    solve_labels,
)
from ddkit.methods.performance.labels import (
    LabelLearningConfig,
    add_label_group,
    labelled_set,
    regression_targets,
    start_set,
)
from ddkit.rng import derive_seed


@dataclasses.dataclass(frozen=True)
class KIPConfig(LabelLearningConfig):
    """KIP hyper-parameters (defaults: the paper's FC-kernel setting where it states one)."""

    iterations: int = 1000
    kernel: Literal["ntk", "nngp"] = "ntk"
    # the infinitely wide network: fully connected; 3x3 convolutions with a dense readout (no
    # pooling); or KIP's ConvNet (a stem convolution, then blocks of convolution, ReLU and 2x2
    # average pooling, the convolutional paper's network)
    architecture: Literal["fc", "conv", "convnet"] = "fc"
    depth: int = 1  # hidden ReLU layers (fc), convolutions (conv) or pooling blocks (convnet)
    readout: Literal["flatten", "gap"] = "flatten"  # convnet: dense readout of what
    kernel_chunk: int = 8  # convnet: images per side of a block of kernel entries (memory)
    weight_var: float = 2.0
    bias_var: float = 0.01
    reg: float = 1e-6  # ridge, relative to the mean diagonal of K_ss
    lr_img: float = 0.01  # Adam on the synthetic images
    batch_real: int = 100  # real target images per class per step
    init: Literal["real", "noise"] = "real"
    # > 0: KIP's label solve -- at the end, the labels that fit this many real images per class
    # best in closed form (regression targets); 0: off
    label_solve_real: int = 0

    rules = {
        "label_solve_real": NON_NEGATIVE,
        "depth": AT_LEAST_ONE,
        "weight_var": POSITIVE,
        "bias_var": NON_NEGATIVE,
        "reg": POSITIVE,
        "lr_img": POSITIVE,
        "batch_real": AT_LEAST_ONE,
        "kernel_chunk": AT_LEAST_ONE,
    }

    @property
    def label_vectors(self) -> bool:
        return self.learn_labels or self.label_solve_real > 0


def check_convnet_kernel(cfg: KIPConfig, shape: tuple[int, ...]) -> None:
    """Refuse (one line, before any work) a ConvNet kernel whose ``depth`` 2x2 poolings would
    shrink the images below one pixel, or whose blocks of ``kernel_chunk`` x ``kernel_chunk``
    pairs would not fit the memory budget (:func:`ddkit.meter.check_memory`)."""
    if cfg.architecture != "convnet" or len(shape) < 3:
        return
    side = min(shape[-2:])
    if side >> cfg.depth < 1:
        most = side.bit_length() - 1
        raise ConfigError(
            f"kip's convnet kernel pools {shape[-2]}x{shape[-1]} images {cfg.depth} times, "
            "below one pixel; " + (f"use depth <= {most}" if most else "use architecture=fc")
        )
    block = convnet_kernel_block_bytes(
        shape, depth=cfg.depth, readout=cfg.readout, chunk=cfg.kernel_chunk
    )
    check_memory(
        f"one {cfg.kernel_chunk}x{cfg.kernel_chunk} block of kip's convnet kernel",
        block,
        "lower kernel_chunk",
    )


@register_method
class KIP(Distiller):
    """kip: kernel inducing points -- the synthetic set as the support of kernel ridge regression on real batches (Nguyen et al., ICLR 2021)."""

    name = "kip"
    needs = "differentiable"
    Config: ClassVar[type[MethodConfig]] = KIPConfig
    presets = (
        Preset(
            "digits",
            "*",
            {"iterations": 300, "batch_real": 50},
            "ddkit CPU scale: digits has ~144 train images per class",
        ),
    )
    test_overrides: ClassVar[dict[str, Any]] = {"batch_real": 8}

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        check_convnet_kernel(cfg, train.spec.shape)
        self.codec_, images, labels = start_set(cfg, train, ipc, generator)
        self.batch_ = real_batch_size(cfg.batch_real, train)
        k = train.spec.num_classes
        check_kernel_matrices(  # an fc / conv kernel keeps its matrices of every layer
            "kip", self.batch_ * k, self.codec_.emitted_per_class(ipc, train.spec) * k,
            "use a smaller batch_real or IPC",
            matrices=2 if cfg.architecture == "convnet" else 2 * (cfg.depth + 1),
        )  # fmt: skip
        self.state_["labels"] = labels
        self.state_["images"] = images
        self.state_["opt"] = torch.optim.Adam([images], lr=self.config.lr_img)
        add_label_group(self.state_["opt"], self.state_["labels"], self.config)
        self.state_["generator"] = generator

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        c = self.config
        common = dict(depth=c.depth, weight_var=c.weight_var, bias_var=c.bias_var, kind=c.kernel)
        if c.architecture == "convnet":
            return relu_convnet_kernel(a, b, readout=c.readout, chunk=c.kernel_chunk, **common)
        fn = relu_fc_kernel if c.architecture == "fc" else relu_conv_kernel
        return fn(a, b, **common)

    def step(self, iteration: int) -> dict[str, float]:
        train = self.train_
        images = self.codec_.decode(self.state_["images"])  # the support, from what is stored
        idx = train.sample_per_class(self.batch_, self.state_["generator"]).flatten()
        x_real = train.images[idx]
        y_real = regression_targets(train.labels[idx], train.spec.num_classes)
        pred = krr_predict(
            self.kernel(x_real, images),
            self.kernel(images, images),
            self.state_["labels"],
            self.config.reg,
        )
        loss = 0.5 * ((pred - y_real) ** 2).sum(1).mean()
        opt = self.state_["opt"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        accuracy = (pred.argmax(1) == train.labels[idx]).float().mean()
        return {"loss": float(loss.detach()), "batch_accuracy": float(accuracy)}

    def result(self) -> SyntheticSet:
        st, cfg = self.state_, self.config
        labels = self.solved_labels() if cfg.label_solve_real else st["labels"]
        syn = labelled_set(self.codec_, st["images"], labels, self.train_.spec, cfg)
        if cfg.label_solve_real:
            syn.meta["label_solve_real"] = cfg.label_solve_real
        return syn

    def solved_labels(self) -> torch.Tensor:
        """KIP's label solve on ``label_solve_real`` real images per class (drawn with a
        generator derived from the run's seed, so every call gives the same labels)."""
        train = self.train_
        g = torch.Generator().manual_seed(derive_seed(self.seed_, "kip-label-solve"))
        n = real_batch_size(self.config.label_solve_real, train)
        idx = train.sample_per_class(n, g).flatten()
        with torch.no_grad():
            support = self.codec_.decode(self.state_["images"])
            y_real = regression_targets(train.labels[idx], train.spec.num_classes)
            return solve_labels(
                self.kernel(train.images[idx], support),
                self.kernel(support, support),
                y_real,
                self.config.reg,
            )
