"""The codec contract, the codec registry and the decoding of a saved set."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError
from ddkit.registry import Registry

LABEL_BYTES = 8  # one int64 hard label
#: extras key of undecoded multi-formation images (IDC / IDM sets)
STORED_IMAGES = "formation.stored"


def label_bytes(vectors: bool, num_classes: int) -> int:
    """Bytes of one stored label: a float32 vector (soft or learned) or a hard label."""
    return 4 * num_classes if vectors else LABEL_BYTES


def image_bytes(spec: DatasetSpec) -> int:
    """Bytes of one float32 image of ``spec``."""
    return 4 * math.prod(spec.shape)


class Codec:
    """Stored tensor <-> training images. A subclass sets ``name``, ``argument`` (the type of
    the number after ``name:`` in its spec string, or ``None`` when it takes none) and
    ``usage`` (its spec string with the argument's range, for messages), registers itself with
    :func:`register_codec` and implements the methods below.

    ``label_bytes`` is what one training image's label costs (:func:`label_bytes`): the budget
    of ``ipc`` plain images per class includes their labels of the same kind, and every emitted
    image pays for its own."""

    name: ClassVar[str] = "codec"
    help: ClassVar[str] = ""  # one line for ``ddkit list``
    argument: ClassVar[type | None] = None
    usage: ClassVar[str] = "codec"
    #: whether a saved set's bytes are the tensors :meth:`record` returns (plus its labels)
    #: rather than its images
    counts_stored: ClassVar[bool] = False
    #: a spec string the conformance suite builds this codec from (small and quick)
    example: ClassVar[str] = "codec"
    #: attributes the conformance suite sets to make the codec quick (e.g. fewer steps)
    test_settings: ClassVar[dict[str, Any]] = {}
    label_bytes = LABEL_BYTES

    def __init__(self, value: Any = None) -> None:
        """``value``: the number after ``name:`` (``None`` for a codec that takes none)."""

    def fit(self, train: ImageDataset) -> None:
        """Learn anything shared from the real training images (default: nothing)."""

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        """Training images per class that fit the bytes of ``ipc`` plain images per class."""
        raise NotImplementedError

    def real_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        """Real images per class :meth:`encode` needs to start from."""
        return self.emitted_per_class(ipc, spec)

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The stored tensor that starts from real ``images`` (class-major); anything random
        in it is drawn from ``generator``."""
        raise NotImplementedError

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """Training images ``(N, C, H, W)``, class-major, differentiable in ``stored``."""
        raise NotImplementedError

    def record(
        self, stored: torch.Tensor, spec: DatasetSpec
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What a saved set keeps beside its decoded images: metadata and the tensors it is
        decoded from (``SyntheticSet.from_codec`` writes them; :meth:`restore` reads them)."""
        return {}, {}

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        """Rebuild what :meth:`fit` learned from a saved set's ``meta`` and ``extras`` and
        return its stored tensor (``None``: the set stores its images themselves)."""
        return None

    @property
    def spec_string(self) -> str:
        return self.name


CODECS: Registry[type[Codec]] = Registry("codec")


#: class decorator: register a codec under its ``name`` (help: its docstring's first line)
register_codec = CODECS.add_class


def codec_usage() -> str:
    """Every registered codec's spec string, for messages: ``pixels, formation:F (F >= 1), ...``."""
    return ", ".join(CODECS.get(name).usage for name in CODECS.names())


def make_codec(spec: str) -> Codec:
    """A codec from its spec string ``name`` or ``name:value`` (e.g. ``pixels``,
    ``formation:2``, ``fred:0.25``); each codec checks the range of its value."""
    name, sep, arg = str(spec).partition(":")
    if name not in CODECS:
        raise ConfigError(f"unknown codec {spec!r}; valid: {codec_usage()}")
    cls = CODECS.get(name)
    if cls.argument is None:
        if sep:
            raise ConfigError(f"codec {name} takes no argument, got {spec!r}")
        return cls()
    try:
        value = cls.argument(arg)
    except ValueError:
        raise ConfigError(f"codec {spec!r}: {name} needs a number after ':'") from None
    return cls(value)


def decode_saved(
    spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
) -> torch.Tensor | None:
    """The training images of a saved set decoded from its stored tensors (``meta['codec']``,
    or IDM's multi-formation images), or ``None`` for a set that stores its images."""
    name = meta.get("codec")
    if name is None and STORED_IMAGES in extras and "formation_factor" in meta:
        name = f"formation:{int(meta['formation_factor'])}"
    if name is None:
        return None
    codec = make_codec(name)
    stored = codec.restore(spec, meta, extras)
    if stored is None:
        return None
    with torch.no_grad():
        return codec.decode(stored).float()
