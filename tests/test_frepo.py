"""FRePo: the pool of online networks and "it learns"."""

from __future__ import annotations

import pytest
import torch

from ddkit.methods import create_method
from ddkit.testing import (
    accuracy_against_random,
    losses_during_fit,
    method_test_overrides,
    tiny_digits,
)


def _frepo(**kw):
    return create_method("frepo", **{**method_test_overrides("frepo"), **kw})


def test_pool_networks_train_online_and_are_replaced_when_old():
    m = _frepo(pool_size=3, max_online_steps=4)
    m.start(tiny_digits().train, 1, seed=0)
    assert len(m.pool_) == 3 and [m.pool_.score(j) for j in range(3)] == [0.0, 1.0, 2.0]
    before = [m.pool_.params(j).clone() for j in range(3)]
    for it in range(6):
        m.step(it)
    ages = [m.pool_.score(j) for j in range(3)]
    assert len(m.pool_) == 3 and all(0 <= a < 4 for a in ages)
    assert sum(ages) != 3.0 + 6  # six steps were taken, so at least one network was replaced
    after = [m.pool_.params(j) for j in range(3)]
    assert not any(torch.equal(a, b) for a, b in zip(before, after))  # every one trained or new


def test_online_networks_by_adam_pass_the_conformance_suite_and_count_their_own_steps():
    from ddkit.errors import ConfigError
    from ddkit.testing import check_method

    check_method("frepo", overrides={"optimizer_net": "adam", "lr_net": 1e-3})
    m = _frepo(pool_size=2, max_online_steps=3, optimizer_net="adam", lr_net=1e-3)
    m.start(tiny_digits().train, 1, seed=0)
    assert m.state_["pool_steps"] == [0, 0] and [m.pool_.score(j) for j in range(2)] == [0.0, 1.0]
    for it in range(5):
        m.step(it)
    # credited ages and steps taken differ for the network that started credited
    ages, steps = [m.pool_.score(j) for j in range(2)], m.state_["pool_steps"]
    assert len(steps) == 2 and all(0 <= a < 3 for a in ages) and sum(steps) < 5
    with pytest.raises(ConfigError, match="weight_decay_net"):
        _frepo(optimizer_net="adam", weight_decay_net=1e-4)


def test_label_margin_pushes_only_labels_whose_lead_is_under_one_over_k():
    from ddkit.methods.performance.frepo import label_margin_loss

    labels = torch.tensor([[0.9, 0.0, 0.1], [0.4, 0.35, 0.25]], requires_grad=True)
    loss = label_margin_loss(labels)
    # the first lead (0.8) is past 1/3 and clamped; the second (0.05) counts
    assert loss.item() == pytest.approx(-(1 / 3 + 0.05) / 2)
    (grad,) = torch.autograd.grad(loss, labels)
    assert torch.equal(grad[0], torch.zeros(3))
    assert grad[1].tolist() == pytest.approx([-0.5, 0.5, 0.0])


def test_label_margin_and_random_batches_run_and_refuse_without_learned_labels():
    from ddkit.errors import ConfigError

    train = tiny_digits().train
    m = _frepo(learn_labels=True, label_margin=True, real_batch="random", batch_real=3)
    m.start(train, 1, seed=0)
    first = m._real_batch(torch.Generator().manual_seed(0))
    assert len(first) == 3 * train.spec.num_classes and len(set(first.tolist())) == len(first)
    again = m._real_batch(torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    for it in range(3):
        assert torch.isfinite(torch.tensor(m.step(it)["loss"]))
    with pytest.raises(ConfigError, match="label_margin acts on learned labels"):
        _frepo(label_margin=True)


def test_frepo_reduces_its_loss():
    method = _frepo(iterations=40, lr_img=0.05, pool_size=4, max_online_steps=20, batch_real=10)
    losses = losses_during_fit(method, tiny_digits().train, 1)
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8


@pytest.mark.slow
def test_frepo_beats_random_real_images_on_digits_ipc1():
    frepo, random = accuracy_against_random("frepo")
    assert frepo > random + 0.02, (frepo, random)
