"""Helpers that work on any model: batched inference and seeded re-initialisation.

* :func:`predict` runs a network (or any function of a batch) without autograd in chunks and
  concatenates the outputs, instead of a hand-written loop per caller.
* :func:`reinitialize` gives an existing module the weights it would have had if it had been
  built under a seed (``with seeded_global_rng(seed): create_model(...)``), without building a
  new module: methods that need a freshly initialised network every iteration (DC, DM, IDM's
  queue) build one module and re-initialise it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError
from ddkit.models.footprint import inference_batch
from ddkit.rng import seeded_global_rng

__all__ = ["predict", "reinitialize", "reinitializable", "reset_module"]

BatchFn = Callable[[torch.Tensor], torch.Tensor]


def _device_of(module: nn.Module) -> torch.device | None:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else None


def predict(
    model: nn.Module | BatchFn,
    inputs: torch.Tensor,
    *,
    batch_size: int | None = None,
    method: str | None = None,
    device: torch.device | str | None = None,
    post: BatchFn | None = None,
) -> torch.Tensor:
    """``model(inputs)`` under ``torch.no_grad()``, ``batch_size`` rows at a time (default:
    1,024, fewer where a module's activations would take more than a quarter of the memory
    budget: :func:`~ddkit.models.footprint.inference_batch`), concatenated along dimension 0.

    ``model`` is a module or any function of a batch. A module runs in eval mode (its previous
    mode is restored afterwards), as ``getattr(model, method)`` when ``method`` is given (e.g.
    ``"embed"``), and gets each chunk on its parameters' device unless ``device`` says otherwise.
    ``post`` is applied to every chunk's output (e.g. ``torch.Tensor.cpu``, a softmax), so large
    outputs can leave the device chunk by chunk. An empty ``inputs`` gives ``torch.empty(0)``.
    """
    module = model if isinstance(model, nn.Module) else None
    if batch_size is None:
        batch_size = 1024 if module is None else inference_batch(module)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    fn: BatchFn = getattr(module, method) if module is not None and method else model
    if module is None and method:
        raise ConfigError("predict: method= needs an nn.Module")
    dev = torch.device(device) if device is not None else None
    if dev is None and module is not None:
        dev = _device_of(module)
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        with torch.no_grad():
            outs = []
            for s in range(0, len(inputs), batch_size):
                x = inputs[s : s + batch_size]
                y = fn(x.to(dev) if dev is not None else x)
                outs.append(post(y) if post is not None else y)
    finally:
        if module is not None:
            module.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


# ---------------------------------------------------------------------------- re-initialisation
def _owns_reset(module: nn.Module) -> bool:
    return callable(getattr(module, "reset_parameters", None))


def reset_module(module: nn.Module) -> None:
    """Re-run the initialisers of ``module`` from torch's global RNG: a module with a
    ``reset_parameters`` method resets itself and everything under it; any other module resets
    its children in registration order (the order ``__init__`` built them in for every model
    of the zoo). Use :func:`reinitialize` to do it from a seed."""
    if _owns_reset(module):
        module.reset_parameters()
        return
    for child in module.children():
        reset_module(child)


def reinitializable(module: nn.Module) -> bool:
    """Whether :func:`reset_module` reaches every parameter and buffer of ``module`` (each lies
    under a module with ``reset_parameters``)."""

    def covered(m: nn.Module) -> bool:
        if _owns_reset(m):
            return True
        if any(True for _ in m.parameters(recurse=False)) or any(
            True for _ in m.buffers(recurse=False)
        ):
            return False
        return all(covered(c) for c in m.children())

    return covered(module)


def reinitialize(module: nn.Module, seed: int) -> nn.Module:
    """Give ``module`` (in place; also returned) the initial weights and buffers it would have
    had if it had been built under ``seeded_global_rng(seed)``, leaving the global RNG as it was.

    Exact when the module's ``reset_parameters`` calls draw in the order its constructor drew
    (true for every model of :mod:`ddkit.models`, checked in the tests) and its parameters are
    float32 on the CPU (elsewhere the same seed draws other numbers: re-initialise a CPU float32
    copy and copy it over). Raises :class:`~ddkit.errors.ConfigError` when some parameter or
    buffer has no ``reset_parameters`` above it (:func:`reinitializable`).
    """
    if not reinitializable(module):
        raise ConfigError(
            f"{type(module).__name__} has parameters or buffers outside any module with "
            "reset_parameters(); it cannot be re-initialised in place"
        )
    with seeded_global_rng(seed), torch.no_grad():
        reset_module(module)
    return module


def build_network(name: str, spec: DatasetSpec, seed: int) -> nn.Module:
    """``create_model(name)`` for ``spec``'s rows, initialised under ``seed`` (the global RNG
    is left as it was): the one way ddkit builds a seeded network. Where a modality does not
    take any network (:attr:`~ddkit.data.modalities.base.Modality.open_models`: every one but
    images), only its model families are accepted
    (:attr:`~ddkit.data.modalities.base.Modality.models`)."""
    from ddkit.models.registry import create_model, split_name

    fits = spec.kind.models
    if not spec.kind.open_models and split_name(name)[0] not in fits:
        raise ConfigError(
            f"model {name!r} does not take {spec.modality} rows; use one of: {', '.join(fits)}"
        )
    with seeded_global_rng(seed):
        return create_model(
            name,
            num_classes=spec.num_classes,
            in_channels=spec.channels,
            image_size=spec.image_size,
        )


#: Per-sample normalisation (instance, group, layer norm) over fewer values than this makes the
#: matching objectives near-chaotic in the images: on 8x8 digits, ConvNet-3's third instance norm
#: sees 2x2 maps, and float64 finite differences of the MTT loss disagree with its autograd
#: slope, while ConvNet-2 on 8x8 (4x4 maps), ConvNet-3 on 28x28 and un-normalised ConvNets agree.
MIN_NORMALISED_VALUES = 16


def smallest_normalised_group(model: nn.Module, image_shape: tuple[int, int, int]) -> int | None:
    """The fewest values any per-sample normalisation layer (GroupNorm: instance, group, layer
    norm) of ``model`` averages over for one image of ``image_shape`` (C, H, W); ``None`` if it
    has none. Found with forward hooks on one zero image."""
    sizes: list[int] = []

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0]
        sizes.append(int(x[0].numel() // mod.num_groups))

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.GroupNorm)
    ]
    try:
        with torch.no_grad():
            device = next(model.parameters(), torch.empty(0)).device
            model(torch.zeros(1, *image_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return min(sizes) if sizes else None
