"""The :class:`Modality` contract and its registry: what one row of a dataset is, and everything
that follows from it on every floor (its layout check, how its splits load and of what type they
are, what ``ipc`` counts and how it is checked, how its sets are drawn, which evaluator judges
them, and a tiny instance for the conformance suite).

One module of :mod:`ddkit.data.modalities` per modality registers an instance of a subclass
(most of :class:`~ddkit.data.modalities.rows.Rows`, which gives the behaviour of rows held in
an :class:`~ddkit.data.dataset.ImageDataset`) with :func:`register_modality`; code elsewhere asks
the registered modality (``spec.kind``, :func:`get_modality`) instead of comparing its name.

:mod:`ddkit.data.spec` imports this module, so it imports nothing of :mod:`ddkit.data` (a
``spec`` argument is a :class:`~ddkit.data.spec.DatasetSpec`); and the modules of this package
import the rest of :mod:`ddkit.data` inside their functions only, so that the registrations
run while :mod:`ddkit.data.spec` is first imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddkit.errors import DataError
from ddkit.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DEFAULT_MODALITY",
    "MODALITIES",
    "TABLE_LEARNERS",
    "Modality",
    "check_one_high",
    "get_modality",
    "register_modality",
]

#: The modality of a spec or dataset that names none (every set saved before modalities).
DEFAULT_MODALITY = "image"
#: The ``--learners`` default on rows read as flat vectors (tables, and any set judged by
#: learners on request); :class:`Modality.learners`.
TABLE_LEARNERS = ("logreg", "knn", "rf", "gb", "mlp")


@dataclass(frozen=True)
class Modality:
    """What one row of a dataset is, and what follows from it.

    ``row`` / ``layout``: what a row is and how it lies in its stored ``(C, H, W)`` tensor;
    ``normalisation``: what the spec's per-channel ``mean`` / ``std`` standardise;
    ``augmentations``: the augmentation families that fit (``"dsa"``: DSA's image operations,
    Zhao & Bilen ICML 2021; ``"series"``: the time-series operations of
    :mod:`ddkit.augment.series`); ``models``: the model families that fit, the first being the
    default of a method or evaluation that names none (unless ``open_models``);
    ``differentiable``: whether a row is a point of a continuous space that gradient-based
    methods (DM, DC, KIP, MTT) can move.

    ``noun``: what a set's rows are called in messages (``"images"``, ``"rows"``);
    ``open_models``: any network fits these rows (and a method keeps its own default model);
    ``pixels``: rows are pictures (a set exports as PNG); ``classes``: rows carry classes, so
    ``ipc`` counts rows per class (else the set's rows in all).

    ``evaluator``: the name of the evaluator that judges a set of these rows
    (:func:`ddkit.eval.dispatch.evaluate_set` looks it up); ``protocol``: the registered
    protocol a set's recipe names (``None``: chosen from its labels); ``learners`` /
    ``learner_rows``: the ``--learners`` default and how a learner reads a row (``"flat"``
    vectors or ``"series"`` ``(D, L)``).

    ``needs_words`` / ``needs_fix``: how a method's need of these rows is said, and what to do
    when the data are other rows (:meth:`ddkit.data.spec.DatasetSpec.check_needs`);
    ``exported_beside``: what an export to the ``datasets`` format writes beside the rows and
    labels, in words (:meth:`hf_columns` writes it).

    Subclasses give the behaviour: :meth:`to_rows`, :meth:`dataset_type`, :meth:`load_splits`,
    :meth:`draw` and :meth:`tiny` (:class:`~ddkit.data.modalities.rows.Rows` gives all but the
    last for rows in an :class:`~ddkit.data.dataset.ImageDataset`), and may change the defaults
    of :meth:`check_layout`, :meth:`check_ipc`, :meth:`data_sample`, :meth:`rough_hint`,
    :meth:`claims`, :meth:`check_export` and :meth:`hf_columns`.
    """

    name: str
    row: str
    layout: str
    normalisation: str
    augmentations: tuple[str, ...]
    models: tuple[str, ...]
    differentiable: bool = True
    noun: str = "rows"
    open_models: bool = False
    pixels: bool = False
    classes: bool = True
    evaluator: str = "learners"
    protocol: str | None = None
    learners: tuple[str, ...] = TABLE_LEARNERS
    learner_rows: str = "flat"
    needs_words: str = ""
    needs_fix: str = ""
    exported_beside: tuple[str, ...] = ()

    # ------------------------------------------------------------------ the rows
    @property
    def ipc_means(self) -> str:
        """What ``ipc`` counts for a set of these rows."""
        return f"{self.noun} per class" if self.classes else f"{self.noun} in all"

    def check_layout(self, spec: Any) -> None:
        """Refuse, in one line, a ``spec`` whose row shape does not fit this modality (the
        default: any ``(C, H, W)``, no table columns)."""
        if spec.columns:
            raise DataError(f"only a table has columns; this spec's modality is {self.name}")

    def to_rows(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """User rows as float32 ``(N, C, H, W)`` in this modality's layout, checked (real
        numbers, finite, within the float32 range)."""
        raise NotImplementedError(f"modality {self.name!r} takes no rows")

    def check_ipc(self, train: Any, ipc: int) -> None:
        """Refuse, in one line and before any work, an ``ipc`` that ``train`` cannot give (the
        default: a positive count no larger than the smallest class)."""
        train.check_ipc(ipc)

    def dataset_type(self) -> type:
        """The type of one split of these rows."""
        raise NotImplementedError(f"modality {self.name!r} names no dataset type")

    def data_sample(self, train: Any, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Tensors that identify ``train`` cheaply (its labels and the rows ``rows``), for the
        check that every process of a distributed run reads the same data."""
        return train.labels, train.images[rows]

    def rough_hint(self, spec: Any) -> tuple[str, str]:
        """How a warning that a network normalises too few values per group names rows of
        ``spec``'s size, and a shallower network that fits them (the default: pictures'
        sizes and a shallow ConvNet; other rows by their shape)."""
        h, w = spec.image_size
        if self.pixels:
            return f"{h}x{w} images", "'convnet2' on 8x8 images"
        return f"{self.name} rows of shape {tuple(spec.shape)}", "fewer layers"

    # ------------------------------------------------------------------ its datasets
    def claims(self, path: str | Path) -> bool:
        """Whether the unregistered dataset ``path`` (a file or folder that exists) holds these
        rows in a layout only this modality reads (default: none)."""
        return False

    def load_splits(self, dataset: str, root: str | None) -> Any:
        """Every split of ``dataset`` (a registered name or a path) read from ``root``."""
        raise NotImplementedError(f"modality {self.name!r} loads no dataset")

    # ------------------------------------------------------------------ its sets
    def draw(self, syn: Any, path: str | Path, *, max_per_class: int, min_cell: int) -> Path:
        """Write a PNG picture of the synthetic set ``syn`` to ``path``."""
        raise NotImplementedError(f"modality {self.name!r} draws no set")

    def check_export(self, what: str) -> None:
        """Refuse, in one line, an export of a set of these rows to ``what`` (a format such as
        "PNG folders") that could not hold all it keeps: refused, never dropped (the default:
        every format takes the rows)."""

    def hf_columns(self, syn: Any, hf: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The columns (and their ``datasets`` features) that a Hugging Face export of the set
        ``syn`` adds beside its rows and labels (``hf``: the ``datasets`` module; the default:
        none)."""
        return {}, {}

    def tiny(self) -> Any:
        """Tiny seeded splits of these rows, for tests and the conformance suite (cached by the
        subclass; treat them as read-only)."""
        raise NotImplementedError(f"modality {self.name!r} gives no tiny instance")

    # ------------------------------------------------------------------ a method's conformance
    def fit_inputs(self, train: Any) -> tuple[torch.Tensor, ...]:
        """The tensors of ``train`` a method's fit must leave untouched (:func:`ddkit.testing.
        check_method`; the default: its rows and labels)."""
        return train.images, train.labels

    def refused_ipcs(self, train: Any) -> tuple[tuple[int, str], ...]:
        """The ``ipc`` values a method on ``train`` must refuse in one line, each with its words
        (the default, rows with classes: 0 and one past the smallest class)."""
        return (0, "IPC 0"), (min(train.class_counts) + 1, "IPC larger than the smallest class")

    def set_problems(self, syn: Any, train: Any, ipc: int) -> list[str]:
        """What the set ``syn`` that a method fitted on ``train`` at ``ipc`` gets wrong about
        these rows, in words (:func:`ddkit.testing.check_method`; the default: nothing beyond
        the suite's checks of a set with classes, which it runs where :attr:`classes`)."""
        return []


MODALITIES: Registry[Modality] = Registry("modality")


def register_modality(modality: Modality) -> Modality:
    """Register ``modality`` under its name (a module of :mod:`ddkit.data.modalities` calls it
    once; a test may register one and :meth:`~ddkit.registry.Registry.remove` it)."""
    if not isinstance(modality, Modality):
        raise TypeError(f"register a Modality, not {type(modality).__name__}")
    MODALITIES.add(modality.name, modality, help=modality.row)
    return modality


def get_modality(name: str) -> Modality:
    """The registered :class:`Modality` called ``name``, or a one-line :class:`DataError`."""
    if not isinstance(name, str) or name not in MODALITIES:
        valid = ", ".join(MODALITIES.names())
        raise DataError(f"unknown modality {name!r}; valid: {valid}")
    return MODALITIES.get(name)


def check_one_high(modality: Modality, spec: Any) -> None:
    """Refuse a ``spec`` whose rows are not one pixel high (the layout of tables, series and
    graph nodes)."""
    if spec.image_size[0] != 1:
        raise DataError(f"a {modality.name} row is laid out with H = 1, got {spec.image_size}")
