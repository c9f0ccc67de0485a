"""Applications: class-incremental continual learning with any method's memory."""

from __future__ import annotations

import json

import pytest
import torch

from ddkit.apps import ContinualSettings, class_orders, class_subset, continual_learning
from ddkit.cli import main
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.protocol import get_protocol
from ddkit.testing import tiny_digits

PROTOCOL = get_protocol("smoke").with_(epochs=40, models=("convnet2-w8",), runs=1)


def test_class_orders_are_seeded_permutations():
    a, b = class_orders(10, 2, seed=3), class_orders(10, 2, seed=3)
    assert a == b and sorted(a[0]) == list(range(10)) and a[0] != a[1]


def test_class_subset_renumbers_and_keeps_normalisation():
    train = tiny_digits().train
    sub = class_subset(train, [7, 2])
    assert sub.spec.num_classes == 2 and sub.spec.class_names == ("7", "2")
    assert sub.spec.mean == train.spec.mean and sub.spec.name == train.spec.name
    assert len(sub) == int(((train.labels == 7) | (train.labels == 2)).sum())
    first7 = torch.nonzero(train.labels == 7)[0, 0]
    assert torch.equal(sub.images[sub.labels == 0][0], train.images[first7])


def test_continual_curve_is_seeded_and_learns():
    splits = tiny_digits()
    settings = ContinualSettings(steps=5, memory=3)
    r = continual_learning(
        splits, "random", settings, protocol=PROTOCOL, seed=0, log=lambda _: None
    )
    again = continual_learning(
        splits, "random", settings, protocol=PROTOCOL, seed=0, log=lambda _: None
    )
    assert r.curves == again.curves and len(r.curves[0]) == 5
    assert r.curves[0][0] > 0.6  # two classes learnt from 6 images
    assert r.final == (pytest.approx(r.curves[0][-1]), 0.0)
    assert r.to_dict()["mean_curve"] == pytest.approx(r.curves[0])


def test_memories_keep_their_global_labels():
    from ddkit.apps.continual import in_full_label_space, join_sets

    spec = tiny_digits().train.spec
    sub = class_subset(tiny_digits().train, [4, 9])
    hard = SyntheticSet(sub.images[:2], torch.tensor([0, 1]), sub.spec)
    soft = SyntheticSet(sub.images[:1], torch.tensor([[0.25, 0.75]]), sub.spec)
    a, b = in_full_label_space(hard, [4, 9], spec), in_full_label_space(soft, [4, 9], spec)
    assert a.labels.tolist() == [4, 9] and b.labels[0, 9] == 0.75 and b.labels[0, 4] == 0.25
    joined = join_sets([a, b])
    assert joined.soft and joined.labels.argmax(1).tolist() == [4, 9, 9]
    learned = SyntheticSet(sub.images[:1], torch.tensor([[-0.3, 1.2]]), sub.spec, regression=True)
    c = in_full_label_space(learned, [4, 9], spec)
    assert c.regression and c.labels[0, 9] == pytest.approx(1.2) and c.labels[0, 4] == -0.3
    assert join_sets([a, c]).regression


def test_steps_must_divide_the_classes():
    with pytest.raises(ConfigError, match="steps must divide"):
        continual_learning(tiny_digits(), "random", ContinualSettings(steps=3, memory=1))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"memory": 0}, "memory must be >= 1"),
        ({"orders": float("inf")}, "orders must be finite"),
        ({"runs": 1.5}, "runs must be a whole number"),
        ({"iterations": -1}, "iterations must be >= 0"),
    ],
)
def test_the_continual_settings_refuse_bad_counts_before_any_work(option, message):
    with pytest.raises(ConfigError, match=message):
        ContinualSettings(**{"steps": 2, "memory": 1, **option})


def test_cli_writes_json_and_png(tmp_path):
    out = tmp_path / "cl"
    args = ["app", "continual", "--methods", "random,herding", "--steps", "2", "--memory", "2"]
    assert main([*args, "--protocol", "smoke", "--out", str(out)]) == 0
    data = json.loads((out / "continual.json").read_text())
    assert [r["method"] for r in data["results"]] == ["random", "herding"]
    assert (out / "continual.png").stat().st_size > 1000
    assert main([*args, "--methods", "nope", "--out", str(out)]) == 2


def test_cli_rerun_keeps_rows_with_the_same_settings(tmp_path, capsys):
    out = tmp_path / "cl"
    args = ["app", "continual", "--steps", "2", "--memory", "2", "--protocol", "smoke"]
    assert main([*args, "--methods", "random", "--out", str(out)]) == 0
    first = json.loads((out / "continual.json").read_text())["results"][0]
    capsys.readouterr()
    assert main([*args, "--methods", "random,herding", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "random: kept from" in said and "herding: 2 steps" in said
    rows = json.loads((out / "continual.json").read_text())["results"]
    assert rows[0] == first and rows[1]["method"] == "herding"
    assert main([*args, "--methods", "random", "--memory", "1", "--out", str(out)]) == 0
    assert "kept" not in capsys.readouterr().out


# ------------------------------------------------------------------ architecture search


def test_architecture_space_names_build():
    from ddkit.apps.nas import architecture_space
    from ddkit.models.registry import create_model

    space = architecture_space()
    assert len(space) >= 30 and len(set(space)) == len(space)
    for name in space[:: len(space) // 6]:
        create_model(name, num_classes=10, in_channels=1, image_size=8)


def test_rank_agreement():
    from ddkit.apps.nas import rank_agreement

    full = {"a": 0.9, "b": 0.8, "c": 0.7}
    assert rank_agreement({"a": 0.5, "b": 0.4, "c": 0.1}, full) == {"spearman": 1.0, "kendall": 1.0}
    reverse = rank_agreement({"a": 0.1, "b": 0.4, "c": 0.5}, full)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["kendall"] == pytest.approx(-1.0)


def test_architecture_search_ranks_on_validation(tmp_path):
    from ddkit.apps.nas import architecture_search
    from ddkit.data import from_arrays
    from ddkit.methods import create_method

    base = tiny_digits()
    with pytest.raises(ConfigError, match="validation split"):
        architecture_search(base, {})
    x = torch.cat([base.train.images, base.test.images])[:, 0]
    y = torch.cat([base.train.labels, base.test.labels])
    splits = from_arrays(x.numpy(), y.numpy(), name="tiny-digits", val_fraction=0.25, seed=0)
    proxies = {"random": create_method("random").fit(splits.train, 2, seed=0)}
    archs = ["convnet1-w8-in-relu-avg", "convnet1-w8-none-sigmoid-avg", "convnet2-w8-bn-relu-max"]
    r = architecture_search(
        splits, proxies, architectures=archs, proxy_epochs=5, full_epochs=2, log=lambda _: None
    )
    row = r["proxies"][0]
    assert set(row["val"]) == set(archs) and -1.0 <= row["spearman"] <= 1.0
    assert row["top_pick"] == max(archs, key=lambda k: row["val"][k])
    assert r["full_pick"] == max(archs, key=lambda k: r["full"]["val"][k])
    assert row["top_pick_test"] == r["full"]["test"][row["top_pick"]]


def test_cli_nas_writes_json_and_png(tmp_path):
    out = tmp_path / "nas"
    args = ["app", "nas", "--space", "tiny", "--proxies", "random", "--ipc", "2"]
    assert main([*args, "--proxy-epochs", "3", "--full-epochs", "1", "--out", str(out)]) == 0
    data = json.loads((out / "nas.json").read_text())
    assert len(data["architectures"]) == 4 and data["proxies"][0]["proxy"] == "random"
    assert (out / "nas.png").stat().st_size > 1000


# ------------------------------------------------------------------ federated learning


def test_dirichlet_split_partitions_and_skews_with_small_alpha():
    from ddkit.apps.federated import dirichlet_split

    labels = tiny_digits().train.labels

    def split(alpha, seed=0):
        return dirichlet_split(labels, 6, alpha, torch.Generator().manual_seed(seed))

    parts = split(0.1)
    rows = torch.cat(parts)
    assert len(rows) == len(labels) and len(torch.unique(rows)) == len(labels)
    assert all(torch.equal(a, b) for a, b in zip(parts, split(0.1)))

    def classes_per_client(ps):
        return sum(len(torch.unique(labels[p])) for p in ps) / len(ps)

    assert classes_per_client(split(0.1)) < classes_per_client(split(100.0)) == 10
    with pytest.raises(ConfigError, match="alpha > 0"):
        dirichlet_split(labels, 3, 0.0, torch.Generator())


def test_client_upload_keeps_global_labels_and_skips_small_classes():
    from ddkit.apps.federated import client_upload

    train = tiny_digits().train
    rows = torch.nonzero(
        (train.labels == 3) | ((train.labels == 8) & (torch.arange(len(train)) % 9 == 0))
    )
    data = train.subset(rows.flatten())  # many 3s, very few 8s
    up = client_upload(data, "random", 4, iterations=None, seed=0)
    assert up.labels.tolist() == [3] * 4 and up.spec.num_classes == 10


def test_fedavg_averages_weighted_by_client_size():
    from ddkit.apps.federated import _average

    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(5)}
    avg = _average([a, b], torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert torch.allclose(avg["w"], torch.tensor([1.0, 3.0])) and avg["n"] == 3


def test_cli_federated_writes_json_and_png(tmp_path):
    out = tmp_path / "fed"
    args = ["app", "federated", "--methods", "random", "--clients", "3", "--alphas", "1"]
    assert (
        main([*args, "--rounds", "1", "--ipc", "2", "--protocol", "smoke", "--out", str(out)]) == 0
    )
    data = json.loads((out / "federated.json").read_text())
    row = data["results"][0]
    assert row["one_shot"][0]["bytes"] > 0 and len(row["fedavg"]["curve"]) == 1
    assert row["fedavg"]["curve"][0]["bytes"] > row["one_shot"][0]["bytes"]
    assert (out / "federated.png").stat().st_size > 1000


# ------------------------------------------------------------------ HCDC


def _tiny_linear_net() -> torch.nn.Module:
    layer = torch.nn.Linear(64, 10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.weight.copy_(0.01 * torch.randn(10, 64, generator=g))
        layer.bias.zero_()
    return torch.nn.Sequential(torch.nn.Flatten(), layer)


def test_neumann_series_inverts_the_training_hessian():
    """Against the exact inverse of the (convex) Hessian of a linear classifier's loss."""
    from torch.func import hessian

    from ddkit.apps.hcdc import FlatNetwork, inverse_hessian_products

    data = tiny_digits().train
    x, y = data.images[:64].double(), data.labels[:64]
    flat = FlatNetwork(_tiny_linear_net().double())
    wd = 0.05

    def loss(t):
        return torch.nn.functional.cross_entropy(flat.logits(t, x), y) + 0.5 * wd * t.dot(t)

    h = hessian(loss)(flat.theta)
    v = torch.randn(2, len(flat.theta), generator=torch.Generator().manual_seed(1)).double()
    exact = torch.linalg.solve(h, v.T).T
    g = torch.Generator().manual_seed(0)
    few = inverse_hessian_products(flat, x, y, wd, v, terms=5, generator=g)
    many = inverse_hessian_products(flat, x, y, wd, v, terms=2000, generator=g)
    err = lambda a: float((a - exact).norm() / exact.norm())  # noqa: E731
    assert err(many) < 0.02 < err(few)


def test_module_masks_cover_every_parameter_once():
    from ddkit.apps.hcdc import FlatNetwork
    from ddkit.models import create_model

    net = create_model("convnet-w16", num_classes=10, in_channels=1, image_size=(8, 8))
    masks = FlatNetwork(net).module_masks()
    assert masks.sum(0).eq(1).all()
    assert len(masks) == len({k.rpartition(".")[0] for k, _ in net.named_parameters()})


def test_hcdc_matches_hypergradients_and_the_real_split_ranks_itself_perfectly():
    from ddkit.apps.hcdc import (
        _agreement,
        calibrate,
        condense_validation,
        hyperparameter_grid,
        train_grid,
        validation_scores,
    )

    splits = load_dataset("digits", val_fraction=0.2, seed=0)
    grid = hyperparameter_grid((0.05,), (1e-3, 3e-2))
    nets = train_grid(splits.train, grid, model="convnet-w16", epochs=3, seed=0)
    g = torch.Generator().manual_seed(0)
    cals = [calibrate(nets[s.name], splits.train, splits.val, s.weight_decay, terms=3,
                      hessian_batch=64, generator=g) for s in grid]  # fmt: skip
    syn, history = condense_validation(splits.val, cals, 2, iterations=12, lr_img=0.01)
    assert len(syn) == 20 and syn.hard_labels.bincount().eq(2).all()
    assert min(history[1:]) < history[0]  # the matching loss goes down
    real = validation_scores(nets, splits.val.images, splits.val.labels)
    assert _agreement(real, real)["spearman"] == pytest.approx(1.0)


def test_hcdc_cli_writes_json_and_png(tmp_path):
    out = tmp_path / "hc"
    args = ["app", "hcdc", "--ipc", "1", "--baselines", "random", "--lrs", "0.05",
            "--weight-decays", "0.001,0.03", "--epochs", "2", "--iterations", "2",
            "--terms", "2", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "hcdc.json").read_text())
    assert [r["candidate"] for r in data["candidates"]] == ["hcdc", "random"]
    assert set(data["real"]["scores"]) == {"lr=0.05,wd=0.001", "lr=0.05,wd=0.03"}
    assert (out / "hcdc.png").stat().st_size > 1000
    assert main([*args[:-2], "--weight-decays", "x", "--out", str(out)]) == 2


def test_the_implicit_hypergradient_equals_a_finite_difference():
    """d(validation loss)/d(log weight decay) of a linear classifier trained to its optimum:
    implicit differentiation (Neumann series) against retraining at wd * exp(+-eps)."""
    import math

    from ddkit.apps.hcdc import calibrate
    from ddkit.data.dataset import ImageDataset

    splits = tiny_digits()
    train = ImageDataset(splits.train.images[:96].double(), splits.train.labels[:96],
                         splits.train.spec)  # fmt: skip
    val = ImageDataset(splits.test.images.double(), splits.test.labels, splits.test.spec)
    f = torch.nn.functional

    def fit(wd: float) -> torch.nn.Module:
        net = _tiny_linear_net().double()
        opt = torch.optim.LBFGS(net.parameters(), max_iter=500, tolerance_grad=1e-12,
                                tolerance_change=1e-14, history_size=50,
                                line_search_fn="strong_wolfe")  # fmt: skip

        def closure() -> torch.Tensor:
            opt.zero_grad()
            penalty = sum(p.pow(2).sum() for p in net.parameters())
            loss = f.cross_entropy(net(train.images), train.labels) + 0.5 * wd * penalty
            loss.backward()
            return loss

        for _ in range(5):
            opt.step(closure)
        return net

    def val_loss(net: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(f.cross_entropy(net(val.images), val.labels))

    wd, eps = 0.05, 1e-3
    g = torch.Generator().manual_seed(0)
    cal = calibrate(fit(wd), train, val, wd, terms=800, hessian_batch=10**6, generator=g)
    finite = (val_loss(fit(wd * math.exp(eps))) - val_loss(fit(wd * math.exp(-eps)))) / (2 * eps)
    assert float(cal.target[0]) == pytest.approx(finite, rel=0.01)


# ------------------------------------------------------------------ one-line refusals before work
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["federated", "--rounds", "0"], "--rounds must be >= 1"),
        (["federated", "--local-epochs", "0"], "--local-epochs must be >= 1"),
        (["federated", "--clients", "0"], "--clients must be >= 1"),
        (["federated", "--alphas", "inf"], "--alphas must be finite"),
        (["federated", "--alphas", "nan"], "--alphas must be numbers"),
        (["federated", "--alphas", "0"], "--alphas must be > 0"),
        (["federated", "--alphas", "x"], "--alphas must be comma-separated numbers"),
        (["federated", "--ipc", "0"], "--ipc must be >= 1"),
        (["continual", "--steps", "0"], "--steps must be >= 1"),
        (["continual", "--orders", "0"], "--orders must be >= 1"),
        (["continual", "--runs", "0"], "--runs must be >= 1"),
        (["continual", "--memory", "0"], "--memory must be >= 1"),
        (["continual", "--iterations", "-1"], "--iterations must be >= 0"),
        (["hcdc", "--terms", "0"], "--terms must be >= 1"),
        (["hcdc", "--epochs", "0"], "--epochs must be >= 1"),
        (["hcdc", "--val-fraction", "nan"], "--val-fraction must be a number"),
        (["hcdc", "--val-fraction", "inf"], "--val-fraction must be a number in (0, 1)"),
        (["hcdc", "--val-fraction", "1"], "--val-fraction must be a number in (0, 1)"),
        (["hcdc", "--lrs", "inf"], "--lrs must be finite"),
        (["hcdc", "--iterations", "0"], "--iterations must be >= 1"),
        (["nas", "--proxy-epochs", "0"], "--proxy-epochs must be >= 1"),
        (["nas", "--full-epochs", "0"], "--full-epochs must be >= 1"),
        (["nas", "--val-fraction", "0"], "--val-fraction must be a number in (0, 1)"),
    ],
)
def test_an_app_refuses_bad_numbers_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main(["app", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["federated", "--clients", str(10**9)], "--clients 1,000,000,000 exceeds the"),
        (["federated", "--protocol", "nosuch"], "unknown protocol 'nosuch'"),
        (["federated", "--ipc", "1000"], "IPC 1000 is larger than class"),
        (["continual", "--memory", str(10**9)], "IPC 1000000000 is larger than class"),
        (["continual", "--protocol", "nosuch"], "unknown protocol 'nosuch'"),
        (["nas", "--ipc", str(10**9)], "IPC 1000000000 is larger than class"),
        (["hcdc", "--ipc", "1000"], "IPC 1000 is larger than class"),
        (["hcdc", "--model", "nosuch"], "unknown model 'nosuch'"),
    ],
)
def test_an_app_refuses_what_its_data_cannot_serve_before_creating_out(
    tmp_path, capsys, argv, message
):
    """These were refused only after --out was created (some after the work had started), or,
    for 10**9 clients, were a MemoryError (issue 42)."""
    out = tmp_path / "out"
    code = main(["app", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("ddkit: error:"), err
    assert not out.exists()


@pytest.mark.timeout(20)
def test_the_app_functions_refuse_zero_and_infinite_numbers_before_any_work():
    import math

    from ddkit.apps import HyperparameterSearch, calibrated_search, dirichlet_split, fedavg

    splits = load_dataset("digits", val_fraction=0.2)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet_split(splits.train.labels, 3, math.inf, g)
    parts = dirichlet_split(splits.train.labels, 3, 1.0, g)
    with pytest.raises(ConfigError, match="rounds must be >= 1"):
        fedavg(splits, parts, rounds=0)
    with pytest.raises(ConfigError, match="local_epochs must be >= 1"):
        fedavg(splits, parts, local_epochs=0)
    with pytest.raises(ConfigError, match="terms must be >= 1"):
        calibrated_search(splits, 1, terms=0, log=lambda line: None)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        calibrated_search(splits, 1, search=HyperparameterSearch(epochs=0), log=lambda line: None)
