"""The candidates of ``--method auto``: the methods (with a few settings each) that fit a
dataset's rows, its IPC and what the user gave (a teacher).

Every candidate is a registered method with options; which may compete is read from the data
(:class:`~ddkit.data.spec.DatasetSpec`) and the method's own ``needs``
(:meth:`~ddkit.data.spec.DatasetSpec.check_needs`), never from a dataset's name:

- everywhere: random real rows and two coresets (herding, k-center), which cost one selection;
- images: the distribution matchers DM (Zhao & Bilen, WACV 2023), IDM (Zhao et al., CVPR 2023)
  and NCFM (Wang et al., CVPR 2025) with their real batch capped as ``--method recommended``
  caps it (a step's cost follows the classes, not the data), gradient matching with DSA (Zhao &
  Bilen, ICML 2021), the trajectory method TESLA (Cui et al., ICML 2023), which enters only where
  its experts' cost fits the budget (the tournament costs it first), and RDED (Sun et al., CVPR
  2024) only when a teacher is given;
- other differentiable rows (tables, series): DM and KIP (Nguyen et al., ICLR 2021);
- graphs: the methods that need a graph (GCond, DosCond).

A candidate's iterations are not a setting here: the tournament gives each the iterations its
share of the budget buys, doubling them for the survivors of each round, up to the method's own
planned count (its preset, or :meth:`~ddkit.methods.base.Distiller.budget_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ddkit.errors import ConfigError
from ddkit.methods.base import METHODS, load_all
from ddkit.methods.recommended import recommended_batch_real


@dataclass(frozen=True)
class Candidate:
    """One entry of the tournament: ``method`` with ``options``; ``label`` names it in the record
    (the method, and the setting where one method enters twice)."""

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def selector(self) -> bool:
        """Whether the method selects real rows (a coreset: one selection, no steps to buy)."""
        load_all()
        return METHODS.get(self.method).kind == "selector"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "options": dict(self.options)}


def _pixels(spec: Any) -> bool:
    return bool(spec.kind.pixels)


def _other_rows(spec: Any) -> bool:
    """Rows other than pictures that are not nodes of a graph (tables, series)."""
    return not spec.kind.pixels and not _fits(spec, "graph")


def _anywhere(spec: Any) -> bool:
    return True


def _fits(spec: Any, needs: str) -> bool:
    try:
        spec.check_needs(needs, "auto")
    except ConfigError:
        return False
    return True


#: ``(method, where, needs a teacher)`` in the order they are costed: the cheap ones first, so a
#: small budget still compares them. ``where`` reads the data's spec.
ENTRIES: tuple[tuple[str, Callable[[Any], bool], bool], ...] = (
    ("random", _anywhere, False),
    ("herding", _anywhere, False),
    ("kcenter", _anywhere, False),
    ("dm", _pixels, False),
    ("idm", _pixels, False),
    ("ncfm", _pixels, False),
    ("dsa", _pixels, False),
    ("tesla", _pixels, False),
    ("rded", _pixels, True),
    ("dm", _other_rows, False),
    ("kip", _other_rows, False),
    ("gcond", _anywhere, False),
    ("doscond", _anywhere, False),
)
#: methods whose real batch is capped as ``--method recommended`` caps DM's
_CAPPED_BATCH = ("dm", "idm", "ncfm")


def candidates_for(train: Any, dataset: str, ipc: int, teacher: Any = None) -> list[Candidate]:
    """The candidates for distilling ``train`` (the training split of ``dataset``) at ``ipc``;
    ``teacher`` (a source as ``--teacher`` takes it) admits the decoupled method. Rows without
    classes (image-text pairs) are refused in one line."""
    load_all()
    spec = train.spec
    if not spec.kind.classes:
        raise ConfigError(
            f"--method auto compares methods on labelled rows; {dataset!r} holds "
            f"{spec.kind.noun} without classes: pick a method (`ddkit list`)"
        )
    out: list[Candidate] = []
    for name, where, needs_teacher in ENTRIES:
        if name not in METHODS or not where(spec) or (needs_teacher and teacher is None):
            continue
        if not _fits(spec, METHODS.get(name).needs):
            continue
        out.append(Candidate(name, name, _options(name, dataset, ipc, train, teacher)))
    return out


def _options(name: str, dataset: str, ipc: int, train: Any, teacher: Any) -> dict[str, Any]:
    """A candidate's options: a teacher where it takes one; the real batch capped where a
    step's cost would grow with the classes."""
    from ddkit.methods.base import create_method

    options: dict[str, Any] = {}
    if teacher is not None and "teacher" in METHODS.get(name).Config.__dataclass_fields__:
        options["teacher"] = teacher
    if name in _CAPPED_BATCH:
        preset = create_method(name, dataset=dataset, ipc=ipc, modality=spec_modality(train))
        batch = recommended_batch_real(preset.config.batch_real, len(train.class_counts))
        if batch != preset.config.batch_real:
            options["batch_real"] = batch
    return options


def spec_modality(train: Any) -> str:
    """The name of the modality of ``train``'s rows."""
    return train.spec.kind.name


def scoring_network(
    candidates: list[Candidate], dataset: str, ipc: int, modality: str
) -> str | None:
    """The network the distillers among ``candidates`` train with (their ``model`` option; the
    most common where they differ, the earliest on a tie), which then scores every candidate;
    ``None`` where none has one (tables, series, graphs, or selectors alone)."""
    from collections import Counter

    from ddkit.methods.base import create_method

    models = []
    for c in candidates:
        if c.selector:
            continue
        config = create_method(c.method, dataset=dataset, ipc=ipc, modality=modality,
                               **dict(c.options)).config  # fmt: skip
        if isinstance(getattr(config, "model", None), str):
            models.append(config.model)
    return Counter(models).most_common(1)[0][0] if models else None
