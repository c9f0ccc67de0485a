"""Coreset selectors: methods whose synthetic set is a class-balanced subset of real images."""

from __future__ import annotations

import dataclasses

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.methods.base import Distiller, MethodConfig, register_method


class Selector(Distiller):
    """A :class:`Distiller` that picks ``ipc`` real rows per class; subclasses implement
    :meth:`select`. Selection happens in ``init``; there are no iterations."""

    kind = "selector"
    needs = "differentiable"

    def select(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        """Return row indices into ``train``: exactly ``ipc`` per class, class by class."""
        raise NotImplementedError

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        index = torch.as_tensor(self.select(train, ipc, generator), dtype=torch.long).flatten()
        self.state_["index"] = index

    def step(self, iteration: int) -> dict[str, float]:
        return {}

    def distilled_with(self) -> None:
        """None: the rows are real, whichever network scored them."""
        return None

    def result(self) -> SyntheticSet:
        index = self.state_["index"]
        return SyntheticSet.from_real(self.train_, index, meta={"indices": index.tolist()})


@register_method
class RandomSelector(Selector):
    """random: ipc real images per class drawn uniformly without replacement."""

    name = "random"

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        pass

    def select(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        return train.sample_per_class(ipc, generator).flatten()
