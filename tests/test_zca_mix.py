"""Tests for ddkit.data.zca and ddkit.augment.mix."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from ddkit.augment import ZCA, cutmix, mixup
from ddkit.augment.mix import sample_beta
from ddkit.errors import ConfigError, DataError, FileFormatError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("global_rng_untouched")


def _toy(n: int = 400, seed: int = 0) -> torch.Tensor:
    """Correlated full-rank images (N, 2, 3, 3)."""
    g = _gen(seed)
    z = torch.randn(n, 18, generator=g, dtype=torch.float64)
    mix = torch.randn(18, 18, generator=g, dtype=torch.float64) + 3 * torch.eye(18)
    return (z @ mix + 0.5).reshape(n, 2, 3, 3).float()


# ---------------------------------------------------------------- ZCA


def test_zca_inverse_roundtrip_and_shape() -> None:
    x = _toy()
    zca = ZCA().fit(x)
    w = zca.transform(x)
    assert w.shape == x.shape and w.dtype == torch.float32
    torch.testing.assert_close(zca.inverse(w), x, atol=1e-4, rtol=1e-4)
    x64 = x.double()
    torch.testing.assert_close(zca.inverse(zca.transform(x64)), x64, atol=1e-4, rtol=1e-4)


def test_zca_whitens_when_eps_small() -> None:
    x = _toy()
    w = ZCA(eps=1e-8).fit(x).transform(x.double()).reshape(len(x), -1)
    cov = w.T @ w / len(x)
    torch.testing.assert_close(cov, torch.eye(18, dtype=torch.float64), atol=2e-3, rtol=0)
    # with KIP's regularisation the whitened covariance is S / (S + eps * mean(S)) in U's basis
    flat = x.double().reshape(len(x), -1)
    flat = flat - flat.mean(0)
    s, u = torch.linalg.eigh(flat.T @ flat / len(x))
    wr = ZCA(eps=0.1).fit(x).transform(x.double()).reshape(len(x), -1)
    expect = (u * (s / (s + 0.1 * s.mean()))) @ u.T
    torch.testing.assert_close(wr.T @ wr / len(x), expect, atol=2e-4, rtol=0)


def test_zca_is_symmetric_zca_not_pca() -> None:
    zca = ZCA().fit(_toy())
    torch.testing.assert_close(zca.whiten_, zca.whiten_.T)
    torch.testing.assert_close(zca.whiten_ @ zca.unwhiten_, torch.eye(18), atol=1e-5, rtol=0)


def test_zca_tensors_roundtrip_through_safetensors() -> None:
    x = _toy()
    zca = ZCA(eps=0.05).fit(x)
    d = load(save(zca.to_tensors()))
    assert all(v.dtype in (torch.float32, torch.int64, torch.float64) for v in d.values())
    assert d["zca.whiten"].dtype == torch.float32
    z2 = ZCA.from_tensors(d)
    assert z2.eps == 0.05 and z2.center and z2.shape_ == (2, 3, 3)
    assert torch.equal(z2.transform(x), zca.transform(x))
    assert torch.equal(z2.inverse(x), zca.inverse(x))


def test_zca_gradient_and_errors() -> None:
    x = _toy(50)
    zca = ZCA().fit(x)
    xx = x[:2].double().requires_grad_(True)
    assert torch.autograd.gradcheck(zca.transform, (xx,))
    with pytest.raises(ConfigError, match="not fitted"):
        ZCA().transform(x)
    with pytest.raises(DataError, match="fitted on"):
        zca.transform(torch.zeros(2, 3, 3, 3))
    with pytest.raises(FileFormatError, match="missing"):
        ZCA.from_tensors({"zca.mean": torch.zeros(3)})
    with pytest.raises(DataError, match="NaN"):
        ZCA().fit(torch.full((4, 1, 2, 2), float("nan")))
    with pytest.raises(ConfigError):
        ZCA(eps=-1.0)


# ---------------------------------------------------------------- mixup / cutmix


def _batch(b: int = 8, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(b, 3, 8, 8, generator=_gen(1))
    y = torch.softmax(torch.randn(b, k, generator=_gen(2)), dim=1)
    return x, y


@pytest.mark.parametrize("fn", [mixup, cutmix])
def test_mix_labels_sum_to_one_and_deterministic(fn) -> None:
    x, y = _batch()
    for seed in range(5):
        xm, ym = fn(x, y, 1.0, _gen(seed))
        assert xm.shape == x.shape and ym.shape == y.shape
        torch.testing.assert_close(ym.sum(1), torch.ones(len(y)))
        assert (ym >= 0).all()
        xm2, ym2 = fn(x, y, 1.0, _gen(seed))
        assert torch.equal(xm, xm2) and torch.equal(ym, ym2)


@pytest.mark.parametrize("fn", [mixup, cutmix])
def test_mix_alpha_zero_is_identity(fn) -> None:
    x, y = _batch()
    g = _gen(0)
    state = g.get_state()
    xm, ym = fn(x, y, 0.0, g)
    assert torch.equal(xm, x) and torch.equal(ym, y)
    assert torch.equal(g.get_state(), state)
    with pytest.raises(ConfigError):
        fn(x, y, -1.0, g)
    with pytest.raises(DataError):
        fn(x, y[:3], 1.0, g)


def test_mixup_is_convex_combination() -> None:
    x, y = _batch()
    xm, ym = mixup(x, y, 0.4, _gen(3))
    g = _gen(3)
    lam = sample_beta(0.4, g)
    perm = torch.randperm(len(x), generator=g)
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(ym, lam * y + (1 - lam) * y[perm])


def test_cutmix_label_weight_is_pasted_area() -> None:
    x, y = _batch(6, 4)
    x = x.abs() + 1.0  # keep all values distinct from the marker below
    for seed in range(6):
        xm, ym = cutmix(x, y, 1.0, _gen(seed))
        g = _gen(seed)
        sample_beta(1.0, g)
        perm = torch.randperm(6, generator=g)
        pasted = (xm != x)[:, 0]  # (B, H, W)
        for b in range(6):
            if perm[b] == b:
                continue
            frac = pasted[b].double().mean()
            expect = (1 - frac) * y[b] + frac * y[perm[b]]
            torch.testing.assert_close(ym[b], expect.float(), atol=1e-6, rtol=1e-6)
            # the pasted region is a rectangle
            rows, cols = pasted[b].any(1), pasted[b].any(0)
            assert pasted[b].sum() == rows.sum() * cols.sum()


def test_sample_beta_moments() -> None:
    g = _gen(0)
    draws = torch.tensor([sample_beta(0.5, g) for _ in range(2000)])
    assert 0 <= draws.min() and draws.max() <= 1
    assert abs(draws.mean() - 0.5) < 0.03
    assert abs(draws.var() - 0.125) < 0.015  # Beta(a, a) variance 1 / (4 (2a + 1))
