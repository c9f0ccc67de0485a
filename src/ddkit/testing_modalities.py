"""The conformance checks every registered modality must pass (:func:`check_modality`, one check
per entry of :data:`MODALITY_CHECKS`), on the modality's own tiny instance
(:meth:`~ddkit.data.modalities.base.Modality.tiny`); part of :mod:`ddkit.testing`.

A modality registered tomorrow (one new module of :mod:`ddkit.data.modalities`) is checked by
the same suite: its tiny splits are of its dataset type and spec, its layout round-trips, its
``ipc`` rule refuses in one line, methods that need other rows refuse its data, its model
families, protocol, evaluator and learners exist, and a set of its rows draws.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ddkit.data.modalities import MODALITIES, Modality, get_modality
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError

__all__ = ["MODALITY_CHECKS", "check_modality", "modality_failures"]

#: The augmentation families a modality may name (:attr:`Modality.augmentations`).
AUGMENTATION_FAMILIES = ("dsa", "series")


def _splits(m: Modality) -> Any:
    splits = m.tiny()
    assert None not in (getattr(splits, "train", None), getattr(splits, "test", None)), (
        "tiny() gives no train and test splits"
    )
    return splits


def _tiny_instance(m: Modality) -> None:
    splits = _splits(m)
    for part in ("train", "test"):
        split = getattr(splits, part)
        kind = m.dataset_type()
        assert isinstance(split, kind), f"{part} is {type(split).__name__}, not {kind.__name__}"
        assert split.spec.kind is m, f"{part} holds {split.spec.modality} rows"
        assert len(split) > 0, f"{part} is empty"


def _layout(m: Modality) -> None:
    train = _splits(m).train
    spec = train.spec
    assert DatasetSpec.from_dict(spec.to_dict()) == spec, "the spec does not survive JSON"
    m.check_layout(spec)
    rows = m.to_rows(train.images[:3])
    assert rows.dtype == torch.float32, f"to_rows gives {rows.dtype}"
    assert tuple(rows.shape) == (3, *spec.shape), f"to_rows gives {tuple(rows.shape)}"


def _one_line_refusal(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except ConfigError as e:
        assert "\n" not in str(e), f"{what}: the error is not one line"
        return
    raise AssertionError(f"{what} is not refused")


def _ipc(m: Modality) -> None:
    train = _splits(m).train
    smallest = 1 if m.classes else 2
    m.check_ipc(train, smallest)
    _one_line_refusal(lambda: m.check_ipc(train, 0), "ipc 0")
    _one_line_refusal(lambda: m.check_ipc(train, len(train) + 1), "an ipc past the rows")
    assert m.ipc_means.startswith(m.noun), f"ipc means {m.ipc_means!r}"


def _needs(m: Modality) -> None:
    spec = _splits(m).train.spec
    spec.check_needs(m.name, "a method on these rows")
    for other in MODALITIES.names():
        if other != m.name:
            _one_line_refusal(
                lambda o=other: spec.check_needs(o, f"a method on {o} rows"), f"needs {other!r}"
            )


def _models(m: Modality) -> None:
    from ddkit.models.helpers import build_network
    from ddkit.models.registry import MODELS, split_name

    assert m.models, "no model family"
    names = [split_name(n)[0] for n in MODELS.names()]
    unknown = [f for f in m.models if not any(n.startswith(f) for n in names)]
    assert not unknown, f"unknown model families {unknown}"
    spec = _splits(m).train.spec
    net = build_network(m.models[0], spec, seed=0)
    assert isinstance(net, torch.nn.Module), "the default model does not build"
    unknown = [a for a in m.augmentations if a not in AUGMENTATION_FAMILIES]
    assert not unknown, f"unknown augmentation families {unknown}"


def _evaluation(m: Modality) -> None:
    from ddkit.eval.evaluators import EVALUATORS
    from ddkit.eval.learners import READINGS, learner_names
    from ddkit.eval.protocol import PROTOCOLS

    assert m.evaluator in EVALUATORS, f"unknown evaluator {m.evaluator!r}"
    assert m.protocol is None or m.protocol in PROTOCOLS, f"unknown protocol {m.protocol!r}"
    assert m.learner_rows in READINGS, f"learners cannot read {m.learner_rows!r} rows"
    assert learner_names(None, m) == list(m.learners), "the learners default differs"
    learner_names(",".join(m.learners), m)  # each known and fit for these rows


def _draw(m: Modality) -> None:
    from ddkit.data.synthetic import SyntheticSet

    if not m.classes:
        return  # a set without classes is made by its methods (checked with them)
    train = _splits(m).train
    rows = torch.arange(min(len(train), 6))
    syn = SyntheticSet(train.images[rows], train.labels[rows], train.spec)
    with tempfile.TemporaryDirectory() as tmp:
        out = m.draw(syn, Path(tmp) / "grid.png", max_per_class=2, min_cell=8)
        assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "draw wrote no PNG"


#: Each modality's conformance checks, one test id per check (``tests/test_modalities.py``
#: parametrises over modality x check).
MODALITY_CHECKS: dict[str, Callable[[Modality], None]] = {
    "tiny_instance": _tiny_instance,
    "layout": _layout,
    "ipc": _ipc,
    "needs": _needs,
    "models": _models,
    "evaluation": _evaluation,
    "draw": _draw,
}


def modality_failures(name: str, checks: Iterable[str] | None = None) -> list[str]:
    """The failed checks of modality ``name`` (all of :data:`MODALITY_CHECKS`, or ``checks``)."""
    m = get_modality(name)
    failures = []
    for check in checks if checks is not None else MODALITY_CHECKS:
        try:
            MODALITY_CHECKS[check](m)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            failures.append(f"{check}: {type(e).__name__}: {e}")
    return failures


def check_modality(name: str, checks: Iterable[str] | None = None) -> None:
    """Run the conformance checks on registered modality ``name``; raise one
    ``AssertionError`` listing every failed check."""
    failures = modality_failures(name, checks)
    if failures:
        raise AssertionError(
            f"modality {name!r} failed {len(failures)} check(s):\n  - " + "\n  - ".join(failures)
        )
