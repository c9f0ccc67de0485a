"""1-D networks for time series (issue 39): ``conv1d`` (the series analogue of ConvNet-3) and
``resnet1d`` (the residual network of the time-series classification baseline).

A series row is laid out ``(D, 1, L)`` (:mod:`ddkit.data.spec`); both nets convolve along the
time axis only, with ``(1, k)`` kernels over the ``D`` input channels, so a ``(1, k)``
convolution of the stored row is exactly a 1-D convolution of the series (and the norms,
``torch.func`` plumbing and re-initialisation of the image nets serve unchanged).
"""

from __future__ import annotations

import torch
from torch import nn

from ddkit.errors import ConfigError
from ddkit.models.registry import (
    ACTIVATIONS,
    NORMS,
    ClassifierModel,
    choice,
    make_activation,
    make_norm,
    prefixed_int,
    register_model,
    variant_factory,
)
from ddkit.models.zoo import _positive

POOLS = ("avg", "max", "nopool")


def _series_length(name: str, image_size: tuple[int, int]) -> int:
    """The length ``L`` of a ``(1, L)`` row, or a one-line :class:`ConfigError`."""
    if image_size[0] != 1 or image_size[1] < 2:
        raise ConfigError(
            f"model {name!r} takes series rows laid out (D, 1, L) (height 1, at least 2 steps), "
            f"got {image_size[0]}x{image_size[1]}; use it on a series dataset"
        )
    return int(image_size[1])


def _time_conv(cin: int, cout: int, kernel: int) -> nn.Module:
    """A convolution along time with 'same' padding: ``(kernel - 1) // 2`` zeros before,
    ``kernel // 2`` after (as Keras pads an even kernel), so the length is kept."""
    conv = nn.Conv2d(cin, cout, (1, kernel))
    if kernel == 1:
        return conv
    return nn.Sequential(nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0)), conv)


class ConvNet1D(ClassifierModel):
    """ConvNet-3 for series: ``depth`` blocks of conv (kernel ``k`` along time, ``width``
    channels, same padding) -> norm -> activation -> pool by 2 along time, then a linear
    classifier on the flattened map. The block of ConvNet (Gidaris & Komodakis CVPR 2018, as
    used by DC, Zhao et al. ICLR 2021) with 1-D kernels; default depth 3, width 128, kernel 3,
    instance norm, ReLU, average pooling, as the image ConvNet. A pool that would leave fewer
    than 2 steps is skipped, so short series work (ItalyPowerDemand's 24 steps end at 3).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        depth: int = 3,
        width: int = 128,
        kernel: int = 3,
        norm: str = "in",
        act: str = "relu",
        pool: str = "avg",
    ) -> None:
        super().__init__()
        _positive("conv1d", depth=depth, width=width, kernel=kernel)
        length = _series_length("conv1d", image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers += [
                _time_conv(c, width, kernel),
                make_norm(norm, width),
                make_activation(act),
            ]
            c = width
            if pool != "nopool" and length // 2 >= 2:
                layers.append(nn.AvgPool2d((1, 2)) if pool == "avg" else nn.MaxPool2d((1, 2)))
                length //= 2
        self.features = nn.Sequential(*layers, nn.Flatten(1))
        self.num_features = width * length
        self.classifier = nn.Linear(self.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


register_model(
    "conv1d",
    help="ConvNet-3 for series: 3 x (conv k3 -> instance norm -> relu -> avg-pool 2), width 128; "
    "variants: d<N> w<N> k<N> bn|in|gn|ln|none activation avg|max|nopool",
)(
    variant_factory(
        "conv1d",
        ConvNet1D,
        {
            "norm": choice(*NORMS),
            "act": choice(*ACTIVATIONS),
            "pool": choice(*POOLS),
            "width": prefixed_int("w"),
            "depth": prefixed_int("d"),
            "kernel": prefixed_int("k"),
        },
    )
)


class _ResidualBlock1D(nn.Module):
    """Three convolutions of kernels 8, 5, 3 along time (same padding), each followed by a norm,
    ReLU after the first two and after the sum with the shortcut (a 1x1 conv + norm when the
    width changes, else the identity), as Wang et al.'s block."""

    def __init__(self, cin: int, cout: int, norm: str, act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for i, k in enumerate((8, 5, 3)):
            layers += [_time_conv(c, cout, k), make_norm(norm, cout)]
            if i < 2:
                layers.append(make_activation(act))
            c = cout
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module = (
            nn.Sequential(nn.Conv2d(cin, cout, 1), make_norm(norm, cout))
            if cin != cout
            else make_norm(norm, cout)
        )
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))  # not in place: vmap-friendly


class ResNet1D(ClassifierModel):
    """The residual network for time-series classification (Wang, Yan & Oates, "Time Series
    Classification from Scratch with Deep Neural Networks: A Strong Baseline", IJCNN 2017;
    arXiv:1611.06455): three residual blocks of widths w-2w-2w (w = 64), each three
    convolutions of kernels 8, 5, 3 with batch norm and ReLU, global average pooling over time,
    a linear classifier on 2w = 128 features. The shortcut of a block that keeps its width is a
    norm of its input, as in the Keras implementation of Ismail Fawaz et al.'s review ("Deep
    learning for time series classification: a review", DMKD 2019).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        width: int = 64,
        norm: str = "bn",
        act: str = "relu",
    ) -> None:
        super().__init__()
        _positive("resnet1d", width=width)
        _series_length("resnet1d", image_size)
        widths = (width, 2 * width, 2 * width)
        blocks, c = [], in_channels
        for w in widths:
            blocks.append(_ResidualBlock1D(c, w, norm, act))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x))


register_model(
    "resnet1d",
    help="ResNet for series (Wang et al. IJCNN'17): 3 residual blocks (kernels 8-5-3), widths "
    "64-128-128, batch norm, global average pooling; variants: w<N> bn|in|gn|ln|none activation",
)(
    variant_factory(
        "resnet1d",
        ResNet1D,
        {"norm": choice(*NORMS), "act": choice(*ACTIVATIONS), "width": prefixed_int("w")},
    )
)
