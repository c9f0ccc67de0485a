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


def module_footprint(net: nn.Module, input_shape: tuple[int, ...]) -> Footprint:
    """The per-image :class:`Footprint` of a built network on inputs of ``input_shape``
    ``(C, H, W)``: its forward runs on meta copies of its parameters and buffers."""
    from torch.func import functional_call

    meta = {k: torch.empty_like(v, device="meta") for k, v in net.state_dict().items()}
    x = torch.empty(1, *input_shape, device="meta")
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
        return Footprint(FLOAT_BYTES * x.numel() * HEADROOM, FLOAT_BYTES * x.numel() * HEADROOM)
    held = max(a + b for a, b in outputs)
    kept = x.numel() + sum(b for _, b in outputs)
    return Footprint(FLOAT_BYTES * held * HEADROOM, FLOAT_BYTES * kept * HEADROOM)


def inference_batch(net: nn.Module, cap: int = 1024, share: int = 4) -> int:
    """Rows of a no-grad forward of ``net`` whose activations take at most ``1 / share`` of
    the memory budget, at most ``cap`` (``cap`` for a network that does not record its
    ``input_shape``, as :func:`~ddkit.models.create_model` makes them)."""
    from ddkit.meter import memory_budget

    shape = getattr(net, "input_shape", None)
    if shape is None:
        return cap
    try:
        per_image = module_footprint(net, tuple(shape)).inference
    except (RuntimeError, NotImplementedError, TypeError):  # an op without a meta kernel
        return cap
    return max(1, min(cap, memory_budget() // share // max(per_image, 1)))
