"""The evaluation model zoo: MLP, LeNet, AlexNet, VGG-11, ResNet-10/18 and a small ViT.

Each family is registered with :func:`~ddkit.models.registry.register_model` and honours the
:class:`~ddkit.models.registry.ClassifierModel` contract (``embed`` -> ``(B, num_features)``,
``forward == classifier(embed)``).

Small inputs (8x8 up to 32x32, one or three channels) are handled by planning the spatial sizes
at construction time: a down-sampling step (max-pool or strided conv) is skipped when it would
shrink the feature map below 2x2, so instance/group norm never sees a single pixel per channel
(which would make the features constant). At the usual sizes (28x28, 32x32) the layers are
exactly those of the DC/DSA/DM reference networks.

All modules avoid in-place ops and dropout so that several copies can be trained at once with
``torch.func.stack_module_state`` + ``vmap(functional_call)`` (for models without BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    notice_once,
    option_named,
    parse_variant,
    prefixed_int,
    register_model,
    require_min_size,
    variant_factory,
)

Size = tuple[int, int]


def _conv_out(size: Size, kernel: int, stride: int = 1, padding: int = 0) -> Size:
    h, w = ((s + 2 * padding - kernel) // stride + 1 for s in size)
    return h, w


def _maybe_pool(size: Size, *, keep_min: int = 2) -> tuple[nn.Module, Size]:
    """A 2x2 max-pool, or an identity when pooling would leave fewer than ``keep_min`` pixels."""
    if min(size) // 2 >= keep_min:
        return nn.MaxPool2d(2, 2), (size[0] // 2, size[1] // 2)
    return nn.Identity(), size


def _positive(name: str, **values: int) -> None:
    for key, val in values.items():
        if val < 1:
            raise ConfigError(f"model {name!r}: {key} must be >= 1, got {val}")


def _scaled(channels: Sequence[int], base: int, width: int) -> list[int]:
    return [max(1, round(c * width / base)) for c in channels]


#: Variant tokens shared by the conv families (AlexNet, VGG, ResNet), and their help text.
_CONV_OPTIONS = {"width": prefixed_int("w"), "norm": choice(*NORMS), "act": choice(*ACTIVATIONS)}
_CONV_VARIANTS_HELP = "variants: w<N> bn|in|gn|ln|none activation"


# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------


class MLP(ClassifierModel):
    """Multi-layer perceptron: flatten -> ``depth`` x (Linear(width) -> norm -> activation) ->
    Linear.

    The MLP baseline of DC (Zhao, Mopuri & Bilen, "Dataset Condensation with Gradient
    Matching", ICLR 2021): two hidden layers of 128 units with ReLU, no normalisation. ``depth=0``
    is a linear (logistic-regression) model on raw pixels. It is also the model of table rows
    (issue 39), where ``norm`` ``"bn"`` (batch norm, Ioffe & Szegedy ICML 2015) or ``"ln"``
    (layer norm, Ba et al. arXiv:1607.06450) after each hidden Linear is common
    (e.g. ``mlp-w256-d3-ln``).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: Size,
        width: int = 128,
        depth: int = 2,
        act: str = "relu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        _positive("mlp", width=width)
        if depth < 0:
            raise ConfigError(f"model 'mlp': depth must be >= 0, got {depth}")
        if norm not in _MLP_NORMS:
            raise ConfigError(f"model 'mlp': norm must be one of {', '.join(_MLP_NORMS)}")
        d_in = in_channels * image_size[0] * image_size[1]
        layers: list[nn.Module] = [nn.Flatten(1)]
        for _ in range(depth):
            layers.append(nn.Linear(d_in, width))
            if norm != "none":
                layers.append(nn.BatchNorm1d(width) if norm == "bn" else nn.LayerNorm(width))
            layers.append(make_activation(act))
            d_in = width
        self.features = nn.Sequential(*layers)
        self.num_features = d_in
        self.classifier = nn.Linear(d_in, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


_MLP_NORMS = ("none", "bn", "ln")
_MLP_OPTIONS = {
    "width": prefixed_int("w"),
    "depth": prefixed_int("d"),
    "act": choice(*ACTIVATIONS),
    "norm": choice(*_MLP_NORMS),
}
mlp = register_model(
    "mlp", help="MLP, 2 hidden layers of 128 (DC); variants: w<N> d<N> activation bn|ln"
)(variant_factory("mlp", MLP, _MLP_OPTIONS))


# --------------------------------------------------------------------------------------------
# LeNet
# --------------------------------------------------------------------------------------------


class LeNet(ClassifierModel):
    """LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 1998), in the form used by DC (Zhao et al., ICLR 2021):
    conv5x5(6) -> act -> maxpool -> conv5x5(16) -> act -> maxpool -> fc 120 -> act -> fc 84 ->
    act -> classifier. The embedding is the 84-d layer.

    The first conv is padded by 2 for images smaller than 32x32 (as DC does for MNIST, so 28x28
    gives the classic 16x5x5 map); the second conv is padded by 2 when its input is too small to
    leave at least 2x2, and a pool is skipped when it would leave less than 1x1. Hence any
    input size works (8x8 -> 16x2x2 features before the fc layers).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: Size,
        act: str = "relu",
    ) -> None:
        super().__init__()
        size = tuple(image_size)
        pad1 = 2 if min(size) < 32 else 0
        size = _conv_out(size, 5, 1, pad1)
        pool1, size = _maybe_pool(size, keep_min=1)
        pad2 = 0 if min(size) - 4 >= 2 else 2
        size = _conv_out(size, 5, 1, pad2)
        pool2, size = _maybe_pool(size, keep_min=1)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad1),
            make_activation(act),
            pool1,
            nn.Conv2d(6, 16, 5, padding=pad2),
            make_activation(act),
            pool2,
            nn.Flatten(1),
            nn.Linear(16 * size[0] * size[1], 120),
            make_activation(act),
            nn.Linear(120, 84),
            make_activation(act),
        )
        self.num_features = 84
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


lenet = register_model(
    "lenet", help="LeNet-5 as in DC (ReLU, max-pool, 84-d embedding); variants: activation"
)(variant_factory("lenet", LeNet, {"act": choice(*ACTIVATIONS)}))


# --------------------------------------------------------------------------------------------
# AlexNet
# --------------------------------------------------------------------------------------------

_ALEXNET_CHANNELS = (128, 192, 256, 192, 192)


class AlexNet(ClassifierModel):
    """The small AlexNet of DC / DC-bench (Krizhevsky, Sutskever & Hinton, "ImageNet
    Classification with Deep Convolutional Neural Networks", NeurIPS 2012; adapted to 32x32 by
    Zhao et al., ICLR 2021): conv5x5(128) -> pool -> conv5x5(192) -> pool -> conv3x3(256) ->
    conv3x3(192) -> conv3x3(192) -> pool, each conv followed by [norm] and the activation, then
    a linear classifier on the flattened map (192x4x4 = 3072 features at 32x32 and at 28x28,
    whose first conv is padded by 4 as in DC). Default: no norm (``alexnet-bn`` is DC's
    AlexNetBN).

    A pool is skipped when it would leave less than 2x2, so small inputs work (8x8 -> 192x2x2).
    ``width`` scales all channel counts relative to the first layer's 128.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: Size,
        width: int = 128,
        norm: str = "none",
        act: str = "relu",
    ) -> None:
        super().__init__()
        _positive("alexnet", width=width)
        c1, c2, c3, c4, c5 = _scaled(_ALEXNET_CHANNELS, 128, width)
        pad1 = 4 if tuple(image_size) == (28, 28) else 2
        size = _conv_out(tuple(image_size), 5, 1, pad1)

        def block(cin: int, cout: int, k: int, p: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=p), make_norm(norm, cout), make_activation(act)]

        pool1, size = _maybe_pool(size)
        pool2, size = _maybe_pool(size)
        pool3, size = _maybe_pool(size)
        self.features = nn.Sequential(
            *block(in_channels, c1, 5, pad1),
            pool1,
            *block(c1, c2, 5, 2),
            pool2,
            *block(c2, c3, 3, 1),
            *block(c3, c4, 3, 1),
            *block(c4, c5, 3, 1),
            pool3,
            nn.Flatten(1),
        )
        self.num_features = c5 * size[0] * size[1]
        self.classifier = nn.Linear(self.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


alexnet = register_model(
    "alexnet", help=f"AlexNet as in DC (128-192-256-192-192, no norm); {_CONV_VARIANTS_HELP}"
)(variant_factory("alexnet", AlexNet, _CONV_OPTIONS))


# --------------------------------------------------------------------------------------------
# VGG
# --------------------------------------------------------------------------------------------

_VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(ClassifierModel):
    """VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", ICLR 2015) for small images, as in DC / DC-bench: conv3x3 -> norm -> act
    blocks with 2x2 max-pools following ``cfg`` (VGG-11 by default), global average pooling,
    and a linear classifier on the 512 features. Default norm: instance norm (DC's VGG11);
    ``vgg11-bn`` is DC's VGG11BN. 28x28 inputs get padding 3 in the first conv (-> 32x32 maps).

    A pool other than the last is skipped when it would leave less than 2x2, so 8x8 inputs run
    the deep layers at 2x2 (instead of a degenerate 1x1 under instance norm). At 32x32 the
    network is exactly DC's. ``width`` scales all channel counts relative to the first 64.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: Size,
        cfg: Sequence[int | str] = _VGG11_CFG,
        width: int = 64,
        norm: str = "in",
        act: str = "relu",
    ) -> None:
        super().__init__()
        _positive("vgg", width=width)
        pad1 = 3 if tuple(image_size) == (28, 28) else 1
        size: Size = tuple(image_size)  # type: ignore[assignment]
        last_pool = max(i for i, v in enumerate(cfg) if v == "M") if "M" in cfg else -1
        layers: list[nn.Module] = []
        c = in_channels
        first = True
        for i, v in enumerate(cfg):
            if v == "M":
                pool, size = _maybe_pool(size, keep_min=1 if i == last_pool else 2)
                layers.append(pool)
                continue
            cout = max(1, round(int(v) * width / 64))
            pad = pad1 if first else 1
            layers += [
                nn.Conv2d(c, cout, 3, padding=pad),
                make_norm(norm, cout),
                make_activation(act),
            ]
            size = _conv_out(size, 3, 1, pad)
            c, first = cout, False
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


vgg11 = register_model(
    "vgg11", help=f"VGG-11 as in DC (instance norm, 512 features); {_CONV_VARIANTS_HELP}"
)(variant_factory("vgg11", VGG, _CONV_OPTIONS))


# --------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (He et al. 2016); 1x1 conv shortcut on a shape
    change."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, act: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = make_norm(norm, cout)
        self.act1 = make_activation(act)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=bias)
        self.norm2 = make_norm(norm, cout)
        self.act2 = make_activation(act)
        if stride != 1 or cin != cout:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=bias), make_norm(norm, cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))  # not in place: keeps torch.func.vmap happy


class ResNet(ClassifierModel):
    """ResNet with BasicBlocks (He, Zhang, Ren & Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016), CIFAR-style as in DC / DC-bench: 3x3 stem conv (stride 1, no
    max-pool), four stages of widths w-2w-4w-8w (w=64) with stride 2 in stages 2-4, global
    average pooling, linear classifier on 8w = 512 features. ``blocks=(2,2,2,2)`` is ResNet-18,
    ``(1,1,1,1)`` ResNet-10. Norm: ``bn`` (default), ``in`` (instance norm = GroupNorm(c, c),
    DC's default ResNet18), ``gn``, ``ln`` or ``none``.

    A stage keeps stride 1 when stride 2 would leave less than 2x2, so 8x8 inputs work
    (8 -> 8 -> 4 -> 2 -> 2) without degenerate 1x1 instance norm.

    ``stem``: ``"cifar"`` (above), ``"imagenet"`` (a 7x7 stride-2 conv and a 3x3 stride-2
    max-pool, as torchvision's ResNet and the ImageNet papers: 16x less compute at 224 px), or
    ``"auto"``: ImageNet's from :data:`IMAGENET_STEM_FROM` px, CIFAR's below (Tiny-ImageNet's
    ResNet-18 in SRe2L / RDED keeps the 3x3 stem at 64 px).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: Size,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        norm: str = "bn",
        act: str = "relu",
        stem: str = "cifar",
    ) -> None:
        super().__init__()
        _positive("resnet", width=width)
        bias = norm == "none"
        side = min(image_size)
        if stem == "auto":
            stem = "imagenet" if side >= IMAGENET_STEM_FROM else "cifar"
        if stem == "imagenet":
            conv = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=bias)
            pool: list[nn.Module] = [nn.MaxPool2d(3, stride=2, padding=1)]
            side = ((side - 1) // 2 + 1 - 1) // 2 + 1
        elif stem == "cifar":
            conv, pool = nn.Conv2d(in_channels, width, 3, padding=1, bias=bias), []
        else:
            raise ConfigError(f"resnet stem {stem!r}: use 'cifar', 'imagenet' or 'auto'")
        self.stem = nn.Sequential(conv, make_norm(norm, width), make_activation(act), *pool)
        stages: list[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            stride = 2 if i > 0 and (side - 1) // 2 + 1 >= 2 else 1
            side = (side - 1) // stride + 1
            layer = []
            for j in range(n):
                layer.append(BasicBlock(cin, cout, stride if j == 0 else 1, norm, act))
                cin = cout
            stages.append(nn.Sequential(*layer))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.num_features = cin
        self.classifier = nn.Linear(cin, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))


#: The image side (px) from which ``resnet18`` / ``resnet10`` take the ImageNet stem.
IMAGENET_STEM_FROM = 128
_RESNET_OPTIONS = {**_CONV_OPTIONS, "stem": choice("cifar", "imagenet")}
_told_stems: set[tuple[int, int]] = set()


def _resnet_by_size(head: str, blocks: tuple[int, ...]) -> Callable[..., nn.Module]:
    """``resnet18`` / ``resnet10``: the stem from the image size unless a ``cifar`` /
    ``imagenet`` token or ``stem=`` names one; the ImageNet stem is said once per size."""
    build = variant_factory(head, ResNet, _RESNET_OPTIONS, defaults={"blocks": blocks})

    def factory(*, image_size: tuple[int, int], variant: Sequence[str] = (), **kw: object):
        named = option_named("stem", _RESNET_OPTIONS, variant, kw)
        if not named and min(image_size) >= IMAGENET_STEM_FROM:
            notice_once(
                _told_stems,
                image_size,
                f"model {head!r} on {image_size[0]}x{image_size[1]} images has the ImageNet stem "
                f"(7x7 stride-2 conv, max-pool), as the papers at this size; name "
                f"'{head}-cifar' to keep the 3x3 stem",
            )
            kw = {**kw, "stem": "imagenet"}
        return build(image_size=image_size, variant=variant, **kw)

    factory.__name__ = factory.__qualname__ = head
    return factory


_RESNET_VARIANTS_HELP = f"{_CONV_VARIANTS_HELP} cifar|imagenet (stem)"
register_model(
    "resnet18",
    help=f"ResNet-18, batch norm, 512 features, CIFAR stem below {IMAGENET_STEM_FROM} px and "
    f"ImageNet's from there; {_RESNET_VARIANTS_HELP}",
)(_resnet_by_size("resnet18", (2, 2, 2, 2)))
register_model("resnet10", help="ResNet-10 (one BasicBlock per stage); variants as resnet18")(
    _resnet_by_size("resnet10", (1, 1, 1, 1))
)


# --------------------------------------------------------------------------------------------
# Vision Transformer
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention written with plain matmuls (vmap-friendly, no fused kernels)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, d_head)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(ClassifierModel):
    """A small Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words:
    Transformers for Image Recognition at Scale", ICLR 2021): non-overlapping patch embedding
    (a conv with kernel = stride = patch), a learned CLS token and position embedding, ``depth``
    pre-norm transformer blocks, a final LayerNorm; the embedding is the CLS token's output.

    Default ("tiny"): dim 128, depth 4, 4 heads, MLP ratio 4, patch 4 (patch 2 for images
    smaller than 16x16, so 8x8 gives 16 tokens). Pixels beyond a whole number of patches are
    ignored; an image smaller than one patch is refused. No dropout (vmap-friendly).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: Size,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        patch: int | None = None,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        _positive("vit", dim=dim, depth=depth, heads=heads)
        if dim % heads:
            raise ConfigError(f"model 'vit': dim {dim} is not divisible by {heads} heads")
        if patch is None:
            patch = 4 if min(image_size) >= 16 else 2
        _positive("vit", patch=patch)
        require_min_size(f"vit-p{patch}", image_size, patch)
        grid = (image_size[0] // patch, image_size[1] // patch)
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.Sequential(
            *[TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.classifier = nn.Linear(dim, num_classes)

    def reset_parameters(self) -> None:
        """Re-run the initialisers in the order ``__init__`` ran them (so that
        :func:`ddkit.models.reinitialize` reproduces a ViT built under the same seed)."""
        from ddkit.models.helpers import reset_module

        self.patch_embed.reset_parameters()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for part in (self.blocks, self.norm, self.classifier):
            reset_module(part)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.norm(self.blocks(tokens))[:, 0]


_VIT_PRESETS = {"tiny": {"dim": 128, "depth": 4, "heads": 4}}


@register_model(
    "vit",
    help="small ViT (tiny: dim 128, depth 4, 4 heads, patch 4, or 2 below 16x16); "
    "variants: tiny p<N> w<N> (dim) d<N> (depth) h<N> (heads)",
)
def vit(*, num_classes, in_channels, image_size, variant=(), **kw) -> ViT:
    opts = parse_variant(
        "vit",
        variant,
        {
            "preset": choice(*_VIT_PRESETS),
            "patch": prefixed_int("p"),
            "dim": prefixed_int("w"),
            "depth": prefixed_int("d"),
            "heads": prefixed_int("h"),
        },
    )
    params = {**_VIT_PRESETS[str(opts.pop("preset", "tiny"))], **opts, **kw}
    return ViT(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **params)


__all__ = ["MLP", "LeNet", "AlexNet", "VGG", "ResNet", "BasicBlock", "ViT"]
