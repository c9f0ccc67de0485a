"""RFAD: the random-feature kernel and its regression in float64, the loss, and "it learns"."""

from __future__ import annotations

import pytest
import torch

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.performance.kernels import krr_predict, relu_conv_kernel
from ddkit.methods.performance.rfad import RandomFeatureMap
from ddkit.models import build_network
from ddkit.testing import (
    accuracy_against_random,
    losses_during_fit,
    method_test_overrides,
    tiny_digits,
)

SPEC = DatasetSpec("tiny-2x4x4", 3, 2, (4, 4), (0.0, 0.0), (1.0, 1.0))


def _images(n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 4, 4, generator=g, dtype=torch.float64)


def _feature_map(width: int, models: int, pool: str = "nopool") -> RandomFeatureMap:
    trunk = build_network(f"convnet2-w{width}-none-{pool}", SPEC, 0).features
    return RandomFeatureMap(trunk, models=models, dtype=torch.float64)


def _kernel(fmap: RandomFeatureMap, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    phi = fmap(x, fmap.draw(torch.Generator().manual_seed(seed)))
    return fmap.kernel(phi, phi)


def _rfad(**kw):
    return create_method("rfad", **{**method_test_overrides("rfad"), **kw})


def test_random_feature_gram_matrix_is_symmetric_and_positive_semidefinite():
    x = _images(8)
    k = _kernel(_feature_map(16, 3, pool="avg"), x)
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-10


def test_the_kernel_is_the_mean_of_the_networks_kernels():
    x, fmap = _images(4), _feature_map(8, 3)
    params = fmap.draw(torch.Generator().manual_seed(2))
    phi = fmap(x, params)
    single = _feature_map(8, 1)
    each = []
    for m in range(3):
        one = single(x, {k: v[m : m + 1] for k, v in params.items()})
        each.append(one @ one.T)
    torch.testing.assert_close(phi @ phi.T, sum(each) / 3)


def test_wide_random_networks_approach_the_closed_form_conv_nngp():
    """Without pooling, the ConvNet's NNGP is ``relu_conv_kernel(kind="nngp")``: the estimate
    from 16 networks of width 256 is close to it, and closer than one narrow network's."""
    x = _images()
    exact = relu_conv_kernel(x, x, depth=2, kind="nngp")

    def error(width: int, models: int) -> float:
        k = _kernel(_feature_map(width, models), x)
        return float(torch.linalg.norm(k - exact) / torch.linalg.norm(exact))

    wide, narrow = error(256, 16), error(16, 1)
    assert wide < 0.04, wide
    assert wide < narrow, (wide, narrow)


def test_krr_on_random_features_equals_the_plain_solves_in_float64():
    """RFAD's prediction (``krr_predict`` on the estimated kernel) equals the kernel-space
    ``torch.linalg.solve`` and ridge regression on the random features themselves."""
    fmap = _feature_map(32, 16, pool="avg")
    xs, xt = _images(6, seed=3), _images(9, seed=4)
    y = torch.randn(6, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    params = fmap.draw(torch.Generator().manual_seed(6))
    phi_s, phi_t = fmap(xs, params), fmap(xt, params)
    k_ss, k_ts = fmap.kernel(phi_s, phi_s), fmap.kernel(phi_t, phi_s)
    reg = 1e-3
    got = krr_predict(k_ts, k_ss, y, reg)
    ridge = reg * torch.diagonal(k_ss).mean()
    dual = k_ts @ torch.linalg.solve(k_ss + ridge * torch.eye(6, dtype=torch.float64), y)
    torch.testing.assert_close(got, dual)

    def lift(phi: torch.Tensor) -> torch.Tensor:  # the readout: sqrt(w) phi and a bias feature
        ones = torch.ones(len(phi), 1, dtype=phi.dtype)
        return torch.cat([fmap.weight_var**0.5 * phi, fmap.bias_var**0.5 * ones], 1)

    psi_s, psi_t = lift(phi_s), lift(phi_t)
    eye = torch.eye(psi_s.shape[1], dtype=torch.float64)
    primal = psi_t @ torch.linalg.solve(psi_s.T @ psi_s + ridge * eye, psi_s.T @ y)
    torch.testing.assert_close(got, primal)


def test_drawn_parameters_follow_the_nngp_parameterisation():
    fmap = _feature_map(64, 4, pool="avg")
    params = fmap.draw(torch.Generator().manual_seed(7))
    w = params["4.weight"]  # the second convolution: fan_in 64 * 3 * 3
    assert w.shape == (4, 64, 64, 3, 3)
    assert abs(float(w.var()) * 64 * 9 / 2.0 - 1) < 0.02
    assert abs(float(params["4.bias"].var()) / 0.01 - 1) < 0.3


def test_instance_norm_networks_draw_only_their_convolutions():
    trunk = build_network("convnet2-w8-in", SPEC, 0).features
    fmap = RandomFeatureMap(trunk, models=2, dtype=torch.float64)
    params = fmap.draw(torch.Generator().manual_seed(3))
    assert set(params) == {"0.weight", "0.bias", "4.weight", "4.bias"}  # norms keep 1 and 0
    x = _images(6)
    phi = fmap(x, params)
    torch.testing.assert_close(fmap(x[:1], params), phi[:1])  # per example: no batch mixing
    k = fmap.kernel(phi, phi)
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-10
    plain = _feature_map(8, 2, pool="avg")
    assert not torch.allclose(plain(x, plain.draw(torch.Generator().manual_seed(3))), phi)


def test_batch_norm_networks_are_refused_in_one_line():
    trunk = build_network("convnet2-w8-bn", SPEC, 0).features
    with pytest.raises(ConfigError, match="batch norm") as err:
        RandomFeatureMap(trunk, models=2)
    assert "\n" not in str(err.value)


def test_rfad_with_instance_norm_networks_reduces_its_loss():
    method = _rfad(iterations=30, lr_img=0.05, batch_real=10, models=4, norm="in")
    losses = losses_during_fit(method, tiny_digits().train, 1)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("loss", ["platt", "mse"])
def test_rfad_reduces_its_loss(loss):
    method = _rfad(iterations=30, lr_img=0.05, batch_real=10, models=4, loss=loss)
    losses = losses_during_fit(method, tiny_digits().train, 1)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses


def test_temperature_moves_only_when_learned():
    train = tiny_digits().train
    learned = _rfad(iterations=5, temperature=2.0)
    learned.fit(train, 1, seed=0)
    assert learned.result().meta["temperature"] != pytest.approx(2.0)
    fixed = _rfad(iterations=5, temperature=2.0, learn_temperature=False)
    assert fixed.fit(train, 1, seed=0).meta["temperature"] == pytest.approx(2.0)
    mse = _rfad(iterations=5, loss="mse").fit(train, 1, seed=0)
    assert "temperature" not in mse.meta


def test_learned_labels_are_a_conforming_regression_set():
    from ddkit.testing import check_method

    check_method("rfad", overrides={"learn_labels": True, "lr_labels": 0.05})


@pytest.mark.parametrize(
    ("option", "value"), [("models", 0), ("temperature", 0.0), ("loss", "hinge"), ("reg", -1.0)]
)
def test_bad_options_are_refused_in_one_line(option, value):
    with pytest.raises(ConfigError) as err:
        create_method("rfad", **{option: value})
    assert option in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_rfad_beats_random_real_images_on_digits_ipc1():
    rfad, random = accuracy_against_random("rfad")
    assert rfad > random + 0.02, (rfad, random)


def test_a_kernel_width_past_the_memory_budget_is_refused_when_the_method_is_created(monkeypatch):
    from ddkit.methods import create_method

    monkeypatch.setenv("DDKIT_MEMORY_BUDGET", str(256 * 2**20))
    with pytest.raises(ConfigError, match="memory budget") as e:
        create_method("rfad", width=10**6)
    assert "\n" not in str(e.value)
    create_method("rfad", width=256)


def test_a_depth_without_a_convnet_model_is_refused_naming_depth():
    """depth=40 was refused as "unknown model 'convnet40'", naming an option the user never
    gave (issue 42)."""
    from ddkit.methods import create_method

    with pytest.raises(ConfigError, match=r"^method 'rfad': depth must be in \[1, 6\], got 40$"):
        create_method("rfad", depth=40)
    create_method("rfad", depth=6)
