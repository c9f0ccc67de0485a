"""BPTT: back-propagation through an unrolled training run, with learned step sizes and random
truncation.

T. Wang, J.-Y. Zhu, A. Torralba and A. A. Efros, "Dataset Distillation", arXiv:1811.10959
(2018), revisited by Z. Deng and O. Russakovsky (NeurIPS 2022, learned step sizes and long
unrolls) and by Y. Feng, R. Vedantam and J. Kempe, "Embarrassingly Simple Dataset Distillation",
ICLR 2024 (RaT-BPTT: random truncation). Each iteration initialises a fresh network, trains it
for ``n`` steps on the synthetic set with learned per-step learning rates, and lowers the
cross-entropy of the trained network on a real batch by Adam on the images and the step sizes.
``n`` is drawn uniformly from ``[window, unroll_steps]`` and gradients flow through the last
``window`` steps only (RaT-BPTT), so memory grows with ``window``, not with ``n``;
``checkpoint=True`` recomputes each tracked step in the backward pass instead of storing its
activations (the same gradient, less memory).

``augment`` (off by default) gives the student DSA-augmented images (Zhao & Bilen, ICML 2021), a
fresh draw per image at every unrolled step, so the set is learnt for a student trained the way
the evaluation protocol trains (``dsa``); the real batch of the outer loss is not augmented.

``inner`` picks the student's optimiser: plain SGD (Wang et al.), heavy-ball momentum 0.9 (Deng
& Russakovsky learn the momentum; here it is fixed), or Adam (RaT-BPTT's inner optimiser, with
its usual betas), each step scaled by its learned step size.

Deviations: the momentum is fixed, not learned; the whole synthetic set is the student's batch
at every step; the learned step sizes train the unroll only -- the saved set carries no learning
rate, so evaluation uses the protocol's; unrolls are CPU-short by default (RaT-BPTT unrolls 200
steps with a 60-step window).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.meter import check_memory
from ddkit.methods.base import Distiller, register_method
from ddkit.methods.codecs import CodecConfig, start_stored
from ddkit.methods.common import RandomNetwork, make_augment, real_batch_size
from ddkit.methods.config import (
    AT_LEAST_ONE,
    AUGMENT,
    NON_NEGATIVE,
    POSITIVE,
    MethodConfig,
    Preset,
    also_for,
)
from ddkit.methods.trajectory.student import FlatModel

InnerOptimizer = Literal["sgd", "momentum", "adam"]


@dataclasses.dataclass(frozen=True)
class BPTTConfig(CodecConfig):
    """BPTT hyper-parameters (CPU-sized defaults; the papers unroll far longer on GPUs)."""

    iterations: int = 1000
    model: str = "convnet"  # the student (no BatchNorm: it runs functionally)
    unroll_steps: int = 20  # the most student steps per iteration
    window: int = 10  # steps that gradients flow through (the last ones of each unroll)
    syn_lr: float = 0.01  # initial learned step size of every student step (Adam: try 0.001)
    inner: InnerOptimizer = "sgd"  # the student's optimiser (RaT-BPTT: adam; Deng: momentum)
    lr_img: float = 0.01  # Adam on the images
    lr_lr: float = 0.01  # Adam on the log step sizes
    batch_real: int = 50  # real images per class for the outer loss
    checkpoint: bool = False  # recompute tracked steps in the backward pass (less memory)
    init: Literal["real", "noise"] = "real"
    augment: str = "none"  # DSA on the student's images at every step ("auto": the dataset's)

    rules = {
        "augment": AUGMENT,
        "unroll_steps": AT_LEAST_ONE,
        "window": AT_LEAST_ONE,
        "syn_lr": POSITIVE,
        "lr_img": POSITIVE,
        "lr_lr": NON_NEGATIVE,
        "batch_real": AT_LEAST_ONE,
    }

    def check(self) -> None:
        if self.window > self.unroll_steps:
            raise ConfigError(
                f"window must be <= unroll_steps={self.unroll_steps}, got {self.window}"
            )


MOMENTUM = 0.9  # heavy-ball momentum of the "momentum" student; Adam's beta1
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


def inner_state(theta: torch.Tensor, optimizer: InnerOptimizer) -> tuple[torch.Tensor, ...]:
    """The student optimiser's initial state: none (SGD), a velocity (momentum), or Adam's two
    moments."""
    zeros = torch.zeros_like(theta)
    return {"sgd": (), "momentum": (zeros,), "adam": (zeros, zeros.clone())}[optimizer]


def inner_update(
    g: torch.Tensor,
    lr: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    t: int,
    optimizer: InnerOptimizer,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One differentiable step of the student optimiser at step ``t`` (from 1): the parameter
    change to subtract and the new state. Adam divides by ``sqrt(v_hat + eps^2)`` rather than
    ``sqrt(v_hat) + eps`` so its derivative stays finite where a gradient entry is zero."""
    if optimizer == "sgd":
        return lr * g, ()
    if optimizer == "momentum":
        velocity = MOMENTUM * state[0] + g
        return lr * velocity, (velocity,)
    m = MOMENTUM * state[0] + (1 - MOMENTUM) * g
    v = ADAM_BETA2 * state[1] + (1 - ADAM_BETA2) * g * g
    m_hat, v_hat = m / (1 - MOMENTUM**t), v / (1 - ADAM_BETA2**t)
    return lr * m_hat / (v_hat + ADAM_EPS**2).sqrt(), (m, v)


def unroll(
    fm: FlatModel,
    theta: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    lrs: torch.Tensor,
    *,
    tracked: int,
    use_checkpoint: bool = False,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    optimizer: InnerOptimizer = "sgd",
) -> torch.Tensor:
    """Train the student ``theta`` for ``len(lrs)`` steps of ``optimizer`` (SGD, heavy-ball
    momentum or Adam, step ``i`` scaled by ``lrs[i]``) on ``(images, labels)``; the last
    ``tracked`` steps stay in the autograd graph (of ``images`` and ``lrs``), earlier ones do
    not. ``augment(x)`` (differentiable, drawing its own randomness) transforms the images
    before every step. Returns the trained parameters."""
    n = len(lrs)
    state = inner_state(theta.detach(), optimizer)
    for i in range(n):
        keep = i >= n - tracked
        x = images if keep else images.detach()
        if augment is not None:
            x = augment(x)
        if not keep:
            with torch.enable_grad():
                w = theta.detach().requires_grad_(True)
                out = _student_step(
                    fm, w, x, labels, lrs[i].detach(), i + 1, optimizer, False, *state
                )
            theta, *state = (o.detach() for o in out)
        elif use_checkpoint:
            theta, *state = checkpoint(
                _student_step, fm, theta, x, labels, lrs[i], i + 1, optimizer, True, *state,
                use_reentrant=False,
            )  # fmt: skip
        else:
            theta, *state = _student_step(
                fm, theta, x, labels, lrs[i], i + 1, optimizer, True, *state
            )
    return theta


def _student_step(fm, theta, images, labels, lr, t, optimizer, create_graph, *state):
    if not theta.requires_grad:
        theta = theta.requires_grad_(True)
    loss = F.cross_entropy(fm(theta, images), labels)
    (g,) = torch.autograd.grad(loss, theta, create_graph=create_graph)
    delta, state = inner_update(g, lr, tuple(state), t, optimizer)
    return (theta - delta, *state)


CPU_SCALE = (
    Preset(
        "digits",
        "*",
        {"iterations": 300, "model": "convnet2"},
        "ddkit CPU scale; ConvNet-2 for 8x8 images (as DC and MTT)",
    ),
    Preset(
        "mnist5k",
        "*",
        {"iterations": 300, "model": "convnet-w32"},
        "ddkit CPU scale: ConvNet-3 width 32, the standard suite's mnist5k network",
    ),
)  # the student networks and budgets of bptt and rtp
ADAM_STUDENT = {"inner": "adam", "syn_lr": 0.001}  # RaT-BPTT's inner optimiser and step


@register_method
class BPTT(Distiller):
    """bptt: back-propagation through a randomly truncated unrolled training run with learned step sizes (Wang et al. 2018; Feng et al., ICLR 2024)."""

    name = "bptt"
    Config: ClassVar[type[MethodConfig]] = BPTTConfig
    presets = also_for(
        CPU_SCALE
        + (
            Preset(
                "mnist5k",
                10,
                ADAM_STUDENT,
                "validation split, 100 iterations: an Adam student (RaT-BPTT's) lifts the set above "
                "the random start, SGD and momentum do not: "
                "benchmarks/results/tune_bptt_mnist5k_ipc10_{inner_*,adam_lr_img}.json",
            ),
            Preset(
                "mnist5k",
                50,
                ADAM_STUDENT,
                "not tuned at IPC 50: the IPC-10 student carried over",
            ),
        ),
        "mnist5k",
        "mnist",
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        "model": "convnet2-w8",
        "unroll_steps": 3,
        "window": 2,
        "batch_real": 8,
    }

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        self.codec_, images = start_stored(cfg.codec, train, ipc, generator, cfg.init)
        check_memory(  # one learned step size per step: value, gradient and Adam's two moments
            f"{cfg.unroll_steps:,} per-step learning rates",
            4 * 4 * cfg.unroll_steps,
            "use a smaller unroll_steps",
        )
        device = train.images.device
        log_lrs = torch.full((cfg.unroll_steps,), math.log(cfg.syn_lr), device=device)
        log_lrs.requires_grad_(True)
        self.nets_ = RandomNetwork(cfg.model, train.spec, device=device)
        self.fm_ = FlatModel(self.nets_.network)
        per_class = self.codec_.emitted_per_class(ipc, train.spec)
        self.labels_ = class_labels(train.spec.num_classes, per_class).to(device)
        self.batch_ = real_batch_size(cfg.batch_real, train)
        self.augment_ = make_augment(cfg.augment, train.spec)
        self.state_.update(
            {
                "images": images,
                "log_lrs": log_lrs,
                "opt": torch.optim.Adam([images], lr=cfg.lr_img),
                "opt_lr": torch.optim.Adam([log_lrs], lr=cfg.lr_lr),
                "generator": generator,
            }
        )

    def step(self, iteration: int) -> dict[str, float]:
        cfg, train, st = self.config, self.train_, self.state_
        g, log_lrs = st["generator"], st["log_lrs"]
        theta = self.fm_.flatten(self.nets_.draw(g))
        n = int(torch.randint(cfg.window, cfg.unroll_steps + 1, (1,), generator=g))
        idx = train.sample_per_class(self.batch_, g).flatten()
        images, labels = self.student_set()
        trained = unroll(
            self.fm_,
            theta,
            images,
            labels,
            log_lrs[:n].exp(),
            tracked=cfg.window,
            use_checkpoint=cfg.checkpoint,
            augment=None if self.augment_ is None else lambda x: self.augment_(x, g),
            optimizer=cfg.inner,
        )
        logits = self.fm_(trained, train.images[idx])
        loss = F.cross_entropy(logits, train.labels[idx])
        st["opt"].zero_grad(set_to_none=True)
        st["opt_lr"].zero_grad(set_to_none=True)
        loss.backward()
        st["opt"].step()
        st["opt_lr"].step()
        accuracy = (logits.argmax(1) == train.labels[idx]).float().mean()
        return {
            "loss": float(loss.detach()),
            "real_accuracy": float(accuracy),
            "unroll": float(n),
            "mean_step_size": float(log_lrs.detach().exp().mean()),
        }

    def student_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and targets the student trains on (differentiable in what is learned)."""
        return self.codec_.decode(self.state_["images"]), self.labels_

    def result(self) -> SyntheticSet:
        return SyntheticSet.from_codec(
            self.codec_, self.state_["images"].detach(), self.train_.spec
        )
