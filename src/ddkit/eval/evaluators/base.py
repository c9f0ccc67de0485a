"""The :class:`Evaluator` contract and its registry: what ``ddkit evaluate`` asks of every set
(:class:`EvalSettings`, its flags), what an evaluator answers (an :class:`Evaluation`: a
:class:`~ddkit.eval.evaluate.Report` and the heading that says what it measured), and the one
rule that refuses a setting the evaluator that judges a set does not take (:func:`own_settings`).

Each evaluator holds only its own settings: a frozen dataclass whose fields are the fields of
:class:`EvalSettings` it accepts (:attr:`Evaluator.settings`). Any other field given is refused
in one line that names its flag, what judges the set and the fix, before any work. One module of
:mod:`ddkit.eval.evaluators` per evaluator registers it with :func:`register_evaluator`; a
modality names the one that judges its sets
(:attr:`~ddkit.data.modalities.base.Modality.evaluator`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.evaluate import Report
from ddkit.eval.protocol import EvalProtocol
from ddkit.progress import ProgressSetting
from ddkit.registry import Registry

__all__ = [
    "AMBIENT",
    "EVALUATORS",
    "EvalRequest",
    "EvalSettings",
    "Evaluation",
    "Evaluator",
    "SeededRuns",
    "own_settings",
    "register_evaluator",
]


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate a set; ``None`` leaves a choice to the set and its evaluator.

    ``protocol`` (a protocol, resolved at the door: :func:`~ddkit.eval.protocol.get_protocol`
    turns a name into one; default: the set's recipe), ``models`` (names, or comma-separated),
    ``groups``, ``precision``, ``compile``, ``device`` (a torch device or its name; default:
    the session's) and ``progress`` are for evaluation by networks; ``learners`` (names, or
    comma-separated) evaluates by learners instead. ``runs`` and ``epochs`` override the
    evaluator's; the same ``seed`` gives the same report. ``teacher`` (a module, a folder or a
    network source such as ``file:PATH``; default: the set's) serves protocols whose targets
    come from a teacher. ``budget`` (seconds, or ``"30m"``), counted from ``started`` (a
    :func:`time.monotonic` reading; default: when the evaluation begins), cuts the networks'
    protocol to what fits (:func:`ddkit.eval.evaluate`).
    """

    protocol: EvalProtocol | None = None
    models: str | Sequence[str] | None = None
    learners: str | Sequence[str] | None = None
    runs: int | None = None
    epochs: int | None = None
    seed: int = 0
    groups: bool = False
    precision: str | None = None
    compile: bool = False
    device: Any = None
    progress: ProgressSetting = False
    teacher: Any = None
    budget: float | str | None = None
    started: float | None = None


#: Fields of :class:`EvalSettings` that belong to the session rather than to one evaluator (the
#: seed, where it runs, whether it shows progress, when the command started): an evaluator whose
#: settings lack one ignores it instead of refusing it.
AMBIENT = frozenset({"seed", "device", "progress", "started"})
#: The flags of fields not named ``--FIELD`` (``None``: a field no flag sets).
_FLAGS = {"progress": "--quiet", "started": None}


@dataclass
class Evaluation:
    """An evaluation's report and the heading that says what it measured."""

    report: Report
    heading: str

    def text(self) -> str:
        """The heading above the report's table, as ``ddkit evaluate`` prints them."""
        return f"{self.heading}\n{self.report.table()}"


@dataclass(frozen=True)
class EvalRequest:
    """What an evaluation runs beside the set and its settings: ``test_name`` names the test data
    in the heading; ``train`` (the real train split) serves evaluators that train baselines on
    real data; ``say`` receives the notes given before training."""

    test_name: str
    train: Any = None
    say: Callable[[str], Any] = lambda _note: None


@dataclass(frozen=True)
class SeededRuns:
    """The settings of an evaluator that takes only counts: ``runs`` and ``epochs`` (``None``:
    its own) and the ``seed``."""

    runs: int | None = None
    epochs: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Evaluator:
    """One way to judge a set. ``name``: what a modality names
    (:attr:`~ddkit.data.modalities.base.Modality.evaluator`); ``judges``: who judges, in words
    ("networks", "a GCN"); ``settings``: its own frozen settings, whose fields are the
    :class:`EvalSettings` fields it accepts; ``run(syn, test, settings, request)``: the
    :class:`Evaluation`; ``estimate(syn, test, settings)``: what it will cost here, from a
    warm-up (``None``: it takes seconds and is not estimated); ``gives_way``: named
    ``--learners`` judge its sets instead; ``fixes``: the fix a refusal of a field names, where
    it is not "drop it"."""

    name: str
    judges: str
    settings: type
    run: Callable[[SyntheticSet, Any, Any, EvalRequest], Evaluation]
    estimate: Callable[[SyntheticSet, Any, Any], Any] | None = None
    gives_way: bool = True
    fixes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def accepts(self) -> tuple[str, ...]:
        """The :class:`EvalSettings` fields this evaluator takes, in its settings' order."""
        return tuple(f.name for f in dataclasses.fields(self.settings))


EVALUATORS: Registry[Evaluator] = Registry("evaluator")


def register_evaluator(evaluator: Evaluator) -> Evaluator:
    """Register ``evaluator`` under its name (a module of :mod:`ddkit.eval.evaluators` calls it
    once), after checking that its settings are fields of :class:`EvalSettings`."""
    known = {f.name for f in dataclasses.fields(EvalSettings)}
    unknown = [n for n in evaluator.accepts if n not in known]
    if unknown:
        raise TypeError(f"evaluator {evaluator.name!r} takes unknown settings {unknown}")
    EVALUATORS.add(evaluator.name, evaluator, help=evaluator.judges)
    return evaluator


def own_settings(evaluator: Evaluator, s: EvalSettings, what: str) -> Any:
    """``evaluator``'s own settings taken from ``s``; a field of ``s`` given (not its default)
    that the evaluator does not take, :data:`AMBIENT` ones aside, is refused in one line that
    names its flag, what judges the set (``what``: e.g. "this table set") and the fix."""
    accepts = evaluator.accepts
    for f in dataclasses.fields(EvalSettings):
        if f.name in accepts or f.name in AMBIENT or getattr(s, f.name) == f.default:
            continue
        owners = [e.judges for e in map(EVALUATORS.get, EVALUATORS) if f.name in e.accepts]
        takes = [flag for n in accepts if (flag := _FLAGS.get(n, f"--{n}")) is not None]
        raise ConfigError(
            f"--{f.name} is for evaluation by {' or '.join(owners) or 'no evaluator'} and does "
            f"not apply to {what}, judged by {evaluator.judges} ({_words(takes)} apply); "
            f"{evaluator.fixes.get(f.name, 'drop it')}"
        )
    return evaluator.settings(**{n: getattr(s, n) for n in accepts})


def _words(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, [", ".join(items[:-1]), *items[-1:]]))
