"""Seeded randomness for code that can only read torch's global RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_global_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block whose randomness comes from torch's global RNG (module initialisers, dropout)
    from ``seed``, leaving the caller's global RNG state exactly as it was.

    Everything else in ddkit draws from explicit ``torch.Generator`` objects; PyTorch's layer
    initialisers accept none, so this is the one place that seeds the global RNG, inside
    ``fork_rng`` (saved on entry, restored on exit). CUDA state is forked too for a CUDA ``device``.
    """
    dev = torch.device(device) if device is not None else None
    devices = [dev] if dev is not None and dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
