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
    """The per-image :class:`Footprint` of registered model ``name`` on these inputs."""
    from ddkit.models.registry import create_model

    with torch.device("meta"):
        net = create_model(
            name, num_classes=num_classes, in_channels=in_channels, image_size=image_size
        )
        x = torch.empty(1, *net.input_shape)
    outputs: list[tuple[int, int]] = []

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor):
            seen = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
            outputs.append((seen, out.numel()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not outputs:
        return Footprint(FLOAT_BYTES * x.numel() * HEADROOM, FLOAT_BYTES * x.numel() * HEADROOM)
    held = max(a + b for a, b in outputs)
    kept = x.numel() + sum(b for _, b in outputs)
    return Footprint(FLOAT_BYTES * held * HEADROOM, FLOAT_BYTES * kept * HEADROOM)
