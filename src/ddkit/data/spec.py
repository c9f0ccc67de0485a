"""`DatasetSpec`: what a model and a synthetic set need to know about a dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ddkit.errors import DataError, FileFormatError


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of an image classification dataset.

    ``mean``/``std`` are per-channel statistics of the *train* split in the raw pixel scale
    (``[0, 1]`` for 8-bit images); stored images are ``(x - mean) / std``.
    ``transform`` names an extra whitening applied after normalisation (``"zca"``) or is ``None``.
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(default=())
    transform: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        names = tuple(self.class_names) or tuple(str(i) for i in range(self.num_classes))
        object.__setattr__(self, "class_names", names)
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError("mean/std must have one value per channel")
        if len(self.class_names) != self.num_classes:
            raise DataError("class_names must have one entry per class")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        return (self.channels, *self.image_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["mean"], d["std"], d["class_names"] = (
            list(self.mean),
            list(self.std),
            list(self.class_names),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        try:
            return cls(
                name=str(d["name"]),
                num_classes=int(d["num_classes"]),
                channels=int(d["channels"]),
                image_size=tuple(d["image_size"]),
                mean=tuple(d["mean"]),
                std=tuple(d["std"]),
                class_names=tuple(d.get("class_names", ())),
                transform=d.get("transform"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise FileFormatError(f"invalid dataset spec in metadata: {e}") from None
