"""Graphs for node classification (issue 39): the data layer's input rules, the GCN, gcond and
doscond (same seed, save / load, they learn), the graph evaluation and the optional extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from ddkit.data import load_dataset
from ddkit.data.graph import (
    ADJACENCY,
    GraphNodes,
    NodeMasks,
    from_graph,
    graph_set,
    induced_adjacency,
)
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.graph import evaluate_graph
from ddkit.methods import create_method
from ddkit.models.graph import normalized_adjacency
from ddkit.testing import tiny_graph

pytestmark = pytest.mark.usefixtures("global_rng_untouched")


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


def _easy(nodes_per_class: int = 30):
    """An easy SBM (features and edges both follow the class)."""
    return tiny_graph(nodes_per_class)


# ---------------------------------------------------------------- data


def test_a_graph_splits_its_nodes_and_shares_one_graph():
    s = _easy()
    assert isinstance(s.train, GraphNodes) and s.train.graph is s.test.graph
    g = s.train.graph
    assert s.spec.modality == "graph" and s.spec.shape == (8, 1, 1)
    assert len(s.train) + len(s.test) == g.num_nodes == 90
    assert torch.equal(s.test.nodes, torch.arange(0, 90, 5))
    assert (g.edges[0] < g.edges[1]).all()  # each undirected edge once
    assert torch.allclose(s.train.images.flatten(1), g.features[s.train.nodes])
    sub = s.train.subset(torch.tensor([3, 1]))
    assert isinstance(sub, GraphNodes) and torch.equal(sub.nodes, s.train.nodes[[3, 1]])


def test_edges_are_undirected_self_loops_dropped_isolated_nodes_kept():
    x, y = np.eye(4)[[0, 1, 2, 3, 0, 1]], np.array([0, 1, 0, 1, 0, 1])
    edges = np.array([[0, 1], [1, 0], [1, 2], [1, 2], [3, 3]])  # (E, 2), repeats, a loop
    with pytest.warns(UserWarning, match="dropped 1 self-loop"):
        s = from_graph(edges, x, y)
    g = s.train.graph
    assert g.edges.tolist() == [[0, 1], [1, 2]]
    a = g.adjacency().to_dense()
    assert torch.equal(a, a.T) and a.diagonal().sum() == 0
    assert a[4].sum() == 0 and a[5].sum() == 0  # isolated nodes stay, seeing only themselves
    a_hat = normalized_adjacency(g.adjacency()).to_dense()
    assert a_hat[5, 5] == 1.0
    assert torch.allclose(a_hat, normalized_adjacency(a))  # the sparse path equals the dense one


def test_masks_choose_the_node_sets():
    x, y = np.random.default_rng(0).normal(size=(8, 3)), np.arange(8) % 2
    train = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    test = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)
    s = from_graph(np.array([[0, 1]]).T, x, y, masks=NodeMasks(train=train, test=test))
    assert s.train.nodes.tolist() == [0, 1, 2, 3] and s.test.nodes.tolist() == [4, 5]
    assert s.val is None and s.train.graph.num_nodes == 8  # nodes 6, 7 stay unlabelled


@pytest.mark.parametrize(
    "edges, x, y, kw, match",
    [
        ([[0, 1], [1, 9]], np.ones((6, 2)), [0, 1] * 3, {}, r"edge 1 names node 9, .*6 nodes"),
        ([[0, -1]], np.ones((6, 2)), [0, 1] * 3, {}, r"edge 0 names node -1"),
        ([[0, 1]], [[np.nan, 1]] + [[0, 1]] * 5, [0, 1] * 3, {}, r"NaN.*node 0, feature 0"),
        ([[0, 1]], np.ones((6, 2)), [0, 1, 0, 1, 0, 7], {"num_classes": 2}, r"out of range"),
        ([[0, 1]], np.ones((6, 2)), [0, 1, 0, 1, 0, -1], {}, r"class indices"),
        ([[0.5, 1]], np.ones((6, 2)), [0, 1] * 3, {}, r"integer index"),
        ([[0, 1]], np.ones((6, 2)), [0, 1] * 2, {}, r"6 nodes .* 4 node labels"),
        ([[0, 1]], np.ones(6), [0, 1] * 3, {}, r"shape \(N, F\)"),
        (
            [[0, 1]],
            np.ones((6, 2)),
            [0, 1] * 3,
            {"masks": NodeMasks(train=np.ones(6, bool))},
            r"train_mask and test_mask together",
        ),
        (
            [[0, 1]],
            np.ones((6, 2)),
            [0, 1] * 3,
            {"masks": NodeMasks(train=np.ones(6, bool), test=np.eye(6)[0])},
            r"must not share a node",
        ),
    ],
)
def test_bad_graphs_are_refused_in_one_line(edges, x, y, kw, match):
    with pytest.raises(DataError) as e:
        from_graph(np.asarray(edges).T, x, y, **kw)
    assert _one_line(e) and e.match(match)


def test_a_graph_file_and_the_generated_sbm(tmp_path):
    s = _easy()
    g = s.train.graph
    path = tmp_path / "g.npz"
    np.savez(path, edges=g.edges.numpy(), x=g.features.numpy(), y=g.labels.numpy())
    back = load_dataset("graph", root=str(path))
    assert torch.equal(back.train.graph.edges, g.edges) and back.spec.num_classes == 3
    np.savez(tmp_path / "bad.npz", x=g.features.numpy(), y=g.labels.numpy())
    with pytest.raises(DataError, match=r"needs arrays edges, x and y") as e:
        load_dataset("graph", root=str(tmp_path / "bad.npz"))
    _one_line(e)
    sbm = load_dataset("sbm-small")
    assert sbm.spec.num_classes == 3 and sbm.train.graph.num_nodes == 120
    again = load_dataset("sbm-small")  # seeded: the same graph every time
    assert torch.equal(again.train.graph.edges, sbm.train.graph.edges)


def test_without_the_graph_extra_the_generated_graphs_are_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "networkx", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"dataset 'sbm' needs .*ddkit\[graph\]") as e:
        load_dataset("sbm")
    _one_line(e)


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("name", ["gcond", "doscond"])
def test_same_seed_same_condensed_graph_and_save_load_keeps_it(name, tmp_path):
    train = _easy().train
    kw = {"hidden": 16, "adj_hidden": 16, "structure_every": 2, "structure_steps": 1}
    a = create_method(name, **kw).fit(train, 2, seed=3, iterations=3)
    b = create_method(name, **kw).fit(train, 2, seed=3, iterations=3)
    c = create_method(name, **kw).fit(train, 2, seed=4, iterations=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.extras[ADJACENCY], b.extras[ADJACENCY])
    assert not torch.equal(a.images, c.images)
    adj = a.extras[ADJACENCY]
    assert adj.shape == (6, 6) and torch.equal(adj, adj.T) and adj.diagonal().sum() == 0
    assert a.spec.modality == "graph" and a.meta["recipe"]["protocol"]["name"] == "graph"
    back = SyntheticSet.load(a.save(tmp_path / "set"))
    assert back.spec == a.spec and back.spec.modality == "graph"
    assert torch.equal(back.extras[ADJACENCY], adj) and torch.equal(back.images, a.images)


def test_gcond_moves_the_features_and_the_adjacency():
    train = _easy().train
    m = create_method("gcond", hidden=16, adj_hidden=16, structure_every=2, structure_steps=1)
    start = m.initial_set(train, 2, seed=0, iterations=4)
    end = m.fit(train, 2, seed=0, iterations=4)
    assert not torch.equal(start.images, end.images)
    assert not torch.equal(start.extras[ADJACENCY], end.extras[ADJACENCY])
    x = create_method("gcond", structure=False, hidden=16).fit(train, 2, seed=0, iterations=2)
    assert x.extras[ADJACENCY].abs().sum() == 0  # GCond-X: no edges


@pytest.mark.parametrize("name, iterations", [("gcond", 30), ("doscond", 120)])
def test_a_gcn_trained_on_the_condensed_graph_learns(name, iterations):
    s = _easy()
    m = create_method(
        name,
        hidden=32,
        adj_hidden=32,
        lr_img=0.01,
        lr_adj=0.01,
        outer_loop=5 if name == "gcond" else 1,
        structure_every=10,
        structure_steps=2,
    )
    syn = m.fit(s.train, 3, seed=0, iterations=iterations)
    report = evaluate_graph(syn, s.test, runs=2, epochs=100, baselines=False)
    assert report.result("gcn").mean > 0.7, report.table()  # chance is 1/3


def test_methods_that_need_images_refuse_a_graph_in_one_line():
    with pytest.raises(ConfigError, match=r"needs images; dataset 'tiny-graph' holds graph") as e:
        create_method("dsa").fit(_easy().train, 1)
    _one_line(e)
    with pytest.raises(ConfigError, match=r"'convnet' does not take graph rows") as e:
        create_method("mtt", iterations=1).fit(_easy().train, 1)  # its image network
    _one_line(e)
    with pytest.raises(ConfigError, match=r"'gcond' needs a graph") as e:
        create_method("gcond").fit(load_dataset("digits").train, 1)
    _one_line(e)


# ---------------------------------------------------------------- evaluation


def test_graph_evaluation_rows_and_a_coreset_keeps_its_induced_subgraph():
    s = _easy()
    coreset = create_method("random").fit(s.train, 3, seed=0)
    report = evaluate_graph(coreset, s.test, runs=2, epochs=30)
    assert [r.model for r in report.results] == ["gcn", "random nodes", "full graph"]
    assert report.meta["adjacency"] == "induced" and len(report.results[0].accuracies) == 2
    full = report.result("full graph").mean
    assert full > 0.8, report.table()
    again = evaluate_graph(coreset, s.test, runs=2, epochs=30)
    assert again.result("gcn").accuracies == report.result("gcn").accuracies
    nodes = s.train.nodes[torch.tensor(coreset.meta["indices"])]
    assert induced_adjacency(s.train.graph, nodes).sum() >= 0
    spec = s.spec
    with pytest.raises(DataError, match="needs an \\(2, 2\\) adjacency"):
        graph_set(torch.zeros(2, 8), torch.tensor([0, 1]), torch.zeros(3, 3), spec)
    with pytest.raises(DataError, match="real graph's test nodes"):
        evaluate_graph(coreset, load_dataset("digits").test)


def test_ddkit_evaluate_on_a_graph_set(tmp_path, capsys):
    from ddkit.cli import main

    out = tmp_path / "run"
    assert main(["distill", "--method", "doscond", "--dataset", "sbm-small", "--ipc", "2",
                 "--iterations", "2", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert (out / "grid.png").is_file()
    assert main(["evaluate", str(out), "--runs", "1", "--epochs", "5"]) == 0
    text = capsys.readouterr().out
    assert "adjacency: condensed" in text and "full graph" in text and "random nodes" in text
