"""Coreset selectors: herding, k-center, forgetting (plus a slow learning check)."""

from __future__ import annotations

import pytest
import torch

from ddkit.data import from_arrays
from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.coreset.selectors import (
    FeatureNetRecipe,
    count_forgetting_events,
    forgetting_scores,
    herding_order,
    kcenter_order,
    pad_by_class,
    shared_embeddings,
    top_per_class,
    train_feature_net,
)
from ddkit.testing import tiny_digits


def toy_split(counts, dim=4, seed=0, spread=None):
    """Splits whose train part has ``counts[c]`` rows of class ``c`` (images 1 x 1 x dim)."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c, n in enumerate(counts):
        centre = 5.0 * torch.randn(dim, generator=g)
        xs.append(centre + torch.randn(n, dim, generator=g) * (spread or 1.0))
        ys.append(torch.full((n,), c))
    x = torch.cat(xs).view(-1, 1, 1, dim)
    y = torch.cat(ys)
    return from_arrays(x, y, x[:1], y[:1], num_classes=len(counts))


# ------------------------------------------------------------------ herding
def naive_herding(x: torch.Tensor, n: int) -> list[int]:
    """Plain per-class herding (Chen et al. 2010 / iCaRL), one candidate at a time."""
    mu, chosen, s = x.mean(0), [], torch.zeros(x.shape[1], dtype=x.dtype)
    for t in range(1, n + 1):
        best, best_d = None, None
        for i in range(len(x)):
            if i in chosen:
                continue
            d = torch.linalg.norm(mu - (s + x[i]) / t)
            if best_d is None or d < best_d:
                best, best_d = i, d
        chosen.append(best)
        s = s + x[best]
    return chosen


def test_herding_first_pick_is_closest_to_class_mean():
    # Class 0: four points around (0, 0) plus the centre itself; class 1 likewise around (9, 9).
    pts0 = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0], [0.1, 0.0]])
    pts1 = pts0 + 9.0
    x = torch.cat([pts0, pts1]).view(-1, 1, 1, 2)
    y = torch.tensor([0] * 5 + [1] * 5)
    train = from_arrays(x, y, x[:1], y[:1]).train
    syn = create_method("herding", embedding="pixels").fit(train, 1, seed=0)
    assert syn.meta["indices"] == [4, 9]  # the samples nearest each class mean
    assert syn.labels.tolist() == [0, 1]


def test_herding_vectorised_matches_naive_loop_on_unequal_classes():
    train = toy_split([7, 12, 9], dim=5, seed=3).train
    feats, rows, valid = pad_by_class(train, train.images.flatten(1).double())
    pos = herding_order(feats, valid, 5)
    for c, ix in enumerate(train.class_indices):
        expect = naive_herding(train.images.flatten(1).double()[ix], 5)
        assert pos[c].tolist() == expect
        assert rows[c, pos[c]].tolist() == ix[expect].tolist()


def test_herding_running_mean_approaches_class_mean():
    train = toy_split([40, 40], dim=6, seed=1).train
    x = train.images.flatten(1).double()
    feats, _, valid = pad_by_class(train, x)
    pos = herding_order(feats, valid, 20)
    for c in range(2):
        chosen = feats[c, pos[c]]
        err = [torch.linalg.norm(chosen[:t].mean(0) - feats[c].mean(0)) for t in (1, 5, 20)]
        assert err[2] < err[1] < err[0] + 1e-12


# ------------------------------------------------------------------ k-center
def coverage_radius(points: torch.Tensor, centres: torch.Tensor) -> float:
    return float(torch.cdist(points, centres).min(1).values.max())


def test_kcenter_coverage_radius_not_worse_than_random():
    # Each class: 6 tight clusters of unequal size; k-center with 6 picks covers all of them.
    g = torch.Generator().manual_seed(0)
    xs, ys = [], []
    for c in range(2):
        centres = 10.0 * torch.randn(6, 3, generator=g)
        sizes = torch.tensor([30, 10, 5, 3, 2, 2])
        xs.append(
            torch.repeat_interleave(centres, sizes, 0)
            + 0.1 * torch.randn(int(sizes.sum()), 3, generator=g)
        )
        ys.append(torch.full((int(sizes.sum()),), c))
    x, y = torch.cat(xs).view(-1, 1, 1, 3), torch.cat(ys)
    train = from_arrays(x, y, x[:1], y[:1]).train
    flat = train.images.flatten(1)

    def radius(syn) -> float:
        return max(
            coverage_radius(flat[ix], syn.images.flatten(1)[syn.labels == c])
            for c, ix in enumerate(train.class_indices)
        )

    kc = radius(create_method("kcenter", embedding="pixels").fit(train, 6, seed=0))
    rand = [radius(create_method("random").fit(train, 6, seed=s)) for s in range(5)]
    assert kc <= min(rand), (kc, rand)
    assert kc < 1.0  # every cluster got a centre


def test_kcenter_starts_near_mean_then_takes_farthest():
    pts = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]], dtype=torch.float64)  # mean 3.2
    pos = kcenter_order(pts.unsqueeze(0), torch.ones(1, 5, dtype=torch.bool), 3)
    assert pos[0].tolist() == [3, 4, 0]


def test_kcenter_with_duplicates_never_repeats_a_row():
    x = torch.zeros(6, 1, 1, 2)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    train = from_arrays(x, y, x[:1], y[:1]).train
    for method in ("kcenter", "herding"):
        ix = create_method(method, embedding="pixels").fit(train, 3, seed=0).meta["indices"]
        assert sorted(ix) == list(range(6)), (method, ix)


# ------------------------------------------------------------------ forgetting
def test_forgetting_event_counting_on_hand_made_history():
    # rows: presentations (epochs); columns: samples
    history = torch.tensor(
        [
            [1, 0, 1, 0, 0, 1],
            [0, 0, 1, 1, 1, 1],
            [1, 0, 1, 1, 0, 0],
            [0, 0, 1, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    events, learned = count_forgetting_events(history)
    assert events.tolist() == [2, 0, 0, 1, 1, 1]
    assert learned.tolist() == [True, False, True, True, True, True]
    scores = forgetting_scores(history)
    assert scores[1] == float("inf")  # never learned = most forgettable
    assert scores.tolist()[:1] + scores.tolist()[2:] == [2, 0, 1, 1, 1]
    assert (
        count_forgetting_events(history[:1])[0].tolist() == [0] * 6
    )  # one presentation: no events


def test_top_per_class_orders_by_score_and_breaks_ties_by_seed():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    scores = torch.tensor([0.0, float("inf"), 2.0, 1.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    top = top_per_class(scores, labels, 2, 2, torch.Generator().manual_seed(0))
    assert top[0].tolist() == [1, 2]
    assert set(top[1].tolist()) <= {4, 5, 6}
    picks = {
        tuple(top_per_class(scores, labels, 2, 2, torch.Generator().manual_seed(s))[1].tolist())
        for s in range(20)
    }
    assert len(picks) > 1  # ties are broken randomly, by the seed
    again = top_per_class(scores, labels, 2, 2, torch.Generator().manual_seed(0))
    assert torch.equal(top, again)


def test_forgetting_selects_the_most_forgotten_samples():
    from ddkit.methods.coreset import ForgettingSelector

    train = tiny_digits().train
    cfg = {"epochs_net": 4, "model": "mlp", "batch_net": 32}
    # fit(seed=0) draws from Generator(0) exactly as this direct call does: same history.
    hist = ForgettingSelector(**cfg).correctness_history(train, torch.Generator().manual_seed(0))
    assert hist.shape == (4, len(train))
    scores = forgetting_scores(hist)
    assert 0 < int(torch.isfinite(scores).sum()) < len(train)
    syn = create_method("forgetting", **cfg).fit(train, 3, seed=0)
    chosen = torch.tensor(syn.meta["indices"])
    for c, ix in enumerate(train.class_indices):
        mine = scores[chosen[syn.labels == c]]
        rest = scores[ix[~torch.isin(ix, chosen)]]
        assert mine.min() >= rest.max(), c


# ------------------------------------------------------------------ shared helper, balance, errors
def test_train_feature_net_learns_and_leaves_global_rng_alone():
    train = tiny_digits().train
    state = torch.random.get_rng_state()

    def trained(epochs):
        recipe = FeatureNetRecipe("mlp", epochs, batch_size=32)
        return train_feature_net(train, recipe, torch.Generator().manual_seed(0))

    nets = [trained(e) for e in (0, 10)]
    assert torch.equal(state, torch.random.get_rng_state())
    with torch.no_grad():
        acc = [float((n(train.images).argmax(1) == train.labels).float().mean()) for n in nets]
    assert acc[0] < 0.3 and acc[1] > 0.8, acc
    again = trained(10)
    assert all(
        torch.equal(a, b)
        for a, b in zip(nets[1].state_dict().values(), again.state_dict().values())
    )


def test_shared_embeddings_train_one_network_and_select_bit_for_bit(monkeypatch):
    import ddkit.methods.coreset.selectors as selectors

    train = tiny_digits().train
    trained = []
    real = selectors.train_feature_net
    monkeypatch.setattr(
        selectors, "train_feature_net", lambda *a, **k: trained.append(1) or real(*a, **k)
    )

    def picks(name, seed=0):
        syn = create_method(name, epochs_net=2).fit(train, 3, seed=seed, progress=False)
        return syn.images

    alone = [picks("herding"), picks("kcenter")]
    assert len(trained) == 2
    with shared_embeddings():
        shared = [picks("herding"), picks("kcenter"), picks("kcenter", seed=1)]
    assert len(trained) == 4  # one for seed 0 (both selectors), one for seed 1
    assert all(torch.equal(a, b) for a, b in zip(alone, shared[:2], strict=True))
    assert not torch.equal(shared[1], shared[2])
    picks("herding")  # outside the block nothing is kept
    assert len(trained) == 5


@pytest.mark.parametrize(
    "name,kw",
    [
        ("herding", {"embedding": "pixels"}),
        ("herding", {"embedding": "random"}),
        ("herding", {"epochs_net": 1}),
        ("kcenter", {"embedding": "pixels"}),
        ("kcenter", {"embedding": "random"}),
        ("forgetting", {"epochs_net": 1}),
    ],
)
def test_balanced_on_imbalanced_classes(name, kw):
    train = toy_split([5, 30, 9, 17], dim=16, seed=2).train  # 1x1x16 "images": use an MLP
    model = {"model": "mlp-w16"}
    syn = create_method(name, **kw, **model).fit(train, 5, seed=0)
    assert torch.bincount(syn.labels, minlength=4).tolist() == [5, 5, 5, 5]
    ix = syn.meta["indices"]
    assert len(set(ix)) == len(ix)
    assert torch.equal(syn.images, train.images[ix])
    assert torch.equal(syn.labels, train.labels[ix])


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("herding", {"embedding": "bogus"}, "embedding must be one of: pixels, random, trained"),
        ("kcenter", {"epochs_net": -1}, "epochs_net must be >= 0"),
        ("forgetting", {"epochs_net": 0}, "epochs_net must be >= 1"),
        ("forgetting", {"batch_net": 0}, "batch_net must be >= 1"),
    ],
)
def test_bad_config(name, kw, match):
    with pytest.raises(ConfigError, match=match):
        create_method(name, **kw)


# ------------------------------------------------------------------ it really works (slow)
@pytest.mark.slow
def test_herding_not_worse_than_random_on_digits():
    from ddkit.data import load_dataset
    from ddkit.eval import evaluate

    d = load_dataset("digits")
    acc = {}
    for name in ("herding", "random"):
        syn = create_method(name).fit(d.train, 10, seed=0)
        acc[name] = 100 * evaluate(syn, d.test, "fast", seed=0).results[0].mean
    msg = f"digits IPC 10, protocol fast: herding {acc['herding']:.2f}% vs random {acc['random']:.2f}%"
    print(msg)
    assert acc["herding"] >= acc["random"] - 5.0, msg
