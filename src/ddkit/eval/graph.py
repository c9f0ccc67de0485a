"""Evaluation of a graph set (issue 39): train a GCN on the set's nodes and adjacency, test it
on the real graph's test nodes with full-graph propagation (the transductive setting of GCond,
Jin et al., ICLR 2022, arXiv:2110.07580), beside the same GCN trained on random real nodes of
the same size and on the full graph.

The recipe is the ``graph`` protocol (:mod:`ddkit.eval.protocol`): a 2-layer GCN (hidden 256,
dropout 0.5, :class:`ddkit.models.graph.GCN`), full-batch Adam (lr 0.01, weight decay 5e-4 as an
L2 term), 600 epochs. Accuracy is the *final-epoch* test accuracy (GCond's code keeps the
weights of the best validation epoch; ddkit selects nothing), mean ± std over ``runs`` seeds.

Rows of the report:

* ``gcn``: the set, with its adjacency (:func:`ddkit.data.graph.set_adjacency`: a condensed
  graph's own; a coreset's induced subgraph among the train nodes it selected; no edges for
  rows moved by a row method);
* ``random nodes``: per run, ``ipc`` train nodes per class drawn at random (the run's seed) and
  the subgraph they induce, the baseline a condensed graph must beat;
* ``full graph``: every train node, in the whole graph (the upper reference).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.graph import Graph, GraphNodes, induced_adjacency, set_adjacency
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.evaluate import EvalReport, ModelResult, run_seeds
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import make_optimizer
from ddkit.models.graph import build_gcn, normalized_adjacency
from ddkit.rng import seeded_global_rng

__all__ = ["GCNData", "evaluate_graph", "train_gcn"]


@dataclass(frozen=True)
class GCNData:
    """What a GCN trains on: node rows ``(n, F)``, labels of the nodes it learns from
    (``targets``: their positions among the rows), and the adjacency (dense or sparse)."""

    x: torch.Tensor
    adjacency: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor


def train_gcn(
    data: GCNData, graph: Graph, spec, protocol: EvalProtocol, seed: int, epochs: int
) -> tuple[float, float]:
    """Train a fresh GCN (built and dropped out under ``seed``) on ``data`` for ``epochs``
    full-batch epochs; return its final-epoch train accuracy and its accuracy on ``graph``'s
    test nodes (a forward pass over the whole real graph)."""
    a_hat = normalized_adjacency(data.adjacency)
    with seeded_global_rng(seed):
        net = build_gcn(spec, seed)
        opt = make_optimizer(
            list(net.parameters()), protocol.optimizer, protocol.lr,
            momentum=protocol.momentum, weight_decay=protocol.weight_decay,
        )  # fmt: skip
        net.train()
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            out = net(data.x, a_hat)[data.targets]
            torch.nn.functional.cross_entropy(out, data.labels).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        train_acc = float(
            (net(data.x, a_hat)[data.targets].argmax(1) == data.labels).float().mean()
        )
        real = net(graph.features, normalized_adjacency(graph.adjacency()))[graph.test]
        test_acc = float((real.argmax(1) == graph.labels[graph.test]).float().mean())
    return train_acc, test_acc


def _random_nodes(graph: Graph, ipc: int, k: int, seed: int) -> GCNData:
    """``ipc`` train nodes per class, drawn with ``seed``, and their induced subgraph."""
    g = torch.Generator().manual_seed(seed)
    labels = graph.labels[graph.train]
    picks = []
    for c in range(k):
        ids = graph.train[labels == c]
        picks.append(ids[torch.randperm(len(ids), generator=g)[:ipc]])
    nodes = torch.cat(picks)
    y = graph.labels[nodes]
    return GCNData(graph.features[nodes], induced_adjacency(graph, nodes), y, torch.arange(len(y)))


def _result(name: str, scores: list[tuple[float, float]], seeds: list[int], took: float, n: int):
    return ModelResult(
        model=name,
        accuracies=[s[1] for s in scores],
        seeds=seeds,
        train_seconds=took,
        images_per_second=n * len(seeds) / max(took, 1e-9),
        vectorized=False,
        train_accuracies=[s[0] for s in scores],
    )


#: The protocol a GCN trains under (resolved once, at import).
GRAPH_PROTOCOL = get_protocol("graph")
#: This evaluator's name, which a modality names to be judged by it
#: (:attr:`~ddkit.data.modalities.base.Modality.evaluator`, :mod:`ddkit.eval.evaluators`).
GCN = "gcn"


def _graph_of(syn: SyntheticSet, test: ImageDataset) -> Graph:
    if syn.spec.kind.evaluator != GCN:  # the modalities whose sets a GCN judges
        raise ConfigError(f"graph evaluation takes a graph set; this one holds {syn.spec.modality}")
    if not isinstance(test, GraphNodes) or test.graph is None:
        raise DataError("graph evaluation needs the real graph's test nodes (a graph dataset)")
    s, t = syn.spec, test.spec
    if s.shape != t.shape or s.num_classes != t.num_classes:
        raise DataError(
            f"graph set ({s.name}, {s.channels} features, {s.num_classes} classes) does not "
            f"match the graph ({t.name}, {t.channels} features, {t.num_classes} classes)"
        )
    return test.graph


def evaluate_graph(
    syn: SyntheticSet,
    test: ImageDataset,
    *,
    runs: int = 5,
    seed: int = 0,
    epochs: int | None = None,
    baselines: bool = True,
) -> EvalReport:
    """Train a GCN on ``syn`` ``runs`` times (one seed each) and report its final-epoch accuracy
    on the real graph's test nodes (``test``: the graph dataset's test split), with the random
    real nodes and full graph rows beside it (``baselines``). ``epochs`` overrides the
    protocol's 600. Same seed => same report."""
    graph = _graph_of(syn, test)
    if runs < 1:
        raise ConfigError(f"runs must be >= 1, got {runs}")
    protocol = GRAPH_PROTOCOL
    epochs = int(epochs or protocol.epochs)
    t0 = time.perf_counter()
    seeds = run_seeds(seed, runs)
    adjacency, source = set_adjacency(syn, graph)
    y = syn.hard_labels
    rows: list[tuple[str, list[GCNData], int]] = [
        ("gcn", [GCNData(syn.images.flatten(1), adjacency, y, torch.arange(len(y)))] * runs, len(y))
    ]
    if baselines:
        k = syn.spec.num_classes
        ipc = max(1, len(syn) // k)
        rows.append(("random nodes", [_random_nodes(graph, ipc, k, s) for s in seeds], ipc * k))
        full = GCNData(graph.features, graph.adjacency(), graph.labels[graph.train], graph.train)
        rows.append(("full graph", [full] * runs, len(graph.train)))
    report = EvalReport(protocol=protocol, lr=protocol.lr, num_train_images=len(syn))
    for name, data, n in rows:
        start = time.perf_counter()
        scores = [train_gcn(d, graph, syn.spec, protocol, s, epochs) for d, s in zip(data, seeds)]
        report.results.append(_result(name, scores, seeds, time.perf_counter() - start, n))
    report.seconds = time.perf_counter() - t0
    report.meta = {"seed": seed, "epochs": epochs, "adjacency": source, "nodes": len(syn)}
    report.meta["bytes"] = syn.storage_bytes()
    return report
