"""What a network's activations cost per image, measured without computing anything: the model
is built on PyTorch's ``meta`` device and run on a meta batch of one, and forward hooks read
the size of every leaf module's output (issue 68: batch sizes and embedding chunks chosen from
the memory budget; refusals before the work instead of the kernel's out-of-memory kill)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Bytes per activation value (float32).
FLOAT_BYTES = 4
#: Headroom for what the hooks do not see: a normalisation's temporaries, the allocator's slack.
HEADROOM = 2


@dataclass(frozen=True)
class Footprint:
    """Per-image activation bytes of a network: ``inference`` is the most held at once by a
    forward without autograd (one layer's input and output), ``training`` what a forward keeps
    for the backward pass (every layer's output), both with :data:`HEADROOM`."""

    inference: int
    training: int


def footprint(name: str, *, num_classes: int, in_channels: int, image_size) -> Footprint:  # noqa: ANN001
    """The per-image :class:`Footprint` of registered model ``name`` on these inputs (built on
    the meta device: no memory is allocated)."""
    from ddkit.models.registry import create_model

    with torch.device("meta"):
        net = create_model(
            name, num_classes=num_classes, in_channels=in_channels, image_size=image_size
        )
    return module_footprint(net, net.input_shape)


#: Footprints measured in this process, by the network's ``repr`` (its layers and their
#: settings), type and input shape: a method that draws fresh networks measures its architecture once.
_MEASURED: dict[tuple[str, torch.dtype, tuple[int, ...]], Footprint] = {}


def module_footprint(net: nn.Module, input_shape: tuple[int, ...]) -> Footprint:
    """The per-image :class:`Footprint` of a built network on inputs of ``input_shape``
    ``(C, H, W)``: its forward runs on meta copies of its parameters and buffers (once per
    architecture and input shape in a process)."""
    key = (repr(net), _dtype(net), tuple(input_shape))
    if key not in _MEASURED:
        if len(_MEASURED) >= 256:
            _MEASURED.clear()
        _MEASURED[key] = _measure(net, tuple(input_shape))
    return _MEASURED[key]


def _measure(net: nn.Module, input_shape: tuple[int, ...]) -> Footprint:
    from torch.func import functional_call

    meta = {k: torch.empty_like(v, device="meta") for k, v in net.state_dict().items()}
    dtype = _dtype(net)
    x = torch.empty(1, *input_shape, device="meta", dtype=dtype)
    size = max(FLOAT_BYTES, dtype.itemsize)  # float64 networks keep 8 bytes a value
    outputs: list[tuple[int, int]] = []

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor):
            seen = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
            outputs.append((seen, out.numel()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            functional_call(net, meta, (x,))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    if not outputs:
        return Footprint(size * x.numel() * HEADROOM, size * x.numel() * HEADROOM)
    held = max(a + b for a, b in outputs)
    kept = x.numel() + sum(b for _, b in outputs)
    return Footprint(size * held * HEADROOM, size * kept * HEADROOM)


def _dtype(net: nn.Module) -> torch.dtype:
    """The floating type of ``net``'s parameters (float32 without any)."""
    return next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)


def inference_batch(net: nn.Module, cap: int = 1024, share: int = 4) -> int:
    """Rows of a no-grad forward of ``net`` whose activations take at most ``1 / share`` of
    the memory budget, at most ``cap`` (``cap`` for a network that does not record its
    ``input_shape``, as :func:`~ddkit.models.create_model` makes them)."""
    return _rows_within(net, cap, share, training=False)


def training_batch(net: nn.Module, cap: int, share: int = 2) -> int:
    """Rows of a training forward of ``net`` whose kept activations take at most ``1 / share``
    of the memory budget, at most ``cap`` (as :func:`inference_batch`)."""
    return _rows_within(net, cap, share, training=True)


def _rows_within(net: nn.Module, cap: int, share: int, *, training: bool) -> int:
    from ddkit.meter import memory_budget

    shape = getattr(net, "input_shape", None)
    if shape is None:
        return cap
    try:
        fp = module_footprint(net, tuple(shape))
    except (RuntimeError, NotImplementedError, TypeError):  # an op without a meta kernel
        return cap
    per_image = fp.training if training else fp.inference
    return max(1, min(cap, memory_budget() // share // max(per_image, 1)))
