"""Evaluation protocols as data: how fresh networks are trained on a synthetic set."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ddkit.errors import ConfigError
from ddkit.registry import Registry


@dataclass(frozen=True)
class EvalProtocol:
    """How to train and test fresh networks on a (synthetic) training set.

    Accuracy is always the *final-epoch* test accuracy of each of ``runs`` fresh networks per
    model; nothing is selected on the test split.
    """

    name: str
    epochs: int
    lr: float = 0.01
    use_learned_lr: bool = True  # use a set's learned lr (MTT/TESLA/DATM) when it has one
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    schedule: str = "step"  # step (x0.1 at half the epochs) | cosine | constant
    augment: str | None = None  # None | "dsa" (strategy by dataset) | an explicit DSA strategy
    label_mode: str = "auto"  # auto (the set's labels) | hard (argmax) | teacher-kd
    temperature: float = 1.0  # KD temperature for soft / teacher-kd targets
    mix: str | None = None  # None | mixup | cutmix (soft-label recipes)
    mix_alpha: float = 1.0
    models: tuple[str, ...] = ("convnet",)
    runs: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.runs >= 1, f"runs must be >= 1, got {self.runs}"),
            (
                self.optimizer in ("sgd", "adamw"),
                f"unknown optimizer {self.optimizer!r}; valid: adamw, sgd",
            ),
            (
                self.schedule in ("step", "cosine", "constant"),
                f"unknown schedule {self.schedule!r}; valid: constant, cosine, step",
            ),
            (
                self.label_mode in ("auto", "hard", "teacher-kd"),
                f"unknown label_mode {self.label_mode!r}; valid: auto, hard, teacher-kd",
            ),
            (
                self.mix in (None, "mixup", "cutmix"),
                f"unknown mix {self.mix!r}; valid: cutmix, mixup",
            ),
            (len(self.models) >= 1, "at least one model is needed"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"protocol {self.name!r}: {msg}")

    def with_(self, **changes: Any) -> EvalProtocol:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        return d


PROTOCOLS: Registry[EvalProtocol] = Registry("protocol")


def register_protocol(p: EvalProtocol, help: str) -> EvalProtocol:
    PROTOCOLS.add(p.name, p, help=help)
    return p


register_protocol(
    EvalProtocol(name="dc", epochs=300),
    "DC/DM standard: SGD 0.01 mom 0.9 wd 5e-4, x0.1 at half, batch 256, 300 epochs, no augmentation",
)
register_protocol(
    EvalProtocol(name="dsa", epochs=1000, augment="dsa"),
    "DSA standard: as dc, 1000 epochs with DSA augmentation",
)
register_protocol(
    EvalProtocol(name="fast", epochs=100, augment="dsa", runs=3),
    "quick check: as dsa, 100 epochs, 3 runs",
)
register_protocol(
    EvalProtocol(name="smoke", epochs=5, runs=2),
    "seconds-long smoke test (5 epochs, 2 runs): checks plumbing, not accuracy",
)


def get_protocol(name_or_protocol: str | EvalProtocol) -> EvalProtocol:
    if isinstance(name_or_protocol, EvalProtocol):
        return name_or_protocol
    return PROTOCOLS.get(name_or_protocol)
