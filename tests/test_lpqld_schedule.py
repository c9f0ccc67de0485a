"""LPQLD's temperature schedule at evaluation (issue 85): a set of stored top-k logits marked
with ``with_label_schedule(syn, "lpqld")`` trains on its logits re-softened at every epoch's
temperature (20 x 0.7 per tenth of the epochs, floor 2), in both training paths and before
CutMix; an unmarked set trains exactly as before."""

from __future__ import annotations

import pytest
import torch

import ddkit.eval.train as train_module
from ddkit.data.label_budget import lpqld_temperature
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval import evaluate
from ddkit.eval.prepare import train_model, training_data
from ddkit.eval.protocol import get_protocol
from ddkit.eval.relabel import relabel, scheduled_labels, with_label_schedule
from ddkit.eval.train import TrainRecipe, sgd_train, train_networks
from ddkit.models import build_network
from ddkit.testing import tiny_digits

N, V, K = 10, 4, 10
SOFT = get_protocol("soft").with_(epochs=2, models=("convnet-w8",))


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


class _Sharp(torch.nn.Module):
    """An untrained network's logits spread tenfold, so temperatures tell apart."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * self.net(x)


@pytest.fixture(scope="module")
def teacher(tiny):
    return _Sharp(build_network("convnet-w8", tiny.train.spec, 0)).eval()


@pytest.fixture(scope="module")
def base(tiny):
    return SyntheticSet.from_real(tiny.train, torch.arange(N))


def _logits_set(base, teacher, budget="logits:4", views=V):
    g = torch.Generator().manual_seed(1) if views else None
    return relabel(base, teacher, 2.0, views=views, generator=g, budget=budget)


def _softened(syn, temperature, prefix="view_"):
    """The stored logits' softmax at ``temperature``, zero off the stored classes, by hand."""
    z, idx = syn.extras[prefix + "logits"].float(), syn.extras[prefix + "indices"].long()
    full = torch.zeros(*z.shape[:-1], K).scatter_(-1, idx, torch.softmax(z / temperature, -1))
    return full.reshape(-1, K)


# ----------------------------------------------------------------------------- the targets
def test_epoch_0_and_60_of_300_train_at_temperatures_20_and_9_8(base, teacher):
    syn = with_label_schedule(_logits_set(base, teacher), "lpqld")
    data = training_data(syn, SOFT.with_(epochs=300))
    assert data.meta["label_schedule"] == "lpqld"
    assert lpqld_temperature(0, 300) == 20.0 and lpqld_temperature(60, 300) == pytest.approx(9.8)
    first, sixtieth = data.targets_at(0), data.targets_at(60)
    torch.testing.assert_close(first, _softened(syn, 20.0))
    torch.testing.assert_close(sixtieth, _softened(syn, 9.8))
    assert not torch.allclose(first, sixtieth)
    # a cooler temperature sharpens every row: its largest probability grows
    assert bool((sixtieth.max(1).values >= first.max(1).values - 1e-6).all())
    torch.testing.assert_close(data.targets_at(299), _softened(syn, 2.0))
    # the stored targets stay those of the set's own temperature
    torch.testing.assert_close(data.targets, _softened(syn, 2.0))


def test_pruned_views_are_reused_with_their_epochs_labels(base, teacher):
    syn = with_label_schedule(_logits_set(base, teacher, "prune:2+logits:4+fp16"), "lpqld")
    data = training_data(syn, SOFT.with_(epochs=300))
    rows = torch.arange(N * V) % (N * V // 2)
    assert len(data.targets_at(0)) == len(data.images) == N * V
    torch.testing.assert_close(data.targets_at(30), _softened(syn, 14.0)[rows])


def test_per_image_logits_follow_the_schedule_too(base, teacher):
    syn = with_label_schedule(_logits_set(base, teacher, views=0), "lpqld")
    data = training_data(syn, SOFT.with_(epochs=10))
    torch.testing.assert_close(data.targets_at(1), _softened(syn, 14.0, "label."))


def test_the_mark_is_refused_where_there_are_no_logits_and_survives_a_save(base, teacher, tmp_path):
    with pytest.raises(DataError, match="logits:K"):
        with_label_schedule(_logits_set(base, teacher, "fp16"), "lpqld")
    with pytest.raises(ConfigError, match="lpqld"):
        with_label_schedule(_logits_set(base, teacher), "cosine")
    marked = with_label_schedule(_logits_set(base, teacher), "lpqld")
    back = SyntheticSet.load(marked.save(tmp_path / "s"))
    assert back.meta["label_schedule"] == "lpqld" and scheduled_labels(back, 3) is not None
    # relabelling makes new labels: the mark goes with the old ones
    assert "label_schedule" not in _logits_set(marked, teacher).meta
    plain = with_label_schedule(marked, None)
    assert plain.meta == _logits_set(base, teacher).meta and scheduled_labels(plain, 3) is None


# ----------------------------------------------------------------------------- the training
def test_without_the_mark_training_is_what_it_was(base, teacher, tiny):
    """An unmarked logits set has no epoch targets and trains on its stored targets, the same
    bits as training on them directly (the call evaluation made before the schedule)."""
    syn = _logits_set(base, teacher, "prune:2+logits:4+fp16")
    data = training_data(syn, SOFT)
    assert data.targets_at is None and "label_schedule" not in data.meta
    for vectorize in (False, True):
        new = train_model("convnet-w8", syn, data, SOFT, [0, 1], lr=SOFT.lr, vectorize=vectorize)
        old = train_networks(
            "convnet-w8", syn.spec, data.images, data.targets, SOFT, [0, 1], lr=SOFT.lr,
            vectorize=vectorize,
        )  # fmt: skip
        for a, b in zip(new.models, old.models):
            for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
                assert torch.equal(pa, pb)
    again = evaluate(syn, tiny.test, SOFT, runs=1, seed=0, progress=False)
    marked = evaluate(
        with_label_schedule(syn, "lpqld"), tiny.test, SOFT, runs=1, seed=0, progress=False
    )
    assert len(again.results[0].accuracies) == len(marked.results[0].accuracies) == 1


@pytest.mark.parametrize("vectorize", [False, True])
def test_both_paths_mix_each_epochs_targets(base, teacher, monkeypatch, vectorize):
    """Every batch of epoch ``e`` is drawn (and CutMix-mixed) from ``targets_at(e)``: a
    constant schedule trains the same bits as its tensor, a changing one does not."""
    syn = _logits_set(base, teacher)
    data = training_data(syn, SOFT)
    seen, batch = [], train_module._batch

    def spy(images, targets, *rest):
        seen.append(targets)
        return batch(images, targets, *rest)

    monkeypatch.setattr(train_module, "_batch", spy)
    epochs = [torch.full_like(data.targets, 1.0 / K), data.targets]
    asked = []

    def at(epoch):
        asked.append(epoch)
        return epochs[epoch]

    def trained(targets):
        res = train_networks(
            "convnet-w8", syn.spec, data.images, targets, SOFT, [0, 1], lr=SOFT.lr,
            vectorize=vectorize,
        )  # fmt: skip
        assert res.vectorized == vectorize
        return [torch.cat([v.flatten() for v in m.state_dict().values()]) for m in res.models]

    scheduled = trained(at)
    # vectorised: each epoch's targets once for both runs; one by one: once per run and epoch
    order = [0, 1] if vectorize else [0, 1, 0, 1]
    assert asked == order
    batches = len(seen) // len(order)  # the batches of one epoch (of both runs when vectorised)
    assert all(t is epochs[order[i // batches]] for i, t in enumerate(seen))
    constant = trained(lambda epoch: data.targets)
    stored = trained(data.targets)
    assert all(torch.equal(a, b) for a, b in zip(constant, stored))
    assert not any(torch.equal(a, b) for a, b in zip(scheduled, stored))


def test_sgd_train_switches_targets_at_the_epoch_boundary(base, teacher, tiny):
    """Two epochs under ``targets(epoch)`` are bit for bit one epoch on epoch 0's targets and a
    resumed second epoch on epoch 1's."""
    syn = _logits_set(base, teacher)
    data = training_data(syn, SOFT)
    targets = [_softened(syn, 20.0), _softened(syn, 14.0)]
    recipe = TrainRecipe.of_protocol(SOFT, SOFT.lr)

    def fresh():
        net = build_network("convnet-w8", syn.spec, 3)
        return net, recipe.make_optimizer(list(net.parameters())), torch.Generator()

    net, opt, g = fresh()
    g.manual_seed(5)
    sgd_train(net, data.images, lambda e: targets[e], recipe, generator=g, optimizer=opt)
    ref, ref_opt, h = fresh()
    h.manual_seed(5)
    sgd_train(ref, data.images, targets[0], recipe.with_(epochs=1), generator=h, optimizer=ref_opt)
    sgd_train(ref, data.images, targets[1], recipe, generator=h, optimizer=ref_opt, start_epoch=1)
    for a, b in zip(net.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(DataError, match="rows"):
        sgd_train(net, data.images, lambda e: targets[0][:3], recipe, generator=g)
