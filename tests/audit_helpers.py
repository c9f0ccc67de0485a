"""Small shared pieces of the audit tests: a quick training recipe and a fast trained network
on the tiny digits split (8x8 images), and a results comparison that ignores wall times."""

from __future__ import annotations

from typing import Any

import torch

from ddkit.eval.protocol import EvalProtocol, get_protocol

#: A one-layer ConvNet trained 60 epochs at lr 0.05: fits the tiny digits sets in well under a
#: second per network on one CPU thread, and reaches ~90 % test accuracy from 5 images per class.
QUICK: EvalProtocol = get_protocol("dc").with_(epochs=60, lr=0.05, runs=2, models=("convnet1-w32",))


def trained_net(splits: Any, *, seed: int = 0, epochs: int = 60) -> torch.nn.Module:
    """A ``convnet1-w32`` trained on the whole training split (normalised space), eval mode."""
    from ddkit.audits.base import full_data, train_on_set

    trained = train_on_set(
        full_data(splits.train), splits.test, QUICK.with_(runs=1, epochs=epochs), seed=seed
    )
    return trained.networks[0]


def without_timings(x: Any) -> Any:
    """``x`` (a results dict) without its wall-time entries, for same-seed comparisons."""
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if not k.endswith("seconds")}
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x
