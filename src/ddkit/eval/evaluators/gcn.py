"""Evaluation by a GCN (graphs): a GCN trained on the set's nodes and adjacency, tested on the
real graph's test nodes, beside random real nodes and the full graph
(:func:`ddkit.eval.graph.evaluate_graph`)."""

from __future__ import annotations

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.evaluators.base import (
    EvalRequest,
    Evaluation,
    Evaluator,
    SeededRuns,
    register_evaluator,
)
from ddkit.eval.graph import GCN, evaluate_graph


def by_gcn(
    syn: SyntheticSet, test: ImageDataset, s: SeededRuns, request: EvalRequest
) -> Evaluation:
    """A GCN on the set's nodes, beside random real nodes and the full graph."""
    runs = {"runs": s.runs} if s.runs else {}  # 0 runs: the evaluator's default, as unset
    report = evaluate_graph(syn, test, seed=s.seed, epochs=s.epochs, **runs)
    heading = (
        f"{syn.meta.get('method', '?')} on {request.test_name}, {len(syn)} nodes (adjacency: "
        f"{report.meta['adjacency']}), a GCN trained on them and tested on the real graph's "
        f"test nodes ({report.meta['epochs']} epochs, final-epoch accuracy, mean ± std over "
        "seeds), beside random real nodes of the same size and the full graph:"
    )
    return Evaluation(report, heading)


register_evaluator(Evaluator(GCN, "a GCN", SeededRuns, by_gcn))
