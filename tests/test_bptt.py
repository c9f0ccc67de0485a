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


def _outer(fm, theta, images, labels, lrs, tracked, use_checkpoint=False):
    trained = unroll(fm, theta, images, labels, lrs, tracked=tracked, use_checkpoint=use_checkpoint)
    return (fm(trained, images.flip(0)) ** 2).sum()


def test_gradient_through_the_unroll_is_exact_in_float64():
    fm, theta, images, labels, lrs = _problem()
    images.requires_grad_(True)
    lrs.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, lr: _outer(fm, theta, x, labels, lr, tracked=3), (images, lrs)
    )


def test_checkpointing_gives_the_same_gradient():
    fm, theta, images, labels, lrs = _problem()
    grads = []
    for use_checkpoint in (False, True):
        x = images.clone().requires_grad_(True)
        lr = lrs.clone().requires_grad_(True)
        _outer(fm, theta, x, labels, lr, tracked=3, use_checkpoint=use_checkpoint).backward()
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


def test_bptt_reduces_its_real_loss():
    overrides = {**method_test_overrides("bptt"), "iterations": 40, "lr_img": 0.05}
    losses = losses_during_fit(create_method("bptt", **overrides), tiny_digits().train, 1)
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8


@pytest.mark.slow
def test_bptt_beats_random_real_images_on_digits_ipc1():
    bptt, random = accuracy_against_random("bptt")
    assert bptt > random + 0.02, (bptt, random)
