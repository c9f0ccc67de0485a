"""The graph convolutional network of node classification (issue 39), plain torch (no
torch_geometric): Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional
Networks", ICLR 2017 (arXiv:1609.02907).

A layer is ``H' = Â H W + b`` with ``Â = D^-1/2 (A + I) D^-1/2`` (:func:`normalized_adjacency`,
dense or sparse ``A``, weights allowed, the degree counted over ``A + I``), ReLU and dropout
between layers, as GCond's GCN (Jin et al., ICLR 2022). ``A`` is the real graph's sparse
adjacency or a condensed graph's dense weighted one; the network is the same.

The GCN reads the adjacency beside the rows, so it is not in the ``create_model`` registry (whose
networks take rows alone): build it with :func:`build_gcn`.
"""

from __future__ import annotations

import torch
from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError
from ddkit.rng import seeded_global_rng

__all__ = ["GCN", "build_gcn", "normalized_adjacency"]


def normalized_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` of a symmetric ``(n, n)`` adjacency, dense (differentiable in
    ``A``) or sparse COO (returned sparse)."""
    n = adjacency.shape[0]
    if adjacency.is_sparse:
        a = adjacency.coalesce()
        loops = torch.arange(n, device=a.device).expand(2, n)
        index = torch.cat([a.indices(), loops], 1)
        values = torch.cat([a.values(), torch.ones(n, dtype=a.dtype, device=a.device)])
        a = torch.sparse_coo_tensor(index, values, (n, n), check_invariants=True).coalesce()
        deg = torch.zeros(n, dtype=a.dtype, device=a.device).index_add_(
            0, a.indices()[0], a.values()
        )
        scale = deg.pow(-0.5)
        i, j = a.indices()
        values = scale[i] * a.values() * scale[j]
        return torch.sparse_coo_tensor(a.indices(), values, (n, n), check_invariants=True)
    a = adjacency + torch.eye(n, dtype=adjacency.dtype, device=adjacency.device)
    scale = a.sum(1).pow(-0.5)
    return scale[:, None] * a * scale[None, :]


class GCN(nn.Module):
    """``layers`` graph convolutions (``hidden`` units between them, ReLU, ``dropout``) from
    ``in_features`` to ``num_classes`` logits; ``forward(x, a_hat)`` with ``x`` ``(n, F)`` (or
    node rows ``(n, F, 1, 1)``) and ``a_hat`` a :func:`normalized_adjacency`."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"gcn: layers and hidden must be >= 1 and dropout in [0, 1), got {layers}, "
                f"{hidden}, {dropout}"
            )
        sizes = [in_features] + [hidden] * (layers - 1) + [num_classes]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for i, lin in enumerate(self.linears):
            support = h @ lin.weight.T
            h = (torch.sparse.mm(a_hat, support) if a_hat.is_sparse else a_hat @ support) + lin.bias
            if i < len(self.linears) - 1:
                h = nn.functional.dropout(torch.relu(h), self.dropout, self.training)
        return h


def build_gcn(spec: DatasetSpec, seed: int, **options: object) -> GCN:
    """A :class:`GCN` for ``spec``'s node rows, initialised under ``seed`` (the global RNG is
    left as it was); ``options``: ``hidden``, ``layers``, ``dropout``."""
    spec.check_needs("graph", "the gcn")
    with seeded_global_rng(seed):
        return GCN(spec.channels, spec.num_classes, **options)  # type: ignore[arg-type]
