"""Seeds and seeded randomness.

Everything random in ddkit draws from an explicit ``torch.Generator``. Three helpers cover the
places where a plain integer seed is needed:

* :func:`draw_seed` -- a seed drawn from a generator (advances it by one draw);
* :func:`derive_seed` -- a seed hashed from a tuple such as ``(seed, expert, epoch)``, stable
  across runs and platforms, for work that must be reproducible piece by piece (resumable files);
* :func:`seeded_global_rng` -- run code that can only read torch's global RNG (layer
  initialisers) from a seed, leaving the global state as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ddkit.errors import ConfigError

__all__ = ["SEED_BOUND", "check_seed", "derive_seed", "draw_seed", "seeded_global_rng"]

#: Seeds drawn by :func:`draw_seed` lie in ``[0, SEED_BOUND)``.
SEED_BOUND = 2**62


def check_seed(seed: object) -> int:
    """``seed`` as an int, or a one-line :class:`ConfigError` unless it is an integer in
    ``[0, 2**63)`` (what every generator, numpy's included, takes, with room for offsets)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed


def draw_seed(generator: torch.Generator) -> int:
    """An integer seed in ``[0, 2**62)`` drawn from ``generator`` (one ``torch.randint`` draw)."""
    return int(torch.randint(0, SEED_BOUND, (1,), generator=generator))


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple, e.g. ``(seed, expert, epoch)``: the first 8 bytes
    (little-endian) of the SHA-256 of ``"p0:p1:..."``, so stable across runs and platforms."""
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


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
