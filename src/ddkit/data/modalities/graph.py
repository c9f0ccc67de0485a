"""``graph``: a row is a node of one graph, a vector of ``F`` features laid out ``(F, 1, 1)``,
its edges beside the rows (:mod:`ddkit.data.graph`; a condensed graph keeps its adjacency as
an extra tensor of its set); a GCN judges a set."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import check_one_high, register_modality
from ddkit.data.modalities.rows import Rows
from ddkit.errors import DataError

if TYPE_CHECKING:
    from ddkit.data.spec import DatasetSpec


class GraphModality(Rows):
    """Node classification: the splits are :class:`~ddkit.data.graph.GraphNodes` of one graph."""

    def check_layout(self, spec: DatasetSpec) -> None:
        super().check_layout(spec)
        check_one_high(self, spec)
        if spec.image_size != (1, 1):
            raise DataError(f"a graph node is laid out (F, 1, 1), got {spec.image_size}")

    def dataset_type(self) -> type:
        from ddkit.data.graph import GraphNodes

        return GraphNodes

    def tiny(self) -> Any:
        return tiny_graph()


@functools.lru_cache(maxsize=1)
def tiny_graph(nodes_per_class: int = 30) -> Any:
    """A fabricated graph of 3 classes x ``nodes_per_class`` nodes (test = every 5th node): a
    stochastic block model (edge probability 0.2 within a class, 0.02 across) drawn from a seeded
    generator, 8 features around a class centre, with noise. Plain torch (no networkx); seeded;
    cached; treat it as read-only."""
    import torch

    from ddkit.data.graph import from_graph

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(nodes_per_class)
    n = len(y)
    p = torch.where(y[:, None] == y[None, :], 0.2, 0.02)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    centres = torch.randn(3, 8, generator=g)
    x = centres[y] + 1.5 * torch.randn(n, 8, generator=g)
    return from_graph(upper.nonzero().T, x, y, name="tiny-graph")


GRAPH = register_modality(
    GraphModality(
        "graph",
        row="a node of a graph: a vector of F features (its edges beside the rows)",
        layout="(F, 1, 1)",
        normalisation="per feature, train-node statistics",
        augmentations=(),
        # the GCN (ddkit.models.graph) reads the adjacency too: the graph methods and the graph
        # evaluation build it; a method that moves rows alone gets the mlp
        models=("mlp",),
        evaluator="gcn",
        protocol="graph",
        needs_words="a graph (node classification)",
        needs_fix="load a graph dataset, e.g. sbm or --dataset graph",
    )
)
