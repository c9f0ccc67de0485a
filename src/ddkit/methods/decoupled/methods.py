"""Decoupled distillation: SRe2L (recover from a teacher's BN statistics) and RDED (select and
stitch realistic crops), both relabelled by the teacher.

* ``sre2l`` — Yin, Xing & Shen, "Squeeze, Recover and Relabel: Dataset Condensation at ImageNet
  Scale From A New Perspective", NeurIPS 2023.
* ``rded`` — Sun, Zhang, Cai, Xu & Shen (2024), "On the Diversity and Realism of Distilled
  Dataset: An Efficient Dataset Distillation Paradigm", CVPR 2024.
* ``cda`` — Yin & Shen, "Dataset Distillation via Curriculum Data Synthesis in Large Data Era",
  TMLR 2024: ``sre2l`` with a crop-scale curriculum (``crop``, :mod:`.recipes`).
* ``edc`` — Shao et al., "Elucidating the Design Space of Dataset Condensation", NeurIPS 2024:
  ``sre2l`` with real-image starts, per-class statistics (``class_stats``), more teachers
  (``extra_teachers``, used in turn), an EMA flatness term (``flatness``) and random-resized
  crops; each is a switch of ``sre2l`` (off there), all on in ``edc``. Deviations from the
  authors' code are listed in :mod:`ddkit.methods.decoupled.recipes`; EDC also starts from
  RDED-selected patches, ddkit from random real images.

SRe2L needs a teacher with BatchNorm. ``teacher`` names one: a folder made by ``ddkit teacher``
or any network source of :func:`ddkit.models.external.load_network` (``file:PATH`` a checkpoint
of a registered architecture, ``hf:PATH`` a Hugging Face model, ...); ``"auto"`` (default)
trains one (seeded by ``teacher_seed``, so the distilled set still depends only on the config
and the seed) and caches it under ``teacher_cache/<dataset>-<model>-<hash>`` (the hash covers
the training data and the recipe). The folder or source is recorded in ``meta['teacher_dir']``
and what was loaded (SHA-256 of the weights, classes, input size) in ``meta['teacher']``, so
``teacher-kd`` evaluation and the storage report find the same teacher.

Labels (``labels``): ``"soft"`` (default) stores the teacher's probabilities at
``label_temperature`` per image; ``"views"`` stores FKD-style per-view labels compactly
(:func:`ddkit.eval.relabel.relabel`); ``"hard"`` stores the class each image was made for.
``label_budget`` says how soft labels are stored (:mod:`ddkit.data.label_budget`: ``full``,
``fp16``, ``int8``, ``topk:K`` with ``+fp16`` / ``+int8``, or ``regen``: only the views' crops,
the teacher recomputing the labels at evaluation); ``auto`` keeps the format from before budgets
(float32 per image, top-``label_topk`` float16 per view).
A soft label's argmax may disagree with that class (``SyntheticSet.hard_labels`` is the
argmax); ``meta['label_agreement']`` reports how often they agree.

Several processes (``torchrun``, issue 38): sre2l / cda / edc recover image indices
``RANK, RANK + N, ...`` of every class; rded's crops are drawn for every candidate image and each
rank scores the crops of candidates ``RANK, RANK + N, ...`` (the scores gathered in order); the
soft labels split by image (:func:`ddkit.eval.relabel.relabel`). Both give one process's set bit
for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from ddkit import distributed
from ddkit.augment.crops import crop_resize, sample_boxes
from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.label_budget import parse_label_budget
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.relabel import encode_labels, relabel, teacher_probs
from ddkit.eval.teacher import DEFAULT_MODEL, cached_teacher
from ddkit.methods.base import Distiller, MethodConfig, register_method
from ddkit.methods.common import initial_images, summed_over_ranks
from ddkit.methods.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Alias,
    Auto,
    Preset,
    interval,
    none_to_auto,
)
from ddkit.methods.decoupled.bn import BNStatLoss
from ddkit.methods.decoupled.recipes import (
    ClassStatLoss,
    CropSchedule,
    class_bn_statistics,
    crop_scale_floor,
    flatness_loss,
)
from ddkit.models import predict
from ddkit.models.external import is_source, load_network, teacher_record
from ddkit.models.footprint import inference_batch
from ddkit.rng import draw_seed

_TEST_CACHE = os.path.join(tempfile.gettempdir(), "ddkit-test-teachers")
_TEST_TEACHER = {
    "teacher_model": "convnet3-bn-w16",
    "teacher_epochs": 3,
    "teacher_cache": _TEST_CACHE,
    "labels": "hard",
}
# shared by sre2l and rded, so both find the same cached teacher
_MNIST5K_TEACHER = {"teacher_model": "convnet3-bn-w32", "teacher_epochs": 15}
_CPU_TEACHER = "ddkit CPU scale: a narrower, shorter-trained teacher on 28x28 digits"
#: Tiny-ImageNet's teacher in the decoupled papers: ResNet-18 with a 3x3 stem and no max-pool
#: (ddkit's resnet18 is that network)
_TINY_TEACHER = {"teacher_model": "resnet18"}
_SRE2L_TINY = (
    "SRe2L NeurIPS'23, authors' small_dataset/recover_tiny.sh and recover_tiny.py: "
    "RandomResizedCrop(64) (scale 0.08-1), roll jitter 4 (batch 100 of the 200 classes there)"
)


#: the image side from which the decoupled methods crop (and rded stitches) as their scripts do
#: at Tiny-ImageNet and ImageNet scale; below it, crops made for 64-224 px images zoom into a
#: small image's object (chosen on mnist5k's validation split: docs/benchmarks/
#: pretrained-and-labels.md)
CROP_FROM_PIXELS = 64


def at_scripts_scale(image_size: tuple[int, int]) -> bool:
    """Whether images of ``image_size`` are cropped (and stitched) as the scripts do: a side of
    at least :data:`CROP_FROM_PIXELS`."""
    return min(image_size) >= CROP_FROM_PIXELS


@dataclasses.dataclass(frozen=True)
class TeacherConfig(MethodConfig):
    """Teacher and relabeling options shared by the decoupled methods."""

    # a `ddkit teacher` folder or a network source (file:PATH, hf:PATH, ...); auto: train one
    teacher: str = "auto"
    teacher_model: str = DEFAULT_MODEL
    teacher_epochs: int = 30
    teacher_lr: float = 0.05
    teacher_seed: int = 0
    teacher_cache: str = "runs/teachers"
    labels: Literal["hard", "soft", "views"] = "soft"
    label_temperature: float = 4.0
    label_views: int = 4  # views per image when labels == "views"
    label_topk: int = 0  # top-k stored per view (0: all classes)
    # how soft labels are stored (ddkit.data.label_budget): full, fp16, int8, topk:K, logits:K,
    # prune:R (views), +-joined, or regen (the teacher recomputes them at evaluation); auto:
    # float32 per image, label_topk float16 per view (as before label budgets)
    label_budget: str = "auto"

    rules = {
        "teacher_epochs": AT_LEAST_ONE,
        "teacher_lr": POSITIVE,
        "label_temperature": POSITIVE,
        "label_views": AT_LEAST_ONE,
        "label_topk": NON_NEGATIVE,
    }
    aliases = {
        "label_topk": Alias("label_topk", lambda v, _: 0 if v is None else v),
        "teacher_dir": Alias("teacher", lambda v, _: "auto" if v is None else v),
    }

    def check(self) -> None:
        if self.label_budget == "auto":
            return
        budget = parse_label_budget(self.label_budget)
        if self.labels == "hard":
            raise ConfigError(
                f"label_budget={self.label_budget} needs soft labels; labels='hard' stores no "
                "probabilities (use labels='soft' or 'views', or drop label_budget)"
            )
        if self.label_topk:
            raise ConfigError(
                f"give the top-k in label_budget (topk:{self.label_topk}), not label_topk too"
            )
        if (budget.prune or budget.logits) and self.labels != "views":
            raise ConfigError(
                f"label_budget={self.label_budget} prunes or stores logits of per-view labels; "
                f"labels={self.labels!r} stores one label per image (use labels='views')"
            )
        budget.kept_views(self.label_views)  # a prune that keeps no view is refused here


class _TeacherMethod(Distiller):
    """Teacher loading/caching and relabeling for the decoupled methods."""

    Config: ClassVar[type[MethodConfig]] = TeacherConfig

    def _init_teacher(self, train: ImageDataset) -> None:
        cfg = self.config
        if cfg.teacher != "auto":
            loaded = load_network(cfg.teacher, spec=train.spec, device=train.images.device)
            self.teacher_, self.teacher_record_ = loaded.module, loaded.record
            return
        net, folder = cached_teacher(
            train,
            cfg.teacher_model,
            cache_root=cfg.teacher_cache,
            epochs=cfg.teacher_epochs,
            lr=cfg.teacher_lr,
            seed=cfg.teacher_seed,
            progress=self.setup_progress_,
        )
        self.teacher_, self.teacher_record_ = net, teacher_record(folder, net.teacher_meta_)

    def distilled_with(self) -> None:
        """None: a decoupled set is judged by students of any architecture, the teacher's
        knowledge reaching them through its soft labels (``teacher-kd``)."""
        return None

    def _teacher_meta(self) -> dict[str, Any]:
        record = self.teacher_record_
        return {
            "teacher_dir": record.source,
            "teacher": record.to_dict(),
            "teacher_model": record.model,
            "labels": self.config.labels,
        }

    def _labelled(
        self, images: torch.Tensor, classes: torch.Tensor, probs: torch.Tensor | None = None
    ) -> SyntheticSet:
        """The set with the configured labels; ``probs`` are precomputed per-image soft labels."""
        cfg = self.config
        spec = self.train_.spec
        syn = SyntheticSet(images, classes, spec, meta=self._teacher_meta())
        budget = None if cfg.label_budget == "auto" else cfg.label_budget
        if cfg.labels == "hard":
            return syn
        if cfg.labels == "soft" and probs is not None:
            meta = {**syn.meta, "label_temperature": float(cfg.label_temperature), "label_views": 0}
            out = SyntheticSet(images, probs / probs.sum(1, keepdim=True), spec, meta=meta)
            out = out if budget is None else encode_labels(out, budget)
        elif cfg.labels == "soft":
            out = relabel(syn, self.teacher_, cfg.label_temperature, budget=budget)
        else:
            g = torch.Generator().manual_seed(int(self.state_["relabel_seed"]))
            out = relabel(
                syn,
                self.teacher_,
                cfg.label_temperature,
                views=cfg.label_views,
                generator=g,
                topk=(cfg.label_topk or None) if budget is None else None,
                budget=budget,
            )
        if out.soft:
            out.meta["label_agreement"] = float((out.hard_labels == classes).float().mean())
        return out


def _pixel_bounds(train: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised values of raw pixels 0 and 1, per channel, shaped ``(1, C, 1, 1)``."""
    device = train.images.device
    mean = torch.tensor(train.spec.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(train.spec.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def _by_image_index(x: torch.Tensor, k: int, ipc: int) -> torch.Tensor:
    """Class-major rows ``(k * ipc, ...)`` reordered so that row ``i * k + c`` is image ``i`` of
    class ``c``."""
    return x.view(k, ipc, *x.shape[1:]).transpose(0, 1).reshape(k * ipc, *x.shape[1:])


def _dataset_flips(train: ImageDataset) -> bool:
    from ddkit.augment import default_strategy

    return "flip" in default_strategy(train.spec.channels, train.spec.name).split("_")


@register_method
class SRe2L(_TeacherMethod):
    """sre2l: recover images from noise by matching a BN teacher's statistics + CE (Yin et al., NeurIPS 2023).

    As the authors' ``recover_*.py``: CE + ``r_bn`` x the sum over every BatchNorm layer of
    ``||mu - mu_run|| + ||var - var_run||`` (biased batch variance, the first layer x 10), Adam
    (betas 0.5 / 0.9) on the pixels with a cosine lr to 0, pixels clipped to [0, 1] after each
    step, a batch of one image per class. Differences from that code (docs/benchmarks/
    pretrained-and-labels.md): all image indices are recovered at once, each its own statistics
    group, which gives each image the gradients of separate batches; a batch spans every class
    (the scripts' 100 classes at a time on Tiny-ImageNet / ImageNet); the roll jitter is drawn
    in ``[-j, j]`` (the CIFAR and ImageNet scripts: ``[0, j]``); ``flip="auto"`` flips non-digit
    images also without crops (the CIFAR script never flips); the start noise is clipped to the
    pixel range before the first step; crops are per image (torchvision crops a batch alike).
    """

    name = "sre2l"
    #: the crop schedule of the method's large-image scripts (``crop="auto"`` from
    #: :data:`CROP_FROM_PIXELS` up): SRe2L's and EDC's fixed 0.08-1 crops
    scripts_crop: ClassVar[CropSchedule] = "fixed"
    # under torchrun each rank recovers the image indices i = RANK, RANK + N, ... (SRe2L's
    # batch i: image i of every class), drawing every step's augmentation for all images; the
    # ranks' image gradients are summed (disjoint rows: exact), soft labels split by image
    scale_out = "images"

    @dataclasses.dataclass(frozen=True)
    class Config(TeacherConfig):
        iterations: int = 1000  # SRe2L: 1k (CIFAR) to 4k (ImageNet) recovery steps
        lr_img: float = 0.25  # Adam on the pixels, cosine-decayed to 0 (recover_cifar.sh)
        betas: tuple[float, float] = (0.5, 0.9)
        r_bn: float = 0.01  # weight of the BN-statistic loss
        first_bn_multiplier: float = 10.0  # extra weight of the first BN layer (reference default)
        jitter: int | Auto = "auto"  # max random roll in pixels (auto: round(size / 8))
        flip: bool | Auto = "auto"  # random horizontal flip (auto: not for digit datasets)
        # "ipc": one statistics group per image index (K images, as SRe2L's batches of one image
        # per class); "all": one group of K*ipc images
        bn_groups: Literal["ipc", "all"] = "ipc"
        init: Literal["real", "noise"] = "noise"
        # CDA (recipes.crop_scale_floor): random-resized crops of area in [floor(t), 1];
        # none: SRe2L's CIFAR recipe (roll jitter only; its script does not flip either);
        # fixed: floor = crop_min throughout (SRe2L's Tiny-ImageNet / ImageNet recipe); auto:
        # the method's scripts' schedule (scripts_crop) from CROP_FROM_PIXELS up, none below
        crop: CropSchedule | Auto = "none"
        crop_min: float = 0.08
        crop_milestone: float = 1.0  # fraction of the run over which the floor decays to crop_min
        # EDC switches (recipes module): per-class statistics of real images as extra targets,
        # more teachers (model names trained and cached like the first, or network sources
        # such as file:PATH / hf:PATH; used in turn), EMA flatness term
        class_stats: bool = False
        class_weight: float = 1.0  # weight of the class term relative to the global BN term
        extra_teachers: tuple[str, ...] = ()
        flatness: float = 0.0  # weight of the flatness KL (0: off)
        ema_decay: float = 0.99  # decay of the images' moving average (flatness)

        rules = {
            "lr_img": POSITIVE,
            "r_bn": NON_NEGATIVE,
            "jitter": NON_NEGATIVE,
            "crop_min": interval(0, 1, low_open=True),
            "crop_milestone": interval(0, 1),
            "class_weight": NON_NEGATIVE,
            "flatness": NON_NEGATIVE,
            "ema_decay": interval(0, 1, high_open=True),
        }
        aliases = {
            "lr": Alias("lr_img"),
            "jitter": Alias("jitter", none_to_auto),
            "flip": Alias("flip", none_to_auto),
        }

    presets = (
        Preset("mnist5k", "*", {**_MNIST5K_TEACHER, "iterations": 500}, _CPU_TEACHER),
        Preset(
            "tinyimagenet",
            "*",
            {
                **_TINY_TEACHER,
                "lr_img": 0.1,
                "r_bn": 1.0,
                "iterations": 4000,
                "crop": "fixed",
                "jitter": 4,
            },
            _SRE2L_TINY,
        ),
    )
    test_overrides: ClassVar[dict[str, Any]] = dict(_TEST_TEACHER)

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        self.rows_ = self._local_rows(train.spec.num_classes, ipc)
        self._init_teacher(train)
        self._init_extra_teachers(train)
        self.total_ = int(iterations)  # the cosine schedule spans the whole run
        images = initial_images(train, ipc, generator, cfg.init)
        lo, hi = _pixel_bounds(train)
        with torch.no_grad():
            images = torch.maximum(torch.minimum(images, hi), lo).requires_grad_(True)
        self.state_["images"] = images
        self.state_["opt"] = torch.optim.Adam(
            [images], lr=cfg.lr_img, betas=tuple(cfg.betas), eps=1e-8
        )
        self.state_["relabel_seed"] = draw_seed(generator)
        self.state_["generator"] = generator
        if cfg.flatness > 0:  # EDC: the moving average of the images
            self.state_["ema"] = images.detach().clone()

    def _local_rows(self, k: int, ipc: int) -> torch.Tensor | None:
        """The rows (in image-index order, :func:`_by_image_index`) this rank recovers in a
        :mod:`ddkit.distributed` session: image indices ``RANK, RANK + N, ...`` of every class;
        ``None`` in a single process (all rows). Options whose loss couples the image indices
        are refused in one line, before any teacher is trained."""
        indices = distributed.local_indices(ipc)
        if indices is None:
            return None
        cfg, why = self.config, ""
        if cfg.bn_groups != "ipc":
            why = "bn_groups='all' matches the statistics of all images together"
        elif cfg.class_stats:
            why = "class_stats pools every image of a class"
        elif not indices:
            why = f"IPC {ipc} leaves rank {distributed.active().rank} without an image index"
        if why:
            raise ConfigError(
                f"{self.name} does not split by image index here: {why}; launch it without "
                "torchrun" + (" or with at most IPC processes" if not indices else "")
            )
        return torch.tensor([i * k + c for i in indices for c in range(k)])

    def _init_extra_teachers(self, train: ImageDataset) -> None:
        """EDC's further backbones (model names trained and cached with the first teacher's
        recipe, or network sources loaded) and, with ``class_stats``, each teacher's per-class
        statistics of the real images. A teacher without BatchNorm is refused here, before any
        recovery step."""
        cfg = self.config
        self.teachers_ = [self.teacher_]
        self.extra_dirs_ = []
        for model in cfg.extra_teachers:
            if is_source(model) or Path(model).exists():
                loaded = load_network(model, spec=train.spec, device=train.images.device)
                net, where = loaded.module, loaded.record.source
            else:
                net, folder = cached_teacher(
                    train, model, cache_root=cfg.teacher_cache, epochs=cfg.teacher_epochs,
                    lr=cfg.teacher_lr, seed=cfg.teacher_seed, progress=self.setup_progress_,
                )  # fmt: skip
                where = str(folder.resolve())
            self.teachers_.append(net)
            self.extra_dirs_.append(where)
        for net in self.teachers_:
            BNStatLoss(net)  # raises for a teacher without BatchNorm statistics
        k = train.spec.num_classes
        self.class_stats_ = (
            [class_bn_statistics(t, train.images, train.labels, k) for t in self.teachers_]
            if cfg.class_stats
            else None
        )

    def crop_schedule(self, image_size: tuple[int, int]) -> CropSchedule:
        """The crop schedule for images of ``image_size``: ``crop``, where ``"auto"`` is the
        scripts' (:attr:`scripts_crop`) from :data:`CROP_FROM_PIXELS` up and none below."""
        crop = self.config.crop
        if crop != "auto":
            return crop
        return self.scripts_crop if at_scripts_scale(image_size) else "none"

    def _views(self, iteration: int, g: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        """One draw of the recovery's augmentation for every image, as a function applying it
        to this rank's rows (:meth:`_local_rows`; all of them in a single process) in image-index
        order (EDC applies the same draw to the images and their moving average): CDA's
        random-resized crops (per image), then SRe2L's roll jitter and flip."""
        cfg = self.config
        h, w = self.train_.spec.image_size
        n = self.train_.spec.num_classes * self.ipc_
        boxes = None
        schedule = self.crop_schedule((h, w))
        if schedule != "none":
            floor = crop_scale_floor(
                iteration, self.total_, schedule, low=cfg.crop_min, milestone=cfg.crop_milestone
            )
            boxes = sample_boxes(n, (h, w), g, scale=(floor, 1.0), fit=True)
            boxes = boxes if self.rows_ is None else boxes[self.rows_]
        jit = cfg.jitter if cfg.jitter != "auto" else max(1, round(min(h, w) / 8))
        shift = torch.randint(-jit, jit + 1, (2,), generator=g).tolist() if jit > 0 else [0, 0]
        flip = (
            bool(torch.rand((), generator=g) < 0.5)
            if (cfg.flip if cfg.flip != "auto" else _dataset_flips(self.train_))
            else False
        )

        def apply(xb: torch.Tensor) -> torch.Tensor:
            if boxes is not None:
                xb = crop_resize(xb, boxes, (h, w))
            xb = torch.roll(xb, shifts=(shift[0], shift[1]), dims=(2, 3))
            return xb.flip(3) if flip else xb

        return apply

    def step(self, iteration: int) -> dict[str, float]:
        cfg, st = self.config, self.state_
        x, opt, g = st["images"], st["opt"], st["generator"]
        k, ipc = self.train_.spec.num_classes, self.ipc_
        total = max(self.total_, 1)
        for group in opt.param_groups:
            group["lr"] = cfg.lr_img * 0.5 * (1.0 + math.cos(math.pi * iteration / total))
        view = self._views(iteration, g)
        which = iteration % len(self.teachers_)  # EDC: the backbones take turns
        teacher = self.teachers_[which]
        # rows grouped by image index: group i holds image i of every class (SRe2L's batches)
        targets = torch.arange(k, device=x.device).repeat(ipc)
        xb = view(self._mine(_by_image_index(x, k, ipc)))
        targets = self._mine(targets)
        groups = ipc if cfg.bn_groups == "ipc" else 1
        per_group = k * ipc // groups  # the rows of one group: one of SRe2L's batches
        mine = groups if self.rows_ is None else len(self.rows_) // k  # this rank's groups
        with contextlib.ExitStack() as stack:
            bn = stack.enter_context(BNStatLoss(teacher, mine))
            cls = None
            if self.class_stats_ is not None:
                stats = self.class_stats_[which]
                cls = stack.enter_context(ClassStatLoss(teacher, stats, targets))
            logits = teacher(xb)
        # sum over groups of each group's mean CE == per-image gradients of separate runs
        ce = F.cross_entropy(logits, targets, reduction="sum") / per_group
        r_bn = bn.total(cfg.first_bn_multiplier)
        loss = ce + cfg.r_bn * r_bn
        metrics: dict[str, float] = {}
        if cls is not None:
            r_cls = cls.total(cfg.first_bn_multiplier)
            loss = loss + cfg.r_bn * cfg.class_weight * r_cls
            metrics["class_bn"] = float(r_cls.detach())
        if cfg.flatness > 0:
            ema = st["ema"]
            with torch.no_grad():
                ema_logits = teacher(view(self._mine(_by_image_index(ema, k, ipc))))
                ema.mul_(cfg.ema_decay).add_(x.detach(), alpha=1.0 - cfg.ema_decay)
            # like the CE: each group's mean, summed over the groups (the reference's batch mean)
            flat = flatness_loss(logits, ema_logits, rows=per_group)
            loss = loss + cfg.flatness * flat
            metrics["flatness"] = float(flat.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # the ranks' rows are disjoint: their gradients and sums add up to one process's
        names = sorted(metrics)
        values = [float(loss.detach()), float(ce.detach()), float(r_bn.detach())]
        values += [metrics[n] for n in names]
        sums = summed_over_ranks(x, torch.tensor(values, dtype=torch.float64)).tolist()
        opt.step()
        lo, hi = _pixel_bounds(self.train_)
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, hi), lo))
        # per group (as one of SRe2L's batches) but the class term, one for all the images
        out = {"loss": sums[0], "ce": sums[1] / groups, "bn": sums[2] / groups}
        out.update({n: v / (1 if n == "class_bn" else groups) for n, v in zip(names, sums[3:])})
        return out

    def _mine(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a tensor in image-index order (all of them in one process)."""
        return rows if self.rows_ is None else rows[self.rows_.to(rows.device)]

    def result(self) -> SyntheticSet:
        images = self.state_["images"].detach().clone()
        k = self.train_.spec.num_classes
        out = self._labelled(images, class_labels(k, self.ipc_))
        if self.extra_dirs_:
            out.meta["extra_teacher_dirs"] = list(self.extra_dirs_)
        return out


_CDA_SOURCE = "CDA TMLR'24, authors' README (recover_cda_*.py: cosine, milestone 1)"


@register_method
class CDA(SRe2L):
    """cda: SRe2L recovery with a crop-scale curriculum, whole images early and small crops late
    (Yin & Shen, TMLR 2024); ``sre2l`` with ``crop="cosine"``.

    The curriculum is the authors' ``recover_cda_*.py`` (floor ``0.08 + 0.92 (1 + cos(pi t /
    (m T))) / 2`` up to milestone ``m``, then 0.08; ``step`` / ``linear`` too), with their
    flips; otherwise sre2l's differences: crops per image, roll jitter in ``[-j, j]`` (theirs
    ``[0, j]``), every class in one batch.
    """

    name = "cda"
    scripts_crop: ClassVar[CropSchedule] = "cosine"
    scale_out = "images"  # sre2l's split by image index

    @dataclasses.dataclass(frozen=True)
    class Config(SRe2L.Config):
        crop: CropSchedule | Auto = "cosine"
        crop_min: float = 0.08
        crop_milestone: float = 1.0

    presets = (
        Preset("mnist5k", "*", {**_MNIST5K_TEACHER, "iterations": 500}, _CPU_TEACHER),
        Preset(
            "cifar100",
            "*",
            {"teacher_model": "resnet18", "lr_img": 0.4, "r_bn": 0.05, "iterations": 4000},
            _CDA_SOURCE + "; its Tiny-ImageNet values (the paper has no CIFAR run)",
        ),
        Preset(
            "tinyimagenet",
            "*",
            {**_TINY_TEACHER, "lr_img": 0.4, "r_bn": 0.05, "iterations": 4000, "jitter": 4},
            _CDA_SOURCE + "; its Tiny-ImageNet values (recover_cda_tiny.py: roll jitter 4)",
        ),
    )


@register_method
class EDC(SRe2L):
    """edc: SRe2L with real-image starts, per-class statistics, several teachers, an EMA
    flatness term and random-resized crops (Shao et al., NeurIPS 2024); ``sre2l`` with every
    EDC switch on.

    Differences from the authors' ``Branch_*/recover`` (docs/benchmarks/pretrained-and-labels.md;
    :mod:`.recipes`): starts are random real images (ImageNet: RDED's selections); no
    convolution-statistic hooks, so the first-layer multiplier falls on the first BN (theirs: the
    first convolution); no moving average of the batch statistics (``training_momentum``);
    class statistics pooled over un-augmented images and matched class by class; the flatness
    KL is a batch mean (theirs an element mean: ``flatness`` 1 is their weight K) and on, which
    their scripts leave off; the batches are sre2l's (one image per class), theirs class-major;
    their 0.08-1 crops only from :data:`CROP_FROM_PIXELS` up (``crop="auto"``), none on smaller
    images (chosen on mnist5k's validation split, where they cost accuracy on 28-px digits).
    """

    name = "edc"
    scale_out = "images"  # sre2l's split, with class_stats=false (per-class statistics couple)

    @dataclasses.dataclass(frozen=True)
    class Config(SRe2L.Config):
        init: Literal["real", "noise"] = "real"
        # EDC's scripts crop 0.08-1 (CIFAR to ImageNet); below CROP_FROM_PIXELS no crops (their
        # crops cost accuracy on 28-px digits on mnist5k's validation split)
        crop: CropSchedule | Auto = "auto"
        jitter: int | Auto = 0  # EDC's recovery has no roll jitter (crops and flips only)
        # the reference weighs the global and the class statistics 0.5 each under r_loss 0.01
        # (CIFAR / Tiny-ImageNet scripts): 0.005 on each term here (class_weight 1)
        r_bn: float = 0.005
        class_stats: bool = True
        extra_teachers: tuple[str, ...] = ("convnet2-bn",)
        flatness: float = 1.0

    # CIFAR-10 (Branch_CIFAR_10/recover/recover.sh, IPC 1): Adam lr 0.05, 75 iterations, r_loss
    # 0.01 (0.005 on each statistic term: the default), crops of scale 0.08-1, no jitter; its
    # eight backbones become the ddkit models nearest to them (ResNet-18 and ConvNets of widths
    # 128 / 32 and depths 1 / 2). The script does not pass --flatness (a store_true flag), so
    # its flatness term is off: flatness 0 here.
    presets = (
        Preset(
            "cifar10",
            "*",
            {
                "teacher_model": "resnet18",
                "extra_teachers": ("convnet3-bn", "convnet3-bn-w32", "convnet1-bn", "convnet2-bn"),
                "lr_img": 0.05,
                "iterations": 75,
                "flatness": 0.0,
                "crop": "fixed",  # the script's crops at 32 px (the default crops from 64 px)
            },
            "EDC NeurIPS'24, Branch_CIFAR_10/recover/recover.sh",
        ),
        Preset(
            "mnist5k",
            "*",
            {
                **_MNIST5K_TEACHER,
                "extra_teachers": ("convnet2-bn-w32",),
                "iterations": 500,
                "crop": "none",
                # as measured (sre2l's r_bn and jitter, EDC's defaults before issue 85)
                "r_bn": 0.01,
                "jitter": 4,
            },
            _CPU_TEACHER + "; a second, shallower teacher of the same width; no random-resized "
            "crops (SRe2L's small-image recipe), chosen on mnist5k's validation split at IPC 10 "
            "under teacher-kd (EDC's 0.08-1 crops, 0.5-1 crops and none tried: crops made for "
            "224-px images cost accuracy on 28-px digits; "
            "benchmarks/results/tune_decoupled_mnist5k_ipc10_edc_crop*.json)",
        ),
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        **_TEST_TEACHER,
        "extra_teachers": ("convnet2-bn-w8",),
    }


@register_method
class RDED(_TeacherMethod):
    """rded: stitch the teacher's most realistic random crops of real images (Sun et al., CVPR 2024).

    Against the authors' code (``LINs-lab/RDED``: ``synthesize/main.py``, ``utils.py``,
    ``validation/main.py``): candidates (``mipc`` random images per class), square crops
    scored by the teacher's cross-entropy to their class (a patch zero-padded to the full size),
    each image's best crop, then the class's ``ipc x factor^2`` best images, stitched
    ``factor x factor`` in the scripts' order: the same. Differences: the crop scale is
    ``scale="auto"``, the scripts' 0.08-1 from 64 px up but whole images below (validation on
    mnist5k: zoomed crops of 28-px digits lost 7 to 14 points, hard and soft labels alike); a
    patch is resampled from its source once (bilinear) where the scripts resize the cropped
    patch again (nearest); with fewer candidates than patches every crop of the class is ranked
    (the scripts would fail); labels are stored (``labels``, the budgets) or asked of the
    teacher at evaluation (``teacher-kd``) where the scripts' student asks it on every batch;
    stitched sets train on RDED's own views with ``augment="patches:F"``
    (:mod:`ddkit.augment.patches`).
    """

    name = "rded"
    scale_out = "images"  # the candidates' crops scored by image index, gathered in order
    # Stitching (factor 2) relies on RDED's training-time views (patches shuffled, then a
    # random-resized crop of scale 1/factor..1: `augment="patches:2"`). On 28-px digits a stitched
    # set fails even under them: the student learns 14-px digits and is tested on 28-px ones
    # (benchmarks/results/tune_rded_mnist5k_ipc10_hard_factor*.json, on a validation split).
    # DD-Ranking's RDED CIFAR-10 config also uses one patch per image (ShufflePatches(1)), so the
    # default stitches only from CROP_FROM_PIXELS up (Tiny-ImageNet/ImageNet scale).

    @dataclasses.dataclass(frozen=True)
    class Config(TeacherConfig):
        factor: int | Auto = "auto"  # patches per side (auto: 2 for images >= 64 px, else 1)
        num_crops: int = 5  # random crops scored per candidate image (RDED scripts: 5)
        candidates: int = 300  # real images drawn per class (RDED's mipc; 0: all)
        # crop area fraction (auto: RDED's 0.08-1 from 64 px up, whole images below)
        scale: tuple[float, float] | Auto = "auto"
        store_region_labels: bool = False  # also keep per-region soft labels in extras

        rules = {"factor": AT_LEAST_ONE, "num_crops": AT_LEAST_ONE, "candidates": NON_NEGATIVE}
        aliases = {
            "factor": Alias("factor", none_to_auto),
            "candidates": Alias("candidates", lambda v, _: 0 if v is None else v),
        }

        def check(self) -> None:
            super().check()
            if self.scale != "auto" and not 0 < self.scale[0] <= self.scale[1] <= 1:
                raise ConfigError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")

    presets = (
        Preset("mnist5k", "*", _MNIST5K_TEACHER, _CPU_TEACHER),
        Preset("tinyimagenet", "*", _TINY_TEACHER, "RDED CVPR'24: the SRe2L Tiny-ImageNet teacher"),
    )
    # fewer candidates than a tiny class has, so the seed draws them (whole images below 64 px
    # leave the candidates' draw as the method's only randomness)
    test_overrides: ClassVar[dict[str, Any]] = {**_TEST_TEACHER, "num_crops": 2, "candidates": 8}

    def _scale(self, train: ImageDataset) -> tuple[float, float]:
        """The crops' area fraction: the scripts' 0.08-1 from :data:`CROP_FROM_PIXELS` up;
        below, whole images (zoomed crops of small images lose, module docstring)."""
        if self.config.scale != "auto":
            return tuple(self.config.scale)
        return (0.08, 1.0) if at_scripts_scale(train.spec.image_size) else (1.0, 1.0)

    def _factor(self, train: ImageDataset) -> int:
        f = self.config.factor
        if f == "auto":
            f = 2 if at_scripts_scale(train.spec.image_size) else 1
        if f < 1 or f > min(train.spec.image_size):
            raise ConfigError(f"factor must be in [1, {min(train.spec.image_size)}], got {f}")
        return int(f)

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        cfg = self.config
        f = self._factor(train)
        if f > 1 and cfg.labels == "soft" and cfg.label_budget == "regen":
            raise ConfigError(
                "label_budget=regen recomputes labels from the stored images or views, not "
                f"RDED's per-region labels (factor {f}): use labels='views' or another budget"
            )
        self._init_teacher(train)
        n_patch = ipc * f * f
        h, w = train.spec.image_size
        ph, pw = h // f, w // f
        # 1. candidate real images per class (seeded), 2. num_crops random crops each
        cand = []
        for c in range(train.spec.num_classes):
            ix = train.class_indices[c]
            m = len(ix) if cfg.candidates == 0 else min(len(ix), int(cfg.candidates))
            cand.append(ix[torch.randperm(len(ix), generator=generator)[:m]])
        src = torch.cat(cand).cpu()  # the selection's bookkeeping stays on the CPU
        counts = [len(c) for c in cand]
        r = cfg.num_crops
        boxes = sample_boxes(
            len(src) * r, (h, w), generator, scale=self._scale(train), ratio=(1.0, 1.0)
        )
        src_r = src.repeat_interleave(r)

        # 3. realism score: teacher cross-entropy to the class of the crop (zero-padded to full size)
        def crop_ce(rows: torch.Tensor) -> torch.Tensor:
            xin = self._score_input(train.images[src_r[rows]], boxes[rows], (ph, pw), (h, w))
            return F.cross_entropy(self.teacher_(xin), train.labels[src_r[rows]], reduction="none")

        ce = self._scores(crop_ce, len(src), r, inference_batch(self.teacher_)).cpu()
        # 4. per image keep its most realistic crop (first on ties), 5. per class the best n_patch
        best = torch.argsort(ce, dim=1, stable=True)[:, 0]
        best_ce = ce[torch.arange(len(src)), best]
        sel_src, sel_box, sel_ce = [], [], []
        start = 0
        for m in counts:
            rows = torch.arange(start, start + m)
            start += m
            if m >= n_patch:  # diversity: at most one crop per source image
                order = rows[torch.argsort(best_ce[rows], stable=True)[:n_patch]]
                flat = order * r + best[order]
            else:  # too few images for distinct sources: rank every crop of the class
                flat_all = (rows.unsqueeze(1) * r + torch.arange(r)).flatten()
                flat = flat_all[torch.argsort(ce.flatten()[flat_all], stable=True)]
                flat = flat.repeat(math.ceil(n_patch / len(flat)))[:n_patch]
            sel_src.append(src_r[flat])
            sel_box.append(boxes[flat])
            sel_ce.append(ce.flatten()[flat])
        self.state_["src"] = torch.stack(sel_src)  # (K, n_patch), best first
        self.state_["boxes"] = torch.stack(sel_box)  # (K, n_patch, 4)
        self.state_["scores"] = torch.stack(sel_ce)
        self.state_["relabel_seed"] = draw_seed(generator)

    @staticmethod
    def _scores(
        crop_ce: Callable[[torch.Tensor], torch.Tensor], n: int, r: int, batch: int
    ) -> torch.Tensor:
        """The ``(n, r)`` realism scores of the ``r`` crops of each of ``n`` candidate images. In
        a :mod:`ddkit.distributed` session each rank scores the crops of candidates
        ``RANK, RANK + N, ...`` (the crops were drawn for every candidate, as one process draws
        them) and every rank gets every row, in order (:func:`distributed.all_gather_shards`);
        the teacher scores each crop alone, so the rows are those of one process; ``batch``
        crops at a time."""
        mine = distributed.local_indices(n)
        if mine is None:
            return predict(crop_ce, torch.arange(n * r), batch_size=batch).view(n, r)
        rows = (torch.tensor(mine, dtype=torch.long).unsqueeze(1) * r + torch.arange(r)).flatten()
        local = predict(crop_ce, rows, batch_size=batch) if len(rows) else torch.empty(0)
        return distributed.all_gather_shards(local.view(len(mine), r))

    @staticmethod
    def _score_input(
        x: torch.Tensor, boxes: torch.Tensor, patch: tuple[int, int], full: tuple[int, int]
    ) -> torch.Tensor:
        crops = crop_resize(x, boxes, patch)
        dh, dw = full[0] - patch[0], full[1] - patch[1]
        return F.pad(crops, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))

    def step(self, iteration: int) -> dict[str, float]:
        return {}

    def result(self) -> SyntheticSet:
        train, cfg = self.train_, self.config
        k, ipc = train.spec.num_classes, self.ipc_
        f = self._factor(train)
        h, w = train.spec.image_size
        src, boxes = self.state_["src"], self.state_["boxes"]
        # region sizes as RDED's mix_images: the first (size % f) rows/cols are one pixel larger
        hs = [h // f + (1 if i < h % f else 0) for i in range(f)]
        ws = [w // f + (1 if j < w % f else 0) for j in range(f)]
        images = torch.zeros((k * ipc, *train.spec.shape), device=train.images.device)
        region_probs = []
        pos = 0
        y = 0
        for i in range(f):
            x0 = 0
            for j in range(f):
                # position `pos` of image t of class c takes patch pos*ipc + t (RDED's order)
                sl = slice(pos * ipc, (pos + 1) * ipc)
                s, b = src[:, sl].flatten(), boxes[:, sl].reshape(-1, 4)
                images[:, :, y : y + hs[i], x0 : x0 + ws[j]] = crop_resize(
                    train.images[s], b, (hs[i], ws[j])
                )
                if cfg.labels == "soft" and f > 1:
                    xin = self._score_input(train.images[s], b, (h // f, w // f), (h, w))
                    region_probs.append(teacher_probs(self.teacher_, xin, cfg.label_temperature))
                x0 += ws[j]
                pos += 1
            y += hs[i]
        probs = torch.stack(region_probs, 1).mean(1) if region_probs else None
        out = self._labelled(images, class_labels(k, ipc), probs)
        if region_probs and cfg.store_region_labels:
            out.extras["region_labels"] = torch.stack(region_probs, 1).to(torch.float16)
        out.meta.update({"factor": f, "mean_selected_ce": float(self.state_["scores"].mean())})
        return out
