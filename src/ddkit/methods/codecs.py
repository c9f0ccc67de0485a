"""The ``codec`` option of the methods that optimise images: what their set stores.

The codecs themselves (pixels, multi-formation, FreD, HaBa, latent codes) live in the data layer,
:mod:`ddkit.data.codecs`, because a saved set is decoded by the codec that wrote it. Here is what
a method needs to use one: the config field (:class:`CodecConfig`, its rule :data:`CODEC`) and
the start of the optimisation (:func:`start_stored`). Methods with the option: the matching
methods (``dm``, ``dc``, ``dsa``, ``idc``, whose default is ``auto``; IDM has multi-formation
built in), the trajectory methods (``mtt``, ``tesla``, ``datm``) and the performance-matching
methods (``bptt``, ``kip``, ``frepo``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ddkit.data.codecs import Codec, codec_usage, label_bytes, make_codec
from ddkit.data.dataset import ImageDataset
from ddkit.errors import ConfigError
from ddkit.methods.common import initial_images
from ddkit.methods.config import AUTO, MethodConfig, Rule


def _valid_codec(value: Any) -> bool:
    try:
        make_codec(value)
    except ConfigError:
        return False
    return True


#: a ``codec`` option (its text names the codecs registered when this module is imported)
CODEC = Rule(_valid_codec, f"must be one of {codec_usage()}")


@dataclasses.dataclass(frozen=True)
class CodecConfig(MethodConfig):
    """The option of every method that optimises images: what its set stores."""

    codec: str = "pixels"  # pixels | formation:F | fred:R | haba:H | latent:D, at equal bytes

    rules = {"codec": CODEC}
    auto_codec: ClassVar[bool] = False  # whether the method picks a codec for "auto"

    def __post_init__(self) -> None:
        if self.codec == AUTO and not self.auto_codec:
            raise ConfigError(f"codec {CODEC.text}, got 'auto'")
        super().__post_init__()


#: ``initial(train, n, generator)``: ``n`` starting images per class, class-major
InitialImages = Callable[[ImageDataset, int, torch.Generator], torch.Tensor]


def start_stored(
    spec: str,
    train: ImageDataset,
    ipc: int,
    generator: torch.Generator,
    initial: InitialImages | str,
    *,
    label_vectors: bool = False,
) -> tuple[Codec, torch.Tensor]:
    """The codec named by ``spec``, fitted to ``train``, and the stored tensor it starts from
    (requiring grad): the encoding of the images ``initial`` gives -- a function, or an ``init``
    name of :func:`~ddkit.methods.common.initial_images` --, as many per class as the codec
    needs at the bytes of ``ipc`` plain images. ``label_vectors``: the method stores a label
    vector per image (soft or learned labels), which the budget and each image pay for.
    Codecs other than ``pixels`` encode images: on other rows they are refused in one line."""
    codec = make_codec(spec)
    if codec.spec_string != "pixels":
        train.spec.check_needs("image", f"codec {codec.spec_string!r}", "use codec=pixels")
    codec.label_bytes = label_bytes(label_vectors, train.spec.num_classes)
    codec.fit(train)
    n = codec.real_per_class(ipc, train.spec)
    if isinstance(initial, str):
        start = initial_images(train, n, generator, initial)
    else:
        start = initial(train, n, generator)
    return codec, codec.encode(start, generator).requires_grad_(True)
