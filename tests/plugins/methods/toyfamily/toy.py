"""``toy``: random real images pulled a step towards their class mean per iteration."""

from __future__ import annotations

import dataclasses

import torch

from ddkit.data.dataset import ImageDataset, class_labels
from ddkit.data.synthetic import SyntheticSet
from ddkit.methods.base import Distiller, MethodConfig, register_method
from ddkit.methods.common import initial_images
from ddkit.methods.config import interval


@dataclasses.dataclass(frozen=True)
class ToyConfig(MethodConfig):
    iterations: int = 5
    pull: float = 0.1  # fraction of the way to the class mean per iteration

    rules = {"pull": interval(0, 1)}


@register_method
class Toy(Distiller):
    """toy: random real images pulled towards their class mean (a test family)."""

    name = "toy"
    Config = ToyConfig

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        k = train.spec.num_classes
        self.means_ = torch.stack([train.images[train.labels == c].mean(0) for c in range(k)])
        self.state_["images"] = initial_images(train, ipc, generator)

    def step(self, iteration: int) -> dict[str, float]:
        x = self.state_["images"]
        target = self.means_.repeat_interleave(len(x) // len(self.means_), 0)
        self.state_["images"] = x + self.config.pull * (target - x)
        return {"distance": float((self.state_["images"] - target).norm())}

    def result(self) -> SyntheticSet:
        k = self.train_.spec.num_classes
        return SyntheticSet(self.state_["images"], class_labels(k, self.ipc_), self.train_.spec)
