"""Memory bounded by a chunk, not by the set (issue 82): distribution matching runs the
synthetic side a few classes at a time, its gradients accumulated, with the same update as one
pass; a budget too small for one pass chunks instead of refusing."""

from __future__ import annotations

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.meter import BUDGET_ENV, check_memory
from ddkit.methods import create_method
from ddkit.testing_data import tiny_digits


@pytest.mark.paths_agree("float64")
@pytest.mark.parametrize(("method", "augment"), [("dm", "auto"), ("dm", "none"), ("m3d", "none")])
def test_classes_in_chunks_give_the_one_pass_update_float64(method: str, augment: str) -> None:
    train = tiny_digits().train
    kw = {"batch_real": 8, "dtype": "float64", "iterations": 3, "augment": augment}
    whole = create_method(method, **kw)
    a = whole.fit(train, 2, seed=0, progress=False)
    assert whole.syn_classes_per_pass_ == train.spec.num_classes
    pieces = create_method(method, syn_chunk=3, **kw)
    b = pieces.fit(train, 2, seed=0, progress=False)
    assert pieces.syn_classes_per_pass_ == 3
    assert not torch.equal(a.images, create_method(method, **kw).initial_set(train, 2).images)
    torch.testing.assert_close(a.images, b.images, rtol=1e-10, atol=1e-10)


def test_a_budget_too_small_for_one_pass_chunks_instead_of_refusing(monkeypatch) -> None:
    train = tiny_digits().train
    k = train.spec.num_classes
    probe = create_method("dm", batch_real=8)
    probe.start(train, 4, iterations=1)
    fp, image_bytes = probe.footprint_, 4 * train.images[0].numel()
    per_class = 4 * (fp.training + 2 * image_bytes)
    budget = 6 * per_class + 2 * k * 4 * image_bytes  # six classes' activations at most
    monkeypatch.setenv(BUDGET_ENV, str(budget))
    with pytest.raises(ConfigError):  # one pass of every class would not fit it
        check_memory("one pass", k * per_class, "")
    m = create_method("dm", batch_real=8)
    m.fit(train, 4, iterations=1, seed=0, progress=False)
    assert 1 <= m.syn_classes_per_pass_ <= 6


def test_a_step_that_cannot_fit_one_class_is_refused_in_one_line(monkeypatch) -> None:
    train = tiny_digits().train
    monkeypatch.setenv(BUDGET_ENV, str(2 * 2**20))  # the network fits, one class does not
    with pytest.raises(ConfigError, match=r"matching step \(1 of 10 classes x 10"):
        create_method("dm", batch_real=8).fit(train, 10, iterations=1, progress=False)


@pytest.mark.paths_agree("float64")
def test_chunks_carry_the_gradient_back_through_a_codec_float64() -> None:
    train = tiny_digits().train
    kw = {"batch_real": 8, "dtype": "float64", "iterations": 2, "codec": "formation:2"}
    a = create_method("dm", **kw).fit(train, 1, seed=0, progress=False)
    pieces = create_method("dm", syn_chunk=3, **kw)
    b = pieces.fit(train, 1, seed=0, progress=False)
    assert pieces.syn_classes_per_pass_ == 3
    torch.testing.assert_close(a.images, b.images, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("syn_chunk", [0, 3])
def test_no_gradient_of_the_set_is_kept_between_steps(syn_chunk: int) -> None:
    m = create_method("dm", batch_real=8, syn_chunk=syn_chunk)
    m.fit(tiny_digits().train, 2, iterations=1, seed=0, progress=False)
    assert m.state_["images"].grad is None
