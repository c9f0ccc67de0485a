"""NCFM: distribution matching by the characteristic function of trained networks' features.

S. Wang, Y. Yang, Z. Liu, C. Sun, X. Hu, C. He and L. Zhang, "Dataset Distillation with Neural
Characteristic Function: A Minmax Perspective", CVPR 2025 (arXiv:2502.20653; authors' code
github.com/gszfwsb/NCFM). Per class, the L2-normalised features ``f`` of the real batch and of
the synthetic images are compared through their empirical characteristic functions
``phi(t) = mean_i exp(i <t, f_i>)`` at ``num_freqs`` random frequencies ``t ~ N(0, I)``:

``CF_c = mean_t sqrt(alpha (|phi_r(t)| - |phi_s(t)|)^2 + beta 2 (|phi_r||phi_s| - Re(phi_r conj(phi_s))))``

(:func:`cf_loss`: the amplitude and the phase differences, weighted by ``alpha`` / ``beta``; the
phase term is clamped at 1e-12 as in the authors' ``CFLossFunc``), scaled by ``cf_scale`` (the
authors' 300) and summed over classes. With ``alpha = beta = 1`` the square root is
``|phi_r(t) - phi_s(t)|``.

The feature networks come from a pool of networks trained on the real data: every iteration picks
one (seeded), and matches with its weights interpolated ``l theta_0 + (1 - l) theta_T`` between its
initialisation and its trained state, ``l ~ U(0, 1)`` (the authors' ``update_feature_extractor``
with 20 pretrained ConvNets). ddkit's pool is the expert-trajectory artifact of the trajectory
family (:func:`ddkit.methods.trajectory.methods.obtain_experts`: ``experts_dir`` from
``ddkit experts``, or trained once and cached under ``experts_cache`` with the same settings as
MTT's, so MTT's and NCFM's runs share it): epoch 0 is ``theta_0``, the last epoch ``theta_T``.

Calibration (``calib_weight > 0``, on by default as in the shipped configs): the cross-entropy of
the trained network ``theta_T`` on the augmented synthetic images of each class (the class's
Siamese draw), weighted by ``calib_weight``. Adversarial frequency sampler (``sampler=True``, off
by default as in every shipped config): the frequencies are a small network's output (three
linear layers, leaky ReLU then tanh, batch-normalised without affine parameters) on ``t``-noise,
trained by AdamW (``lr_sampler``; the authors' SGD) to *maximise* the matching loss while the images minimise it.

Everything else is DM's (:class:`~.distribution.DM`): the real batches, the per-class Siamese
DSA draw, the codecs (the shipped configs use factor-2 multi-formation, ``codec="formation:2"``).
The synthetic images are optimised by AdamW (``lr_img`` 0.01, weight decay 5e-4, as shipped).

Deviations from the authors' code: one image update per iteration for all classes with the
calibration term added to the matching loss (the code steps the optimiser once per class for
matching and once per class for calibration); images live in ddkit's normalised space (the code
optimises [0, 1] pixels, so ``lr_img`` acts on a scale about 1/std larger) and are not clamped;
no ReduceLROnPlateau schedule; the sampler's noise has ``num_freqs`` rows (the code draws
``num_freqs / 16`` rows and repeats them 16 times) and its batch norm has no affine parameters, and it is trained by AdamW in the images' optimiser
(a reversed gradient) instead of a separate SGD.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.augment.dsa import DSAParams
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.methods.base import MethodConfig, register_method
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Auto, Precision, Preset
from ddkit.methods.matching.distribution import DM, DMConfig, MeanFn, augment_per_class
from ddkit.methods.trajectory.methods import TEST_EXPERTS_CACHE, obtain_experts

__all__ = ["NCFM", "NCFMConfig", "cf_loss", "characteristic_function"]

_TEST_EXPERTS = {  # the trajectory tests' experts (same settings: one cached folder)
    "model": "convnet2-w8",
    "num_experts": 2,
    "expert_train_epochs": 3,
    "expert_batch": 32,
}


def characteristic_function(
    features: torch.Tensor, freqs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The empirical characteristic function of each class's rows ``features`` ``(K, n, F)`` at
    ``freqs`` ``(K, T, F)``: its real and imaginary parts ``mean_i cos / sin <t, f_i>``, each
    ``(K, T)``."""
    arg = freqs @ features.transpose(1, 2)  # (K, T, n)
    return torch.cos(arg).mean(2), torch.sin(arg).mean(2)


def cf_loss(
    real: torch.Tensor,
    syn: torch.Tensor,
    freqs: torch.Tensor,
    alpha: float = 0.5,
    beta: float = 0.5,
) -> torch.Tensor:
    """NCFM's per-class characteristic-function discrepancy (CVPR 2025, the authors'
    ``CFLossFunc``) between the rows of ``real`` ``(K, n, F)`` and ``syn`` ``(K, m, F)`` at
    ``freqs`` ``(K, T, F)``: the mean over frequencies of
    ``sqrt(alpha * amplitude_diff^2 + beta * phase_diff)``; returns ``(K,)``. The features are
    used as given (NCFM L2-normalises them first)."""
    r_re, r_im = characteristic_function(real, freqs)
    s_re, s_im = characteristic_function(syn, freqs)
    r_amp = torch.sqrt(r_re * r_re + r_im * r_im)
    s_amp = torch.sqrt(s_re * s_re + s_im * s_im)
    amplitude = (r_amp - s_amp) ** 2
    phase = (2 * (r_amp * s_amp - r_re * s_re - r_im * s_im)).clamp_min(1e-12)
    return torch.sqrt(alpha * amplitude + beta * phase).mean(1)


def _keep_normalised(embeddings: torch.Tensor) -> torch.Tensor:
    """``mean_fn`` that keeps every real embedding ``(n, B, F)``, L2-normalised."""
    return F.normalize(embeddings, dim=-1)


@dataclasses.dataclass(frozen=True)
class NCFMConfig(DMConfig):
    """NCFM hyper-parameters; defaults follow the authors' CIFAR-10 configs (``config/ipc*``)."""

    lr_img: float = 0.01  # AdamW on the stored images
    weight_decay_img: float = 5e-4
    batch_real: int = 1024  # per class
    num_freqs: int = 4096
    alpha: float = 0.5  # weight of the amplitude difference
    beta: float = 0.5  # weight of the phase difference
    cf_scale: float = 300.0  # the authors' factor on the CF loss
    calib_weight: float = 1.0  # 0: no calibration term
    sampler: bool = False  # adversarial frequency sampler
    lr_sampler: float = 1e-3
    # the speed levers stay off by default here: validated for dm only (ddkit.levers)
    precision: Precision = "fp32"
    compile: bool | Auto = False
    # the pool of trained networks: expert trajectories (same vocabulary as mtt / datm)
    experts_dir: str | None = None
    experts_cache: str = "runs/experts"
    num_experts: int = 20  # the authors' num_premodel
    expert_train_epochs: int = 20  # their teacher_model_epoch
    expert_lr: float = 0.01
    expert_batch: int = 256
    expert_seed: int = 0
    zca: bool = False

    rules = {
        "weight_decay_img": NON_NEGATIVE,
        "num_freqs": AT_LEAST_ONE,
        "alpha": NON_NEGATIVE,
        "beta": NON_NEGATIVE,
        "cf_scale": POSITIVE,
        "calib_weight": NON_NEGATIVE,
        "lr_sampler": POSITIVE,
        "num_experts": AT_LEAST_ONE,
        "expert_train_epochs": AT_LEAST_ONE,
        "expert_lr": POSITIVE,
        "expert_batch": AT_LEAST_ONE,
        "expert_seed": NON_NEGATIVE,
    }

    def check(self) -> None:
        super().check()
        if self.reweight != "none":
            raise ConfigError("ncfm matches whole feature sets; reweight must be 'none'")
        if self.zca:
            raise ConfigError("ncfm matches unwhitened images; zca must be false")
        if self.momentum_img != DMConfig.momentum_img:
            raise ConfigError("ncfm optimises the images with AdamW; momentum_img does not apply")
        if self.alpha + self.beta <= 0:
            raise ConfigError("alpha + beta must be > 0 (both 0 makes the loss constant)")


@register_method
class NCFM(DM):
    """ncfm: match characteristic functions of trained networks' features at random frequencies (Wang et al., CVPR 2025)."""

    name = "ncfm"
    # DM's split by class: every rank draws the frequencies of every class (one process's
    # stream) and matches and calibrates only its classes; the shared adversarial sampler
    # would couple them, so it is refused on several processes
    scale_out = "classes"
    needs = "image"
    # its loss draws frequencies per call: the synthetic side runs all classes in one pass
    class_separable = False
    Config: ClassVar[type[MethodConfig]] = NCFMConfig
    presets = (
        Preset(
            "cifar10",
            "*",
            {"codec": "formation:2", "iterations": 20000},
            "NCFM CVPR'25 authors' config/ipc{1,10,50}/cifar10.yaml (factor 2, 20k iterations)",
        ),
        Preset(
            "digits",
            "*",
            {"iterations": 1000, "batch_real": 128, "num_freqs": 1024, "num_experts": 5},
            "ddkit CPU scale: digits has ~144 train images per class",
        ),
        Preset(
            "mnist5k",
            "*",
            {
                "iterations": 1000,
                "model": "convnet-w32",
                "batch_real": 256,
                "num_freqs": 1024,
                "num_experts": 5,
                "expert_train_epochs": 10,
            },
            "ddkit CPU scale: ConvNet-3 width 32 (the standard suite's mnist5k network), dm's "
            "real batch, a quarter of the frequencies, 5 experts x 10 epochs",
        ),
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        **_TEST_EXPERTS,
        "experts_cache": TEST_EXPERTS_CACHE,
        "batch_real": 8,
        "num_freqs": 16,
    }

    # ---------------------------------------------------------------- setup
    def _real_mean_fn(self) -> MeanFn | None:
        return _keep_normalised

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        super().init(train, ipc, generator, iterations)
        buf = obtain_experts(cfg, train, progress=self.setup_progress_)
        if buf.model != cfg.model.lower():
            raise ConfigError(
                f"experts in {str(buf.root)!r} are {buf.model!r} networks, not {cfg.model!r}"
            )
        buf.check_data(train)
        net = self.nets_.network
        if sum(p.numel() for p in net.parameters()) != int(buf.meta["num_params"]):
            raise ConfigError(f"model {cfg.model!r} does not match the experts' parameter layout")
        self.buffer_ = buf
        self.final_ = copy.deepcopy(net).requires_grad_(
            False
        )  # holds theta_T of the chosen expert (calibration)
        images = self.state_["images"]
        k = train.spec.num_classes
        # every class's labels; a step takes those of the classes it matches (a rank's share, or
        # a dry run's narrowed step) when it calibrates
        self.syn_labels_ = class_labels(k, images.shape[0] // k).to(self.device_)
        groups = [{"params": [images], "lr": cfg.lr_img}]
        if cfg.sampler and self.classes_ is not None:
            raise ConfigError(
                "ncfm's adversarial sampler (sampler=true) is shared by every class and does "
                "not split by class; launch it without torchrun or set sampler=false"
            )
        if cfg.sampler:
            weights = _sampler_weights(self._feature_dim(train), generator)
            self.state_["sampler"] = [
                w.to(self.device_, self.dtype_).requires_grad_(True) for w in weights
            ]
            groups.append({"params": self.state_["sampler"], "lr": cfg.lr_sampler})
        # one optimiser: the sampler's reversed gradient makes its descent an ascent
        self.state_["opt"] = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay_img)

    def _feature_dim(self, train: ImageDataset) -> int:
        with torch.no_grad():
            x = torch.zeros((1, *train.spec.shape), device=self.device_, dtype=self.dtype_)
            return int(self.nets_.network.embed(x).shape[1])

    # ---------------------------------------------------------------- one iteration
    def _network(self, generator: torch.Generator) -> nn.Module:
        """The pool network of this iteration: a random expert's weights interpolated between
        its initialisation and its trained state (``l ~ U(0, 1)``); its trained state goes to
        ``final_`` for the calibration term."""
        buf = self.buffer_
        j = int(torch.randint(len(buf), (1,), generator=generator))
        mix = float(torch.rand((), generator=generator))
        start, end = buf.params(j, 0), buf.params(j, buf.epochs)
        net = self.nets_.network
        with torch.no_grad():
            theta = (mix * start + (1 - mix) * end).to(self.device_, self.dtype_)
            nn.utils.vector_to_parameters(theta, net.parameters())
            nn.utils.vector_to_parameters(
                end.to(self.device_, self.dtype_), self.final_.parameters()
            )
        return net.train()

    def _frequencies(self, dim: int, generator: torch.Generator) -> torch.Tensor:
        """``(K, T, F)`` frequencies of this rank's classes (drawn for every class): standard
        normal, or the adversarial sampler's output."""
        k = self.train_.spec.num_classes
        t = torch.randn((k, self.config.num_freqs, dim), generator=generator)
        if self.classes_ is not None:
            t = t[self.classes_]
        t = t.to(self.device_, self.dtype_)
        if self.config.sampler:
            # the sampler ascends the loss the images descend: its gradient is reversed
            t = _ReverseGradient.apply(_sampler_forward(self.state_["sampler"], t))
        return t

    def _match_loss(
        self, real_stat: torch.Tensor, syn_emb: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        cfg = self.config
        syn = F.normalize(syn_emb, dim=-1)
        freqs = self._frequencies(syn.shape[2], generator)
        loss = cfg.cf_scale * cf_loss(real_stat, syn, freqs, cfg.alpha, cfg.beta).sum()
        return loss

    def _regulariser(
        self, syn: torch.Tensor, draws: Sequence[DSAParams] | None, metrics: dict[str, float]
    ) -> torch.Tensor | None:
        cfg = self.config
        if cfg.calib_weight == 0:
            return None
        x = augment_per_class(self.dsa_, syn, draws) if draws is not None else syn
        logits = self._fast(self.final_)(x.flatten(0, 1))
        labels = self._local_labels(self.syn_labels_)
        ce = F.cross_entropy(logits, labels, reduction="none").view(syn.shape[:2])
        term = cfg.calib_weight * ce.mean(1).sum()
        metrics["calib_loss"] = float(term.detach()) / self.train_.spec.num_classes
        return term

    def result(self) -> SyntheticSet:
        syn = super().result()
        syn.meta["experts_dir"] = str(self.buffer_.root)
        syn.meta["num_experts"] = len(self.buffer_)
        return syn


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient's sign flipped backward (the minmax game in one step)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def _sampler_weights(dim: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The adversarial sampler's three ``dim x dim`` linear layers (weights and biases),
    initialised as ``nn.Linear`` does (uniform in ``+-1/sqrt(dim)``) from ``generator``."""
    bound = dim**-0.5
    out = []
    for _ in range(3):
        out.append((torch.rand((dim, dim), generator=generator) * 2 - 1) * bound)
        out.append((torch.rand((dim,), generator=generator) * 2 - 1) * bound)
    return out


def _sampler_forward(weights: Sequence[torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    """The sampler on noise ``t`` ``(K, T, F)``: per class, three linear layers, each batch-
    normalised over the ``T`` rows, leaky ReLU (0.2) after the first two and tanh after the
    last (NCFM's ``SampleNet``)."""
    a = t
    for i in range(3):
        a = a @ weights[2 * i].T + weights[2 * i + 1]
        a = (a - a.mean(1, keepdim=True)) / torch.sqrt(
            a.var(1, unbiased=False, keepdim=True) + 1e-5
        )
        a = F.leaky_relu(a, 0.2) if i < 2 else torch.tanh(a)
    return a
