"""Evaluation protocols as data: how fresh networks are trained on a synthetic set."""

from __future__ import annotations

import math
from dataclasses import InitVar, asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ddkit.errors import ConfigError, warn_at_caller
from ddkit.levers import Switch, check_switch, exact_mode, resolve_precision
from ddkit.registry import Registry

if TYPE_CHECKING:
    import torch

TARGETS = ("hard", "stored", "teacher")
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "warmup-cosine")
MIXES = ("cutmix", "mixup")
PRECISIONS = ("fp32", "bf16", "auto")
VIEWS = ("all", "one")
# the ``label_mode`` values of earlier versions, as ``targets``
_LEGACY_TARGETS = {"auto": "stored", "hard": "hard", "teacher-kd": "teacher"}


@dataclass(frozen=True)
class EvalProtocol:
    """How to train and test fresh networks on a (synthetic) training set.

    Accuracy is always the *final-epoch* test accuracy of each of ``runs`` fresh networks per
    model; nothing is selected on the test split.

    ``targets`` says what the networks are trained to predict:

    * ``"stored"``: the set's labels as stored (hard classes, soft probabilities, or, for sets
      with FKD per-view labels, every stored view with its own label);
    * ``"hard"``: the argmax of the set's labels (one class per image);
    * ``"teacher"``: a teacher's output on every augmented, mixed batch (knowledge
      distillation); :func:`ddkit.eval.evaluate` fetches the teacher.

    ``views`` says how a set with FKD per-view labels is walked under ``"stored"``: ``"all"``
    trains every epoch on every stored view; ``"one"`` trains epoch ``e`` on one view of each
    image, view ``e mod V`` of its ``V`` stored (kept) views, as FKD and SRe2L's relabel store
    one view per image per epoch and train each epoch on its own (Shen & Xing, ECCV 2022).

    ``loss`` says how predictions meet targets:

    * ``"cross_entropy"``: cross-entropy against the class (hard targets) or against the
      probability vector (soft targets, with logits and teacher divided by ``temperature`` and
      the loss scaled by ``temperature**2``);
    * ``"mse"``: mean squared error between the network's outputs (raw, no softmax) and the
      target vector, averaged over the ``K`` outputs, as in kernel-regression methods (KIP,
      FRePo). Hard targets become one-hot vectors (1 for the class, 0 elsewhere); soft targets
      are regressed as they are. ``temperature`` only softens a teacher's targets.
    """

    name: str
    epochs: int
    lr: float = 0.01
    use_learned_lr: bool = True  # use a set's learned lr (MTT/TESLA/DATM) when it has one
    optimizer: str = "sgd"  # sgd | adamw | adam (L2 decay, the graph protocol)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    # step (x0.1 at half the epochs) | cosine | constant | warmup-cosine (FRePo's evaluation)
    schedule: str = "step"
    # None | "dsa" (strategy by dataset) | an explicit DSA strategy | "dc" (DC's own, by dataset)
    augment: str | None = None
    targets: str = "stored"  # stored | hard | teacher (see the class docstring)
    views: str = "all"  # all | one: the stored views an epoch trains on (class docstring)
    loss: str = "cross_entropy"  # cross_entropy | mse
    temperature: float = 1.0  # KD temperature for soft / teacher targets
    mix: str | None = None  # None | mixup | cutmix (soft-label recipes)
    mix_alpha: float = 1.0
    models: tuple[str, ...] = ("convnet",)
    runs: int = 5
    # the speed levers (ddkit.levers; they change rounding only): fp32 | bf16 (autocast) | auto
    # (bf16 where the hardware has it, fp32 in exact mode)
    precision: str = "fp32"
    # torch.compile (inductor) the training forward, eager where unavailable; auto: where it
    # pays (runs of COMPILE_MIN_STEPS steps per network or more), off in exact mode
    compile: Switch = False
    # batches in channels-last memory format for the convolutions; auto: when compiled
    channels_last: Switch = False
    # (compile and channels_last apply to one-by-one training; the vmap path ignores them)
    # deprecated spelling of ``targets``, still accepted by the constructor and ``replace``;
    # reading ``p.label_mode`` gives None: ask ``p.targets`` / ``p.needs_teacher``
    label_mode: InitVar[str | None] = None

    def __post_init__(self, label_mode: str | None) -> None:
        if label_mode is not None:
            warn_at_caller(
                "EvalProtocol(label_mode=...) is deprecated; use targets='stored'|'hard'|'teacher'",
                DeprecationWarning,
            )
            object.__setattr__(self, "targets", _LEGACY_TARGETS.get(label_mode, label_mode))
        object.__setattr__(self, "models", tuple(self.models))
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be > 0 and finite, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.runs >= 1, f"runs must be >= 1, got {self.runs}"),
            (
                self.optimizer in OPTIMIZERS,
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}",
            ),
            (
                self.schedule in SCHEDULES,
                f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}",
            ),
            (
                self.targets in TARGETS,
                f"unknown targets {self.targets!r}; valid: {', '.join(TARGETS)}",
            ),
            (self.loss in LOSSES, f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}"),
            (self.views in VIEWS, f"unknown views {self.views!r}; valid: {', '.join(VIEWS)}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (
                self.mix is None or self.mix in MIXES,
                f"unknown mix {self.mix!r}; valid: {', '.join(MIXES)}",
            ),
            (len(self.models) >= 1, "at least one model is needed"),
            (
                self.precision in PRECISIONS,
                f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}",
            ),
            (
                check_switch(self.channels_last),
                f"channels_last must be true, false or auto, got {self.channels_last!r}",
            ),
            (
                check_switch(self.compile),
                f"compile must be true, false or auto, got {self.compile!r}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"protocol {self.name!r}: {msg}")

    @property
    def needs_teacher(self) -> bool:
        """Whether training asks a teacher for its targets (``targets == "teacher"``)."""
        return self.targets == "teacher"

    @property
    def uses_stored_labels(self) -> bool:
        """Whether training uses the set's labels as stored (soft and per-view labels included)."""
        return self.targets == "stored"

    def settled(self, device: torch.device | str = "cpu") -> EvalProtocol:
        """A copy whose ``"auto"`` levers say what this process will compute: in exact mode all
        off (fp32, eager: the protocol of the days before ``"auto"``); else the precision the
        hardware gives, with ``compile`` / ``channels_last`` left to each run's length. The
        identity of a kept unit (audit checkpoints) is this, not the raw fields, so exact-mode
        runs resume the units of the days before ``"auto"`` and never mix with fast ones."""
        exact = exact_mode()
        return replace(
            self,
            precision=resolve_precision(self.precision, device),
            compile=False if exact and self.compile == "auto" else self.compile,
            channels_last=False if exact and self.channels_last == "auto" else self.channels_last,
        )

    def with_(self, **changes: Any) -> EvalProtocol:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalProtocol:
        """The protocol :meth:`to_dict` wrote; dicts of earlier versions (``label_mode``) too."""
        d = dict(d)
        legacy = d.pop("label_mode", None)
        if legacy is not None and "targets" not in d:
            d["targets"] = _LEGACY_TARGETS.get(legacy, legacy)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown protocol fields {unknown}; valid: {', '.join(sorted(known))}"
            )
        return cls(**d)


PROTOCOLS: Registry[EvalProtocol] = Registry("protocol")


def register_protocol(p: EvalProtocol, help: str) -> EvalProtocol:
    PROTOCOLS.add(p.name, p, help=help)
    return p


#: The speed levers of the protocols validated with them (BENCHMARKS.md "Fast by default"):
#: bf16 autocast and compilation where they pay, none in exact mode (ddkit.levers).
AUTO_LEVERS = {"precision": "auto", "compile": "auto", "channels_last": "auto"}

register_protocol(
    EvalProtocol(name="dc", epochs=300, **AUTO_LEVERS),
    "DC/DM standard: SGD 0.01 mom 0.9 wd 5e-4, x0.1 at half, batch 256, 300 epochs, no augmentation",
)
register_protocol(
    EvalProtocol(name="dsa", epochs=1000, augment="dsa", **AUTO_LEVERS),
    "DSA standard: as dc, 1000 epochs with DSA augmentation",
)
register_protocol(
    EvalProtocol(name="dc_aug", epochs=1000, augment="dc", **AUTO_LEVERS),
    "DC's own MNIST recipe: as dc, with DC's per-image crop/scale/rotate augmentation, 1000 "
    "epochs (its code trains 1000 whenever it augments, and augments MNIST only: elsewhere use dc)",
)
register_protocol(
    EvalProtocol(name="fast", epochs=100, augment="dsa", runs=3, **AUTO_LEVERS),
    "quick check: as dsa, 100 epochs, 3 runs",
)
register_protocol(
    EvalProtocol(name="mse", epochs=300, loss="mse"),
    "kernel-method recipe: as dc, MSE against the stored label vectors (learned regression "
    "labels of kip/frepo; one-hot for class labels)",
)
register_protocol(
    EvalProtocol(
        name="frepo", epochs=1000, lr=3e-4, optimizer="adam", weight_decay=0.0, batch_size=500,
        schedule="warmup-cosine", augment="dsa", loss="mse", models=("frepoconv-none",),
    ),
    "FRePo's own evaluation (its code's eval script): its ConvNet without normalisation, MSE "
    "against the stored (learned) labels, Adam 3e-4, 500 epochs of warm-up then cosine to 1 %, "
    "batch 500, 1000 epochs (one step each up to 500 images; its code trains 2000 steps on 100 "
    "images: --epochs), DSA augmentation (its code: colour, crop, rotate, translate, cutout)",
)  # fmt: skip
register_protocol(
    EvalProtocol(name="tabular", epochs=300, models=("mlp",)),
    "tables: as dc (300 epochs, no augmentation) on the mlp network; `ddkit evaluate "
    "--learners` adds logistic regression, k-NN, random forest, gradient boosting",
)
register_protocol(
    EvalProtocol(name="series", epochs=300, models=("conv1d",)),
    "time series: as dc (300 epochs, no augmentation) on the conv1d network; `ddkit evaluate "
    "--learners` adds resnet1d, MiniRocket and k-NN",
)
register_protocol(
    EvalProtocol(
        name="graph", epochs=600, lr=0.01, optimizer="adam", weight_decay=5e-4,
        schedule="constant", models=("gcn",),
    ),
    "graph node classification (ddkit.eval.graph): a 2-layer GCN (hidden 256, dropout 0.5) "
    "trained full-batch on the set's nodes and adjacency, tested on the real graph's test nodes; "
    "GCond's recipe (Adam, lr 0.01, weight decay 5e-4, 600 epochs)",
)  # fmt: skip
register_protocol(
    EvalProtocol(name="smoke", epochs=5, runs=2),
    "seconds-long smoke test (5 epochs, 2 runs): checks plumbing, not accuracy",
)

# Soft-label protocols.
# Soft-label evaluation protocols (registered on import) and teacher-aware evaluation.
#
# ``soft``: train on the set's stored soft labels (as they are: they already carry the relabel
# temperature recorded in ``meta['label_temperature']``; the student uses T = 1). A set with FKD
# per-view labels is trained on all its stored views, each with its own label
# (:func:`ddkit.eval.evaluate` expands them).
# ``teacher-kd``: ask the teacher about every augmented, mixed batch (knowledge distillation with
# temperature 20).
#
# Both follow the published soft-label recipes: AdamW, weight decay 0.01, cosine schedule,
# 300 epochs, CutMix (beta 1.0), small batches (SRe2L's CIFAR relabel script: AdamW / wd 0.01,
# cosine; RDED ``argument.py``: T = 20 with CutMix, 4 with Mixup, batch 50 for 10 classes;
# DD-Ranking's RDED CIFAR-10 config: ConvNet-3, AdamW, cosine, wd 0.01, T = 20, CutMix beta 1,
# 300 epochs, batch 50, teacher on the fly, ``default_lr`` 0.01). SRe2L's ImageNet FKD recipe also
# uses T = 20 with CutMix.
#
# The learning rate is 0.01 (DD-Ranking's ``default_lr``), not the 1e-3 of the SRe2L/RDED scripts:
# with 1e-3, ConvNet-3 students under teacher KD + CutMix stayed near chance after 300 epochs on
# a *validation* split carved out of digits' train split, while 0.01 trained them (the test split
# was not used for this choice). The student is ddkit's default ConvNet-3 (instance
# norm) so the numbers sit next to the hard-label protocols; the augmentation is DSA
# (dataset-appropriate, no flips for digits) as a stand-in for random-resized-crop + flip. The KD
# loss is soft cross-entropy times T^2 (the same gradients as KL divergence up to the constant T^2
# factor, which AdamW absorbs).
#
# Benchmarks on CPU scale ``epochs`` down (``evaluate(..., epochs=E)``) and say so.

KD_TEMPERATURE = 20.0

_SOFT = dict(
    epochs=300,
    lr=1e-2,
    use_learned_lr=False,
    optimizer="adamw",
    weight_decay=0.01,
    batch_size=50,
    schedule="cosine",
    augment="dsa",
    mix="cutmix",
    mix_alpha=1.0,
    models=("convnet",),
    runs=5,
)
register_protocol(
    EvalProtocol(name="soft", targets="stored", temperature=1.0, **_SOFT),
    "soft labels as stored: AdamW 1e-2 wd 0.01, cosine, CutMix, DSA, batch 50, 300 epochs (SRe2L/RDED)",
)
register_protocol(
    EvalProtocol(name="soft-fkd", targets="stored", views="one", temperature=1.0, **_SOFT),
    "as soft, a per-view labelled set walked as FKD does: epoch e trains on each image's view e mod V",
)
register_protocol(
    EvalProtocol(name="teacher-kd", targets="teacher", temperature=KD_TEMPERATURE, **_SOFT),
    "teacher KD on every augmented batch, T=20: AdamW 1e-2 wd 0.01, cosine, CutMix, 300 epochs (SRe2L/RDED)",
)


def get_protocol(name_or_protocol: str | EvalProtocol) -> EvalProtocol:
    if isinstance(name_or_protocol, EvalProtocol):
        return name_or_protocol
    return PROTOCOLS.get(name_or_protocol)
