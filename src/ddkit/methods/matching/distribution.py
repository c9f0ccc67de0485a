"""Distribution matching: DM and IDM.

* **DM** -- B. Zhao and H. Bilen, "Dataset Condensation with Distribution Matching", WACV 2023
  (arXiv:2110.04181). Every iteration draws a freshly initialised network ``psi`` and minimises
  ``sum_c || mean_i psi(A(x_real_{c,i})) - mean_j psi(A(s_{c,j})) ||^2`` over the synthetic images
  ``s``, where ``A`` is a DSA augmentation (Zhao & Bilen, ICML 2021) drawn once per class and
  shared by the class's real and synthetic batch ("Siamese").
* **IDM** -- G. Zhao, G. Li, Y. Qin and Y. Yu, "Improved Distribution Matching for Dataset
  Condensation", CVPR 2023 (arXiv:2307.09742). DM plus (1) partitioning and expansion: each
  stored image holds a ``factor x factor`` grid of small images, each upsampled to full size for
  training ("multi-formation", from IDC: Kim et al., ICML 2022); (2) a queue of partially trained
  networks instead of random ones; (3) a class-aware regulariser: cross-entropy of the matching
  network's classifier on the synthetic images, weighted by that network's training accuracy.

Real batches: random per class (the papers'), or ``real_batch="dream"``: DREAM's
representative rows under the step network's features (IDM: the queue network's), re-clustered
every ``dream_interval`` matching steps; ``init="dream"`` starts from representative rows
(:mod:`ddkit.methods.matching.dream`). M3D and NCFM take both too.

Debiasing (``reweight="kde"``, off by default): the real class means become weighted means, each
real row weighted by the inverse kernel density of its embedding (J. Cui et al., "Mitigating Bias
in Dataset Distillation", ICML 2024, arXiv:2406.06609; :mod:`ddkit.methods.matching.reweight`
states how and where it departs from the paper), so rows without a class's spurious attribute
count more. Both DM and IDM take it.

Vectorisation (the hot path). The reference code loops over classes and runs one small forward
per class. Here all classes' augmented real images go through the network in one forward (no
gradient needed: the network is fixed and real images are data), and all classes' synthetic images
in a second one; class means are segment means of ``(K, B, F)`` / ``(K, S, F)`` tensors. The
per-class Siamese DSA draws are applied in one call per sampled DSA *family* (at most six): the
classes that drew the same family are batched with per-sample parameters that repeat the class's
draw. ``vectorize=False`` keeps the plain class-by-class path (same random draws, same result up
to floating-point rounding) as a reference for tests and benchmarks.

Speed levers (``precision``, ``channels_last``, ``compile``; all off by default, so the default
arithmetic is unchanged). ``precision="bf16"`` (or ``"auto"``: bf16 where the CPU or GPU computes it
natively) runs every forward pass of the matching network under bf16 autocast; the synthetic
images, the network weights, the embedding means, the loss and the image update stay float32.
``channels_last=True`` feeds the network channels-last batches. ``compile=True`` runs the
matching network's embedding through ``torch.compile`` (eager where it is unavailable); IDM then
copies each queue network into one template module and embeds with the template (one compiled
graph for the whole queue) instead of a functional call per network, and trains its queue
networks through the compiled template too. None of them is in the reference code.

Normalisation layers: instance norm (the default ConvNet) is per sample, so batching classes
changes nothing. With BatchNorm the batch statistics depend on what is batched together; the
vectorised path then is what the DM reference does for BN networks (all classes' real images in
one forward, all synthetic in another), and the class loop differs from it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.augment.dsa import DSA, DSAParams
from ddkit.data.codecs.formation import decode, default_factor, encode_real
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.train import sgd_step
from ddkit.levers import CompiledForward, precision_context, resolve_compile, to_channels_last
from ddkit.meter import check_memory
from ddkit.methods.base import Distiller, MethodConfig, register_method
from ddkit.methods.codecs import start_stored
from ddkit.methods.common import (
    RandomNetwork,
    initial_images,
    local_classes,
    make_augment,
    method_precision,
    real_batch_note,
    real_batch_size,
    record_levers,
    summed_over_ranks,
)
from ddkit.methods.config import (
    AT_LEAST_ONE,
    AUGMENT,
    DEVICE,
    MOMENTUM,
    NON_NEGATIVE,
    POSITIVE,
    Alias,
    Auto,
    Precision,
    Preset,
    resolve_device,
    zero_to_auto,
)
from ddkit.methods.matching.class_rows import ClassRows, embed_chunk, piece_bytes
from ddkit.methods.matching.dream import RepresentativeBatches, start_rows
from ddkit.methods.matching.reweight import ReweightConfig, kde_weights, weighted_mean
from ddkit.methods.pool import ModelPool
from ddkit.models import has_batchnorm
from ddkit.models.footprint import footprint

__all__ = [
    "DM",
    "IDM",
    "DMConfig",
    "IDMConfig",
    "augment_per_class",
    "embedding_match_loss",
    "match_embeddings",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
EmbedFn = Callable[[torch.Tensor], torch.Tensor]
MeanFn = Callable[[torch.Tensor], torch.Tensor]  # class embeddings (n, B, F) -> means (n, F)


def fast_forward(
    fn: EmbedFn, precision: str, channels_last: bool, device: torch.device, dtype: torch.dtype
) -> EmbedFn:
    """``fn`` (a forward pass) under the speed levers: input in channels-last memory format,
    bf16 autocast around the call (resolved ``precision``), output back in ``dtype``. With
    neither lever it is ``fn`` itself."""
    if precision == "fp32" and not channels_last:
        return fn

    def forward(x: torch.Tensor) -> torch.Tensor:
        if channels_last and x.ndim == 4:
            x = to_channels_last(x)
        with precision_context(precision, device):
            return fn(x).to(dtype)

    return forward


# ============================================================================ building blocks
def embedding_match_loss(real_emb: torch.Tensor, syn_emb: torch.Tensor) -> torch.Tensor:
    """DM's loss: ``sum_c || mean_i real_emb[c, i] - mean_j syn_emb[c, j] ||^2``.

    ``real_emb`` is ``(K, B, F)``, ``syn_emb`` ``(K, S, F)`` (class-major segments).
    """
    return _mean_match(real_emb.mean(1), syn_emb)


def _mean_match(real_mean: torch.Tensor, syn_emb: torch.Tensor) -> torch.Tensor:
    return ((real_mean - syn_emb.mean(1)) ** 2).sum()


def _plain_mean(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings.mean(1)


def _is_reshaped(decoded: torch.Tensor, stored: torch.Tensor) -> bool:
    """Whether ``decoded`` is ``stored`` reshaped (the same elements in the same memory, as the
    ``pixels`` codec decodes): its gradient is then ``stored``'s."""
    return (
        decoded.requires_grad
        and decoded.data_ptr() == stored.data_ptr()
        and decoded.numel() == stored.numel()
        and decoded.dtype == stored.dtype
        and decoded.is_contiguous()
        and stored.is_contiguous()
    )


def sample_class_draws(
    dsa: DSA | None, num_classes: int, generator: torch.Generator, image_size: tuple[int, int]
) -> list[DSAParams] | None:
    """One shared ("Siamese") DSA draw per class, in class order (``None`` without DSA)."""
    if dsa is None:
        return None
    return [
        dsa.sample(1, generator, shared=True, image_size=image_size) for _ in range(num_classes)
    ]


def augment_per_class(dsa: DSA, x: torch.Tensor, draws: Sequence[DSAParams]) -> torch.Tensor:
    """Apply class ``k``'s shared draw ``draws[k]`` to every image of ``x[k]``; ``x`` is
    ``(K, n, C, H, W)``. Classes that drew the same family are augmented in one call, with
    per-sample parameters that repeat each class's draw ``n`` times (at most one call per
    family instead of one per class). Equal to ``stack([dsa.apply(x[k], draws[k]) for k])``."""
    k, n = x.shape[0], x.shape[1]
    if len(draws) != k:
        raise ConfigError(f"{len(draws)} DSA draws for {k} classes")
    groups: dict[tuple[str, ...], list[int]] = {}
    for c, p in enumerate(draws):
        groups.setdefault(p.families, []).append(c)
    if len(groups) == 1 and not next(iter(groups)):  # every draw is the identity
        return x
    outs, order = [], []
    for fams, cls in groups.items():
        keys = draws[cls[0]].values.keys()
        values = {
            key: torch.cat([draws[c].values[key] for c in cls]).repeat_interleave(n) for key in keys
        }
        params = DSAParams(fams, values, shared=False)
        sub = x[cls] if len(cls) < k else x
        outs.append(dsa.apply(sub.flatten(0, 1), params).reshape(len(cls), *x.shape[1:]))
        order += cls
    if len(outs) == 1:
        return outs[0]
    inverse = torch.argsort(torch.tensor(order, device=x.device))
    return torch.cat(outs)[inverse]


def match_embeddings(
    embed: EmbedFn,
    real: torch.Tensor | ClassRows,
    syn: torch.Tensor,
    dsa: DSA | None,
    draws: Sequence[DSAParams] | None,
    *,
    vectorize: bool = True,
    chunk: int = 0,
    mean_fn: MeanFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed real ``(K, B, C, H, W)`` (a tensor or :class:`ClassRows`) and synthetic
    ``(K, S, C, H, W)`` images after the
    per-class Siamese augmentation; return ``(real_mean (K, F), syn_emb (K, S, F))``.

    The real side runs without autograd. ``vectorize=True``: one forward for all real images
    (in pieces of at most ``chunk`` images when ``chunk > 0``, to bound memory) and one for all
    synthetic images. ``vectorize=False``: the plain loop, one class at a time. ``mean_fn``
    turns each class's real embeddings ``(n, B, F)`` into its mean ``(n, F)`` (default: the
    plain mean; a weighted one with ``reweight="kde"``, :mod:`.reweight`).
    """
    k, b = real.shape[:2]
    reduce = mean_fn or _plain_mean
    if not vectorize:
        means, embs = [], []
        for c in range(k):
            r, s = real[c], syn[c]
            if draws is not None:
                r, s = dsa.apply(r, draws[c]), dsa.apply(s, draws[c])
            with torch.no_grad():
                means.append(reduce(embed(r)[None])[0])
            embs.append(embed(s))
        return torch.stack(means), torch.stack(embs)
    with torch.no_grad():
        per = k if chunk <= 0 else max(1, chunk // b)
        means = []
        for c0 in range(0, k, per):  # gathered and augmented a piece at a time
            piece = real[c0 : c0 + per]
            if draws is not None:
                piece = augment_per_class(dsa, piece, draws[c0 : c0 + per])
            rows = piece.flatten(0, 1)
            emb = (
                embed(rows)
                if chunk <= 0 or len(rows) <= chunk
                else torch.cat([embed(rows[i : i + chunk]) for i in range(0, len(rows), chunk)])
            )  # a class larger than a piece: its rows in pieces, its embeddings together
            means.append(reduce(emb.view(len(piece), b, -1)))
        real_mean = torch.cat(means) if len(means) > 1 else means[0]
    if draws is not None:
        syn = augment_per_class(dsa, syn, draws)
    syn_emb = embed(syn.flatten(0, 1)).view(k, syn.shape[1], -1)
    return real_mean, syn_emb


# ============================================================================ configs
@dataclasses.dataclass(frozen=True)
class DMConfig(ReweightConfig):
    """DM hyper-parameters (defaults: the published CIFAR/MNIST setting of Zhao & Bilen 2023;
    ``real_batch`` / ``dream_*``: DREAM's representative batches, :mod:`.dream`)."""

    iterations: int = 20000
    model: str = "convnet"  # ConvNet-3, width 128, instance norm
    lr_img: float = 1.0  # SGD on the synthetic images
    momentum_img: float = 0.5
    batch_real: int = 256  # real images per class per iteration
    init: Literal["real", "noise", "dream"] = "real"  # dream: DREAM's representative rows
    augment: str = "auto"  # auto (the dataset's DSA strategy) | none | e.g. color_crop_cutout
    vectorize: bool = True  # False: the plain class-by-class reference path
    # >0: embed the real images in pieces of at most this many, whole classes at a time (bounds
    # memory; each class's mean is computed as before); 0: one forward for all classes
    embed_chunk: int = 512
    # synthetic classes whose images go through the network in one pass, their gradients
    # accumulated (the same update as one pass over all classes); 0: as many as the memory
    # budget holds (all of them, unless that would not fit)
    syn_chunk: int = 0
    dtype: Literal["float32", "float64"] = "float32"  # float64 for numerical checks
    device: str = "auto"  # "auto": where the training data lives
    # speed levers (module docstring; on by default for dm, validated: ddkit.levers): bf16
    # autocast around the network's forward passes (float32 images, weights and loss; auto:
    # bf16 where the hardware computes it natively, fp32 in exact mode)
    precision: Precision = "auto"
    channels_last: bool = False  # batches in channels-last memory format for the convolutions
    # torch.compile the embedding (eager where it is unavailable); auto: for runs of
    # COMPILE_MIN_STEPS iterations or more, off in exact mode
    compile: bool | Auto = "auto"
    # reweight="kde" (ReweightConfig; Cui et al., ICML 2024): the matched real mean weights each
    # row by the inverse kernel density of its embedding, so rare (bias-conflicting) rows count
    # more; "none" is the plain mean

    rules = {
        "lr_img": POSITIVE,
        "momentum_img": MOMENTUM,
        "batch_real": AT_LEAST_ONE,
        "embed_chunk": NON_NEGATIVE,
        "syn_chunk": NON_NEGATIVE,
        "augment": AUGMENT,
        "device": DEVICE,
    }
    aliases = {"momentum": Alias("momentum_img"), "dsa_strategy": Alias("augment")}

    def check(self) -> None:
        super().check()
        method_precision(self.precision, self.dtype)  # bf16 needs float32


@dataclasses.dataclass(frozen=True)
class IDMConfig(DMConfig):
    """IDM hyper-parameters; defaults follow the authors' CIFAR-10 IPC 10 command.

    Names vs the reference script (``IDM_cifar10.py``): ``match_net_num`` = ``train_net_num``
    (networks matched per iteration), ``train_net_num`` = ``fetch_net_num`` (queue networks
    trained per iteration), ``batch_net`` = ``trained_bs``, ``momentum_net``/
    ``weight_decay_net`` = ``--net_decay``.
    """

    lr_img: float = 0.2
    factor: int | Auto = "auto"  # tiles per side; auto: 2 for images >= 16 px, else 1
    net_num: int = 100  # queue capacity (oldest network dropped when full)
    net_init_num: int = 3  # networks in the queue at the start
    net_generate_interval: int = 30  # push a fresh network every this many iterations
    match_net_num: int = 1
    train_net_num: int = 2
    model_train_steps: int = 10
    batch_net: int = 256
    lr_net: float = 0.01
    momentum_net: float = 0.9
    weight_decay_net: float = 5e-4
    ce_weight: float = 0.5  # x the matching network's training accuracy in percent
    # the speed levers stay off by default here: validated for dm only (ddkit.levers)
    precision: Precision = "fp32"
    compile: bool | Auto = False

    rules = {
        "factor": AT_LEAST_ONE,
        "net_num": AT_LEAST_ONE,
        "net_init_num": AT_LEAST_ONE,
        "net_generate_interval": AT_LEAST_ONE,
        "match_net_num": AT_LEAST_ONE,
        "train_net_num": NON_NEGATIVE,
        "model_train_steps": NON_NEGATIVE,
        "batch_net": AT_LEAST_ONE,
        "lr_net": POSITIVE,
        "momentum_net": MOMENTUM,
        "weight_decay_net": NON_NEGATIVE,
        "ce_weight": NON_NEGATIVE,
    }
    aliases = {
        "factor": Alias("factor", zero_to_auto),
        "train_batch": Alias("batch_net"),
        "net_momentum": Alias("momentum_net"),
        "net_weight_decay": Alias("weight_decay_net"),
    }

    def check(self) -> None:
        super().check()
        if self.codec != "pixels":
            raise ConfigError(
                "idm stores multi-formation images through its own factor option; "
                f"codec must be pixels, got {self.codec!r}"
            )
        if self.net_init_num > self.net_num:
            raise ConfigError(
                f"net_init_num must be <= net_num={self.net_num}, got {self.net_init_num}"
            )


# ============================================================================ DM
@register_method
class DM(Distiller):
    """dm: distribution matching -- match mean embeddings of real and synthetic images under random networks (Zhao & Bilen, WACV 2023)."""

    name = "dm"
    # classes are independent given the shared draws: every rank replays the whole random
    # stream (cheap index and parameter draws) and embeds only its classes' images
    scale_out = "classes"
    needs = "differentiable"
    Config: ClassVar[type[MethodConfig]] = DMConfig
    # The published setting (all datasets, all IPC) is the Config default.
    presets = (
        Preset(
            "digits",
            "*",
            {"iterations": 1000, "batch_real": 128},
            "ddkit CPU scale: digits has ~144 train images per class",
        ),
        Preset(
            "mnist5k",
            "*",
            {"iterations": 2000, "model": "convnet-w32"},
            "ddkit CPU scale: ConvNet-3 width 32, the standard suite's mnist5k network",
        ),
    )
    test_overrides: ClassVar[dict[str, Any]] = {"batch_real": 8}
    #: whether a step's loss is a sum of per-class terms that draw no randomness, so that the
    #: synthetic side may run a chunk of classes at a time (``syn_chunk``); a subclass whose
    #: loss couples classes or draws per call sets it False
    class_separable: ClassVar[bool] = True

    # ---------------------------------------------------------------- setup
    def _setup(self, train: ImageDataset, iterations: int) -> None:
        """The run's fixed parts: real images, augmentation, the matching network and the speed
        levers, compilation resolved for a run of ``iterations``."""
        cfg = self.config
        self.device_ = resolve_device(cfg.device, train.images)
        self.dtype_ = _DTYPES[cfg.dtype]
        self.real_ = train.images.to(self.device_, self.dtype_)
        self.dsa_ = make_augment(cfg.augment, train.spec)
        # one network, re-initialised from a drawn seed whenever a fresh one is needed; it is
        # never trained here, so its weights need no gradient
        self.nets_ = RandomNetwork(cfg.model, train.spec, device=self.device_, dtype=self.dtype_)
        self.nets_.network.requires_grad_(False)
        # the resolved precision: float64 runs (numerical checks) always compute in float64
        self.precision_ = method_precision(cfg.precision, self.dtype_, self.device_)
        net = self.nets_.network
        self.compile_ = resolve_compile(cfg.compile, iterations)
        self.embed_ = CompiledForward(net.embed) if self.compile_ else net.embed
        self.real_mean_ = self._real_mean_fn()
        spec = train.spec
        self.footprint_ = footprint(
            cfg.model,
            num_classes=spec.num_classes,
            in_channels=spec.channels,
            image_size=spec.image_size,
        )
        self.embed_chunk_ = embed_chunk(
            cfg.embed_chunk, self.footprint_, self.real_[0].numel() * self.real_.element_size()
        )

    def _real_mean_fn(self) -> MeanFn | None:
        """How a class's real embeddings become the mean to match: ``None`` (the plain mean)
        or, with ``reweight="kde"``, the inverse-density weighted mean."""
        cfg = self.config
        if cfg.reweight == "none":
            return None

        def kde_mean(embeddings: torch.Tensor) -> torch.Tensor:
            weights = kde_weights(embeddings, cfg.kde_bandwidth, cfg.kde_temperature)
            return weighted_mean(embeddings, weights)

        return kde_mean

    def _fast(self, fn: EmbedFn) -> EmbedFn:
        """``fn`` (a forward pass of the matching network) under the config's speed levers."""
        return fast_forward(
            fn, self.precision_, self.config.channels_last, self.device_, self.dtype_
        )

    def _start_images(
        self, train: ImageDataset, ipc: int, generator: torch.Generator
    ) -> torch.Tensor:
        if self.config.init == "dream":
            return train.images[self._start_rows(train, ipc, generator).flatten()].clone()
        return initial_images(train, ipc, generator, self.config.init)

    def _start_rows(self, train: ImageDataset, n: int, generator: torch.Generator) -> torch.Tensor:
        """Row indices ``(K, n)`` of real images to start from: random, or (``init="dream"``)
        DREAM's representative rows under a freshly drawn network
        (:func:`~ddkit.methods.matching.dream.start_rows`)."""
        return start_rows(
            self.config,
            train,
            self.real_,
            n,
            generator,
            lambda: self._fast(self.nets_.draw(generator).embed),
        )

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        self._setup(train, iterations)
        self.codec_, stored = start_stored(cfg.codec, train, ipc, generator, self._start_images)
        images = stored.detach().to(self.device_, self.dtype_).requires_grad_(True)
        self.state_["generator"] = generator
        self.state_["images"] = images
        self.state_["opt"] = torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum_img)
        self._start_matching(train)
        self._check_step_memory(train.spec, self._syn_per_class(train.spec, ipc))

    def _syn_per_class(self, spec: DatasetSpec, ipc: int) -> int:
        """The synthetic images per class that go through the network each step."""
        return self.codec_.emitted_per_class(ipc, spec)

    def _check_step_memory(self, spec: DatasetSpec, per_class: int) -> None:
        """Choose how many classes' synthetic images go through the network at once
        (``syn_classes_per_pass_``: ``syn_chunk``, else as many as one piece holds,
        :func:`~ddkit.methods.matching.class_rows.piece_bytes`, as a real piece) and
        refuse, in one line and before any step, a step that cannot fit even one class: each
        synthetic image's activations are kept for the backward pass, the real batch is embedded
        a piece at a time (:func:`embed_chunk`). Only a method whose loss separates by class
        (:attr:`class_separable`, run by this class's :meth:`step`, with a network that does
        not couple classes) is chunked. The budget is the machine's memory: a run on a GPU is
        not checked, and is chunked only when ``syn_chunk`` asks."""
        k = spec.num_classes if self.classes_ is None else len(self.classes_)
        own = type(self)
        chunkable = (
            self.class_separable
            and own.step is DM.step
            and own._regulariser is DM._regulariser
            and not self._couples_classes()
        )
        asked = min(self.config.syn_chunk, k) if self.config.syn_chunk and chunkable else 0
        if self.device_.type != "cpu":
            self.syn_classes_per_pass_ = asked or k
            return
        fp = self.footprint_
        image_bytes = self.real_[0].numel() * self.real_.element_size()
        per_class_pass = per_class * (fp.training + 2 * image_bytes)
        fixed = (
            self.embed_chunk_ * (fp.inference + 2 * image_bytes) + 2 * k * per_class * image_bytes
        )
        # a piece of the synthetic side takes at most what a real piece does
        fits = max(1, piece_bytes() // max(per_class_pass, 1))
        per = asked or (min(k, int(fits)) if chunkable else k)
        self.syn_classes_per_pass_ = per
        h, w = spec.image_size
        check_memory(
            f"{self.name}'s matching step ({per} of {k} classes x {per_class} synthetic {h}x{w} images "
            f"through {self.config.model!r})",
            per * per_class_pass + fixed,
            "use a narrower or shallower --model (e.g. convnet3-w64), a lower --ipc, or "
            "smaller images",
        )

    def _start_matching(self, train: ImageDataset) -> None:
        """Set up the classes this process matches (all but under a class-split
        :mod:`ddkit.distributed` session) and how :meth:`_real_batch` draws: DREAM's
        representative rows or random ones."""
        cfg, k = self.config, train.spec.num_classes
        self.classes_ = local_classes(k) if self.splits_by() == "classes" else None  # None: all
        if self.classes_ is not None and self._couples_classes():
            raise ConfigError(
                f"{self.name} with model {cfg.model!r} does not split by class: its BatchNorm "
                "normalises every class's images together; use a model without BatchNorm "
                "(e.g. convnet) or launch it without torchrun"
            )
        self.real_batch_ = real_batch_size(cfg.batch_real, train)
        self.dream_ = (
            RepresentativeBatches(cfg, train, self.real_batch_, self.state_)
            if cfg.real_batch == "dream"
            else None
        )

    def narrow_steps(self, classes: int | None) -> bool:
        """A dry run's partial step (:meth:`Distiller.narrow_steps`): DM's step embeds each
        class's real batch and synthetic images, so a step over the first ``classes`` classes
        (``classes_``, as one rank's share under a class split) stands for its share of a whole
        one. Where a subclass's step is its own (IDM trains networks every step, whatever the
        classes) or it does not split by class, whole steps are timed."""
        if type(self).step is not DM.step or self.splits_by() != "classes":
            return False
        self.classes_ = None if classes is None else list(range(classes))
        return True

    def step_cost(self) -> str | None:
        """A step embeds ``real_batch_`` real images of every class (:func:`real_batch_note`)."""
        k = self.train_.spec.num_classes
        return real_batch_note(self.real_batch_, self.config.batch_real, k, "batch_real")

    def _couples_classes(self) -> bool:
        """Whether the matching network mixes the classes' images (BatchNorm in training
        mode), so that a rank could not embed its classes alone."""
        return has_batchnorm(self.nets_.network)

    def _local_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The rows of ``labels`` (one per synthetic image, class-major) of this rank's
        classes (all of them in a single process)."""
        if self.classes_ is None:
            return labels
        k = self.train_.spec.num_classes
        return labels.view(k, -1)[self.classes_].flatten()

    def _network(self, generator: torch.Generator) -> nn.Module:
        """A freshly initialised network (seed drawn from ``generator``), in training mode."""
        return self.nets_.draw(generator).train()

    def _real_batch(self, generator: torch.Generator, embed: EmbedFn | None = None) -> ClassRows:
        """The real images ``(K, B, ...)`` of a matching step, as row indices until embedded
        (:class:`ClassRows`): drawn at random per class, or
        (``real_batch="dream"``) DREAM's representative rows under ``embed`` (default: the
        step's network)."""
        if self.dream_ is not None:
            idx = self.dream_.indices(self.real_, embed or self._fast(self.embed_), generator)
        else:
            idx = self.train_.sample_per_class(self.real_batch_, generator)  # (K, B)
        return ClassRows(self.real_, idx.to(self.device_))

    def _syn_view(self, images: torch.Tensor) -> torch.Tensor:
        k = self.train_.spec.num_classes
        view = images.view(k, -1, *images.shape[1:])
        return view if self.classes_ is None else view[self.classes_]

    def _local_share(
        self, real: ClassRows, draws: list[DSAParams] | None
    ) -> tuple[ClassRows, list[DSAParams] | None]:
        """This rank's classes of a step's real batch ``(K, B, ...)`` and class draws, drawn for
        every class so that the random stream is that of one process (all of them there)."""
        if self.classes_ is None:
            return real, draws
        return real.classes(self.classes_), None if draws is None else [
            draws[c] for c in self.classes_
        ]

    # ---------------------------------------------------------------- one iteration
    def step(self, iteration: int) -> dict[str, float]:
        g = self.state_["generator"]
        images, opt = self.state_["images"], self.state_["opt"]
        self._network(g)  # re-initialises the network that self.embed_ runs
        real = self._real_batch(g)
        draws = sample_class_draws(
            self.dsa_, self.train_.spec.num_classes, g, self.train_.spec.image_size
        )
        real, draws = self._local_share(real, draws)
        syn = self._syn_view(self.codec_.decode(images))
        k = self.train_.spec.num_classes
        metrics: dict[str, float] = {}
        opt.zero_grad(set_to_none=True)
        if self.syn_classes_per_pass_ < syn.shape[0]:
            loss = self._chunked_backward(real, syn, draws, g)
        else:
            loss = self._class_loss(real, syn, draws, g)
            extra = self._regulariser(syn, draws, metrics)
            if extra is not None:
                metrics["match_loss"] = float(loss.detach()) / k
                loss = loss + extra
            loss.backward()
        # the ranks' sums over their classes (the loss and every metric) add up to one process's
        names = sorted(metrics)
        values = [float(loss.detach()) / k, *(metrics[n] for n in names)]
        sums = torch.tensor(values, dtype=torch.float64)
        sums = summed_over_ranks(images, sums).tolist()
        opt.step()
        opt.zero_grad(set_to_none=True)  # the gradient, a set's size, is not held between steps
        return {"loss": sums[0], **dict(zip(names, sums[1:]))}

    def _class_loss(
        self,
        real: ClassRows | torch.Tensor,
        syn: torch.Tensor,
        draws: Sequence[DSAParams] | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The matching loss of the classes in ``real`` and ``syn`` ``(n, S, C, H, W)`` (their
        ``draws``): both sides embedded, then :meth:`_match_loss`."""
        real_stat, syn_emb = self._embeddings(self._fast(self.embed_), real, syn, draws)
        return self._match_loss(real_stat, syn_emb, generator)

    def _embeddings(
        self,
        embed: EmbedFn,
        real: ClassRows | torch.Tensor,
        syn: torch.Tensor,
        draws: Sequence[DSAParams] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`match_embeddings` under this run's augmentation, vectorisation, real pieces
        and real statistic."""
        cfg = self.config
        return match_embeddings(
            embed,
            real,
            syn,
            self.dsa_,
            draws,
            vectorize=cfg.vectorize,
            chunk=self.embed_chunk_,
            mean_fn=self.real_mean_,
        )

    def _chunked_backward(
        self,
        real: ClassRows,
        syn: torch.Tensor,
        draws: Sequence[DSAParams] | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """:meth:`_class_loss` of ``syn_classes_per_pass_`` classes at a time, each piece's
        gradient taken on a detached view of its decoded images and written into one gradient
        of the decoded images, which is carried back through the decoding once (or, where the
        decoding is the stored images reshaped, becomes their gradient): the same gradient as
        one pass, with the activations of one piece and one full-size gradient alive at a time.
        Returns the summed loss (detached)."""
        decoded, grad = syn.detach(), torch.empty_like(syn)
        per, total = self.syn_classes_per_pass_, torch.zeros((), dtype=torch.float64)
        for c0 in range(0, syn.shape[0], per):
            part = slice(c0, c0 + per)
            leaf = decoded[part].detach().requires_grad_(True)
            piece = None if draws is None else draws[part]
            loss = self._class_loss(real.classes(list(range(c0, min(c0 + per, len(real))))),
                                    leaf, piece, generator)  # fmt: skip
            loss.backward()
            grad[part] = leaf.grad
            total += float(loss.detach())
        images = self.state_["images"]
        if _is_reshaped(syn, images) and images.grad is None:
            images.grad = grad.view_as(images)
        else:
            syn.backward(grad)
        return total

    def _match_loss(
        self, real_stat: torch.Tensor, syn_emb: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The summed per-class distance between what ``mean_fn`` kept of the real embeddings
        (DM: their means ``(K, F)``) and the synthetic embeddings ``(K, S, F)``."""
        return _mean_match(real_stat, syn_emb)

    def _regulariser(
        self, syn: torch.Tensor, draws: Sequence[DSAParams] | None, metrics: dict[str, float]
    ) -> torch.Tensor | None:
        """An extra loss term on the decoded synthetic images ``(K, S, C, H, W)`` of this
        rank's classes (``draws``: this step's class augmentations), a sum over those classes,
        added before the image update; DM has none. It may record values in ``metrics``, each a
        sum over the classes divided by the number of all classes (the ranks' values are summed)."""
        return None

    def result(self) -> SyntheticSet:
        syn = SyntheticSet.from_codec(self.codec_, self.state_["images"].detach(), self.train_.spec)
        return record_levers(syn, self.precision_, self.config, self.compile_)


# ============================================================================ IDM
@register_method
class IDM(DM):
    """idm: improved distribution matching -- partitioning, model queue, class-aware regulariser (Zhao et al., CVPR 2023).

    One iteration, following the authors' ``IDM_cifar10.py``:

    1. every ``net_generate_interval`` iterations a freshly initialised network joins the queue
       (the oldest leaves once ``net_num`` are queued; the queue starts with ``net_init_num``);
    2. ``match_net_num`` random queue networks (eval mode) each give a DM loss between a real
       batch and the *decoded* synthetic images (``factor^2`` per stored image) plus the
       class-aware regulariser ``ce_weight * acc * sum_c CE_c``, ``acc`` being that network's
       training accuracy in percent (0 for a network never trained) and ``CE_c`` the mean
       cross-entropy of its classifier on class ``c``'s synthetic images (at IPC 1 without
       partitioning only misclassified classes count, as in the reference);
    3. one SGD step on the stored images;
    4. ``train_net_num`` random queue networks take ``model_train_steps`` SGD steps (lr
       ``lr_net``, momentum ``net_momentum``, weight decay ``net_weight_decay``) on random real
       batches of ``train_batch`` images, without augmentation.

    Differences from the reference code: it steps the image optimizer once per class (K
    momentum steps per iteration); here the class losses are summed and stepped once (as DM),
    which the vectorised step needs. ``acc`` is measured over the network's latest training
    round (the reference's meter averages since the last evaluation, every 100 iterations). The
    reference's IPC-1 selection of the 2560 lowest-loss real images (only without partitioning)
    is not implemented. The queue is a :class:`~ddkit.methods.pool.ModelPool` (flat parameter
    vectors, momentum, buffers, accuracies in ``state_``), so checkpoint/resume is exact.

    ``result()`` returns the decoded set: ``ipc * factor^2`` images per class, ready for any
    evaluation. The storage budget is the ``ipc`` stored images per class, recorded as
    ``meta['formation_factor']``, ``meta['stored_ipc']`` and the tensor
    ``extras['formation.stored']`` (``decode(stored, factor)`` gives ``images`` back).
    """

    name = "idm"
    # DM's split by class: every rank replays the queue (its pushes, picks, training: the
    # same on every rank) and the random stream, and matches only its classes' images
    scale_out = "classes"
    needs = "image"
    Config: ClassVar[type[MethodConfig]] = IDMConfig
    presets = (
        *(
            Preset(data, ipc, values, "IDM authors' command.txt (github.com/uitrbn/IDM)")
            for data, ipc, values in (
                ("cifar10", 1, {"batch_real": 5000, "net_generate_interval": 5, "ce_weight": 0.5}),
                ("cifar10", 10, {"ce_weight": 0.5}),
                ("cifar10", 50, {"ce_weight": 0.1}),
                # asks for 5000 real images per class; a class has 500, which the code then uses
                ("cifar100", 1, {"batch_real": 500, "net_generate_interval": 5, "ce_weight": 0.5}),
                ("cifar100", 10, {"ce_weight": 0.1, "model_train_steps": 50}),
                ("cifar100", 50, {"ce_weight": 0.1}),
            )
        ),
        # The published class-aware weight (ce_weight x the queue network's training accuracy in
        # percent) drowns the matching term of these small ConvNets on digits; BENCHMARKS.md
        # ("IDM") has the validation-split measurements that chose these values.
        Preset(
            "digits",
            "*",
            {
                "iterations": 1000,
                "batch_real": 128,
                "net_num": 10,
                "net_generate_interval": 10,
                "train_net_num": 1,
                "model_train_steps": 5,
                "batch_net": 128,
                "lr_img": 1.0,
                "ce_weight": 0.01,
            },
            "ddkit CPU scale; ce_weight and lr_img: benchmarks/results/tune_idm_ipc10.json "
            "(validation split)",
        ),
        Preset(
            "mnist5k",
            "*",
            {
                "iterations": 2000,
                "model": "convnet-w32",
                "net_num": 20,
                "net_generate_interval": 10,
                "train_net_num": 1,
                "model_train_steps": 5,
                "lr_img": 1.0,
                "ce_weight": 0.01,
            },
            "ddkit CPU scale; ce_weight and lr_img: benchmarks/results/tune_idm_ipc10.json "
            "(validation split)",
        ),
        Preset(
            "digits",
            1,
            {"lr_img": 0.2, "ce_weight": 0.5},
            "published setting; equal to the IPC > 1 values on digits' validation split",
        ),
        Preset("mnist5k", 1, {"lr_img": 0.2, "ce_weight": 0.5}, "published setting"),
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        "batch_real": 8,
        "net_num": 2,
        "net_init_num": 1,
        "net_generate_interval": 1,
        "model_train_steps": 1,
        "batch_net": 16,
    }

    # ---------------------------------------------------------------- setup
    def _syn_per_class(self, spec: DatasetSpec, ipc: int) -> int:
        return ipc * self.factor_for(spec.image_size) ** 2

    def factor_for(self, spec_size: tuple[int, int]) -> int:
        """The partition factor used for images of ``spec_size`` (``factor`` or auto)."""
        f = self.config.factor
        return f if f != "auto" else default_factor(spec_size)

    def _start_images(
        self, train: ImageDataset, ipc: int, generator: torch.Generator
    ) -> torch.Tensor:
        f = self.factor_for(train.spec.image_size)
        if f == 1 or self.config.init == "noise":
            return super()._start_images(train, ipc, generator)
        # every stored image starts as a grid of f*f downscaled real images of its class
        idx = self._start_rows(train, ipc * f * f, generator).flatten()
        return encode_real(train.images[idx], f)

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        super().init(train, ipc, generator, iterations)
        self.factor_ = self.factor_for(train.spec.image_size)
        if min(train.spec.image_size) < self.factor_:
            raise ConfigError(
                f"factor {self.factor_} is larger than the image size {train.spec.image_size}"
            )
        self.labels_ = train.labels.to(self.device_)
        k, s = train.spec.num_classes, ipc * self.factor_**2
        self.syn_labels_ = self._local_labels(class_labels(k, s)).to(self.device_)
        # queue: each network is a flat parameter vector + momentum (+ its buffers, for BN)
        self.queue_ = ModelPool(
            self.state_,
            copy.deepcopy(self.nets_.network),
            self.config.net_num,
            prefix="queue",
            score="acc",
        )
        for _ in range(self.config.net_init_num):
            self._push_network(generator)
        # compile: queue networks are copied into the template, whose embedding (matching) and
        # whole forward (queue training) are compiled once each
        template = self.queue_.template
        self.queue_embed_ = CompiledForward(template.embed) if self.compile_ else None
        self.queue_forward_ = CompiledForward(template) if self.compile_ else template

    def _couples_classes(self) -> bool:
        return False  # the queue networks match in eval mode: BatchNorm's running statistics

    def _push_network(self, generator: torch.Generator) -> None:
        """A freshly initialised network joins the queue (never trained: accuracy 0)."""
        self.queue_.push(self.nets_.draw(generator), score=0.0)

    # ---------------------------------------------------------------- one iteration
    def step(self, iteration: int) -> dict[str, float]:
        cfg, st = self.config, self.state_
        g = st["generator"]
        k = self.train_.spec.num_classes
        if iteration % cfg.net_generate_interval == 0:
            self._push_network(g)
        queue = self.queue_
        n_nets = len(queue)
        chosen = torch.randperm(n_nets, generator=g)[: cfg.match_net_num].tolist()
        images, opt = st["images"], st["opt"]
        syn = self._syn_view(decode(images, self.factor_))  # (K, ipc * f^2, C, H, W)
        total = torch.zeros((), device=self.device_, dtype=self.dtype_)
        dm_sum, ce_sum = 0.0, 0.0
        queue.template.eval().requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        # the compile path reloads one template module per network, so each network's loss is
        # backpropagated (through its own decoding of the images) before the next network
        # overwrites the weights its graph holds
        per_network_backward = self.queue_embed_ is not None
        for i, j in enumerate(chosen):
            embed, classify = self._queue_network(j)
            if per_network_backward and i > 0:  # the previous decoding's graph is spent
                syn = self._syn_view(decode(images, self.factor_))

            real = self._real_batch(g, embed)
            draws = sample_class_draws(self.dsa_, k, g, self.train_.spec.image_size)
            real, draws = self._local_share(real, draws)
            real_mean, syn_emb = self._embeddings(embed, real, syn, draws)
            loss = _mean_match(real_mean, syn_emb)
            dm_sum += float(loss.detach())
            weight = cfg.ce_weight * queue.score(j)
            if weight > 0:
                logits = classify(syn_emb.flatten(0, 1))
                ce = F.cross_entropy(logits, self.syn_labels_, reduction="none")
                ce = ce.view(syn.shape[0], -1)  # this rank's classes
                if ce.shape[1] == 1:  # reference, IPC 1 without partitioning: only misclassified
                    ce = ce * (logits.argmax(1) != self.syn_labels_).view(-1, 1).to(ce.dtype)
                ce_term = weight * ce.mean(1).sum()
                ce_sum += float(ce_term.detach())
                loss = loss + ce_term
            if per_network_backward:
                loss.backward()
                loss = loss.detach()
            total = total + loss
        if not per_network_backward:
            total.backward()
        sums = torch.tensor([float(total.detach()), dm_sum, ce_sum], dtype=torch.float64)
        total, dm_sum, ce_sum = summed_over_ranks(images, sums).tolist()
        opt.step()
        train_acc = self._train_queue(g)
        return {
            "loss": total / k,
            "dm_loss": dm_sum / k,
            "ce_loss": ce_sum / k,
            "queue_size": float(n_nets),
            "net_train_acc": train_acc,
        }

    def _queue_network(self, j: int) -> tuple[EmbedFn, EmbedFn]:
        """Queue network ``j``'s embedding and classifier under the speed levers: functional
        calls with its stored tensors, or (``compile``) the compiled template loaded with them."""
        queue = self.queue_
        if self.queue_embed_ is not None:
            queue.load(j)
            return self._fast(self.queue_embed_), self._fast(queue.template.classifier)
        return (
            self._fast(lambda x: queue.call(j, "embed", x)),
            self._fast(lambda z: queue.call(j, "classifier", z)),
        )

    def _train_queue(self, generator: torch.Generator) -> float:
        """Advance ``train_net_num`` random queue networks by ``model_train_steps`` SGD steps on
        random real batches (all classes, no augmentation); record each one's accuracy (%) on
        those batches, which weights its class-aware regulariser."""
        cfg, queue = self.config, self.queue_
        if cfg.train_net_num == 0 or cfg.model_train_steps == 0:
            return float("nan")
        n = len(self.real_)
        bs = min(cfg.batch_net, n)
        picks = torch.randperm(len(queue), generator=generator)[: cfg.train_net_num].tolist()
        net = queue.template
        params = list(net.parameters())
        accs = []
        for j in picks:
            queue.load(j).train().requires_grad_(True)
            bufs = queue.split(queue.momentum(j))  # views: updated in place
            correct = 0
            for _ in range(cfg.model_train_steps):
                idx = torch.randperm(n, generator=generator)[:bs].to(self.device_)
                x, y = self.real_[idx], self.labels_[idx]
                logits = self._fast(self.queue_forward_)(x)
                grads = torch.autograd.grad(F.cross_entropy(logits, y), params)
                sgd_step(
                    params,
                    grads,
                    bufs,
                    lr=cfg.lr_net,
                    momentum=cfg.momentum_net,
                    weight_decay=cfg.weight_decay_net,
                )
                correct += int((logits.argmax(1) == y).sum())
            queue.store(j)
            acc = 100.0 * correct / (cfg.model_train_steps * bs)
            queue.set_score(j, acc)
            accs.append(acc)
        net.requires_grad_(False)
        return sum(accs) / len(accs)

    def result(self) -> SyntheticSet:
        k, f = self.train_.spec.num_classes, self.factor_
        stored = self.state_["images"].detach()
        images = decode(stored, f).cpu().float().clone()
        meta = {
            "formation_factor": f,
            "stored_ipc": self.ipc_,
            "stored_images": int(stored.shape[0]),
            "decoded_ipc": self.ipc_ * f * f,
        }
        extras = {"formation.stored": stored.cpu().float().clone()} if f > 1 else {}
        syn = SyntheticSet(
            images, class_labels(k, self.ipc_ * f * f), self.train_.spec, meta=meta, extras=extras
        )
        return record_levers(syn, self.precision_, self.config, self.compile_)
