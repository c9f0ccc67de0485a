"""Gradient matching: DC and DSA.

* **DC** -- B. Zhao, K. R. Mopuri and H. Bilen, "Dataset Condensation with Gradient Matching",
  ICLR 2021 (arXiv:2006.05929). Each outer iteration draws a freshly initialised network. Then,
  ``outer_loop`` times: (a) for every class ``c`` take a real batch of class ``c`` and the
  synthetic images of class ``c``, compute the gradient of the cross-entropy of each with
  respect to the network weights, and sum DC's layer-wise distance
  (:func:`ddkit.methods.matching.losses.gradient_distance`) over classes; one SGD step (momentum 0.5) on the
  synthetic images for the summed loss; (b) unless it is the last outer step, train the network
  on the synthetic set for ``inner_loop`` epochs (SGD, lr 0.01, batch 256).
* **DSA** -- B. Zhao and H. Bilen, "Dataset Condensation with Differentiable Siamese
  Augmentation", ICML 2021 (arXiv:2102.08259). DC plus a differentiable augmentation drawn once
  per class and matching step and applied to both the real and the synthetic batch of that class
  (:class:`ddkit.augment.DSA`, "Siamese"); the network's inner-loop training also sees
  augmented synthetic images (one draw per sample), as in the authors' code.

Real batches: random per class (the papers'), or ``real_batch="dream"``: DREAM's
representative rows under the matching network's features, re-clustered every
``dream_interval`` matching steps; ``init="dream"`` starts from representative rows
(:mod:`ddkit.methods.matching.dream`).

Debiasing (``reweight="kde"``, off by default): each class's real gradient becomes that of a
weighted sum of its rows' cross-entropies, each row weighted by the inverse kernel density of
its embedding under the matching network (:mod:`ddkit.methods.matching.reweight`; Cui et al.
define the re-weighting for distribution matching, here it is carried to the real gradient).

The network is built once and re-initialised every outer iteration from a seed drawn from the
run's generator (:class:`ddkit.methods.common.RandomNetwork`): the same weights as building a new
one, in the dtype of the training images.

Hyper-parameters (the authors' code, shared by DC and DSA): 1000 outer iterations, synthetic lr
0.1 with momentum 0.5, real batch 256 per class, network lr 0.01 (no momentum), inner-loop
batch 256, distance ``"ours"``, and the (outer_loop, inner_loop) schedule per IPC
:data:`DC_LOOPS` = 1:(1,1), 10:(10,50), 20:(20,25), 30:(30,20), 40:(40,15), 50:(50,10), stored
as presets (plus ConvNet-2 on the 8x8 ``digits``). The reference
code refuses other IPCs; here :func:`loops_for_ipc` interpolates both loops linearly between the
listed IPCs (above 50: the IPC-50 schedule), so IPC 5 runs (5, 23), not IPC 1's single matching
step. Explicit ``outer_loop``/``inner_loop`` win.
The reference initialises from noise by default and notes that real and noise initialisation
perform alike; ddkit defaults to real images (``init="real"``), which converges faster in short
runs. A real batch larger than the smallest class is capped at that class's size (the reference
then takes the whole class).

Vectorisation: ``vectorize=True`` computes all classes' gradients at once with ``torch.func``
(``vmap`` over classes of ``grad`` of a ``functional_call``, see
:mod:`ddkit.methods.matching.losses`); ``vectorize=False`` runs the reference's class-by-class loop.
Both consume the same random draws and give the same result up to floating-point rounding.
The vectorised path needs a per-sample forward pass: instance/group/layer norm or no norm are
per sample; for BatchNorm networks DC's "BN trick" is applied in both paths -- before each
matching step the network sees 16 real images per class in training mode (setting the running
statistics) and its BatchNorm layers are then switched to eval mode, which makes the forward
per sample.

Default ``vectorize=False``, on measurement (``benchmarks/campaigns/bench_matching_speed.py``; the figures
are in BENCHMARKS.md): on a CPU the vectorised step was slower and used far more memory. On a CPU a 256-image batch already keeps the cores busy, so batching classes saves no
arithmetic, while ``vmap``'s batching rules add work: per-class weight gradients become grouped
convolutions, GroupNorm (instance norm) backward is decomposed into elementwise ops, and the
ten classes' activations are alive at once. The vectorised path is the one to try on an
accelerator, where per-class launches of small batches dominate.

Memory (issue 82): a matching step keeps, until its backward pass, every synthetic image's
activations and the graph of its gradient (differentiated again), so one pass over all classes
grows with the set. The step therefore runs ``class_chunk`` classes per backward pass: the
loss of a chunk of classes (their real batches gathered and augmented, their synthetic images
as a detached slice of the decoded set) is backpropagated into one gradient of the decoded set,
carried back through the decoding once, then the images take one optimiser step -- the update
of one pass (each class's loss depends only on its own images), with one chunk's activations
alive at a time. Every random draw of the step (the real rows and the augmentation of every
class) is made before the first chunk, as in one pass. ``class_chunk=0`` (the default) chooses
the chunk once at setup: on a CPU as many classes as one piece of the memory budget holds
(:func:`~ddkit.methods.matching.class_rows.piece_bytes`, as distribution matching's pieces), all
of them when they fit; a step that cannot fit one class is refused in one line before it
starts. On a GPU (not checked) all classes go in one pass unless ``class_chunk`` asks.

Speed lever (not in the reference code; off by default, so the default arithmetic is unchanged):
``precision="bf16"`` (or ``"auto"``: bf16 where the CPU or GPU computes it natively) runs the
network's forward passes under bf16 autocast -- the real and synthetic passes of every matching
step and the network's training between them (IDC's too). The synthetic images, the network
weights, their gradients, the gradient distance and both updates stay float32; float64 data
refuses bf16. ``compile=True`` runs the network's training between matching steps (``inner_loop``
epochs on the synthetic set, a large part of a step at IPC 10) and, in the class loop, the real
batches' forward and backward (most of a matching step: ``batch_real`` real images per class
against ``ipc`` synthetic ones) through ``torch.compile``, eager where it is unavailable. The
synthetic gradients stay eager: they are differentiated again, which compiled graphs do not
support. A set made with either lever records it in its meta.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ddkit.augment.dsa import DSA as DSAAugment
from ddkit.augment.dsa import DSAParams
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.levers import CompiledForward, resolve_compile
from ddkit.meter import check_memory, memory_budget
from ddkit.methods.base import Distiller, register_method
from ddkit.methods.codecs import start_stored
from ddkit.methods.common import (
    RandomNetwork,
    local_classes,
    make_augment,
    method_precision,
    real_batch_note,
    real_batch_size,
    record_levers,
    summed_over_ranks,
    warn_if_rough,
)
from ddkit.methods.config import (
    AT_LEAST_ONE,
    AUGMENT,
    MOMENTUM,
    NON_NEGATIVE,
    POSITIVE,
    Alias,
    Auto,
    Precision,
    Preset,
    none_to_auto,
    one_of,
)
from ddkit.methods.matching.class_rows import piece_bytes
from ddkit.methods.matching.dream import RepresentativeBatches, start_rows
from ddkit.methods.matching.losses import METRICS, gradient_matching_loss
from ddkit.methods.matching.reweight import ReweightConfig, kde_weights
from ddkit.models import has_batchnorm
from ddkit.models.footprint import module_footprint

__all__ = [
    "DC",
    "DC_LOOPS",
    "DSA",
    "DCConfig",
    "DSAConfig",
    "augment_classes",
    "loops_for_ipc",
]

#: The published (outer_loop, inner_loop) schedule per IPC (DC, ICLR 2021; also used by DSA).
DC_LOOPS: dict[int, tuple[int, int]] = {
    1: (1, 1),
    10: (10, 50),
    20: (20, 25),
    30: (30, 20),
    40: (40, 15),
    50: (50, 10),
}

#: Real images per class used by the BatchNorm trick (as in the reference).
BN_IMAGES_PER_CLASS = 16


def loops_for_ipc(ipc: int) -> tuple[int, int]:
    """``(outer_loop, inner_loop)`` for ``ipc``: the published schedule where there is one, else
    both loops interpolated linearly between the neighbouring listed IPCs and rounded, e.g.
    5 -> (5, 23), 15 -> (15, 38); above the largest listed IPC its schedule, 100 -> (50, 10)."""
    if int(ipc) != ipc or ipc < 1:
        raise ConfigError(f"IPC must be a positive integer, got {ipc}")
    listed = sorted(DC_LOOPS)
    if ipc >= listed[-1]:
        return DC_LOOPS[listed[-1]]
    upper = next(k for k in listed if k >= ipc)
    if upper == ipc:
        return DC_LOOPS[upper]
    lower = max(k for k in listed if k < ipc)
    t = (ipc - lower) / (upper - lower)
    (o0, i0), (o1, i1) = DC_LOOPS[lower], DC_LOOPS[upper]
    return (math.floor(o0 + t * (o1 - o0) + 0.5), math.floor(i0 + t * (i1 - i0) + 0.5))


def _old_dsa_switch(value: Any, options: Mapping[str, Any]) -> str:
    """``dsa=true/false`` (+ ``dsa_strategy``) of ddkit <= 0.1 as an ``augment`` value."""
    return (options.get("dsa_strategy") or "auto") if value else "none"


def _old_dsa_strategy(value: Any, options: Mapping[str, Any]) -> str:
    if not options.get("dsa", True):
        return "none"
    return value or "auto"


@dataclasses.dataclass(frozen=True)
class DCConfig(ReweightConfig):
    """DC hyper-parameters (defaults: the authors' code; ``real_batch`` / ``dream_*``: DREAM's
    representative batches, :mod:`ddkit.methods.matching.dream`; ``reweight="kde"``: each
    real row's cross-entropy weighted by the inverse kernel density of its embedding,
    :mod:`ddkit.methods.matching.reweight`)."""

    iterations: int = 1000  # outer iterations, each with a freshly initialised network
    model: str = "convnet"  # network whose gradients are matched (ConvNet-3, instance norm)
    init: Literal["real", "noise", "dream"] = "real"  # dream: DREAM's representative rows
    lr_img: float = 0.1  # SGD learning rate of the synthetic images
    momentum_img: float = 0.5
    lr_net: float = 0.01  # SGD learning rate of the network in the inner loop
    momentum_net: float = 0.0
    batch_real: int = 256  # real images per class per matching step
    batch_net: int = 256  # batch size of the network's inner-loop training
    outer_loop: int | Auto = "auto"  # matching steps per network; auto: from the IPC
    inner_loop: int | Auto = "auto"  # network epochs between matching steps; auto: from the IPC
    metric: str = "ours"  # ours | mse | cos
    augment: str = "none"  # Siamese augmentation: none (DC) | auto (DSA) | a DSA strategy
    # per-class gradients with torch.func.vmap (False: the class loop, faster on CPU)
    vectorize: bool = False
    # classes per backward pass of a matching step (0: chosen from the memory budget on a CPU,
    # all classes on a GPU; the same update whatever the chunk, module docstring)
    class_chunk: int = 0
    # speed lever (module docstring): bf16 autocast around the network's forward passes
    # (float32 images, weights, gradients and distance; auto: bf16 where the hardware has it)
    precision: Precision = "fp32"
    # speed lever: torch.compile the network's training between matching steps and the real
    # batches' gradients (the synthetic ones are differentiated again: compiled graphs cannot);
    # auto: for runs of COMPILE_MIN_STEPS outer steps or more, off in exact mode (ddkit.levers)
    compile: bool | Auto = False

    rules = {
        "lr_img": POSITIVE,
        "lr_net": POSITIVE,
        "momentum_img": MOMENTUM,
        "momentum_net": MOMENTUM,
        "batch_real": AT_LEAST_ONE,
        "batch_net": AT_LEAST_ONE,
        "outer_loop": AT_LEAST_ONE,
        "inner_loop": NON_NEGATIVE,
        "metric": one_of(*METRICS),
        "augment": AUGMENT,
        "class_chunk": NON_NEGATIVE,
    }
    aliases = {
        "batch_train": Alias("batch_net"),
        "dsa": Alias("augment", _old_dsa_switch),
        "dsa_strategy": Alias("augment", _old_dsa_strategy),
        "outer_loop": Alias("outer_loop", none_to_auto),
        "inner_loop": Alias("inner_loop", none_to_auto),
        "class_chunk": Alias("class_chunk", lambda v, _: 0 if v is None else v),
    }


@dataclasses.dataclass(frozen=True)
class DSAConfig(DCConfig):
    """DSA hyper-parameters: DC's, with Siamese augmentation on, and the speed levers on by
    default (validated for dsa: ddkit.levers)."""

    augment: str = "auto"
    precision: Precision = "auto"
    compile: bool | Auto = "auto"


def augment_classes(dsa: DSAAugment, x: torch.Tensor, draws: list[DSAParams]) -> torch.Tensor:
    """Apply class ``k``'s shared draw to every image of ``x[k]`` (``x`` is ``(K, n, C, H, W)``);
    differentiable in ``x``. The loop is over classes on input images only (cheap next to the
    network passes)."""
    return torch.stack([dsa.apply(x[k], draws[k]) for k in range(x.shape[0])])


def _presets() -> tuple[Preset, ...]:
    loops = tuple(
        Preset("*", ipc, {"outer_loop": o, "inner_loop": i}, "DC ICLR'21 authors' code")
        for ipc, (o, i) in DC_LOOPS.items()
    )
    return (
        *loops,
        # ConvNet-3 ends with instance norm over 2x2 maps on 8x8 images, whose input gradients
        # are too noisy to match; ConvNet-2 keeps >= 4x4 maps, as ConvNet-3 does on 32x32.
        Preset("digits", "*", {"model": "convnet2"}, "ddkit: ConvNet-2 for 8x8 images"),
        Preset(
            "mnist5k",
            "*",
            {"model": "convnet-w32"},
            "ddkit CPU scale: ConvNet-3 width 32, the standard suite's mnist5k network",
        ),
    )


@register_method
class DC(Distiller):
    """dc: gradient matching (Zhao, Mopuri & Bilen, ICLR 2021); layer-wise per-class gradient distance."""

    name = "dc"
    # the network update couples the classes; each rank computes its classes' share of the
    # images' gradient, summed over the ranks, and replays the network's training
    scale_out = "classes"
    needs = "differentiable"
    Config = DCConfig
    presets = _presets()
    test_overrides: ClassVar[dict[str, Any]] = {
        "outer_loop": 2,
        "inner_loop": 1,
        "batch_real": 8,
        "batch_net": 64,
    }

    # ------------------------------------------------------------------ setup
    def loops(self, ipc: int) -> tuple[int, int]:
        """The (outer_loop, inner_loop) this config uses at ``ipc``."""
        outer, inner = loops_for_ipc(ipc)
        cfg = self.config
        return (
            cfg.outer_loop if cfg.outer_loop != "auto" else outer,
            cfg.inner_loop if cfg.inner_loop != "auto" else inner,
        )

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        spec = train.spec
        # bf16 autocast needs float32 data (a float64 run is a numerical check: always fp32)
        self.precision_ = method_precision(cfg.precision, train.images.dtype, train.images.device)
        self.outer_loop_, self.inner_loop_ = self.loops(ipc)
        self.real_batch_ = real_batch_size(cfg.batch_real, train)
        self.dsa_ = make_augment(cfg.augment, spec)
        self.net_augment_ = self.dsa_
        # one network, re-initialised from a drawn seed every outer iteration (in the data's
        # dtype: float64 data gives a float64 network)
        self.nets_ = RandomNetwork(
            cfg.model, spec, device=train.images.device, dtype=train.images.dtype
        )
        warn_if_rough(self.nets_.source, cfg.model, spec, "gradient-matching")
        # compile: the real batches' first-order gradients through a compiled forward of the
        # same module (every draw re-initialises it in place); the class loop only
        self.compile_ = resolve_compile(cfg.compile, iterations * self.outer_loop_)
        self.real_forward_ = (
            CompiledForward(self.nets_.network) if self.compile_ and not cfg.vectorize else None
        )
        initial = self._representative_start if cfg.init == "dream" else cfg.init
        self.codec_, images = start_stored(self.codec_for(spec), train, ipc, generator, initial)
        per_class = self.codec_.emitted_per_class(ipc, spec)
        self.classes_ = local_classes(spec.num_classes) if self.splits_by() == "classes" else None
        self._check_step_memory(spec, per_class, train.images.dtype)
        self.labels_ = class_labels(spec.num_classes, per_class).to(train.images.device)
        self.state_["images"] = images
        lr_img = self.image_lr(ipc, spec)
        self.state_["opt_img"] = torch.optim.SGD([images], lr=lr_img, momentum=cfg.momentum_img)
        self.state_["generator"] = generator
        self.dream_ = (
            RepresentativeBatches(cfg, train, self.real_batch_, self.state_)
            if cfg.real_batch == "dream"
            else None
        )

    def _check_step_memory(self, spec: DatasetSpec, per_class: int, dtype: torch.dtype) -> None:
        """Choose the classes per backward pass of a matching step (``syn_classes_per_pass_``:
        ``class_chunk``, else as many as one piece of the memory budget holds, all of them when
        they fit) and refuse, in one line and before any step, a step that cannot fit that
        chunk -- with ``class_chunk=0``, one that cannot fit one class (:meth:`_step_bytes`).
        The budget is the machine's memory: a run on a GPU is not checked, and is chunked only
        when ``class_chunk`` asks."""
        cfg = self.config
        k = spec.num_classes if self.classes_ is None else len(self.classes_)
        asked = min(cfg.class_chunk, k)
        if self.nets_.device.type != "cpu":
            self.syn_classes_per_pass_ = asked or k
            return
        class_pass, fixed = self._step_bytes(spec, per_class, dtype)
        room = min(piece_bytes(), memory_budget() - fixed)
        per = asked or min(k, max(1, room // max(class_pass, 1)))
        self.syn_classes_per_pass_ = per
        h, w = spec.image_size
        fix = "use a smaller --set batch_real, a lower --ipc, smaller images or a narrower --model"
        if asked:
            fix += ", or fewer classes per pass (--set class_chunk, 0: chosen from the budget)"
        check_memory(
            f"{self.name}'s matching step ({per} class(es) x {self.real_batch_} real and "
            f"{per_class} synthetic {h}x{w} images through {cfg.model!r} per backward pass, "
            f"of {k} classes)",
            per * class_pass + fixed,
            fix,
        )

    def _step_bytes(self, spec: DatasetSpec, per_class: int, dtype: torch.dtype) -> tuple[int, int]:
        """A matching step's memory as ``(bytes per class in a backward pass, bytes whatever
        the chunk)``. A class in a pass keeps its synthetic images' activations (with the graph
        of their gradient, within the footprint's headroom) and its real batch gathered and
        augmented; the class loop takes one class's real gradient at a time, the vectorised
        path keeps the whole chunk's; the decoded set of this process's classes and its
        gradient are alive throughout."""
        # the float32 source network (a float64 copy's meta forward would meet float32 inputs)
        kept = module_footprint(self.nets_.source, spec.shape).training
        image_bytes = math.prod(spec.shape) * torch.finfo(dtype).bits // 8
        k = spec.num_classes if self.classes_ is None else len(self.classes_)
        real = self.real_batch_
        class_pass = per_class * (kept + 2 * image_bytes) + 2 * real * image_bytes
        fixed = 2 * k * per_class * image_bytes
        if self.config.vectorize:
            return class_pass + real * kept, fixed
        return class_pass, fixed + real * kept

    def _representative_start(
        self, train: ImageDataset, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``init="dream"``: per class, the rows nearest ``n`` k-means centres of a freshly
        drawn matching network's features (:func:`~ddkit.methods.matching.dream.start_rows`)."""
        rows = start_rows(
            self.config,
            train,
            train.images,
            n,
            generator,
            lambda: self.nets_.draw(generator).eval().embed,
        )
        return train.images[rows.flatten()].clone()

    def real_rows(self, net: nn.Module, g: torch.Generator) -> torch.Tensor:
        """Row indices ``(K, B)`` of a matching step's real batch: drawn at random per class, or
        (``real_batch="dream"``) DREAM's representative rows under ``net``'s features."""
        train = self.train_
        if self.dream_ is None:
            return train.sample_per_class(self.real_batch_, g)
        return self.dream_.indices(train.images, net.embed, g)

    def step_cost(self) -> str | None:
        """Each of a step's ``outer_loop_`` matchings takes the gradient of ``real_batch_`` real
        images of every class (:func:`real_batch_note`)."""
        k = self.train_.spec.num_classes
        note = real_batch_note(self.real_batch_, self.config.batch_real, k, "batch_real")
        return f"{note} (x {self.outer_loop_} matchings per step)"

    def codec_for(self, spec: DatasetSpec) -> str:
        """The codec that stores this set (``codec``)."""
        return self.config.codec

    def image_lr(self, ipc: int, spec: DatasetSpec) -> float:
        """The synthetic images' learning rate (``lr_img``)."""
        return float(self.config.lr_img)

    def network_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        """The optimiser of the matching network's training between matching steps."""
        cfg = self.config
        return torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=cfg.momentum_net)

    # ------------------------------------------------------------------ one outer iteration
    def step(self, iteration: int) -> dict[str, float]:
        g: torch.Generator = self.state_["generator"]
        net = self.nets_.draw(g).train()
        opt_net = self.network_optimizer(net)
        total = 0.0
        for ol in range(self.outer_loop_):
            total += self.match_step(net, g)
            if ol == self.outer_loop_ - 1:
                break
            self.train_network(net, opt_net, g)
        return {"loss": total / (self.train_.spec.num_classes * self.outer_loop_)}

    def match_step(self, net: nn.Module, g: torch.Generator) -> float:
        """One update of the synthetic images: the summed per-class matching loss on fresh real
        batches (and DSA draws), ``syn_classes_per_pass_`` classes per backward pass, then one
        optimiser step. Returns the loss."""
        spec = self.train_.spec
        images: torch.Tensor = self.state_["images"]
        opt: torch.optim.Optimizer = self.state_["opt_img"]
        k = spec.num_classes
        if has_batchnorm(net):
            self._freeze_batchnorm(net, g)
        # every draw of the step, for every class, before any chunk: the stream of one pass
        rows = self.real_rows(net, g)  # (K, B) row indices
        draws = None
        if self.dsa_ is not None:
            hw = spec.image_size
            draws = [self.dsa_.sample(1, g, shared=True, image_size=hw) for _ in range(k)]
        syn = self.codec_.decode(images).view(k, -1, *spec.shape)
        classes = list(range(k)) if self.classes_ is None else list(self.classes_)
        if self.classes_ is not None:  # this rank's share of the classes
            rows, syn = rows[self.classes_], syn[self.classes_]
            draws = None if draws is None else [draws[c] for c in self.classes_]
        opt.zero_grad(set_to_none=True)
        if self.syn_classes_per_pass_ < len(classes):
            loss = self._chunked_backward(net, rows, syn, draws, classes)
        else:
            loss = self._class_loss(net, rows, syn, draws, classes)
            loss.backward(inputs=[images])
        loss = summed_over_ranks(images, loss)
        opt.step()
        return float(loss.detach())

    def _class_loss(
        self,
        net: nn.Module,
        rows: torch.Tensor,
        syn: torch.Tensor,
        draws: list[DSAParams] | None,
        classes: list[int],
    ) -> torch.Tensor:
        """The summed matching loss of ``classes``: their real rows ``rows`` ``(n, B)``
        gathered, both sides augmented with their ``draws``, against their decoded synthetic
        images ``syn`` ``(n, S, C, H, W)``."""
        cfg = self.config
        real = self.train_.images[rows]  # (n, B, C, H, W)
        if draws is not None:
            real = augment_classes(self.dsa_, real, draws)
            syn = augment_classes(self.dsa_, syn, draws)
        return gradient_matching_loss(
            net,
            real,
            syn,
            metric=cfg.metric,
            vectorize=cfg.vectorize,
            precision=self.precision_,
            real_forward=self.real_forward_,
            classes=classes,
            real_weights=self.real_weights(net, real),
        ).sum()

    def _chunked_backward(
        self,
        net: nn.Module,
        rows: torch.Tensor,
        syn: torch.Tensor,
        draws: list[DSAParams] | None,
        classes: list[int],
    ) -> torch.Tensor:
        """:meth:`_class_loss` of ``syn_classes_per_pass_`` classes at a time, each chunk's
        gradient taken on a detached slice of the decoded images ``syn`` and written into one
        gradient of them, which is carried back through the decoding once: the gradient of
        one pass, with one chunk's activations alive at a time. Returns the summed loss
        (detached)."""
        decoded, grad = syn.detach(), torch.empty_like(syn)
        per, total = self.syn_classes_per_pass_, syn.new_zeros(())
        for c0 in range(0, len(classes), per):
            part = slice(c0, c0 + per)
            leaf = decoded[part].detach().requires_grad_(True)
            piece = None if draws is None else draws[part]
            loss = self._class_loss(net, rows[part], leaf, piece, classes[part])
            loss.backward(inputs=[leaf])  # not into the network's weights
            grad[part] = leaf.grad
            total += loss.detach()
        syn.backward(grad, inputs=[self.state_["images"]])
        return total

    def real_weights(self, net: nn.Module, real: torch.Tensor) -> torch.Tensor | None:
        """Each real row's weight in its class's cross-entropy ``(K, B)``: ``None`` (the plain
        mean), or with ``reweight="kde"`` the inverse kernel density of its embedding under
        the matching network among its class's batch ``real`` ``(K, B, C, H, W)``."""
        cfg = self.config
        if cfg.reweight == "none":
            return None
        with torch.no_grad():
            embeddings = net.embed(real.flatten(0, 1)).view(*real.shape[:2], -1)
        return kde_weights(embeddings, cfg.kde_bandwidth, cfg.kde_temperature)

    def network_data(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """What the matching network trains on between matching steps: the (detached)
        synthetic set."""
        return self.codec_.decode(self.state_["images"].detach()), self.labels_

    def train_network(self, net: nn.Module, opt: torch.optim.Optimizer, g: torch.Generator) -> None:
        """``inner_loop`` epochs of SGD on :meth:`network_data`, shuffled with ``g``; with an
        augmentation (``net_augment_``: DSA's for DSA) every image gets its own draw."""
        from ddkit.eval.train import TrainRecipe, sgd_train

        if self.inner_loop_ == 0:
            return
        images, labels = self.network_data(g)
        dsa = self.net_augment_
        recipe = TrainRecipe(
            self.inner_loop_,
            self.config.lr_net,
            self.config.batch_net,
            precision=self.precision_,
            compile=self.compile_,
        )
        sgd_train(
            net,
            images,
            labels,
            recipe,
            generator=g,
            optimizer=opt,  # its momentum carries over between the outer loop's calls
            augment=None if dsa is None else (lambda x, t, gen: (dsa(x, gen, shared=False), t)),
        )
        net.train()  # the matching steps run in training mode, as before

    def _freeze_batchnorm(self, net: nn.Module, g: torch.Generator) -> None:
        """DC's BN trick: set running statistics from 16 real images per class (training mode),
        then put every BatchNorm layer in eval mode for the matching step."""
        train = self.train_
        n = real_batch_size(BN_IMAGES_PER_CLASS, train)
        x = train.images[train.sample_per_class(n, g).flatten()]
        net.train()
        with torch.no_grad():
            net(x)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    # ------------------------------------------------------------------ output
    def result(self) -> SyntheticSet:
        meta: dict[str, Any] = {
            "outer_loop": self.outer_loop_,
            "inner_loop": self.inner_loop_,
            "real_batch": self.real_batch_,
        }
        if self.dsa_ is not None:
            meta["dsa_strategy"] = self.dsa_.strategy
        syn = SyntheticSet.from_codec(self.codec_, self.state_["images"].detach(), self.train_.spec)
        syn.meta.update(meta)
        return record_levers(syn, self.precision_, self.config, self.compile_)


@register_method
class DSA(DC):
    """dsa: DC with differentiable Siamese augmentation (Zhao & Bilen, ICML 2021)."""

    name = "dsa"
    scale_out = "classes"
    needs = "image"
    Config = DSAConfig
    presets = _presets()
