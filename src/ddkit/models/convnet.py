"""The ConvNet family used throughout dataset distillation (Gidaris & Komodakis 2018; as in
DC, Zhao et al. ICLR 2021): ``depth`` blocks of conv3x3 -> norm -> activation -> 2x2 pool,
then a linear classifier. Default: depth 3, width 128, instance norm, ReLU, average pooling.

The activations run in place (``inplace=True``, the reference code's ``ReLU(inplace=True)``): the
same arithmetic with one activation tensor fewer per block; ``inplace=False`` (or
:func:`ddkit.models.registry.set_inplace_activations`) switches it off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ddkit.errors import ConfigError
from ddkit.models.registry import (
    ACTIVATIONS,
    NORMS,
    ClassifierModel,
    ModelFactory,
    ResolutionNotice,  # noqa: F401 - re-exported: ddkit.models.convnet.ResolutionNotice
    choice,
    make_activation,
    make_norm,
    notice_once,
    option_named,
    prefixed_int,
    register_model,
    variant_factory,
)

POOLS = ("avg", "max", "nopool")


def _first_padding(image_size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """The first convolution's padding and the size of its feature maps: DC pads MNIST's 28x28
    by 3, so the feature maps are those of 32x32 (1 elsewhere: 'same')."""
    h, w = image_size
    pad = 3 if (h, w) == (28, 28) else 1
    return pad, (h + 2 * (pad - 1), w + 2 * (pad - 1))


class ConvNet(ClassifierModel):
    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        depth: int = 3,
        width: int = 128,
        norm: str = "in",
        act: str = "relu",
        pool: str = "avg",
        inplace: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"ConvNet depth must be >= 1, got {depth}")
        first_pad, (h, w) = _first_padding(image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for d in range(depth):
            layers += [
                nn.Conv2d(c, width, 3, padding=first_pad if d == 0 else 1),
                make_norm(norm, width),
                make_activation(act, inplace=inplace),
            ]
            c = width
            if pool != "nopool":
                if min(h, w) < 2:
                    raise ConfigError(
                        f"convnet{depth} with pooling needs images of at least "
                        f"{2**depth}x{2**depth}, got {image_size[0]}x{image_size[1]}"
                    )
                layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.num_features = width * h * w
        self.classifier = nn.Linear(self.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


#: Variant tokens of the ConvNet family.
_CONVNET_OPTIONS = {
    "norm": choice(*NORMS),
    "act": choice(*ACTIVATIONS),
    "pool": choice(*POOLS),
    "width": prefixed_int("w"),
    "depth": prefixed_int("d"),
}


def _convnet_factory(default_depth: int) -> ModelFactory:
    """The factory of ``convnet<default_depth>`` (a ``d<N>`` variant overrides the depth)."""
    return variant_factory(
        f"convnet{default_depth}", ConvNet, _CONVNET_OPTIONS, defaults={"depth": default_depth}
    )


def depth_for_size(image_size: tuple[int, int]) -> int:
    """The ConvNet depth the distillation papers use at this resolution: 3 up to 32 px (DC, DM,
    MTT on MNIST and CIFAR), 4 at 64 px (Tiny-ImageNet), 5 at 128 px (MTT's ImageNet subsets),
    6 at 256 px; in general ``floor(log2(side)) - 2``, at least 3, so that the last feature
    maps are about 4x4 before the classifier."""
    return max(3, min(image_size).bit_length() - 3)


_told_depths: set[tuple[int, int]] = set()
_CONVNET = variant_factory("convnet", ConvNet, _CONVNET_OPTIONS, defaults={"depth": 3})


def _convnet_by_size(
    *, image_size: tuple[int, int], variant: Sequence[str] = (), **kw: object
) -> ConvNet:
    """``convnet``: ConvNet of :func:`depth_for_size` (depth 3 up to 32 px) unless a ``d<N>``
    token or ``depth=`` names one; a depth past 3 is said once per image size."""
    named = option_named("depth", _CONVNET_OPTIONS, variant, kw)
    depth = None if named else depth_for_size(image_size)
    if depth is not None and depth != 3:
        notice_once(
            _told_depths,
            image_size,
            f"model 'convnet' on {image_size[0]}x{image_size[1]} images is ConvNet-{depth}, "
            f"the depth the papers use at this size; name 'convnet3' to keep depth 3",
        )
    defaults = {} if depth is None else {"depth": depth}
    return _CONVNET(image_size=image_size, variant=variant, **defaults, **kw)


register_model(
    "convnet",
    help="ConvNet, width 128, instance norm, avg-pool, depth from the image size (3 up to 32 px, "
    "4 at 64, 5 at 128, 6 at 256); variants: d<N> w<N> bn|in|gn|ln|none "
    "relu|lrelu|gelu|sigmoid|tanh avg|max|nopool",
)(_convnet_by_size)
#: the depths of the registered ``convnet<N>`` models
CONVNET_DEPTHS = range(1, 7)
for _d in CONVNET_DEPTHS:
    register_model(f"convnet{_d}", help=f"ConvNet of depth {_d} (variants as convnet)")(
        _convnet_factory(_d)
    )


class FRePoConvNet(ClassifierModel):
    """FRePo's ConvNet (Zhou, Nezhadarya and Ba, NeurIPS 2022, arXiv:2206.00719; the authors'
    ``Conv``): ``depth`` blocks of conv3x3 -> ReLU -> 2x2 average pooling whose width doubles
    from block to block (``width``, ``2 width``, ``4 width``), the normalisation placed before
    every convolution but the first, then a linear classifier. The first convolution pads
    28x28 images by 3 (32x32 feature maps), as in the authors' code and in :class:`ConvNet`.
    The authors distil with batch norm (``--normalization=batch``), the default here."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        depth: int = 3,
        width: int = 128,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"frepoconv depth must be >= 1, got {depth}")
        first_pad, (h, w) = _first_padding(image_size)
        if min(h, w) < 2**depth:
            raise ConfigError(
                f"frepoconv of depth {depth} needs images of at least {2**depth}x{2**depth}, "
                f"got {image_size[0]}x{image_size[1]}"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for d in range(depth):
            out = width * 2**d
            if d > 0:
                layers.append(make_norm(norm, c))
            layers += [
                nn.Conv2d(c, out, 3, padding=first_pad if d == 0 else 1),
                nn.ReLU(),
                nn.AvgPool2d(2),
            ]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.num_features = c * h * w
        self.classifier = nn.Linear(self.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


register_model(
    "frepoconv",
    help="FRePo's ConvNet: depth 3, width 128 doubling per block, batch norm before the 2nd and "
    "3rd convolutions, avg-pool; variants: d<N> w<N> bn|in|gn|ln|none",
)(
    variant_factory(
        "frepoconv",
        FRePoConvNet,
        {"norm": choice(*NORMS), "width": prefixed_int("w"), "depth": prefixed_int("d")},
    )
)
