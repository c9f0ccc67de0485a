"""The conformance checks of :mod:`ddkit.testing` for methods on image-text pairs
(``needs = "paired"``): :func:`ddkit.testing.check_method` sends such a method here, with
:func:`tiny_paired` as its data.

The same contract as every method, read for pairs: the fit returns a paired set of ``ipc``
pairs (images of the data's shape, one caption each, finite), leaves the input and the global
RNG untouched, gives the same set for the same seed (same object or fresh) and another for
another seed, survives save -> load, resumes from a checkpoint to the same set, refuses an
``ipc`` that does not fit the pairs in one line, and its presets build.
"""

from __future__ import annotations

from typing import Any

import torch

from ddkit.data.modalities.paired import tiny_paired
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.retrieval import TEXT_EMB, TEXT_IDS

__all__ = ["paired_failures", "tiny_paired"]


def _check_output(f: Any, syn: SyntheticSet, train: Any, ipc: int) -> None:
    f.check(isinstance(syn, SyntheticSet), f"fit returned {type(syn).__name__}, not SyntheticSet")
    if not isinstance(syn, SyntheticSet):
        return
    f.check(syn.spec.kind is train.spec.kind, f"the set's modality is {syn.spec.modality!r}")
    shape = (ipc, *train.spec.shape)
    f.check(tuple(syn.images.shape) == shape, f"images {tuple(syn.images.shape)}, not {shape}")
    f.check(bool(torch.isfinite(syn.images).all()), "images contain NaN/inf")
    text = syn.extras.get(TEXT_EMB, syn.extras.get(TEXT_IDS))
    f.check(text is not None and len(text) == ipc, "the set holds no caption per image")
    f.check(
        all(bool(torch.isfinite(v).all()) for v in syn.extras.values() if v.is_floating_point()),
        "extras contain NaN/inf",
    )


def paired_failures(
    name: str, data: Any = None, ipc: int = 4, overrides: dict[str, Any] | None = None
) -> list[str]:
    """The failed checks (module docstring) of paired method ``name`` on ``data`` (paired
    splits or a train split; default :func:`tiny_paired`)."""
    from ddkit.methods import create_method
    from ddkit.testing_checks import _Failures, check_fit_contract, method_test_overrides

    data = tiny_paired() if data is None else data
    train = getattr(data, "train", data)
    ipc = max(int(ipc), 2)
    cfg = {**method_test_overrides(name), **(overrides or {})}
    f = _Failures(name)

    def make() -> Any:
        return create_method(name, modality="paired", **cfg)

    refused = ((1, "ipc 1 (one pair has no negative)"), (len(train) + 1, "ipc > images"))
    check_fit_contract(f, make, train, ipc, (train.images, train.captions), _check_output, refused)
    return f.items
