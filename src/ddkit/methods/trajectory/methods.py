"""Trajectory matching: MTT, TESLA and DATM behind the Distiller API.

* ``mtt`` — Cazenavette, Wang, Torralba, Efros & Zhu, "Dataset Distillation by Matching
  Training Trajectories", CVPR 2022. From a random expert and a random start epoch
  ``t ∈ [min_start_epoch, max_start_epoch)`` the student (the expert's parameters ``θ*_t``) takes
  ``syn_steps`` (N) SGD steps on synthetic mini-batches with a *learned* step size; the loss is
  ``‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²`` with ``M = expert_epochs``. Images are optimised with
  SGD (``lr_img``, momentum 0.5), the step size with SGD (``lr_lr``, momentum 0.5), starting from
  ``lr_teacher``. Gradients by autograd through the unrolled steps: memory grows with N.
* ``tesla`` — Cui, Wang, Si & Hsieh, "Scaling Up Dataset Distillation to ImageNet-1K with
  Constant Memory", ICML 2023. The same objective and gradient, computed step by step
  (:func:`ddkit.methods.trajectory.student.tesla_step`), so memory does not grow with N; fixed soft labels
  from an expert (softmax of its logits on the initial synthetic images; label learning off).
* ``datm`` — Guo, Wang, Chen, Zhang, Yang & Zhou, "Towards Lossless Dataset Distillation via
  Difficulty-Aligned Trajectory Matching", ICLR 2024. TESLA-style gradients plus: the window of
  start epochs grows linearly from ``[min_start_epoch, max_start_epoch)`` to
  ``[min_start_epoch, max_start_epoch_final)`` over ``expansion_iterations`` (easy -> hard);
  synthetic images initialised from real images the expert classifies correctly; soft labels
  *learned* (logits as a parameter, initialised from the experts' logits, SGD ``lr_label``
  momentum 0.9, targets ``softmax(logits)``); an update is skipped when the matching loss
  exceeds ``loss_threshold``.

Expert trajectories come from ``experts_dir`` (``ddkit experts``) or, when it is ``None``, are
trained on first use into ``experts_cache/<dataset>-<model>-<hash>`` (recorded in the result's
metadata) so ``ddkit distill --method mtt`` works end to end. The learned step size is stored
as ``SyntheticSet.lr`` and used by evaluation protocols with ``use_learned_lr``. Reported accuracy
is never selected during distillation: the set after the last iteration is returned.

Several processes (``torchrun``, issue 38): one student. Every rank draws the expert, the
start epoch and the mini-batches with their DSA parameters as one process does, computes the
student's gradient over its rows ``RANK, RANK + N, ...`` of every mini-batch, and the shares are
summed over the ranks at every student step (TESLA's backward walk: every Hessian-vector product
too); the gradients of the images, the step size and DATM's label logits are summed after the
step (:mod:`ddkit.methods.trajectory.student`). The set equals one process's up to the rounding
of those sums. A mini-batch smaller than ``N`` is refused in one line.

Speed lever (not in the reference code; off by default, so the default arithmetic is unchanged):
``precision="bf16"`` (or ``"auto"``: bf16 where the CPU or GPU computes it natively) runs the
student's forward passes inside the unroll under bf16 autocast, for both backward modes; the
student's parameters and updates, the matching loss, the images, the step size and the labels
stay float32 (:mod:`ddkit.methods.trajectory.student`). Float64 data refuses bf16; a set made
with bf16 records it in its meta.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from ddkit import distributed
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.fingerprint import fingerprint
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.io import safe_name
from ddkit.methods.base import Distiller, MethodConfig, register_method
from ddkit.methods.codecs import CodecConfig, start_stored
from ddkit.methods.common import (
    initial_images,
    make_augment,
    method_precision,
    record_levers,
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
    interval,
    none_to_auto,
    presets_from,
    zero_to_auto,
)
from ddkit.models import build_network, predict
from ddkit.progress import ProgressSetting

TEST_EXPERTS_CACHE = os.path.join(tempfile.gettempdir(), "ddkit-test-experts")

_TEST_OVERRIDES: dict[str, Any] = {
    "model": "convnet2-w8",
    "num_experts": 2,
    "expert_train_epochs": 3,
    "expert_batch": 32,
    "experts_cache": TEST_EXPERTS_CACHE,
    "syn_steps": 3,
    "expert_epochs": 1,
    "max_start_epoch": 2,
    "lr_img": 10.0,
    "iterations": 2,
}


class DivergenceWatch:
    """Says when a run diverges: the student ended further from the expert's target than it
    started (normalised matching loss above 1; DATM skips those updates) in at least ``share`` of
    the last ``window`` iterations. :meth:`update` returns that count the first time only."""

    window: ClassVar[int] = 50
    share: ClassVar[float] = 1 / 3

    def __init__(self) -> None:
        self._recent: deque[bool] = deque(maxlen=self.window)
        self._said = False

    def update(self, loss: float) -> int | None:
        self._recent.append(loss > 1.0)
        count = sum(self._recent)
        if self._said or len(self._recent) < self.window or count < self.share * self.window:
            return None
        self._said = True
        return count


@dataclass(frozen=True)
class TrajectoryConfig(CodecConfig):
    """Hyper-parameters shared by MTT, TESLA and DATM (names follow the reference code where
    ddkit's vocabulary has no word of its own)."""

    iterations: int = 5000
    model: str = "convnet"  # student and expert architecture (no BatchNorm)
    # expert trajectories: a folder from `ddkit experts`, or None to train/cache them here
    experts_dir: str | None = None
    experts_cache: str = "runs/experts"
    num_experts: int = 10  # auto-trained buffer only (MTT: 100)
    expert_train_epochs: int = 20  # auto-trained buffer only (MTT: 50)
    expert_lr: float = 0.01
    expert_batch: int = 256
    expert_seed: int = 0
    zca: bool = False
    # matching
    syn_steps: int = 20  # N
    expert_epochs: int = 2  # M
    min_start_epoch: int = 0
    max_start_epoch: int = 10  # T+ (exclusive, as np.random.randint in the reference)
    lr_img: float = 1000.0
    lr_lr: float = 1e-5
    syn_lr: float = 0.01  # initial learned step size of the student (MTT: lr_teacher)
    momentum_img: float = 0.5
    momentum_lr: float = 0.5
    batch_syn: int = 0  # student mini-batch; 0 = the whole synthetic set
    # real | noise | correct (DATM: real images the expert classifies correctly)
    init: Literal["real", "noise", "correct"] = "real"
    augment: str = "auto"  # auto (the dataset's DSA strategy) | none | a DSA strategy
    backward: Literal["unroll", "tesla"] = "unroll"  # MTT autograd | constant memory, same grad
    student_checkpoint_every: int | Auto = "auto"  # tesla: keep every k-th state; auto: sqrt(N)
    loss_threshold: float = 0.0  # > 0: skip updates when the loss exceeds it (DATM); 0: never skip
    min_lr: float = 1e-6  # guard: the learned step size is kept >= this
    # not in the papers (0 = off, as published): clip the L2 norm of the image gradient and the
    # magnitude of the step-size gradient before the update. Unrolled SGD near the edge of
    # stability has rare gradient spikes that wreck small images; the CPU presets use these.
    clip_grad: float = 0.0
    clip_lr_grad: float = 0.0
    # speed lever (module docstring): bf16 autocast around the student's forward passes
    # (float32 parameters, updates and loss; auto: bf16 where the hardware has it)
    precision: Precision = "fp32"

    rules = {
        "num_experts": AT_LEAST_ONE,
        "expert_train_epochs": AT_LEAST_ONE,
        "expert_lr": POSITIVE,
        "expert_batch": AT_LEAST_ONE,
        "syn_steps": AT_LEAST_ONE,
        "expert_epochs": AT_LEAST_ONE,
        "min_start_epoch": NON_NEGATIVE,
        "lr_img": POSITIVE,
        "lr_lr": NON_NEGATIVE,
        "syn_lr": POSITIVE,
        "momentum_img": MOMENTUM,
        "momentum_lr": MOMENTUM,
        "batch_syn": NON_NEGATIVE,
        "augment": AUGMENT,
        "student_checkpoint_every": AT_LEAST_ONE,
        "loss_threshold": NON_NEGATIVE,
        "min_lr": NON_NEGATIVE,
        "clip_grad": NON_NEGATIVE,
        "clip_lr_grad": NON_NEGATIVE,
    }
    aliases = {
        "expert_batch_size": Alias("expert_batch"),
        "lr_teacher": Alias("syn_lr"),
        "dsa": Alias("augment", lambda v, _: "auto" if v == "dsa" else v),
        "checkpoint_every": Alias("student_checkpoint_every", zero_to_auto),
    }

    def final_max_start_epoch(self) -> int:
        """The largest start-epoch bound the run reaches."""
        return int(self.max_start_epoch)

    def check(self) -> None:
        if not self.min_start_epoch < self.max_start_epoch:
            raise ConfigError(
                "need min_start_epoch < max_start_epoch, got "
                f"{self.min_start_epoch}, {self.max_start_epoch}"
            )
        if self.experts_dir is None:  # the auto-trained buffer's length is known now
            check_window(self, self.expert_train_epochs)


def check_window(cfg: TrajectoryConfig, epochs: int) -> None:
    """Refuse start epochs plus ``expert_epochs`` that run past ``epochs`` expert epochs."""
    last = cfg.final_max_start_epoch() - 1
    if last + cfg.expert_epochs > epochs:
        raise ConfigError(
            f"start epochs up to {last} plus expert_epochs {cfg.expert_epochs} exceed the "
            f"{epochs} epochs of the expert trajectories"
        )


@dataclass(frozen=True)
class TeslaConfig(TrajectoryConfig):
    backward: Literal["unroll", "tesla"] = "tesla"
    soft_labels: bool = True  # expert soft labels (fixed)
    label_epoch: int | Auto = "auto"  # expert epoch giving the labels (auto: max_start_epoch)
    label_temperature: float = 1.0  # soft labels = softmax(expert logits / T)
    # > 0: choose T so the labels' mean max-probability is this (ours)
    label_confidence: float = 0.0

    rules = {
        "label_epoch": NON_NEGATIVE,
        "label_temperature": POSITIVE,
        "label_confidence": interval(0, 1, high_open=True),
    }
    aliases = {"label_epoch": Alias("label_epoch", none_to_auto)}


@dataclass(frozen=True)
class DATMConfig(TrajectoryConfig):
    backward: Literal["unroll", "tesla"] = "tesla"
    init: Literal["real", "noise", "correct"] = "correct"
    max_start_epoch_final: int = 0  # > max_start_epoch: the window grows to it; 0: no growth
    expansion_iterations: int = 1000
    lr_label: float = 2.0
    momentum_label: float = 0.9
    label_epoch: int | Auto = "auto"  # expert epoch giving images/labels (auto: the last)
    loss_threshold: float = 1.0
    label_temperature: float = 1.0  # initial logits = expert logits / T
    # > 0: choose T so the initial labels' mean max-probability is this
    label_confidence: float = 0.0

    rules = {
        "max_start_epoch_final": NON_NEGATIVE,
        "expansion_iterations": AT_LEAST_ONE,
        "lr_label": NON_NEGATIVE,
        "momentum_label": MOMENTUM,
        "label_epoch": NON_NEGATIVE,
        "label_temperature": POSITIVE,
        "label_confidence": interval(0, 1, high_open=True),
    }
    aliases = {"label_epoch": Alias("label_epoch", none_to_auto)}

    def final_max_start_epoch(self) -> int:
        return int(max(self.max_start_epoch, self.max_start_epoch_final))


def _auto_cache_dir(
    cfg: TrajectoryConfig, train: ImageDataset, extra: dict[str, Any] | None = None
) -> Path:
    """``experts_cache/<dataset>-<model>-<hash>``; the hash covers the data, the recipe and
    ``extra`` (what else changes the experts, such as PAD's data schedule)."""
    key = {
        "spec": train.spec.to_dict(),
        "data": fingerprint(train),
        "model": cfg.model.lower(),
        "experts": cfg.num_experts,
        "epochs": cfg.expert_train_epochs,
        "lr": cfg.expert_lr,
        "batch": cfg.expert_batch,
        "zca": cfg.zca,
        "seed": cfg.expert_seed,
        **(extra or {}),
    }
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{safe_name(train.spec.name)}-{safe_name(cfg.model.lower())}"  # nothing outside
    return Path(cfg.experts_cache) / f"{name}-{h}"


def obtain_experts(
    cfg: TrajectoryConfig,
    train: ImageDataset,
    *,
    poll_seconds: float = 5.0,
    progress: ProgressSetting = "auto",
):
    """The expert buffer for ``cfg``: ``experts_dir``, or the auto-trained cache (training what is
    missing, its epochs reported as ``progress`` says; waiting for experts that another live
    process is training). In a dry run nothing is trained: :func:`train_experts` stands in."""
    from ddkit.methods.trajectory.experts import ExpertSettings, load_experts, train_experts

    if cfg.experts_dir:
        buf = load_experts(cfg.experts_dir)
        if buf.zca != bool(cfg.zca):
            raise ConfigError(
                f"experts in {cfg.experts_dir!r} were trained with zca={buf.zca}; set zca={str(buf.zca).lower()}"
            )
        return buf
    folder = _auto_cache_dir(cfg, train)
    return await_experts(
        lambda: train_experts(
            train,
            cfg.model,
            cfg.num_experts,
            cfg.expert_train_epochs,
            folder,
            ExpertSettings.of_config(cfg),
            resume=True,
            progress=progress,
        ),
        cfg.num_experts,
        poll_seconds,
    )


def await_experts(make: Callable[[], Any], num_experts: int, poll_seconds: float = 5.0):
    """``make()`` (train what is missing, return the buffer) until the buffer holds
    ``num_experts`` complete experts: experts another live process holds are waited for."""
    while True:
        buf = make()
        if len(buf) >= num_experts:
            return buf
        time.sleep(poll_seconds)


class _TrajectoryMatching(Distiller):
    """Shared implementation; subclasses choose labels, initialisation and the window."""

    Config: ClassVar[type[MethodConfig]] = TrajectoryConfig
    test_overrides: ClassVar[dict[str, Any]] = _TEST_OVERRIDES
    label_mode: ClassVar[str] = "hard"  # hard | prob | logits
    needs: ClassVar[str] = "differentiable"  # experts and students train on any rows

    # ------------------------------------------------------------------ set-up
    def _window(self, iteration: int) -> tuple[int, int]:
        return int(self.config.min_start_epoch), int(self.config.max_start_epoch)

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        from ddkit.methods.trajectory.experts import apply_zca
        from ddkit.methods.trajectory.memory import check_unroll
        from ddkit.methods.trajectory.student import FlatModel

        c = self.config
        self.temperature_ = None
        self.watch_ = DivergenceWatch()
        # checked before the experts are obtained (they may be trained here)
        self.precision_ = method_precision(c.precision, train.images.dtype, train.images.device)
        buf = self._experts(train)
        if buf.model != c.model.lower():
            raise ConfigError(
                f"experts in {str(buf.root)!r} are {buf.model!r} networks, not {c.model!r}"
            )
        buf.check_data(train)
        check_window(c, buf.epochs)
        buf.device = train.images.device  # trajectories load where the data lives
        self.buffer_ = buf
        self.zca_ = buf.zca_transform()
        data = apply_zca(train, self.zca_) if self.zca_ is not None else train
        self.data_ = data
        student = build_network(c.model, data.spec, 0).to(train.images.device)
        warn_if_rough(student, c.model, data.spec, "unrolled trajectory-matching")
        self.fm_ = FlatModel(student)
        if self.fm_.num_params != int(buf.meta["num_params"]):
            raise ConfigError(f"model {c.model!r} does not match the experts' parameter layout")
        self.dsa_ = make_augment(c.augment, data.spec)

        self.codec_, images = start_stored(
            c.codec, data, ipc, generator, self._initial_images,
            label_vectors=self.label_mode != "hard",
        )  # fmt: skip
        n = self.codec_.emitted_per_class(ipc, data.spec) * data.spec.num_classes
        batch = n if c.batch_syn <= 0 else min(int(c.batch_syn), n)
        every = 0 if c.student_checkpoint_every == "auto" else int(c.student_checkpoint_every)
        check_unroll(student, data.spec, int(c.syn_steps), batch, c.model, backward=c.backward,
                     checkpoint_every=every)  # fmt: skip
        with torch.no_grad():
            labels = self._initial_labels(self.codec_.decode(images))
        syn_lr = torch.tensor(float(c.syn_lr), device=images.device).requires_grad_(True)
        self.state_.update(
            {
                "images": images,
                "labels": labels,
                "syn_lr": syn_lr,
                "opt_img": torch.optim.SGD([images], lr=c.lr_img, momentum=c.momentum_img),
                "opt_lr": torch.optim.SGD([syn_lr], lr=c.lr_lr, momentum=c.momentum_lr),
            }
        )
        if self.label_mode == "logits":
            labels.requires_grad_(True)
            self.state_["opt_label"] = torch.optim.SGD(
                [labels], lr=c.lr_label, momentum=c.momentum_label
            )

    def _experts(self, train: ImageDataset):
        """The expert buffer this method matches (:func:`obtain_experts`)."""
        return obtain_experts(self.config, train, progress=self.setup_progress_)

    def _keep_mask(self):
        """The parameter selection of the matching loss (``None``: every parameter)."""
        return None

    def _initial_images(self, data: ImageDataset, n: int, g: torch.Generator) -> torch.Tensor:
        """``n`` real (or noise) images per class that the stored set is encoded from."""
        return initial_images(data, n, g, self.config.init)

    def _initial_labels(self, images: torch.Tensor) -> torch.Tensor:
        """The labels of the decoded training ``images`` (class-major): hard class labels."""
        k = self.data_.spec.num_classes
        return class_labels(k, len(images) // k).to(images.device)

    def _select_correct(
        self, data: ImageDataset, ipc: int, g: torch.Generator, epoch: int
    ) -> torch.Tensor:
        """``ipc`` random real images per class that expert 0 (at ``epoch``) classifies correctly
        (DATM's ``samples_predicted_correctly``); filled with other images of the class if too few."""
        rows = []
        for cls in range(data.spec.num_classes):
            ix = data.class_indices[cls]
            pred = self._expert_logits(data.images[ix], 0, epoch).argmax(1)
            good, bad = ix[pred == cls], ix[pred != cls]
            good = good[torch.randperm(len(good), generator=g)]
            if len(good) < ipc:
                good = torch.cat([good, bad[torch.randperm(len(bad), generator=g)]])
            rows.append(good[:ipc])
        return data.images[torch.cat(rows)].clone()

    def _expert_logits(self, x: torch.Tensor, expert: int, epoch: int) -> torch.Tensor:
        theta = self.buffer_.params(expert, epoch)
        return predict(lambda b: self.fm_(theta, b), x, batch_size=512)

    # ------------------------------------------------------------------ one iteration
    def step(self, iteration: int) -> dict[str, float]:
        from ddkit.methods.trajectory.student import (
            Student,
            make_plan,
            sum_shares,
            tesla_step,
            unrolled_step,
        )

        c, st = self.config, self.state_
        g = st["generator"]
        stored, labels, syn_lr = st["images"], st["labels"], st["syn_lr"]
        images = self.codec_.decode(stored)  # the training images, differentiable in `stored`
        lo, hi = self._window(iteration)
        expert = int(torch.randint(len(self.buffer_), (1,), generator=g))
        start_epoch = int(torch.randint(lo, hi, (1,), generator=g))
        start = self.buffer_.params(expert, start_epoch)
        target = self.buffer_.params(expert, start_epoch + c.expert_epochs)
        plan = make_plan(
            len(images), c.syn_steps, c.batch_syn, g, self.dsa_, self.data_.spec.image_size
        )
        launch = distributed.active()
        if launch is not None:  # this rank's rows of every mini-batch, one student
            plan = plan.share(launch.rank, launch.world_size)
        opts = [st["opt_img"], st["opt_lr"]] + ([st["opt_label"]] if "opt_label" in st else [])
        for o in opts:
            o.zero_grad(set_to_none=True)
        student = Student(self.fm_, self.dsa_, self.label_mode, self.precision_)
        if c.backward == "unroll":
            loss_t = unrolled_step(
                student, start, target, images, syn_lr, labels, plan, keep=self._keep_mask()
            )
            # several processes: every rank holds the whole loss (module notes of the student)
            (loss_t if launch is None else loss_t / launch.world_size).backward()
            loss = float(loss_t.detach())
            del loss_t
        else:
            r = tesla_step(
                student,
                start,
                target,
                images,
                syn_lr,
                labels,
                plan,
                checkpoint_every=0
                if c.student_checkpoint_every == "auto"
                else c.student_checkpoint_every,
                keep=self._keep_mask(),
            )
            loss = r.loss
            images.backward(r.grad_images)  # through the codec to what is stored
            syn_lr.grad = r.grad_lr
            if r.grad_labels is not None:
                labels.grad = r.grad_labels
        # the ranks' shares of the gradients (no-op in one process)
        sum_shares(stored, syn_lr, labels if "opt_label" in st else None)
        if not torch.isfinite(torch.tensor(loss)):
            raise DataError(
                f"{self.name}: the matching loss is not finite at iteration {iteration} "
                f"(lr_img {c.lr_img} or lr_lr {c.lr_lr} too large?)"
            )
        applied = not c.loss_threshold or loss <= c.loss_threshold
        diverged = self.watch_.update(loss)
        if diverged and distributed.is_main():  # every rank holds the same loss: one says it
            skipped = "; those above loss_threshold were skipped" if c.loss_threshold else ""
            warnings.warn(
                f"{self.name}: in {diverged} of the last {self.watch_.window} iterations the "
                "student ended further from the expert's target than it started (matching loss "
                f"> 1{skipped}): the distillation is diverging; a smaller lr_img or lr_lr, or a "
                "smaller max_start_epoch, may keep it stable",
                RuntimeWarning,
                stacklevel=2,
            )
        if c.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_([stored], c.clip_grad)
        if c.clip_lr_grad > 0 and syn_lr.grad is not None:
            syn_lr.grad.clamp_(-c.clip_lr_grad, c.clip_lr_grad)
        if applied:
            for o in opts:
                o.step()
            with torch.no_grad():
                syn_lr.clamp_(min=c.min_lr)
        return {
            "loss": loss,
            "lr": float(syn_lr.detach()),
            "start_epoch": float(start_epoch),
            "applied": float(applied),
        }

    # ------------------------------------------------------------------ output
    def _result_labels(self) -> torch.Tensor:
        return self.state_["labels"].detach().clone()

    def result(self) -> SyntheticSet:
        st = self.state_
        extras = {}
        if self.zca_ is not None:
            extras = {f"zca.{k}": v.clone() for k, v in self.zca_.to_tensors().items()}
        lr = max(float(st["syn_lr"].detach()), self.config.min_lr)
        meta = {
            "experts_dir": str(self.buffer_.root),
            "num_experts": len(self.buffer_),
            "expert_epochs_trained": self.buffer_.epochs,
        }
        if getattr(self, "temperature_", None) is not None:
            meta["label_temperature"] = self.temperature_
        zca_keys = list(extras)
        syn = SyntheticSet.from_codec(
            self.codec_, st["images"].detach(), self.data_.spec,
            labels=self._result_labels(), lr=lr, meta=meta, extras=extras,
        )  # fmt: skip
        if "stored_tensors" in syn.meta:  # the ZCA transform ships with the set
            syn.meta["stored_tensors"] += zca_keys
        return record_levers(syn, self.precision_, self.config)


def _label_temperature(logits: torch.Tensor, temperature: float, confidence: float) -> float:
    """``temperature``, or (``confidence > 0``) the T for which ``softmax(logits / T)`` has mean
    max-probability ``confidence`` (bisection on log T; the mean is monotone in T). Small CPU
    experts are accurate but have tiny logits, so their raw softmax is nearly uniform."""
    if confidence <= 0:
        return float(temperature)
    k = logits.shape[1]
    if not 1.0 / k < confidence < 1.0:
        raise ConfigError(f"label_confidence must be in (1/{k}, 1), got {confidence}")
    lo, hi = -12.0, 12.0  # log T
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        conf = float(
            F.softmax(logits.double() / float(torch.tensor(mid).exp()), -1).max(1).values.mean()
        )
        lo, hi = (mid, hi) if conf > confidence else (lo, mid)
    return float(torch.tensor(0.5 * (lo + hi)).exp())


def _peak_at_class(logits: torch.Tensor, hard: torch.Tensor, margin: float = 0.01) -> torch.Tensor:
    """Logits whose argmax is each row's class: rows that peak elsewhere get their class logit
    raised to ``max + margin`` (a synthetic image keeps the class it was made for; rare)."""
    out = logits.clone()
    wrong = out.argmax(1) != hard
    if wrong.any():
        rows = torch.nonzero(wrong).flatten()
        out[rows, hard[rows]] = out[rows].max(1).values + margin
    return out


def _cifar10(**kw: Any) -> dict[str, Any]:
    # published runs: ConvNet-3 (instance norm), experts 100 x 50 epochs (DATM: 100 x 100)
    return {"num_experts": 100, "expert_train_epochs": 50, "expert_batch": 256, **kw}


# CIFAR-10: MTT's hyper-parameter table (N, M, T+, lr_img, lr_lr, lr_teacher). IPC 10's lr_lr is
# 1e-5: a value reported as a typo made the learned step size explode. ZCA for IPC 1 and 10.
# digits / mnist5k: ours, for a CPU, chosen on validation splits (never on test): experts with
# batch 32 so an epoch of these small sets has a useful number of SGD steps, a short unroll,
# images in the normalised space (no ZCA) with clipped gradients (see clip_grad); ConvNet-2 on
# 8x8 digits (ConvNet-3's third instance norm sees 2x2 maps; see MIN_NORMALISED_VALUES). On
# mnist5k an expert epoch is many SGD steps, so M = 1 and a larger lr_lr let N student steps
# cover it. The measurements are in BENCHMARKS.md ("Where trajectory matching stands").
_MTT_TABLE: dict[tuple[str, Any], dict[str, Any]] = {
    ("cifar10", 1): _cifar10(
        syn_steps=50,
        expert_epochs=2,
        max_start_epoch=2,
        lr_img=100.0,
        lr_lr=1e-7,
        syn_lr=0.01,
        zca=True,
    ),
    ("cifar10", 10): _cifar10(
        syn_steps=30,
        expert_epochs=2,
        max_start_epoch=20,
        lr_img=100.0,
        lr_lr=1e-5,
        syn_lr=0.001,
        zca=True,
    ),
    ("cifar10", 50): _cifar10(
        syn_steps=30,
        expert_epochs=2,
        max_start_epoch=40,
        lr_img=1000.0,
        lr_lr=1e-5,
        syn_lr=0.001,
        zca=False,
    ),
    ("digits", "*"): {
        "model": "convnet2",
        "num_experts": 10,
        "expert_train_epochs": 20,
        "expert_batch": 32,
        "syn_steps": 10,
        "expert_epochs": 2,
        "max_start_epoch": 10,
        "lr_img": 1.0,
        "lr_lr": 1e-6,
        "syn_lr": 0.01,
        "clip_grad": 1.0,
        "clip_lr_grad": 100.0,
        "iterations": 1000,
    },
    ("digits", 1): {"max_start_epoch": 4},
    ("digits", 50): {"batch_syn": 100},
    ("mnist5k", "*"): {
        "model": "convnet-w32",
        "num_experts": 5,
        "expert_train_epochs": 10,
        "expert_batch": 32,
        "syn_steps": 10,
        "expert_epochs": 1,
        "max_start_epoch": 8,
        "lr_img": 100.0,
        "lr_lr": 1e-5,
        "syn_lr": 0.01,
        "clip_grad": 1.0,
        "clip_lr_grad": 100.0,
        "iterations": 500,
    },
    ("mnist5k", 1): {"max_start_epoch": 4, "syn_steps": 20},
    ("mnist5k", 50): {"batch_syn": 100},
}
_SOURCES = {
    "cifar10": "MTT CVPR'22 appendix hyper-parameter table",
    "digits": "ddkit CPU setting, chosen on digits' validation split",
    "mnist5k": "ddkit CPU setting; lr_lr, expert_epochs, syn_steps: "
    "benchmarks/results/tune_mtt_mnist5k_ipc1_*.json (validation split)",
}
_MTT_PRESETS = presets_from(_MTT_TABLE, _SOURCES)


@register_method
class MTT(_TrajectoryMatching):
    """MTT: matching training trajectories (Cazenavette et al., CVPR 2022)."""

    name = "mtt"
    Config = TrajectoryConfig
    scale_out = "batch rows"  # one student; each rank its rows of every mini-batch
    presets = _MTT_PRESETS


@register_method
class TESLA(_TrajectoryMatching):
    """TESLA: trajectory matching with memory constant in N and expert soft labels (Cui et al., ICML 2023)."""

    name = "tesla"
    Config = TeslaConfig
    scale_out = "batch rows"  # one student; each rank its rows of every mini-batch
    # TESLA keeps MTT's hyper-parameters. Small CPU experts are accurate but have near-uniform
    # raw softmax: T is calibrated on the train images (label_confidence, chosen on digits'
    # validation split).
    presets = presets_from(
        {
            k: ({**v, "label_confidence": 0.99} if k[1] == "*" and k[0] != "cifar10" else v)
            for k, v in _MTT_TABLE.items()
        },
        {**_SOURCES, "digits": _SOURCES["digits"] + "; label_confidence 0.99 likewise"},
    )

    @property
    def label_mode(self) -> str:  # type: ignore[override]
        return "prob" if self.config.soft_labels else "hard"

    def _label_epoch(self) -> int:
        c = self.config
        return c.max_start_epoch if c.label_epoch == "auto" else int(c.label_epoch)

    def _initial_images(self, data, n, g):
        c = self.config
        if c.soft_labels and c.init == "real":
            # soft labels must peak at the image's class: start from images the expert gets right
            return self._select_correct(data, n, g, self._label_epoch())
        return super()._initial_images(data, n, g)

    def _initial_labels(self, images):
        c = self.config
        if not c.soft_labels:
            return super()._initial_labels(images)
        logits = self._expert_logits(images, 0, self._label_epoch())
        self.temperature_ = _label_temperature(logits, c.label_temperature, c.label_confidence)
        logits = _peak_at_class(logits / self.temperature_, super()._initial_labels(images))
        return F.softmax(logits, dim=-1)

    def _result_labels(self) -> torch.Tensor:
        labels = self.state_["labels"].detach().clone()
        if labels.ndim == 2:
            labels = labels / labels.sum(1, keepdim=True)
        return labels


_DATM_TABLE: dict[tuple[str, Any], dict[str, Any]] = {
    ("cifar10", 1): _cifar10(
        expert_train_epochs=100,
        iterations=10000,
        syn_steps=80,
        expert_epochs=2,
        min_start_epoch=0,
        max_start_epoch=4,
        max_start_epoch_final=0,
        lr_img=100.0,
        lr_lr=1e-7,
        syn_lr=0.01,
        batch_syn=0,
        lr_label=5.0,
        momentum_label=0.9,
        loss_threshold=1.1,
        zca=True,
    ),
    ("cifar10", 10): _cifar10(
        expert_train_epochs=100,
        iterations=10000,
        syn_steps=80,
        expert_epochs=2,
        min_start_epoch=0,
        max_start_epoch=10,
        max_start_epoch_final=20,
        expansion_iterations=1000,
        lr_img=100.0,
        lr_lr=1e-5,
        syn_lr=0.01,
        batch_syn=100,
        lr_label=2.0,
        momentum_label=0.9,
        loss_threshold=1.0,
        zca=True,
    ),
    ("cifar10", 50): _cifar10(
        expert_train_epochs=100,
        iterations=10000,
        syn_steps=80,
        expert_epochs=2,
        min_start_epoch=0,
        max_start_epoch=20,
        max_start_epoch_final=40,
        expansion_iterations=2000,
        lr_img=1000.0,
        lr_lr=1e-5,
        syn_lr=0.01,
        batch_syn=500,
        lr_label=2.0,
        momentum_label=0.9,
        loss_threshold=1.0,
        zca=True,
    ),
    ("digits", "*"): {
        **_MTT_TABLE[("digits", "*")],
        "max_start_epoch": 4,
        "max_start_epoch_final": 10,
        "expansion_iterations": 500,
        "lr_label": 2.0,
        "label_confidence": 0.99,
    },
    ("digits", 1): {"max_start_epoch": 2, "max_start_epoch_final": 4},
    ("digits", 50): {"batch_syn": 100},
    ("mnist5k", "*"): {
        **_MTT_TABLE[("mnist5k", "*")],
        "max_start_epoch": 4,
        "max_start_epoch_final": 8,
        "expansion_iterations": 250,
        "lr_label": 2.0,
        "label_confidence": 0.99,
    },
    ("mnist5k", 1): {"max_start_epoch": 2, "max_start_epoch_final": 4, "syn_steps": 20},
    ("mnist5k", 50): {"batch_syn": 100},
}


@register_method
class DATM(_TrajectoryMatching):
    """DATM: difficulty-aligned trajectory matching with learned soft labels (Guo et al., ICLR 2024)."""

    name = "datm"
    Config = DATMConfig
    scale_out = "batch rows"  # one student; each rank its rows of every mini-batch
    label_mode = "logits"
    presets = presets_from(
        _DATM_TABLE,
        {
            **_SOURCES,
            "cifar10": "DATM repository configs/CIFAR-10/ConvIN/IPC{1,10,50}.yaml",
            "digits": "ddkit CPU setting (MTT's, with DATM's window and labels)",
            "mnist5k": "ddkit CPU setting (MTT's, with DATM's window and labels)",
        },
    )

    def _window(self, iteration: int) -> tuple[int, int]:
        """``[min_start_epoch, upper)`` with ``upper`` growing linearly from ``max_start_epoch`` to
        ``max_start_epoch_final`` over ``expansion_iterations`` (DATM's sequential generation)."""
        c = self.config
        lo, hi = int(c.min_start_epoch), int(c.max_start_epoch)
        if not c.max_start_epoch_final or c.max_start_epoch_final <= hi:
            return lo, hi
        final = c.final_max_start_epoch()
        span = max(1, int(c.expansion_iterations))
        upper = hi + int((final - hi) * iteration / span)
        return lo, min(upper, final)

    def _label_epoch(self) -> int:
        c = self.config
        return self.buffer_.epochs if c.label_epoch == "auto" else int(c.label_epoch)

    def _initial_images(self, data, n, g):
        if self.config.init == "correct":
            return self._select_correct(data, n, g, self._label_epoch())
        return super()._initial_images(data, n, g)

    def _initial_labels(self, images):
        epoch = self._label_epoch()
        k = self.data_.spec.num_classes
        hard = class_labels(k, len(images) // k).to(images.device)
        # DATM: average logits over the experts that classify each image correctly
        total = torch.zeros(len(images), k, device=images.device)
        count = torch.zeros(len(images), 1, device=images.device)
        for e in range(len(self.buffer_)):
            logits = self._expert_logits(images, e, epoch)
            ok = (logits.argmax(1) == hard).float().unsqueeze(1)
            total += logits * ok
            count += ok
        first = self._expert_logits(images, 0, epoch)
        logits = torch.where(count > 0, total / count.clamp_min(1), first)
        self.temperature_ = _label_temperature(
            logits, self.config.label_temperature, self.config.label_confidence
        )
        return (logits / self.temperature_).detach().clone()

    def _result_labels(self) -> torch.Tensor:
        k = self.data_.spec.num_classes
        hard = class_labels(k, len(self.state_["labels"]) // k).to(self.state_["labels"].device)
        return F.softmax(_peak_at_class(self.state_["labels"].detach(), hard), dim=-1)


__all__ = [
    "DATM",
    "MTT",
    "TESLA",
    "DATMConfig",
    "TeslaConfig",
    "TrajectoryConfig",
    "obtain_experts",
]
