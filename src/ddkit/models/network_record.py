"""What a network loaded from outside is (:mod:`ddkit.models.external`,
:mod:`ddkit.models.pretrained`): the loaded module with its :class:`NetworkRecord`, and the
class-count check both loaders make."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError


@dataclass(frozen=True)
class NetworkRecord:
    """What :func:`load_network` loaded: the normalised ``source`` string (absolute paths),
    its ``kind`` (``teacher``, ``file``, ``hf``, ``timm``, ``torchvision``, ``module``), the
    architecture ``model``, the SHA-256 and bytes of the weights (``None`` / 0 where there is
    no file), the class count (``None``: a backbone) and the ``(C, H, W)`` the network takes."""

    source: str
    kind: str
    model: str
    num_classes: int | None
    input_size: tuple[int, int, int] | None
    sha256: str | None
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON (what a set's ``meta['teacher']`` holds)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size) if self.input_size else None
        return d


@dataclass(frozen=True)
class ExternalNetwork:
    """A loaded network (eval mode, parameters frozen) and its :class:`NetworkRecord`."""

    module: nn.Module
    record: NetworkRecord


def refuse_classes(where: str, found: int, spec: DatasetSpec) -> None:
    """One line when a network's ``found`` classes are not the dataset's."""
    if found != spec.num_classes:
        raise ConfigError(
            f"{where} has {found} classes; dataset {spec.name!r} has {spec.num_classes} "
            "(use a network trained on this dataset's classes)"
        )
