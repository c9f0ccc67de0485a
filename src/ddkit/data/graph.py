"""Graphs for node classification (issue 39): node features, undirected edges, node labels and
train / validation / test node sets, from generated graphs (stochastic block models through
networkx, extra ``graph``) or your own arrays (:func:`from_graph`, ``--dataset graph --root
FILE.npz``).

A node is a row in the ``(F, 1, 1)`` layout of :mod:`ddkit.data.spec` (modality ``graph``),
standardised per feature with the train nodes' statistics. The splits are :class:`GraphNodes`:
the rows of one node set, each knowing the whole :class:`Graph` they lie in (every node's
features and every edge), since a GCN propagates over the full graph (the transductive
setting of GCond). A condensed graph is a :class:`~ddkit.data.synthetic.SyntheticSet` of nodes
with its ``(N', N')`` weighted adjacency in ``extras[ADJACENCY]`` (:func:`graph_set`).

Input rules (one clear line, or a documented handling, never silent garbage):

* **self-loops are dropped** (with a one-line warning counting them): the GCN adds every node's
  own loop, ``D^-1/2 (A + I) D^-1/2``, so a stored loop would only count it twice;
* **isolated nodes are kept**: under ``A + I`` such a node sees its own features alone (the GCN
  is an MLP there), which is what it holds; a graph without any edge is accepted likewise;
* edges are undirected: ``(i, j)`` and ``(j, i)`` and repeats are one edge; an edge naming a
  node out of range (negative or ``>= N``) is refused, as are edges that are not integers
  (booleans included: an adjacency or a mask, not node ids); a ``(2, 2)`` array is read as
  ``(2, E)``, two edges ``edges[0][k] - edges[1][k]``;
* node features with a missing (NaN), infinite or beyond-float32 value are refused, naming the
  node;
* labels are class indices ``0 .. K-1`` (every class needs a train node); out of range refused;
* masks (boolean, one per node): none given -> the ddkit convention (nodes whose index
  ``% 5 == 0`` are the test set, the rest train; ``val_fraction`` carves a stratified
  validation set out of train); given -> ``train_mask`` and ``test_mask`` both, disjoint
  (``val_mask`` optional); nodes in no mask stay in the graph, unlabelled for training.

Datasets: ``sbm-small``, ``sbm``, ``sbm-large`` (:data:`SBM_GRAPHS`: seeded stochastic block
models, one block per class, features drawn around a class centre); ``graph`` (``--root
FILE.npz`` with arrays ``edges`` ``(2, E)`` or ``(E, 2)``, ``x`` ``(N, F)``, ``y`` ``(N,)`` and
optional ``train_mask`` / ``val_mask`` / ``test_mask``, ``class_names``; read without pickle
by :func:`ddkit.data.npz.npz_arrays`, which refuses a damaged file or one beyond the memory
budget in one line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddkit.data.builtin import register_dataset
from ddkit.data.dataset import (
    DatasetSplits,
    ImageDataset,
    _real_array,
    channel_stats,
    check_val_fraction,
    count_classes,
    stratified_split,
    to_labels,
)
from ddkit.data.npz import npz_arrays
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError, require_extra, warn_at_caller

__all__ = [
    "ADJACENCY",
    "SBM_GRAPHS",
    "Graph",
    "GraphNodes",
    "NodeMasks",
    "from_graph",
    "graph_set",
    "induced_adjacency",
    "read_graph_npz",
    "sbm_arrays",
    "set_adjacency",
]

#: The extra tensor of a condensed graph's set holding its ``(N', N')`` weighted adjacency.
ADJACENCY = "graph.adjacency"


@dataclass(frozen=True, eq=False)
class Graph:
    """A whole graph: ``features`` ``(N, F)`` float32 (normalised), ``edges`` ``(2, E)`` int64
    (each undirected edge once, ``i < j``), ``labels`` ``(N,)`` and the node ids of the
    ``train`` / ``val`` / ``test`` sets (``val`` may be empty)."""

    features: torch.Tensor
    edges: torch.Tensor
    labels: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.features.shape[0])

    def adjacency(self) -> torch.Tensor:
        """The symmetric 0/1 adjacency as a sparse COO ``(N, N)`` float32 tensor."""
        both = torch.cat([self.edges, self.edges.flip(0)], 1)
        values = torch.ones(both.shape[1], dtype=torch.float32)
        n = self.num_nodes
        return torch.sparse_coo_tensor(both, values, (n, n), check_invariants=True).coalesce()


@dataclass(frozen=True, eq=False)
class GraphNodes(ImageDataset):
    """The rows of one node set of a :class:`Graph` (``nodes``: their node ids, in row order).
    Anything that reads rows (coresets, row methods, learners) sees node features; the graph
    methods and the graph evaluation read ``graph`` too."""

    graph: Graph | None = None
    nodes: torch.Tensor | None = None

    def subset(self, index: torch.Tensor) -> GraphNodes:
        index = torch.as_tensor(index, dtype=torch.long)
        nodes = None if self.nodes is None else self.nodes[index]
        return GraphNodes(
            self.images[index], self.labels[index], self.spec, None, self.graph, nodes
        )


def induced_adjacency(graph: Graph, nodes: torch.Tensor) -> torch.Tensor:
    """The dense 0/1 adjacency ``(n, n)`` among ``nodes`` (the induced subgraph), in their order."""
    nodes = torch.as_tensor(nodes, dtype=torch.long)
    where = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    where[nodes] = torch.arange(len(nodes))
    a, b = where[graph.edges[0]], where[graph.edges[1]]
    keep = (a >= 0) & (b >= 0)
    out = torch.zeros(len(nodes), len(nodes))
    out[a[keep], b[keep]] = 1.0
    out[b[keep], a[keep]] = 1.0
    return out


def graph_set(
    features: torch.Tensor,
    labels: torch.Tensor,
    adjacency: torch.Tensor,
    spec: DatasetSpec,
    meta: dict | None = None,
) -> SyntheticSet:
    """A condensed graph as a set: node rows ``(N', F)`` (or laid out ``(N', F, 1, 1)``), labels
    and the symmetric ``(N', N')`` adjacency (weights in ``[0, 1]``) in ``extras[ADJACENCY]``."""
    n = len(features)
    a = adjacency.detach().float().cpu()
    if tuple(a.shape) != (n, n):
        raise DataError(f"a condensed graph of {n} nodes needs an ({n}, {n}) adjacency")
    rows = features.detach().float().cpu().reshape(n, *spec.shape)
    return SyntheticSet(rows, labels, spec, meta=dict(meta or {}), extras={ADJACENCY: a.clone()})


def set_adjacency(syn: SyntheticSet, graph: Graph | None) -> tuple[torch.Tensor, str]:
    """The dense adjacency a GCN trained on ``syn`` uses, and where it comes from: the set's own
    (a condensed graph), else the induced subgraph of the train nodes it selected (a coreset,
    ``meta['indices']``, given the ``graph``), else no edges (rows moved by a row method)."""
    if ADJACENCY in syn.extras:
        return syn.extras[ADJACENCY].float(), "condensed"
    indices = syn.meta.get("indices")
    if graph is not None and isinstance(indices, list) and len(indices) == len(syn):
        return induced_adjacency(graph, graph.train[torch.as_tensor(indices)]), "induced"
    return torch.zeros(len(syn), len(syn)), "none"


# ---------------------------------------------------------------- checking user arrays


def _features(x: object) -> np.ndarray:
    arr = _real_array(x, "node features")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"node features must have shape (N, F), got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    top = float(np.finfo(np.float32).max)
    what, bad = "missing (NaN) or infinite values", ~np.isfinite(arr)
    if not bad.any() and (arr.max() > top or arr.min() < -top):
        what, bad = "values beyond the float32 range of stored rows", (arr > top) | (arr < -top)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        col = int(np.flatnonzero(bad[rows[0]])[0])
        raise DataError(
            f"node features: {len(rows)} nodes hold {what} (first: node {rows[0]}, feature "
            f"{col}); fill or rescale them, or drop those nodes"
        )
    return arr


def _edges(edges: object, n: int) -> tuple[np.ndarray, int]:
    """Edges as ``(2, E)`` int64, undirected, each once with ``i < j``, and the number of
    self-loops dropped."""
    arr = _real_array(edges, "edges")
    if arr.ndim == 2 and arr.shape[0] != 2 and arr.shape[1] == 2:
        arr = arr.T
    if arr.ndim != 2 or arr.shape[0] != 2:
        hint = "; an (N, N) adjacency? pass np.nonzero(adjacency)" if arr.shape == (n, n) else ""
        raise DataError(f"edges must have shape (2, E) or (E, 2), got {arr.shape}{hint}")
    if arr.dtype.kind == "b" or (
        arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any())
    ):
        raise DataError(f"edges must name nodes by integer index, got {arr.dtype} values")
    out = (arr < 0) | (arr >= n)  # in the array's own type: nothing wraps or saturates
    bad = np.flatnonzero(out.any(axis=0))
    if len(bad):
        node = arr[:, bad[0]][out[:, bad[0]]][0]
        shown = int(node) if arr.dtype.kind in "iu" else f"{float(node):g}"
        raise DataError(
            f"edge {bad[0]} names node {shown}, but the graph has {n} nodes (0..{n - 1}, one per "
            f"row of x); {len(bad)} edge(s) out of range"
        )
    arr = arr.astype(np.int64)
    loops = arr[0] == arr[1]
    pairs = np.sort(arr[:, ~loops], axis=0)
    unique = np.unique(pairs, axis=1) if pairs.shape[1] else pairs
    return unique.reshape(2, -1), int(loops.sum())


def _mask(mask: object, n: int, what: str) -> np.ndarray:
    arr = _real_array(mask, what)
    if arr.shape != (n,) or not np.isin(arr, (0, 1)).all():
        raise DataError(f"{what} must be a boolean (or 0/1) array of {n} entries, one per node")
    return np.flatnonzero(arr.astype(bool))


@dataclass
class GraphRaw:
    """A checked graph before normalisation (what a graph dataset's loader returns;
    :func:`ddkit.data.load_dataset` asks it for its splits)."""

    x: np.ndarray
    y: torch.Tensor
    edges: np.ndarray
    train: np.ndarray | None = None
    val: np.ndarray | None = None
    test: np.ndarray | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None

    def to_splits(self, *, name: str, val_fraction: float = 0.0, seed: int = 0) -> DatasetSplits:
        """Normalised :class:`GraphNodes` splits over one shared :class:`Graph`."""
        n = len(self.x)
        val_fraction = check_val_fraction(val_fraction)
        if self.train is None:
            test = np.flatnonzero(np.arange(n) % 5 == 0)
            train, val = np.flatnonzero(np.arange(n) % 5 != 0), np.zeros(0, np.int64)
        else:
            train, test = self.train, self.test
            val = self.val if self.val is not None else np.zeros(0, np.int64)
        if val_fraction > 0:
            if len(val):
                raise ConfigError("the graph has a val_mask already; drop val_fraction")
            keep, held = stratified_split(self.y[train], val_fraction, seed)
            train, val = train[keep.numpy()], train[held.numpy()]
        if len(train) == 0 or len(test) == 0:
            raise DataError("the graph needs train and test nodes (train_mask, test_mask)")
        y = self.y
        k = count_classes(y[train], y[test], self.num_classes)
        if int(y.max()) >= k:
            raise DataError(
                f"node labels out of range: found [{int(y.min())}, {int(y.max())}], expected "
                f"[0, {k - 1}]"
            )
        if self.class_names and len(self.class_names) != k:
            raise DataError(f"{len(self.class_names)} class names for {k} classes")
        raw = torch.from_numpy(self.x.astype(np.float32))
        mean, std = channel_stats(raw[torch.from_numpy(train)][:, :, None, None])
        spec = DatasetSpec(
            name=name,
            num_classes=k,
            channels=raw.shape[1],
            image_size=(1, 1),
            mean=mean,
            std=std,
            class_names=tuple(self.class_names or ()),
            modality="graph",
        )
        feats = ((raw.double() - torch.tensor(mean)) / torch.tensor(std)).float()
        ids = [torch.from_numpy(np.asarray(i, np.int64)) for i in (train, val, test)]
        graph = Graph(feats, torch.from_numpy(self.edges), y, *ids)

        def nodes(index: torch.Tensor) -> GraphNodes:
            return GraphNodes(feats[index][:, :, None, None], y[index], spec, None, graph, index)

        return DatasetSplits(
            train=nodes(ids[0]), test=nodes(ids[2]), val=nodes(ids[1]) if len(val) else None
        )


def graph_raw(
    edges: object,
    x: object,
    y: object,
    *,
    train_mask: object = None,
    val_mask: object = None,
    test_mask: object = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    where: str = "graph",
) -> GraphRaw:
    """Check user arrays by the module's input rules into a :class:`GraphRaw`."""
    feats = _features(x)
    n = len(feats)
    labels = to_labels(y, "node labels")
    if len(labels) != n:
        raise DataError(f"{n} nodes (rows of x) but {len(labels)} node labels")
    pairs, loops = _edges(edges, n)
    if loops:
        warn_at_caller(
            f"{where}: dropped {loops} self-loop(s) (the GCN adds every node's own loop)",
            UserWarning,
        )
    masks = {"train_mask": train_mask, "val_mask": val_mask, "test_mask": test_mask}
    given = {k: _mask(v, n, k) for k, v in masks.items() if v is not None}
    if given and not {"train_mask", "test_mask"} <= set(given):
        raise DataError("give train_mask and test_mask together (val_mask is optional)")
    joined = np.concatenate(list(given.values())) if given else np.zeros(0, np.int64)
    if len(joined) != len(np.unique(joined)):
        raise DataError("train_mask, val_mask and test_mask must not share a node")
    return GraphRaw(
        feats,
        labels,
        pairs,
        given.get("train_mask"),
        given.get("val_mask"),
        given.get("test_mask"),
        num_classes,
        class_names,
    )


@dataclass(frozen=True)
class NodeMasks:
    """Which nodes of a graph form its splits (:func:`from_graph`): boolean masks ``(N,)`` of
    the ``train``, ``val`` (optional) and ``test`` nodes; unmasked nodes stay in the graph,
    unlabelled. Train and test come together and no node is in two masks (checked against the
    graph, in one line)."""

    train: np.ndarray | torch.Tensor | None = None
    val: np.ndarray | torch.Tensor | None = None
    test: np.ndarray | torch.Tensor | None = None


def from_graph(
    edges: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    masks: NodeMasks | None = None,
    name: str = "graph",
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetSplits:
    """Node-classification splits from an edge list ``(2, E)`` / ``(E, 2)``, node features
    ``(N, F)`` and node labels ``(N,)`` (optional boolean node ``masks``: :class:`NodeMasks`),
    by the module's input rules; the splits are :class:`GraphNodes` over one :class:`Graph`."""
    masks = masks or NodeMasks()
    raw = graph_raw(
        edges,
        x,
        y,
        train_mask=masks.train,
        val_mask=masks.val,
        test_mask=masks.test,
        num_classes=num_classes,
        class_names=class_names,
        where=name,
    )
    return raw.to_splits(name=name, val_fraction=val_fraction, seed=seed)


def read_graph_npz(path: str | Path) -> GraphRaw:
    """A graph in an ``.npz`` file (arrays ``edges``, ``x``, ``y``; optional ``train_mask``,
    ``val_mask``, ``test_mask``, ``class_names``), read without pickle."""
    arrays = npz_arrays(path)
    missing = [k for k in ("edges", "x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{path}: a graph file needs arrays edges, x and y; missing {missing}")
    names = arrays.get("class_names")
    if names is not None and names.ndim != 1:
        raise DataError(f"{path}: class_names must be a 1-D array, got shape {names.shape}")
    return graph_raw(
        arrays["edges"],
        arrays["x"],
        arrays["y"],
        train_mask=arrays.get("train_mask"),
        val_mask=arrays.get("val_mask"),
        test_mask=arrays.get("test_mask"),
        class_names=None if names is None else [str(c) for c in names],
        where=str(path),
    )


@register_dataset(
    "graph",
    needs_root=True,
    modality="graph",
    help="your graph: --dataset graph --root FILE.npz (edges, x, y, optional *_mask arrays)",
)
def _graph_file(root: str | None) -> GraphRaw:
    if root is None:
        raise ConfigError("dataset 'graph' reads a file: pass root=FILE.npz (--root FILE.npz)")
    path = Path(root).expanduser()
    if not path.is_file():
        raise ConfigError(f"graph: root {str(path)!r} is not a file")
    return read_graph_npz(path)


# ---------------------------------------------------------------- generated graphs


@dataclass(frozen=True)
class SBMGraph:
    """A stochastic block model: ``blocks`` classes of ``size`` nodes, edge probability
    ``p_in`` within a block and ``p_out`` across, ``features`` features per node drawn as
    ``N(centre_class, 1)`` with centres ``N(0, separation^2)``; all from ``seed``."""

    name: str
    blocks: int
    size: int
    p_in: float
    p_out: float
    features: int = 16
    separation: float = 0.25
    seed: int = 0

    @property
    def help(self) -> str:
        return (
            f"stochastic block model: {self.blocks} classes x {self.size} nodes, p_in "
            f"{self.p_in:g}, p_out {self.p_out:g}, {self.features} features (extra 'graph')"
        )


#: Features alone say little (the class centres lie 0.25 standard deviations apart per feature),
#: the edges the rest: on ``sbm`` a GCN trained on the full graph is far above one trained on a
#: few random nodes per class (BENCHMARKS.md holds the figures).
SBM_GRAPHS = (
    SBMGraph("sbm-small", blocks=3, size=40, p_in=0.15, p_out=0.02, separation=0.35),
    SBMGraph("sbm", blocks=4, size=150, p_in=0.05, p_out=0.01, separation=0.25),
    SBMGraph("sbm-large", blocks=6, size=500, p_in=0.02, p_out=0.004, separation=0.25),
)


def sbm_arrays(sbm: SBMGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(edges (2, E), x (N, F), y (N,))`` of ``sbm`` through networkx's seeded
    ``stochastic_block_model`` (extra ``graph``); node ``i`` lies in block ``i // size``."""
    nx = require_extra("networkx", "graph", f"dataset {sbm.name!r}")
    k = sbm.blocks
    p = [[sbm.p_in if a == b else sbm.p_out for b in range(k)] for a in range(k)]
    g = nx.stochastic_block_model([sbm.size] * k, p, seed=sbm.seed)
    edges = np.asarray(list(g.edges()), dtype=np.int64).reshape(-1, 2).T
    y = np.repeat(np.arange(k), sbm.size)
    rng = np.random.default_rng(sbm.seed)
    centres = rng.normal(0.0, sbm.separation, (k, sbm.features))
    x = centres[y] + rng.normal(0.0, 1.0, (len(y), sbm.features))
    return edges, x, y


def _sbm_loader(sbm: SBMGraph):  # noqa: ANN202 - a dataset loader
    def load(root: str | None = None) -> GraphRaw:
        edges, x, y = sbm_arrays(sbm)
        return graph_raw(edges, x, y, class_names=[f"block{c}" for c in range(sbm.blocks)])

    load.__name__ = f"_{sbm.name.replace('-', '_')}"
    return load


for _sbm in SBM_GRAPHS:
    register_dataset(_sbm.name, builtin=True, modality="graph", help=_sbm.help)(_sbm_loader(_sbm))
