"""KIP and the closed-form kernels: maths checks in float64, and "it learns" (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from ddkit.methods import create_method
from ddkit.methods.performance.kernels import krr_predict, relu_fc_kernel


def _points(n=6, d=16, seed=0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("depth", [1, 3])
def test_kernel_is_symmetric_and_positive_semidefinite(kind, depth):
    x = _points(8)
    k = relu_fc_kernel(x, x, depth=depth, kind=kind)
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-10
    torch.testing.assert_close(relu_fc_kernel(x[:3], x, depth=depth, kind=kind), k[:3])


def _wide_network(x: torch.Tensor, depth: int, width: int, outputs: int, g: torch.Generator):
    """A random ReLU network in the NTK parameterisation; returns (outputs, parameters)."""
    w_var, b_var = 2.0, 0.01
    params, fan_in, h = [], x.shape[1], x
    for layer in range(depth + 1):
        out = outputs if layer == depth else width
        w = torch.randn(fan_in, out, generator=g, dtype=x.dtype).requires_grad_(True)
        b = torch.randn(out, generator=g, dtype=x.dtype).requires_grad_(True)
        params += [w, b]
        inp = h if layer == 0 else torch.relu(h)
        h = math.sqrt(w_var / fan_in) * inp @ w + math.sqrt(b_var) * b
        fan_in = out
    return h, params


@pytest.mark.parametrize("depth", [1, 2])
def test_nngp_matches_the_output_covariance_of_a_wide_network(depth):
    x = _points()
    out, _ = _wide_network(x, depth, 4096, 4096, torch.Generator().manual_seed(1))
    empirical = (out @ out.T / out.shape[1]).detach()
    exact = relu_fc_kernel(x, x, depth=depth, kind="nngp")
    assert torch.linalg.norm(empirical - exact) / torch.linalg.norm(exact) < 0.05


@pytest.mark.parametrize("depth", [1, 2])
def test_ntk_matches_the_empirical_tangent_kernel_of_a_wide_network(depth):
    x = _points()
    g = torch.Generator().manual_seed(2)
    empirical = torch.zeros(len(x), len(x), dtype=x.dtype)
    nets = 2
    for _ in range(nets):
        out, params = _wide_network(x, depth, 1536, 1, g)
        rows = []
        for i in range(len(x)):
            grads = torch.autograd.grad(out[i, 0], params, retain_graph=True)
            rows.append(torch.cat([gr.flatten() for gr in grads]))
        jac = torch.stack(rows)
        empirical += jac @ jac.T / nets
    exact = relu_fc_kernel(x, x, depth=depth, kind="ntk")
    assert torch.linalg.norm(empirical - exact) / torch.linalg.norm(exact) < 0.05


def test_krr_equals_the_plain_linear_solve():
    x, t = _points(5, seed=3), _points(4, seed=4)
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    k_ss, k_ts = relu_fc_kernel(x, x), relu_fc_kernel(t, x)
    ridge = 1e-3 * torch.diagonal(k_ss).mean()
    expect = k_ts @ torch.linalg.solve(k_ss + ridge * torch.eye(5, dtype=torch.float64), y)
    torch.testing.assert_close(krr_predict(k_ts, k_ss, y, reg=1e-3), expect)


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_kernel_gradients_are_exact_in_float64(kind):
    x = _points(3, d=5).requires_grad_(True)
    y = _points(4, d=5, seed=7)
    assert torch.autograd.gradcheck(lambda a: relu_fc_kernel(a, y, depth=2, kind=kind), (x,))


def test_kip_is_found_and_reduces_its_loss():
    from ddkit.testing import losses_during_fit, tiny_digits

    method = create_method("kip", batch_real=10, iterations=30, lr_img=0.05)
    losses = losses_during_fit(method, tiny_digits().train, 1)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.slow
def test_kip_beats_random_real_images_on_digits_ipc1():
    from ddkit.testing import accuracy_against_random

    kip, random = accuracy_against_random("kip")
    assert kip > random + 0.02, (kip, random)


def _wide_cnn(x: torch.Tensor, depth: int, width: int, outputs: int, g: torch.Generator):
    """A random ReLU CNN (3x3 'same' convolutions, dense readout, NTK parameterisation)."""
    import torch.nn.functional as F

    w_var, b_var = 2.0, 0.01
    params, h, c_in = [], x, x.shape[1]
    for _ in range(depth):
        w = torch.randn(width, c_in, 3, 3, generator=g, dtype=x.dtype).requires_grad_(True)
        b = torch.randn(width, generator=g, dtype=x.dtype).requires_grad_(True)
        params += [w, b]
        h = torch.relu(
            F.conv2d(h, math.sqrt(w_var / (c_in * 9)) * w, math.sqrt(b_var) * b, padding=1)
        )
        c_in = width
    flat = h.flatten(1)
    w = torch.randn(flat.shape[1], outputs, generator=g, dtype=x.dtype).requires_grad_(True)
    b = torch.randn(outputs, generator=g, dtype=x.dtype).requires_grad_(True)
    params += [w, b]
    return math.sqrt(w_var / flat.shape[1]) * flat @ w + math.sqrt(b_var) * b, params


def _images(n=5, seed=0):
    return torch.randn(
        n, 2, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_conv_nngp_matches_the_output_covariance_of_wide_cnns():
    from ddkit.methods.performance.kernels import relu_conv_kernel

    x, g, nets = _images(), torch.Generator().manual_seed(1), 16
    empirical = torch.zeros(len(x), len(x), dtype=x.dtype)
    for _ in range(nets):  # 16 positions per image: one network's estimate is noisy
        out, _ = _wide_cnn(x, 2, 256, 1024, g)
        empirical += (out @ out.T / out.shape[1]).detach() / nets
    exact = relu_conv_kernel(x, x, depth=2, kind="nngp")
    assert torch.linalg.norm(empirical - exact) / torch.linalg.norm(exact) < 0.06


def test_conv_ntk_matches_the_empirical_tangent_kernel_of_wide_cnns():
    from ddkit.methods.performance.kernels import relu_conv_kernel

    x, g, nets = _images(), torch.Generator().manual_seed(2), 8
    empirical = torch.zeros(len(x), len(x), dtype=x.dtype)
    for _ in range(nets):
        out, params = _wide_cnn(x, 2, 256, 1, g)
        rows = []
        for i in range(len(x)):
            grads = torch.autograd.grad(out[i, 0], params, retain_graph=True)
            rows.append(torch.cat([gr.flatten() for gr in grads]))
        jac = torch.stack(rows)
        empirical += jac @ jac.T / nets
    exact = relu_conv_kernel(x, x, depth=2, kind="ntk")
    assert torch.linalg.norm(empirical - exact) / torch.linalg.norm(exact) < 0.06


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_conv_kernel_is_symmetric_positive_semidefinite_and_differentiable(kind):
    from ddkit.methods.performance.kernels import relu_conv_kernel

    x = _images(6)
    k = relu_conv_kernel(x, x, kind=kind)
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-10
    a = _images(2, seed=3)[:, :, :3, :3].contiguous().requires_grad_(True)
    b = _images(3, seed=4)[:, :, :3, :3]
    assert torch.autograd.gradcheck(lambda t: relu_conv_kernel(t, b, depth=2, kind=kind), (a,))


# ------------------------------------------------------------------ learned labels


@pytest.mark.parametrize("method", ["kip", "frepo"])
def test_learned_labels_are_a_conforming_regression_set(method):
    from ddkit.testing import check_method

    check_method(method, overrides={"learn_labels": True, "lr_labels": 0.05})


@pytest.mark.parametrize("method", ["kip", "frepo"])
def test_labels_move_only_when_learned(method, tmp_path):
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides, tiny_digits

    train = tiny_digits().train
    over = {**method_test_overrides(method), "iterations": 4}
    fixed = create_method(method, **over).fit(train, 2, seed=0)
    learned = create_method(method, **over, learn_labels=True, lr_labels=0.05).fit(train, 2, seed=0)
    assert fixed.labels.ndim == 1 and not fixed.regression
    assert learned.regression and learned.labels.shape == (20, 10)
    onehot = torch.nn.functional.one_hot(fixed.labels, 10).float()
    assert not torch.allclose(learned.labels, onehot)  # they moved away from one-hot
    again = SyntheticSet.load(learned.save(tmp_path / "set"))
    assert again.regression and torch.equal(again.labels, learned.labels)


# ------------------------------------------------------------------ label solve


def test_solved_labels_fit_the_targets_no_worse_than_any_other_labels():
    """The least-squares optimum: its predictions' error is at most that of the one-hot labels
    and of random perturbations of the optimum, and it satisfies the normal equations."""
    from ddkit.methods.performance.kernels import solve_labels

    x, t = _points(6, seed=7), _points(40, seed=8)
    y_t = torch.randn(40, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    k_ss, k_ts = relu_fc_kernel(x, x), relu_fc_kernel(t, x)
    y_s = solve_labels(k_ts, k_ss, y_t, reg=1e-3)

    def error(y):
        return (krr_predict(k_ts, k_ss, y, reg=1e-3) - y_t).pow(2).sum()

    g = torch.Generator().manual_seed(10)
    others = [torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(5)]
    others += [y_s + 1e-2 * torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(5)]
    assert all(error(y_s) < error(o) for o in others)
    # normal equations of min ||A y - y_t||: A^T (A y - y_t) = 0
    a = k_ts @ torch.linalg.inv(k_ss + 1e-3 * torch.diagonal(k_ss).mean() * torch.eye(6).double())
    assert torch.allclose(a.T @ (a @ y_s - y_t), torch.zeros(6, 3, dtype=torch.float64), atol=1e-8)


def test_kip_label_solve_gives_a_regression_set_that_fits_real_batches_better(tmp_path):
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.methods.performance.kernels import solve_labels  # noqa: F401 (the API used)
    from ddkit.testing import check_method, method_test_overrides, tiny_digits

    check_method("kip", overrides={"label_solve_real": 8})
    train = tiny_digits().train
    over = {**method_test_overrides("kip"), "iterations": 2}
    fixed = create_method("kip", **over)
    solved = create_method("kip", **over, label_solve_real=16)
    a, b = fixed.fit(train, 1, seed=0), solved.fit(train, 1, seed=0)
    assert torch.equal(a.images, b.images)  # the solve changes the labels only
    assert b.regression and b.meta["label_solve_real"] == 16
    assert torch.equal(solved.result().labels, b.labels)  # deterministic on every call
    # on the real images it was solved for, the solved labels predict better than one-hot ones
    x = train.images[torch.cat([ix[:16] for ix in train.class_indices])]
    y = (
        torch.nn.functional.one_hot(
            train.labels[torch.cat([ix[:16] for ix in train.class_indices])], 10
        ).float()
        - 0.1
    )
    k_ss, k_ts = solved.kernel(b.images, b.images), solved.kernel(x, b.images)
    onehot = torch.nn.functional.one_hot(a.labels, 10).float() - 0.1
    err = [
        (krr_predict(k_ts, k_ss, lab, solved.config.reg) - y).pow(2).sum()
        for lab in (onehot, b.labels - 0.1)
    ]
    assert err[1] < err[0]
    again = SyntheticSet.load(b.save(tmp_path / "set"))
    assert again.regression and torch.equal(again.labels, b.labels)


# ------------------------------------------------------------------ ConvNet kernel with pooling


def _wide_pooled_cnn(x, depth, width, g, readout):
    """KIP's ConvNet, finite and random (NTK parameterisation): a 3x3 convolution and ReLU, then
    ``depth`` blocks of convolution, ReLU and 2x2 average pooling; returns the readout's input
    features and the scalar output with its parameters."""
    import torch.nn.functional as F

    w_var, b_var = 2.0, 0.01
    params, h, c_in = [], x, x.shape[1]
    for layer in range(depth + 1):
        w = torch.randn(width, c_in, 3, 3, generator=g, dtype=x.dtype).requires_grad_(True)
        b = torch.randn(width, generator=g, dtype=x.dtype).requires_grad_(True)
        params += [w, b]
        h = torch.relu(
            F.conv2d(h, math.sqrt(w_var / (c_in * 9)) * w, math.sqrt(b_var) * b, padding=1)
        )
        h = F.avg_pool2d(h, 2) if layer > 0 else h
        c_in = width
    feats = h.flatten(1) if readout == "flatten" else h.mean((2, 3))
    w = torch.randn(feats.shape[1], 1, generator=g, dtype=x.dtype).requires_grad_(True)
    b = torch.randn(1, generator=g, dtype=x.dtype).requires_grad_(True)
    out = math.sqrt(w_var / feats.shape[1]) * feats @ w + math.sqrt(b_var) * b
    return feats, out, [*params, w, b]


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_pooled_convnet_kernels_match_wide_random_convnets(readout):
    """NNGP: the readout's covariance given the features of wide networks; NTK: the empirical
    tangent kernel of wide networks. The kernel without pooling is farther from both."""
    from ddkit.methods.performance.kernels import relu_conv_kernel, relu_convnet_kernel

    x, g, nets = _images(4), torch.Generator().manual_seed(5), 6
    nngp = torch.zeros(len(x), len(x), dtype=x.dtype)
    ntk = torch.zeros_like(nngp)
    for _ in range(nets):
        feats, out, params = _wide_pooled_cnn(x, 1, 256, g, readout)
        f = feats.detach()
        nngp += (2.0 * f @ f.T / f.shape[1] + 0.01) / nets
        rows = [
            torch.cat(
                [gr.flatten() for gr in torch.autograd.grad(out[i, 0], params, retain_graph=True)]
            )
            for i in range(len(x))
        ]
        jac = torch.stack(rows)
        ntk += jac @ jac.T / nets
    for kind, empirical in (("nngp", nngp), ("ntk", ntk)):
        exact = relu_convnet_kernel(x, x, depth=1, kind=kind, readout=readout)
        error = torch.linalg.norm(empirical - exact) / torch.linalg.norm(exact)
        assert error < 0.08, (kind, float(error))
        unpooled = relu_conv_kernel(x, x, depth=2, kind=kind)
        assert torch.linalg.norm(empirical - unpooled) / torch.linalg.norm(exact) > 2 * error


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_pooled_convnet_kernel_is_symmetric_psd_blockwise_exact_and_differentiable(kind):
    from ddkit.methods.performance.kernels import relu_conv_kernel, relu_convnet_kernel

    x = _images(6, seed=6)
    k = relu_convnet_kernel(x, x, depth=2, kind=kind, chunk=4)
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-10
    # any block size gives the same numbers, and a copy of x the same as x itself
    torch.testing.assert_close(relu_convnet_kernel(x, x.clone(), depth=2, kind=kind, chunk=5), k)
    # no pooling block: the stem alone is the unpooled kernel of one convolution
    torch.testing.assert_close(
        relu_convnet_kernel(x, x, depth=0, kind=kind), relu_conv_kernel(x, x, depth=1, kind=kind)
    )
    a = _images(1, seed=3)[:, :1].contiguous().requires_grad_(True)
    b = _images(3, seed=4)[:, :1]
    assert torch.autograd.gradcheck(
        lambda t: relu_convnet_kernel(t, b, depth=1, kind=kind, chunk=2), (a,)
    )


# ------------------------------------------------------------------ published variants


@pytest.mark.parametrize(
    "method, variant",
    [
        ("kip", {"architecture": "convnet", "depth": 1, "batch_real": 2, "kernel_chunk": 64}),
        ("frepo", {"model": "frepoconv-w8-d2", "optimizer_net": "adam", "lr_net": 0.0003}),
    ],
)
def test_published_variants_conform_and_learn_their_labels(method, variant):
    """kip with KIP's pooled ConvNet kernel and frepo with FRePo's ConvNet (batch norm), both
    with learned labels (the paper suite's variants, small): conforming sets whose labels move
    away from one-hot, and the images differ from those of the same run without the variant."""
    from ddkit.methods import create_method
    from ddkit.testing import check_method, method_test_overrides, tiny_digits

    check_method(method, overrides={**variant, "learn_labels": True, "lr_labels": 0.05})
    train = tiny_digits().train
    over = {**method_test_overrides(method), "iterations": 3, "lr_labels": 0.05}
    plain = create_method(method, **over).fit(train, 1, seed=0)
    paper = create_method(method, **{**over, **variant, "learn_labels": True}).fit(train, 1, seed=0)
    onehot = torch.nn.functional.one_hot(torch.arange(10), 10).float()
    assert paper.regression and not plain.regression
    assert (paper.labels - onehot).abs().max() > 1e-3  # learned: no longer one-hot
    assert not torch.allclose(paper.images, plain.images)


def test_a_convnet_kernel_deeper_than_the_images_is_refused_before_any_write(tmp_path):
    """depth 4 pools digits' 8x8 images below one pixel: it was an 'unexpected RuntimeError'
    from unfold after config.json was written, so the corrected command was refused as 'already
    holds a run' (issue 42)."""
    from ddkit.errors import ConfigError
    from ddkit.runs import DistillRequest, distill_run

    out = tmp_path / "run"
    options = {"architecture": "convnet", "batch_real": 2}

    def kip(**more):
        return DistillRequest("digits", "kip", 1, iterations=1, options={**options, **more})

    with pytest.raises(ConfigError, match=r"pools 8x8 images 4 times.*use depth <= 3"):
        distill_run(kip(depth=4), out)
    assert not out.exists()
    syn = distill_run(kip(depth=1), out)
    assert len(syn) == 10


def test_a_convnet_kernel_block_over_the_memory_budget_is_refused_before_any_write(
    tmp_path, monkeypatch
):
    """kernel_chunk had no memory check: a large chunk allocated its block's maps until the
    machine ran out (issue 42's leftovers). The estimate is checked against the budget."""
    from ddkit.errors import ConfigError
    from ddkit.meter import BUDGET_ENV
    from ddkit.methods.performance.kernels import convnet_kernel_block_bytes
    from ddkit.runs import DistillRequest, distill_run

    small = convnet_kernel_block_bytes((1, 8, 8), depth=1, chunk=2)
    assert convnet_kernel_block_bytes((1, 8, 8), depth=1, chunk=4) == 4 * small  # pairs grow
    monkeypatch.setenv(BUDGET_ENV, str(small * 2))
    out = tmp_path / "run"
    options = {"architecture": "convnet", "batch_real": 2, "depth": 1}

    def kip(chunk):
        return DistillRequest(
            "digits", "kip", 1, iterations=1, options={**options, "kernel_chunk": chunk}
        )

    with pytest.raises(
        ConfigError, match=r"4x4 block of kip's convnet kernel .*lower kernel_chunk"
    ):
        distill_run(kip(4), out)
    assert not out.exists()
    assert len(distill_run(kip(2), out)) == 10
