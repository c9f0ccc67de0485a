"""The validation split of ``--method auto``: carved from the training split only (stratified,
seeded), so the tournament never reads the test split.

Where the split would hold fewer than :data:`MIN_VAL_ROWS` rows (a small dataset: gunpoint's
50 training series give 10), one held-out part ranks the candidates by noise (a binomial
standard error near 15 points on 10 rows), so the rows are cut into :data:`FOLDS` stratified
folds instead (:func:`carve_folds`, k-fold cross-validation): each fold holds out one part,
every row is held out once, and a candidate's score is its mean over the folds.

On a graph the held-out nodes become the validation graph's evaluation nodes (its ``test`` ids,
so a GCN is scored on them) and the kept nodes its training nodes; the real test nodes' ids
are dropped from that graph.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ddkit.data.dataset import stratified_folds, stratified_split
from ddkit.data.graph import GraphNodes
from ddkit.errors import ConfigError

#: the share of each class's training rows held out for validation, and the split's seed
VAL_FRACTION = 0.2
VAL_SEED = 0
#: below this many validation rows the candidates are scored over :data:`FOLDS` folds
MIN_VAL_ROWS = 200
FOLDS = 5


@dataclass(frozen=True)
class ValidationSplit:
    """``fit`` (the rows the candidates distil) and ``val`` (the rows that score them), carved
    from one training split; :meth:`to_dict` is what the decision record keeps."""

    fit: Any
    val: Any
    fraction: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": "train split",
            "fraction": self.fraction,
            "seed": self.seed,
            "stratified": True,
            "fit_rows": len(self.fit),
            "val_rows": len(self.val),
        }


def carve(
    train: Any, ipc: int, fraction: float = VAL_FRACTION, seed: int = VAL_SEED
) -> ValidationSplit:
    """Hold out ``fraction`` of each class of ``train`` (at least one row, seeded by ``seed``);
    the rows kept must still give ``ipc`` per class, else one line says so."""
    smallest = min(train.class_counts)
    if smallest < ipc + 1:
        raise ConfigError(
            f"--method auto holds out validation rows from each class, and the smallest class "
            f"has {smallest} rows for IPC {ipc}; give a smaller --ipc or name a method"
        )
    share = min(fraction, (smallest - ipc) / smallest)  # keep ipc rows in the smallest class
    keep, held = stratified_split(train.labels.cpu(), share, seed)
    if min(torch.bincount(train.labels.cpu()[keep])) < ipc:
        raise ConfigError(
            f"--method auto: the validation split leaves a class with fewer than {ipc} rows; "
            "give a smaller --ipc or name a method"
        )
    return _split(train, keep, held, share, seed)


def carve_folds(train: Any, ipc: int, seed: int = VAL_SEED) -> list[ValidationSplit]:
    """The validation of ``train``: one :func:`carve` split, or, where it would hold fewer than
    :data:`MIN_VAL_ROWS` rows, :data:`FOLDS` stratified folds (each class's rows in one seeded
    order cut into ``FOLDS`` nearly equal runs; fold ``i`` holds out run ``i``), the first of
    them the rows :func:`carve` holds out (:func:`~ddkit.data.dataset.stratified_folds`); the
    one split where a fold would leave a class fewer than ``ipc`` rows."""
    first = carve(train, ipc, seed=seed)
    if len(first.val) >= MIN_VAL_ROWS or first.fraction < VAL_FRACTION:
        return [first]
    labels = train.labels.cpu()
    every = torch.arange(len(labels))
    classes = train.spec.num_classes
    splits = []
    for held in stratified_folds(labels, FOLDS, seed):
        keep = every[~torch.isin(every, held)]
        if int(torch.bincount(labels[keep], minlength=classes).min()) < ipc:
            return [first]  # a fold would leave a class short of ipc rows: one split
        splits.append(_split(train, keep, held, VAL_FRACTION, seed))
    return splits


def validation_record(splits: list[ValidationSplit]) -> dict[str, Any]:
    """What the decision record keeps of the validation: the split's, or, over folds, the
    first fold's with the number of folds and the rows held out in all."""
    if len(splits) == 1:
        return splits[0].to_dict()
    return splits[0].to_dict() | {"folds": len(splits), "val_rows": held_out(splits)}


def held_out(splits: list[ValidationSplit]) -> int:
    """The validation rows of ``splits`` in all (over folds, every training row)."""
    return sum(len(s.val) for s in splits)


def _split(
    train: Any, keep: torch.Tensor, held: torch.Tensor, share: float, seed: int
) -> ValidationSplit:
    if isinstance(train, GraphNodes) and train.graph is not None:
        return ValidationSplit(*_graph_parts(train, keep, held), share, seed)
    return ValidationSplit(train.subset(keep), train.subset(held), share, seed)


def _graph_parts(train: GraphNodes, keep: torch.Tensor, held: torch.Tensor) -> tuple[Any, Any]:
    """The kept and held-out nodes over one graph whose training nodes are the kept ones and
    whose evaluation nodes are the held-out ones."""
    nodes = train.nodes
    graph = dataclasses.replace(train.graph, train=nodes[keep], val=nodes[held], test=nodes[held])

    def part(index: torch.Tensor) -> GraphNodes:
        return GraphNodes(
            train.images[index], train.labels[index], train.spec, None, graph, nodes[index]
        )

    return part(keep), part(held)
