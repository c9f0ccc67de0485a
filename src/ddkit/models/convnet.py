"""The ConvNet family used throughout dataset distillation (Gidaris & Komodakis 2018; as in
DC, Zhao et al. ICLR 2021): ``depth`` blocks of conv3x3 -> norm -> activation -> 2x2 pool,
then a linear classifier. Default: depth 3, width 128, instance norm, ReLU, average pooling.

The activations run in place (``inplace=True``, the reference code's ``ReLU(inplace=True)``): the
same arithmetic with one activation tensor fewer per block; ``inplace=False`` (or
:func:`ddkit.models.registry.set_inplace_activations`) switches it off.
"""

from __future__ import annotations

import torch
from torch import nn

from ddkit.errors import ConfigError
from ddkit.models.registry import (
    ACTIVATIONS,
    NORMS,
    ClassifierModel,
    ModelFactory,
    choice,
    make_activation,
    make_norm,
    prefixed_int,
    register_model,
    variant_factory,
)

POOLS = ("avg", "max", "nopool")


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
        # DC pads MNIST's 28x28 by 3 in the first layer, so the feature maps are those of 32x32.
        h, w = image_size
        first_pad = 3 if (h, w) == (28, 28) else 1
        h, w = h + 2 * (first_pad - 1), w + 2 * (first_pad - 1)
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


register_model(
    "convnet",
    help="ConvNet-3, width 128, instance norm, avg-pool; variants: d<N> w<N> bn|in|gn|ln|none "
    "relu|lrelu|gelu|sigmoid|tanh avg|max|nopool",
)(_convnet_factory(3))
for _d in range(1, 7):
    register_model(f"convnet{_d}", help=f"ConvNet of depth {_d} (variants as convnet)")(
        _convnet_factory(_d)
    )
