"""BPTT: exact gradients through the unroll (float64), the memory trick, truncation, it learns."""

from __future__ import annotations

import pytest
import torch

from ddkit.methods import create_method
from ddkit.methods.performance.bptt import unroll
from ddkit.methods.trajectory.student import FlatModel
from ddkit.models import build_network
from ddkit.testing import (
    accuracy_against_random,
    losses_during_fit,
    method_test_overrides,
    tiny_digits,
)


def _problem():
    spec = tiny_digits().train.spec
    net = build_network("mlp-w16", spec, 0).double()
    fm = FlatModel(net)
    theta = fm.flatten(net)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, *spec.shape, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3])
    lrs = torch.tensor([0.1, 0.2, 0.05], dtype=torch.float64)
    return fm, theta, images, labels, lrs


def _outer(fm, theta, images, labels, lrs, tracked, use_checkpoint=False, optimizer="sgd"):
    trained = unroll(
        fm, theta, images, labels, lrs, tracked=tracked, use_checkpoint=use_checkpoint,
        optimizer=optimizer,
    )  # fmt: skip
    return (fm(trained, images.flip(0)) ** 2).sum()


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_gradient_through_the_unroll_is_exact_in_float64(optimizer):
    fm, theta, images, labels, lrs = _problem()
    images.requires_grad_(True)
    lrs = (lrs / 10 if optimizer == "adam" else lrs).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, lr: _outer(fm, theta, x, labels, lr, tracked=3, optimizer=optimizer),
        (images, lrs),
    )


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_the_student_optimiser_matches_torch_optim(optimizer, monkeypatch):
    """The differentiable student steps equal ``torch.optim`` SGD-with-momentum / Adam (float64).
    Adam's eps sits inside the square root here, which changes entries whose gradient is near
    eps, so both take a negligible eps."""
    import torch.nn.functional as F

    from ddkit.methods.performance import bptt

    monkeypatch.setattr(bptt, "ADAM_EPS", 1e-30)
    fm, theta, images, labels, lrs = _problem()
    w = theta.clone().requires_grad_(True)
    if optimizer == "momentum":
        opt = torch.optim.SGD([w], lr=1.0, momentum=0.9)
    else:
        opt = torch.optim.Adam([w], lr=1.0, betas=(0.9, 0.999), eps=1e-30)
    for lr in lrs:
        opt.param_groups[0]["lr"] = float(lr)
        opt.zero_grad()
        F.cross_entropy(fm(w, images), labels).backward()
        opt.step()
    ours = unroll(fm, theta, images, labels, lrs, tracked=3, optimizer=optimizer)
    torch.testing.assert_close(ours, w.detach(), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ours, unroll(fm, theta, images, labels, lrs, tracked=3), atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_checkpointing_gives_the_same_gradient(optimizer):
    fm, theta, images, labels, lrs = _problem()
    grads = []
    for use_checkpoint in (False, True):
        x = images.clone().requires_grad_(True)
        lr = lrs.clone().requires_grad_(True)
        _outer(
            fm, theta, x, labels, lr, tracked=3, use_checkpoint=use_checkpoint, optimizer=optimizer
        ).backward()
        grads.append((x.grad, lr.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-14)


def test_truncation_keeps_only_the_last_steps_in_the_graph():
    fm, theta, images, labels, lrs = _problem()
    lr = lrs.clone().requires_grad_(True)
    _outer(fm, theta, images, labels, lr, tracked=1).backward()
    assert lr.grad[0] == 0 and lr.grad[1] == 0 and lr.grad[2] != 0
    # the untracked steps still train the student: same forward value as a full unroll
    full = _outer(fm, theta, images, labels, lrs, tracked=3)
    cut = _outer(fm, theta, images, labels, lrs, tracked=1)
    torch.testing.assert_close(full, cut)


def test_augmented_unroll_is_exact_in_float64_and_draws_a_fresh_augmentation_per_step():
    from ddkit.augment import DSA

    fm, theta, images, labels, lrs = _problem()
    dsa = DSA("color_crop_scale")
    seen, draws = [], torch.Generator().manual_seed(3)

    def augment(x):
        seen.append(x)
        return dsa(x, draws)

    def outer(x, lr, seed):
        g = torch.Generator().manual_seed(seed)
        trained = unroll(fm, theta, x, labels, lr, tracked=3, augment=lambda y: dsa(y, g))
        return (fm(trained, images.flip(0)) ** 2).sum()

    x, lr = images.clone().requires_grad_(True), lrs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: outer(a, b, 0), (x, lr))
    assert not torch.equal(outer(images, lrs, 0), outer(images, lrs, 1))  # the draws matter
    unroll(fm, theta, images, labels, lrs, tracked=1, augment=augment)
    assert len(seen) == 3  # one augmentation per student step, tracked or not


@pytest.mark.parametrize(("method", "inner"), [("bptt", "adam"), ("rtp", "momentum")])
def test_momentum_and_adam_students_pass_the_conformance_suite(method, inner):
    from ddkit.testing import check_method

    check_method(method, overrides={"inner": inner, "syn_lr": 0.001})


def test_bptt_with_augmentation_passes_the_conformance_suite():
    from ddkit.testing import check_method

    check_method("bptt", overrides={"augment": "auto"})


def test_bptt_reduces_its_real_loss():
    overrides = {**method_test_overrides("bptt"), "iterations": 40, "lr_img": 0.05}
    losses = losses_during_fit(create_method("bptt", **overrides), tiny_digits().train, 1)
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8


@pytest.mark.slow
def test_bptt_beats_random_real_images_on_digits_ipc1():
    bptt, random = accuracy_against_random("bptt")
    assert bptt > random + 0.02, (bptt, random)


# ------------------------------------------------------------------ RTP (addressable memory)


def _rtp(**over):
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides

    return create_method(
        "rtp", dataset="tiny-digits", ipc=2, **{**method_test_overrides("rtp"), **over}
    )


def test_rtp_memory_fits_the_bytes_of_ipc_images():
    from ddkit.methods.performance.rtp import memory_bases

    for ipc, k, numel, n in [(1, 10, 64, 20), (10, 10, 784, 200), (50, 100, 3072, 10000)]:
        m = memory_bases(ipc, k, numel, n)
        assert m * (numel + k + n) <= ipc * k * numel < (m + 1) * (numel + k + n)


def test_rtp_recalls_its_examples_from_the_stored_memory(tmp_path):
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.testing import tiny_digits

    syn = _rtp().fit(tiny_digits().train, 2, iterations=4, seed=0)
    bases, labels, addresses = (
        syn.extras[k] for k in ("rtp.bases", "rtp.label_bases", "rtp.addresses")
    )
    assert len(syn) == 40 == len(addresses) and addresses.shape[1] == len(bases)
    recalled = (addresses @ bases.flatten(1)).view_as(syn.images)
    assert torch.allclose(recalled, syn.images, atol=1e-5)
    assert torch.allclose(torch.softmax(addresses @ labels, 1), syn.labels, atol=1e-5)
    stored = sum(t.numel() * 4 for t in (bases, labels, addresses))
    assert syn.storage_bytes()["total"] == stored <= 2 * 10 * 64 * 4
    again = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert again.storage_bytes() == syn.storage_bytes()


def test_rtp_learns_labels_and_addresses():
    from ddkit.testing import tiny_digits

    method = _rtp(lr_img=0.05)
    train = tiny_digits().train
    method.fit(train, 2, iterations=0, seed=0)
    start = {k: method.state_[k].detach().clone() for k in ("label_bases", "addresses")}
    method.fit(train, 2, iterations=5, seed=0)
    for k, before in start.items():
        assert not torch.allclose(method.state_[k].detach(), before), k


def test_rtp_addresses_take_their_own_step_size():
    """``lr_addresses`` is the step of the addresses and label bases (default: ``lr_img``); the
    bases keep ``lr_img``. A smaller step moves the addresses less in the same iterations."""
    from ddkit.testing import tiny_digits

    train = tiny_digits().train
    moved = {}
    for lr in ("auto", 1e-4):
        method = _rtp(lr_img=0.05, lr_addresses=lr)
        method.fit(train, 2, iterations=0, seed=0)
        start = method.state_["addresses"].detach().clone()
        method.fit(train, 2, iterations=3, seed=0)
        groups = method.state_["opt"].param_groups
        assert [g["lr"] for g in groups] == [0.05, 0.05 if lr == "auto" else lr]
        assert groups[0]["params"][0] is method.state_["images"]
        moved[lr] = float((method.state_["addresses"].detach() - start).abs().max())
    assert 0 < moved[1e-4] < moved["auto"] / 10


def test_rtp_memory_starts_as_the_truncated_svd_of_real_examples():
    from ddkit.methods.performance.rtp import factorise_examples

    g = torch.Generator().manual_seed(0)
    images = torch.randn(12, 1, 4, 4, generator=g, dtype=torch.float64)
    targets = 3.0 * torch.eye(3, dtype=torch.float64)[torch.arange(12) % 3]
    # as many bases as examples: the memory recalls every image and target exactly
    a, b, lab = factorise_examples(images, targets, 12)
    assert torch.allclose((a @ b.flatten(1)).view_as(images), images, atol=1e-10)
    assert torch.allclose(a @ lab, targets, atol=1e-10)
    assert torch.allclose(a.norm(dim=1).mean(), torch.tensor(1.0, dtype=torch.float64))
    # fewer bases: the recall error is the discarded singular values' (Eckart-Young)
    a, b, lab = factorise_examples(images, targets, 4)
    w = images.flatten(1).norm() / targets.norm()
    joint = torch.cat([images.flatten(1), w * targets], 1)
    recalled = torch.cat([a @ b.flatten(1), w * (a @ lab)], 1)
    tail = torch.linalg.svdvals(joint)[4:]
    assert torch.allclose((joint - recalled).norm(), tail.norm(), atol=1e-10)


def test_rtp_refuses_more_bases_than_examples():
    from ddkit.errors import ConfigError
    from ddkit.testing import tiny_digits

    with pytest.raises(ConfigError, match="lower bases or raise recall_factor"):
        _rtp(bases=100).fit(tiny_digits().train, 2, iterations=1, seed=0)


def test_rtp_refuses_a_recall_factor_past_the_memory_budget_before_sampling(monkeypatch):
    """recall_factor=10**9 sampled 10**9 real examples per class: an 8 GB allocation and an
    'unexpected RuntimeError' after the run folder was written (issue 42)."""
    from ddkit.errors import ConfigError
    from ddkit.testing import tiny_digits

    monkeypatch.setenv("DDKIT_MEMORY_BUDGET", str(256 * 2**20))
    with pytest.raises(ConfigError, match="recalled examples .* use a smaller recall_factor"):
        _rtp(recall_factor=10**9).fit(tiny_digits().train, 2, iterations=1, seed=0)


@pytest.mark.parametrize("name", ["bptt", "rtp"])
def test_an_unroll_past_the_memory_budget_is_refused_before_its_step_sizes(monkeypatch, name):
    """unroll_steps=10**9 allocated 4 GB of per-step learning rates before the run failed
    (issue 42); their value, gradient and Adam moments are checked first."""
    from ddkit.errors import ConfigError
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides, tiny_digits

    monkeypatch.setenv("DDKIT_MEMORY_BUDGET", str(256 * 2**20))
    method = create_method(name, **{**method_test_overrides(name), "unroll_steps": 10**9})
    with pytest.raises(ConfigError, match="per-step learning rates .* smaller unroll_steps"):
        method.fit(tiny_digits().train, 2, iterations=1, seed=0)
