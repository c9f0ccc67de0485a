"""Content fingerprints: short hashes that key caches by the exact data they were built from."""

from __future__ import annotations

import hashlib

import torch

from ddkit.data.byte_images import plain
from ddkit.data.dataset import ImageDataset

__all__ = ["fingerprint"]

Part = torch.Tensor | ImageDataset | str | bytes


def fingerprint(*parts: Part, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``parts``, fed in order: a tensor as
    the bytes of its contiguous CPU copy, an :class:`ImageDataset` as its images then its labels
    (then its bias attributes, if it has them; not its spec: pass ``repr(...)`` of what else
    should count), a string as UTF-8.

    ``fingerprint(train)`` is the ``data_fingerprint`` of expert folders
    (:mod:`ddkit.methods.trajectory.experts`), which also names their auto-cache folders; it
    must not change.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, ImageDataset):
            _feed(h, part.images)
            _feed(h, part.labels)
            if part.bias is not None:  # a biased dataset's groups are part of its content
                h.update(b"bias")
                _feed(h, part.bias)
        elif isinstance(part, torch.Tensor):
            _feed(h, part)
        elif isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            raise TypeError(f"cannot fingerprint a {type(part).__name__}")
    return h.hexdigest()[:length]


_BLOCK_BYTES = 2**26  # a tensor is hashed this many bytes of rows at a time


def _feed(h: hashlib._Hash, t: torch.Tensor) -> None:
    """Feed ``h`` the bytes of ``t``'s contiguous CPU copy (:class:`ByteImages` as their
    float32 values), a block of rows at a time: a large split never has a second copy."""
    t = t.detach().cpu()
    if t.ndim == 0:
        h.update(t.numpy().tobytes())
        return
    rows = max(1, _BLOCK_BYTES // max(1, t[:1].numel() * t.element_size()))
    for i in range(0, len(t), rows):
        h.update(plain(t[i : i + rows]).contiguous().numpy().tobytes())
