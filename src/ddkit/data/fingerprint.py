"""Content fingerprints: short hashes that key caches by the exact data they were built from."""

from __future__ import annotations

import hashlib

import torch

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
            h.update(_tensor_bytes(part.images))
            h.update(_tensor_bytes(part.labels))
            if part.bias is not None:  # a biased dataset's groups are part of its content
                h.update(b"bias" + _tensor_bytes(part.bias))
        elif isinstance(part, torch.Tensor):
            h.update(_tensor_bytes(part))
        elif isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            raise TypeError(f"cannot fingerprint a {type(part).__name__}")
    return h.hexdigest()[:length]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().tobytes()
