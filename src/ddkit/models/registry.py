"""`create_model`: one factory for every architecture, with name-encoded variants.

A model name is a registered head plus optional ``-``-separated variant tokens, e.g.
``convnet3``, ``convnet3-bn``, ``convnet4-w256-max``, ``resnet18-in``. Each family's factory
receives the tokens and rejects the ones it does not know.

Every model honours one contract (see :class:`ClassifierModel`): ``embed(x)`` returns the feature
embedding ``(B, num_features)``, ``classifier`` is the head, ``forward(x) == classifier(embed(x))``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ddkit.errors import ConfigError, DataError, DDKitError, UnknownNameError, warn_at_caller
from ddkit.meter import BUDGET_ENV, check_memory
from ddkit.registry import Registry

ModelFactory = Callable[..., nn.Module]
#: Maps a keyword to a parser returning its value for a variant token it accepts, else ``None``.
VariantOptions = Mapping[str, Callable[[str], object | None]]
MODELS: Registry[ModelFactory] = Registry("model")


class ClassifierModel(nn.Module):
    """Base class: a feature extractor ``embed`` followed by a linear ``classifier``."""

    num_features: int
    input_shape: tuple[int, int, int]

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = getattr(self, "input_shape", None)
        if expected is not None and (x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected)):
            check_model_input(self, x)
        return self.classifier(self.embed(x))


def register_model(name: str, *, help: str | None = None):
    """Register a family factory ``fn(*, num_classes, in_channels, image_size, variant, **kw)``."""
    return MODELS.register(name, help=help)


def split_name(name: str) -> tuple[str, tuple[str, ...]]:
    parts = str(name).lower().split("-")
    return parts[0], tuple(p for p in parts[1:] if p)


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int | Sequence[int],
    **kw,
) -> nn.Module:
    """Build a model by name for ``in_channels x image_size`` inputs and ``num_classes`` classes.

    Raises a one-line :class:`~ddkit.errors.DDKitError` for an unknown name/variant, an image
    size the architecture cannot take, or weights larger than the memory budget (checked on
    the meta device before anything is allocated: :func:`check_model_size`).
    """
    check_model_size(name, num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, **kw)  # fmt: skip
    model = _build(name, int(num_classes), int(in_channels), image_size, kw)
    model.input_shape = (int(in_channels), *_hw(image_size))
    model.model_name = str(name).lower()
    return model


def _hw(image_size: int | Sequence[int]) -> tuple[int, ...]:
    return (int(image_size),) * 2 if isinstance(image_size, int) else tuple(image_size)


def _build(
    name: str, num_classes: int, in_channels: int, image_size: int | Sequence[int], kw: dict
) -> nn.Module:
    head, variant = split_name(name)
    size = _hw(image_size)
    return MODELS.get(head)(
        num_classes=num_classes, in_channels=in_channels, image_size=size, variant=variant, **kw
    )


def model_size(
    name: str, *, num_classes: int, in_channels: int, image_size: int | Sequence[int], **kw
) -> tuple[int, int] | None:
    """``(parameters, bytes of parameters and buffers)`` of model ``name`` as
    :func:`create_model` would build it, counted on a copy built on the meta device (nothing
    allocated, the global RNG untouched; remembered per name, shape and default dtype, which
    sets the bytes of each weight); ``None`` for a model that cannot be built there."""
    key = (str(name), int(num_classes), int(in_channels), _hw(image_size))
    try:
        return _remembered_size(*key, tuple(sorted(kw.items())), torch.get_default_dtype())
    except TypeError:  # an unhashable keyword: counted every time
        return _meta_size(*key, kw)


@functools.lru_cache(maxsize=256)
def _remembered_size(
    name: str, num_classes: int, in_channels: int, image_size: tuple, kw: tuple, dtype: torch.dtype
) -> tuple[int, int] | None:
    return _meta_size(name, num_classes, in_channels, image_size, dict(kw))


def _meta_size(
    name: str, num_classes: int, in_channels: int, image_size: tuple, kw: dict
) -> tuple[int, int] | None:
    try:
        with torch.device("meta"):
            net = _build(name, num_classes, in_channels, image_size, kw)
    except DDKitError:
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None
    tensors = [*net.parameters(), *net.buffers()]
    params = sum(p.numel() for p in net.parameters())
    return int(params), int(sum(t.numel() * t.element_size() for t in tensors))


def check_model_size(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int | Sequence[int],
    error: type[Exception] = ConfigError,
    fix: str | None = None,
    **kw,
) -> None:
    """Refuse (``error``, one line naming the size and ``fix``) model ``name`` whose weights
    (:func:`model_size`) exceed the memory budget, before it is built."""
    if torch.empty(0).device.type == "meta":  # built on the meta device: nothing to allocate
        return
    size = model_size(
        name, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
    )
    if size is not None:
        check_memory(
            f"model {str(name)!r} ({size[0]:,} parameters)",
            size[1],
            fix or f"use a smaller width / depth in the model name, or raise ${BUDGET_ENV}",
            error,
        )


def parse_variant(name: str, variant: Sequence[str], options: VariantOptions) -> dict[str, object]:
    """Turn variant tokens into keyword values.

    ``options`` maps a keyword to a parser that returns its value for a token it accepts and
    ``None`` otherwise. Unknown tokens raise :class:`UnknownNameError`.
    """
    out: dict[str, object] = {}
    for tok in variant:
        for key, parse in options.items():
            val = parse(tok)
            if val is not None:
                out[key] = val
                break
        else:
            raise UnknownNameError(f"unknown variant {tok!r} for model {name!r}")
    return out


def variant_factory(
    head: str,
    build: Callable[..., nn.Module],
    options: VariantOptions,
    *,
    defaults: Mapping[str, object] | None = None,
) -> ModelFactory:
    """A family factory for :func:`register_model` that calls ``build(num_classes=...,
    in_channels=..., image_size=..., **params)``.

    ``params`` are ``defaults``, overridden by the variant tokens (parsed with ``options``; an
    unknown token is reported for model ``head``), overridden by the caller's keywords.
    """
    fixed = dict(defaults or {})

    def factory(
        *,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        variant: Sequence[str] = (),
        **kw: object,
    ) -> nn.Module:
        params = {**fixed, **parse_variant(head, variant, options), **kw}
        return build(
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, **params
        )

    factory.__name__ = factory.__qualname__ = head
    return factory


def choice(*values: str) -> Callable[[str], str | None]:
    return lambda tok: tok if tok in values else None


def prefixed_int(prefix: str) -> Callable[[str], int | None]:
    def parse(tok: str) -> int | None:
        rest = tok[len(prefix) :]
        return int(rest) if tok.startswith(prefix) and rest.isdigit() else None

    return parse


class ResolutionNotice(UserWarning):
    """A default chosen from the image size (said once per size)."""


def option_named(
    key: str, options: VariantOptions, variant: Sequence[str], kw: Mapping[str, object]
) -> bool:
    """Whether a model's caller chose option ``key``: as a keyword or a variant token."""
    return key in kw or any(options[key](tok) for tok in variant)


def notice_once(told: set[tuple[int, int]], image_size: tuple[int, int], message: str) -> None:
    """Say ``message`` (:class:`ResolutionNotice`, at the user's line that made the model) the
    first time ``told`` meets ``image_size``."""
    if image_size not in told:
        told.add(image_size)
        warn_at_caller(message, ResolutionNotice)


NORMS = ("none", "bn", "in", "gn", "ln")
ACTIVATIONS = ("relu", "lrelu", "gelu", "sigmoid", "tanh")


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer for conv features: batch, instance (affine GroupNorm with one group
    per channel, as in DC), group (32 groups or fewer), layer (one group), or none."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "in":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "gn":
        return nn.GroupNorm(min(32, channels), channels, affine=True)
    if kind == "ln":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise UnknownNameError(f"unknown normalisation {kind!r}; valid: {', '.join(NORMS)}")


def make_activation(kind: str, *, inplace: bool = False) -> nn.Module:
    """The activation ``kind``; ``inplace`` overwrites its input where the activation has an
    in-place form (relu, lrelu: their backward needs only their output), so use it only where
    nothing else reads that input afterwards (after a convolution or a normalisation)."""
    table = {
        "relu": lambda: nn.ReLU(inplace=inplace),
        "lrelu": lambda: nn.LeakyReLU(0.01, inplace=inplace),
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
    }
    if kind not in table:
        raise UnknownNameError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")
    return table[kind]()


def set_inplace_activations(model: nn.Module, inplace: bool) -> int:
    """Switch every ReLU / LeakyReLU of ``model`` to (or from) its in-place form; returns how
    many were switched. The arithmetic is the same either way (a speed and memory lever)."""
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.LeakyReLU)]
    for m in acts:
        m.inplace = inplace
    return len(acts)


def require_min_size(name: str, image_size: tuple[int, int], minimum: int) -> None:
    if min(image_size) < minimum:
        raise ConfigError(
            f"model {name!r} needs images of at least {minimum}x{minimum}, "
            f"got {image_size[0]}x{image_size[1]}"
        )


def check_model_input(model: nn.Module, images: torch.Tensor) -> None:
    """Raise a one-line :class:`DataError` if ``images`` do not fit ``model``'s input shape."""
    expected = getattr(model, "input_shape", None)
    if images.ndim != 4:
        raise DataError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if expected is not None and tuple(images.shape[1:]) != tuple(expected):
        raise DataError(
            f"model {getattr(model, 'model_name', type(model).__name__)!r} expects images of shape "
            f"{tuple(expected)}, got {tuple(images.shape[1:])}"
        )


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
