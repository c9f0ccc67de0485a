"""Biased datasets (Colored MNIST, Background Fashion-MNIST), group accuracy, and the
kernel-density re-weighting of dm / idm (issue 36)."""

import itertools
import json

import numpy as np
import pytest
import torch
from paths import as_float64

from ddkit.cli import main
from ddkit.data import DATASETS, ArrayExtras, from_arrays, load_dataset
from ddkit.data.biased import (
    PALETTE,
    balanced_attributes,
    biased_attributes,
    biased_raw,
    paint,
)
from ddkit.data.builtin import RawData
from ddkit.data.dataset import ImageDataset, denormalise
from ddkit.data.fingerprint import fingerprint
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval import EvalProtocol, evaluate
from ddkit.eval.groups import GROUP_METRICS, group_accuracy
from ddkit.methods import create_method
from ddkit.methods.matching.reweight import kde_weights, weighted_mean
from ddkit.models import build_network
from ddkit.testing import method_test_overrides, tiny_digits

TINY = EvalProtocol(name="tiny", epochs=2, runs=2, models=("convnet-w16",))


def _labels(sizes: list[int], seed: int = 0) -> torch.Tensor:
    """Labels with ``sizes[c]`` rows of class ``c``, shuffled."""
    y = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def _grey(split: ImageDataset) -> np.ndarray:
    return (denormalise(split.images, split.spec)[:, 0].clamp(0, 1) * 255).round().byte().numpy()


def _digits_raw() -> RawData:
    """tiny digits as 8-bit grey arrays, as a reader returns them."""
    d = tiny_digits()
    return RawData(_grey(d.train), d.train.labels.numpy(), _grey(d.test), d.test.labels.numpy())


@pytest.fixture(scope="module")
def colored_digits():
    """tiny digits made biased: 10 % bias-conflicting train rows, an unbiased test split."""
    raw = biased_raw(_digits_raw(), 0.1, seed=0)
    return from_arrays(
        raw.train_images,
        raw.train_labels,
        raw.test_images,
        raw.test_labels,
        name="colored-digits",
        num_classes=10,
        extras=ArrayExtras(train_bias=raw.train_bias, test_bias=raw.test_bias),
    )


@pytest.fixture(scope="module")
def colored5k():
    return load_dataset("colored-mnist5k-c2")


# ------------------------------------------------------------------ the biased splits


@pytest.mark.parametrize("ratio", [0.0, 0.005, 0.02, 0.05, 0.5, 1.0])
def test_conflicting_share_matches_the_ratio_in_every_class(ratio):
    sizes = [400, 380, 420, 399, 401, 350, 450, 410, 390, 400]
    y = _labels(sizes)
    b = biased_attributes(y, ratio, 10, torch.Generator().manual_seed(1))
    conflicting = b != y
    per_class = torch.bincount(y[conflicting], minlength=10).tolist()
    assert per_class == [round(ratio * n) for n in sizes]
    assert b.min() >= 0 and b.max() < 10
    if ratio >= 0.5:  # conflicting colours are drawn from the other nine, all of them used
        for c in range(10):
            assert set(b[conflicting & (y == c)].tolist()) == set(range(10)) - {c}


def test_unbiased_split_is_balanced_over_class_and_colour():
    sizes = [103, 98, 100, 87, 120, 100, 95, 101, 99, 100]
    y = _labels(sizes, seed=3)
    b = balanced_attributes(y, 10, torch.Generator().manual_seed(2))
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((y, b), torch.ones_like(y), accumulate=True)
    for c, n in enumerate(sizes):
        assert counts[c].sum() == n and counts[c].max() - counts[c].min() <= 1
        assert counts[c].min() == n // 10


def test_same_seed_same_dataset_and_another_seed_another():
    raw = _digits_raw()
    a, b, c = (biased_raw(raw, 0.05, seed=s) for s in (0, 0, 1))
    for key in ("train_images", "test_images", "train_bias", "test_bias"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.train_bias, c.train_bias)
    assert np.array_equal(a.train_labels, raw.train_labels)  # rows keep their order and labels


def test_paint_tints_digits_and_fills_backgrounds():
    grey = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(2, 1, 1, 3)
    colours = PALETTE[[0, 7]]
    digit = paint(grey, colours, "digit")
    assert torch.allclose(digit[1, :, 0, 2], PALETTE[7]) and digit[:, :, :, 0].abs().max() == 0
    background = paint(grey, colours, "background")
    assert torch.allclose(background[1, :, 0, 0], PALETTE[7])  # uncovered pixels: the colour
    assert torch.equal(background[:, :, :, 1:], grey[:, :, :, 1:].expand(2, 3, 1, 2))  # the object
    assert len({tuple(c) for c in PALETTE.tolist()}) == 10
    with pytest.raises(ConfigError, match="valid: digit, background"):
        paint(grey, colours, "stripes")


def test_colored_mnist5k_holds_the_mnist5k_digits_in_their_colours(colored5k):
    grey = load_dataset("mnist5k")
    for split, base in ((colored5k.train, grey.train), (colored5k.test, grey.test)):
        assert split.images.shape[1] == 3 and torch.equal(split.labels, base.labels)
        raw = denormalise(split.images, split.spec)
        expected = paint(denormalise(base.images, base.spec), PALETTE[split.bias], "digit")
        assert (raw - expected).abs().max() < 1 / 255 + 1e-4
    train, test = colored5k.train, colored5k.test
    assert torch.equal(train.aligned, train.bias == train.labels)
    conflicting = torch.bincount(train.labels[~train.aligned], minlength=10)
    assert conflicting.tolist() == [round(0.02 * n) for n in train.class_counts]
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((test.labels, test.bias), torch.ones_like(test.labels), accumulate=True)
    assert (counts.max(1).values - counts.min(1).values).max() <= 1
    assert colored5k.spec.name == "colored-mnist5k-c2"


def test_names_parse_any_ratio_and_seed():
    assert "colored-mnist5k-c0.5" in DATASETS and "bg-fashionmnist-c37-s2" in DATASETS
    assert "colored-mnist5k-c<percent>[-s<seed>]" in DATASETS.names()
    assert "bias-conflicting" in DATASETS.help("colored-mnist-c<percent>[-s<seed>]")
    assert callable(DATASETS.get("colored-mnist-c1-s4"))


@pytest.mark.parametrize("name", ["colored-mnist5k-c150", "colored-mnist5k-c-1"])
def test_a_ratio_outside_0_1_is_refused_in_one_line(name):
    with pytest.raises(ConfigError, match=r"in \[0, 1\]") as err:
        load_dataset(name)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        biased_attributes(torch.tensor([0, 1]), 1.5, 2, torch.Generator())


def test_a_malformed_name_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="colored-mnist5k-c<percent>") as err:
        load_dataset("colored-mnist5k-five")
    assert "\n" not in str(err.value)


def test_a_family_name_without_arguments_lists_the_families_patterns():
    """``colored-mnist5k`` alone listed the fixed names only, not how to write a biased one."""
    from ddkit.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown dataset 'colored-mnist5k'") as err:
        DATASETS.get("colored-mnist5k")
    assert "colored-mnist5k-c<percent>[-s<seed>]" in str(err.value) and "mnist5k" in str(err.value)


def test_background_fashion_mnist_missing_from_the_root_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DDKIT_DATA", str(tmp_path))
    with pytest.raises(DataError, match="ddkit data fetch fashionmnist") as err:
        load_dataset("bg-fashionmnist-c5")
    assert "\n" not in str(err.value) and "missing" in str(err.value)


def test_bias_follows_rows_through_splits_and_counts_in_the_fingerprint(colored_digits):
    raw = biased_raw(_digits_raw(), 0.1, seed=0)
    with_val = from_arrays(
        raw.train_images, raw.train_labels, raw.test_images, raw.test_labels,
        val_fraction=0.2, extras=ArrayExtras(train_bias=raw.train_bias, test_bias=raw.test_bias),
    )  # fmt: skip
    assert len(with_val.val.bias) == len(with_val.val) and len(with_val.train.bias) == len(
        with_val.train
    )
    rows = torch.tensor([3, 1, 4])
    sub = colored_digits.train.subset(rows)
    assert torch.equal(sub.bias, colored_digits.train.bias[rows])
    train = colored_digits.train
    plain = ImageDataset(train.images, train.labels, train.spec)
    assert fingerprint(plain) == fingerprint(train.images, train.labels)  # unchanged without bias
    assert fingerprint(train) != fingerprint(plain)
    train_only = ArrayExtras(train_bias=raw.train_bias)
    convention = from_arrays(raw.train_images, raw.train_labels, extras=train_only)
    keep = torch.arange(len(raw.train_labels)) % 5 != 0
    assert torch.equal(convention.train.bias, torch.as_tensor(raw.train_bias)[keep])
    with pytest.raises(DataError, match="one split only"):
        from_arrays(raw.train_images, raw.train_labels, raw.test_images, raw.test_labels,
                    extras=train_only)  # fmt: skip


# ------------------------------------------------------------------ group accuracy


def test_group_accuracy_matches_brute_force():
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 4, (200,), generator=g)
    bias = torch.randint(0, 4, (200,), generator=g)
    predictions = torch.where(torch.rand(200, generator=g) < 0.7, labels, (labels + 1) % 4)
    got = group_accuracy(predictions, labels, bias)
    rows = list(zip(predictions.tolist(), labels.tolist(), bias.tolist(), strict=True))

    def acc(selected):
        return sum(p == y for p, y, _ in selected) / len(selected)

    groups = {}
    for row in rows:
        groups.setdefault((row[1], row[2]), []).append(row)
    assert got["unbiased"] == pytest.approx(acc(rows))
    assert got["aligned"] == pytest.approx(acc([r for r in rows if r[1] == r[2]]))
    assert got["conflicting"] == pytest.approx(acc([r for r in rows if r[1] != r[2]]))
    assert got["worst_group"] == pytest.approx(min(acc(v) for v in groups.values()))


def test_group_accuracy_on_a_hand_made_example():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    bias = torch.tensor([0, 0, 1, 1, 1, 0])  # aligned: rows 0, 1, 3, 4
    predictions = torch.tensor([0, 0, 1, 1, 0, 1])  # right: rows 0, 1, 3, 5
    got = group_accuracy(predictions, labels, bias)
    assert got == {
        "unbiased": pytest.approx(4 / 6),
        "aligned": pytest.approx(3 / 4),
        "conflicting": pytest.approx(1 / 2),
        "worst_group": 0.0,  # group (class 0, colour 1): its one row is wrong
    }


@pytest.mark.filterwarnings("ignore:.*under-trained")
def test_evaluate_reports_group_accuracy_as_mean_and_std(colored_digits):
    syn = SyntheticSet.from_real(colored_digits.train)
    report = evaluate(syn, colored_digits.test, TINY, seed=1, groups=True)
    r = report.results[0]
    assert list(r.groups) == list(GROUP_METRICS)
    assert r.groups["unbiased"] == pytest.approx(r.accuracies)
    d = json.loads(json.dumps(report.to_dict()))["results"][0]["groups"]
    for name in GROUP_METRICS:
        accs = d[name]["accuracies"]
        assert len(accs) == 2 and d[name]["mean"] == pytest.approx(sum(accs) / 2)
        assert d[name]["std"] == pytest.approx(float(np.std(accs)))
    assert all(d["worst_group"]["mean"] <= d[k]["mean"] + 1e-12 for k in GROUP_METRICS)
    assert "worst_group" in report.table()
    plain = evaluate(syn, colored_digits.test, TINY, seed=1)
    assert plain.results[0].accuracies == r.accuracies and "groups" not in plain.to_dict()


def test_group_accuracy_on_a_dataset_without_groups_is_refused_in_one_line(tmp_path, capsys):
    digits = tiny_digits()
    syn = SyntheticSet.from_real(digits.train, torch.arange(20))
    with pytest.raises(ConfigError, match="defines no groups") as err:
        evaluate(syn, digits.test, TINY, groups=True)
    assert "\n" not in str(err.value)
    syn.save(tmp_path / "set")
    assert main(["evaluate", str(tmp_path / "set"), "--dataset", "digits", "--groups"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "defines no groups" in lines[0]


def test_cli_evaluate_writes_group_accuracy(colored5k, tmp_path, capsys):
    idx = colored5k.train.sample_per_class(2, torch.Generator().manual_seed(0)).flatten()
    SyntheticSet.from_real(colored5k.train, idx).save(tmp_path / "set")
    argv = ["evaluate", str(tmp_path / "set"), "--groups", "--runs", "1", "--epochs", "1"]
    argv += ["--models", "convnet-w16", "--protocol", "fast", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())["results"][0]
    assert set(result["groups"]) == set(GROUP_METRICS)
    assert "conflicting" in capsys.readouterr().out


# ------------------------------------------------------------------ re-weighting


def test_kde_weights_favour_a_planted_minority_cluster():
    g = torch.Generator().manual_seed(0)
    majority = torch.randn(95, 16, generator=g) * 0.3
    minority = torch.randn(5, 16, generator=g) * 0.3 + 4.0
    emb = torch.cat([majority, minority])[None]  # one class, 100 rows
    w = kde_weights(emb, bandwidth=1.0)
    assert w.shape == (1, 100) and w.sum().item() == pytest.approx(1.0)
    assert w[0, 95:].min() > 5 * w[0, :95].max()
    assert w[0, 95:].sum() > 0.3  # 5 % of the rows, far more of the weight
    assert kde_weights(emb)[0, 95:].sum() > 0.15  # the default bandwidth too
    mean = weighted_mean(emb, w)
    assert (mean - minority.mean(0)).norm() < (emb[0].mean(0) - minority.mean(0)).norm()
    flat = kde_weights(emb, temperature=1e6)  # a high temperature: the plain mean
    assert torch.allclose(flat, torch.full_like(flat, 0.01), atol=1e-6)
    assert torch.equal(kde_weights(emb[:, :1]), torch.ones(1, 1))
    same = kde_weights(torch.zeros(2, 4, 3))  # rows at one point: equal weights
    assert torch.allclose(same, torch.full((2, 4), 0.25))


def test_kde_weights_equal_the_plain_formula_in_float64():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    got = kde_weights(emb, bandwidth=0.7, temperature=2.0)
    for k in range(3):
        z = emb[k].tolist()
        dists = [
            [sum((a - b) ** 2 for a, b in zip(zi, zj, strict=True)) ** 0.5 for zj in z] for zi in z
        ]
        pairs = sorted(dists[i][j] for i, j in itertools.combinations(range(7), 2))
        h = 0.7 * pairs[(len(pairs) - 1) // 2]  # torch's median: the lower middle value
        density = [sum(np.exp(-(d**2) / (2 * h * h)) for d in row) / 7 for row in dists]
        raw = [p ** (-1 / 2.0) for p in density]
        expected = torch.tensor([r / sum(raw) for r in raw], dtype=torch.float64)
        assert torch.allclose(got[k], expected, rtol=1e-10, atol=0)


def test_bias_conflicting_rows_weigh_more_in_a_random_network(colored_digits):
    """In a freshly drawn matching network (dm's), the rare colours of a class sit where the
    density is low: re-weighting raises their share of the class mean."""
    train = colored_digits.train
    net = build_network("convnet-w16", train.spec, seed=0)
    raised = []
    for c in range(10):
        rows = train.class_indices[c]
        with torch.no_grad():
            emb = net.embed(train.images[rows])[None]
        w = kde_weights(emb)[0]
        conflicting = train.bias[rows] != c
        raised.append(w[conflicting].mean() > w[~conflicting].mean())
    assert all(raised)


def test_bias_conflicting_rows_weigh_more_in_a_gradient_matching_network(colored_digits):
    """dc's weights come from its matching network's embedding of each class's real batch:
    the rare colours get more than the plain mean's 1/B."""
    dc = create_method("dc", **method_test_overrides("dc"), reweight="kde")
    train = colored_digits.train
    net = build_network("convnet-w16", train.spec, seed=0)
    n = min(train.class_counts)
    rows = torch.stack([train.class_indices[c][:n] for c in range(10)])  # (K, n)
    w = dc.real_weights(net, train.images[rows])
    assert w.shape == (10, n) and torch.allclose(w.sum(1), torch.ones(10, dtype=w.dtype))
    conflicting = train.bias[rows] != train.labels[rows]
    assert conflicting.any() and w[conflicting].mean() > 1.5 * w[~conflicting].mean()
    plain = create_method("dc", **method_test_overrides("dc"))
    assert plain.real_weights(net, train.images[rows]) is None


@pytest.mark.parametrize("name", ["dm", "idm", "dim", "dc", "dsa", "idc"])
def test_reweighting_option_of_the_matching_methods(name, colored_digits):
    """dm / idm / dim weight the matched real mean, dc / dsa / idc the real cross-entropy: a run
    with reweight="kde" repeats and differs from the plain one (the class-by-class and the
    vectorised path agree: the next test)."""
    kw = method_test_overrides(name) | {"iterations": 3}
    if name in ("dc", "dsa", "idc"):
        kw["model"] = "convnet2"  # ConvNet-3 normalises too few values on 8x8 images
    train = colored_digits.train
    plain = create_method(name, **kw).fit(train, 2, seed=0)
    a = create_method(name, **kw, reweight="kde", kde_bandwidth=0.5).fit(train, 2, seed=0)
    b = create_method(name, **kw, reweight="kde", kde_bandwidth=0.5).fit(train, 2, seed=0)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, plain.images)
    assert a.meta["config"]["reweight"] == "kde"
    for bad in ({"reweight": "lff"}, {"reweight": "kde", "kde_bandwidth": 0.0}):
        with pytest.raises(ConfigError):
            create_method(name, **bad)


def _reweighted_paths(name: str, train: ImageDataset, iterations: int) -> list[torch.Tensor]:
    """The images of method ``name`` re-weighted by KDE, by its vectorised and its class-loop
    path (same seed)."""
    kw = method_test_overrides(name) | {"iterations": iterations, "reweight": "kde"}
    kw["kde_bandwidth"] = 0.5
    if name in ("dc", "dsa", "idc"):
        kw["model"] = "convnet2"
    return [
        create_method(name, **kw, vectorize=v).fit(train, 2, seed=0).images for v in (True, False)
    ]


@pytest.mark.paths_agree("float64")
@pytest.mark.parametrize("name", ["dc", "dsa", "idc"])
def test_reweighted_gradient_matching_loop_equals_vectorised_float64(name, colored_digits):
    """Three re-weighted gradient-matching iterations in float64 (float64 data gives float64
    networks): the class-loop path gives the vectorised one's images."""
    vectorised, loop = _reweighted_paths(name, as_float64(colored_digits.train), 3)
    torch.testing.assert_close(loop, vectorised, rtol=1e-6, atol=1e-6)


@pytest.mark.paths_agree("fp32", steps=1)
@pytest.mark.parametrize("name", ["dm", "idm", "dim"])
def test_reweighted_distribution_matching_loop_equals_vectorised(name, colored_digits):
    """One re-weighted distribution-matching step (float32, exact mode): the class-loop path
    gives the vectorised one's images, up to the rounding of one step."""
    vectorised, loop = _reweighted_paths(name, colored_digits.train, 1)
    torch.testing.assert_close(loop, vectorised, rtol=1e-5, atol=1e-5)
