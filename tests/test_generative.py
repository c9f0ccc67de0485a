"""Tests for generative distillation (dim): the stored generator, its bytes, resampling, refusal
of a budget it cannot fit, and that distillation moves the generator."""

from __future__ import annotations

import pytest
import torch

from ddkit.errors import ConfigError, DataError
from ddkit.methods import create_method
from ddkit.methods.generative.dim import generator_bytes, resample
from ddkit.testing import method_test_overrides, tiny_digits

pytestmark = pytest.mark.usefixtures("global_rng_untouched")


def _dim(**over):
    return create_method("dim", **{**method_test_overrides("dim"), **over})


def test_dim_stores_a_generator_and_resamples_it(tmp_path):
    from ddkit.data.synthetic import SyntheticSet

    data = tiny_digits().train
    syn = _dim(samples=3).fit(data, 2, iterations=2, seed=0)
    assert len(syn) == 30 and syn.hard_labels.tolist() == [c for c in range(10) for _ in range(3)]
    size = generator_bytes(4, 4, data.spec)
    assert syn.storage_bytes()["total"] == size <= 2 * 10 * (64 * 4 + 8)
    again = SyntheticSet.load(syn.save(tmp_path / "set"))
    # the saved images are the generator's samples at the recorded seed; other seeds differ
    torch.testing.assert_close(resample(again, 3, syn.meta["sample_seed"]).images, syn.images)
    more = resample(again, 7, seed=1)
    assert len(more) == 70 and more.storage_bytes() == syn.storage_bytes()
    assert not torch.allclose(resample(again, 3, seed=1).images, syn.images)
    with pytest.raises(DataError, match="stores no generator"):
        resample(SyntheticSet(syn.images, syn.labels, syn.spec), 2)


def test_dim_refuses_a_budget_its_generator_does_not_fit():
    with pytest.raises(ConfigError, match="use a larger IPC or a smaller latent_dim / width"):
        _dim(width=16, latent_dim=16).fit(tiny_digits().train, 1, iterations=1, seed=0)


def test_dim_distillation_moves_the_generator_and_the_class_gaussians():
    data = tiny_digits().train
    method = _dim()
    method.fit(data, 2, iterations=0, seed=0)
    start = {k: method.state_[k].detach().clone() for k in ("weights", "means", "log_scales")}
    method.fit(data, 2, iterations=3, seed=0)
    for key, before in start.items():
        assert not torch.allclose(method.state_[key].detach(), before), key


def test_resample_command_draws_from_a_saved_generator(tmp_path, capsys):
    from ddkit.cli import main
    from ddkit.data.synthetic import SyntheticSet

    syn = _dim(samples=2).fit(tiny_digits().train, 2, iterations=1, seed=0)
    syn.save(tmp_path / "set")
    assert main(["resample", str(tmp_path / "set"), "--per-class", "5", "--to",
                 str(tmp_path / "more"), "--seed", "3"]) == 0  # fmt: skip
    more = SyntheticSet.load(tmp_path / "more")
    assert len(more) == 50 and more.storage_bytes() == syn.storage_bytes()
    torch.testing.assert_close(more.images, resample(syn, 5, seed=3).images)
    # a set without a generator, or an existing target: one line naming the problem
    SyntheticSet(syn.images, syn.labels, syn.spec).save(tmp_path / "plain")
    assert main(["resample", str(tmp_path / "plain"), "--per-class", "5", "--to",
                 str(tmp_path / "x")]) == 2  # fmt: skip
    assert main(["resample", str(tmp_path / "set"), "--per-class", "5", "--to",
                 str(tmp_path / "more")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ddkit: error: this set stores no generator (only sets distilled by dim do)",
        f"ddkit: error: {str(tmp_path / 'more')!r} already exists; choose another --to or remove it",
    ]
    assert not (tmp_path / "x").exists()


def test_a_resample_count_past_the_memory_budget_is_refused_before_sampling(monkeypatch):
    syn = _dim(samples=1).fit(tiny_digits().train, 2, iterations=0, seed=0)
    monkeypatch.setenv("DDKIT_MEMORY_BUDGET", str(256 * 2**20))
    with pytest.raises(ConfigError, match="memory budget") as e:
        resample(syn, 10**9)
    assert "\n" not in str(e.value)
