"""Speed levers (issue 14): in-place activations, bf16 autocast, channels-last batches and
torch.compile in evaluation training and DM / IDM. The default path is unchanged bit for bit;
each lever stays close to float32 in value and still learns; bad values are one-line errors.
Never timed: benchmarks/campaigns/bench_speed.py measures them."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from ddkit import levers as levers_mod
from ddkit.errors import ConfigError
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import TrainRecipe, sgd_train
from ddkit.levers import to_channels_last
from ddkit.methods import create_method
from ddkit.models import build_network, set_inplace_activations
from ddkit.testing import tiny_digits

MODEL = "convnet2-w16"  # 8x8 digits: two blocks keep 4x4 maps under instance norm


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _train(**kw):
    train = tiny_digits().train
    net = build_network(MODEL, train.spec, 0)
    recipe = TrainRecipe(kw.pop("epochs", 3), 0.05, 64, **kw)
    stats = sgd_train(net, train.images, train.labels, recipe, generator=_g(1))
    return net, stats


def _flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


# ------------------------------------------------------------------ in-place activations
def test_convnet_activations_are_in_place_and_switchable():
    spec = tiny_digits().train.spec
    net = build_network(MODEL, spec, 0)
    relus = [m for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and all(m.inplace for m in relus)
    assert set_inplace_activations(net, False) == len(relus)
    assert not any(m.inplace for m in relus)


@pytest.mark.parametrize("model", [MODEL, "convnet2-w16-none", "convnet2-w16-bn-lrelu-max"])
def test_in_place_activations_compute_the_same_bits(model):
    """Forward, gradient and the gradient's own gradient (gradient matching differentiates
    through the weight gradients) are bit-identical with and without in-place activations."""
    spec = tiny_digits().train.spec
    x = torch.randn(6, *spec.shape, generator=_g(2))
    y = torch.arange(6) % spec.num_classes
    outs = []
    for inplace in (False, True):
        net = build_network(model, spec, 0)
        set_inplace_activations(net, inplace)
        xs = x.clone().requires_grad_(True)
        loss = F.cross_entropy(net(xs), y)
        grads = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
        second = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), xs)[0]
        outs.append([loss.detach(), *(g.detach() for g in grads), second])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_training_in_place_equals_not_in_place():
    train = tiny_digits().train
    nets = []
    for inplace in (False, True):
        net = build_network(MODEL, train.spec, 0)
        set_inplace_activations(net, inplace)
        sgd_train(net, train.images, train.labels, TrainRecipe(2, 0.05, 64), generator=_g())
        nets.append(_flat(net))
    assert torch.equal(*nets)


# ------------------------------------------------------------------ evaluation training
def test_default_levers_are_auto_and_exact_mode_leaves_training_unchanged():
    p = get_protocol("fast")
    assert (p.precision, p.channels_last, p.compile) == ("auto", "auto", "auto")
    recipe = TrainRecipe.of_protocol(p, 0.01, "cpu", 100)  # the tests run in exact mode
    assert (recipe.precision, recipe.channels_last, recipe.compile) == ("fp32", False, False)
    a, _ = _train()
    b, _ = _train(precision="fp32", channels_last=False, compile=False)
    assert torch.equal(_flat(a), _flat(b))


@pytest.mark.parametrize(
    ("levers", "tol"),
    [({"channels_last": True}, 1e-4), ({"precision": "bf16"}, 0.1)],
    ids=["channels_last", "bf16"],
)
def test_levers_stay_close_to_float32_and_learn(levers, tol):
    ref, ref_stats = _train(epochs=1)
    got, stats = _train(epochs=1, **levers)
    a, b = _flat(ref), _flat(got)
    assert torch.isfinite(b).all()
    assert (a - b).norm() <= tol * a.norm()
    if "precision" in levers:  # autocast really ran
        assert not torch.equal(a, b)
    assert abs(stats.last_loss - ref_stats.last_loss) <= tol * max(1.0, ref_stats.last_loss)
    _, long = _train(epochs=15, **levers)  # it learns: the loss falls well below log(10)
    assert long.last_loss < 0.5 * torch.log(torch.tensor(10.0)).item()


def test_channels_last_batches_keep_their_values():
    x = torch.randn(3, 2, 5, 4, generator=_g())
    y = to_channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)


def test_compile_falls_back_to_eager_when_unavailable(monkeypatch):
    monkeypatch.setattr(levers_mod, "compile_available", lambda: False)
    ref, _ = _train(epochs=1)
    with pytest.warns(UserWarning, match="torch.compile is unavailable"):
        got, _ = _train(epochs=1, compile=True)
    assert torch.equal(_flat(ref), _flat(got))


def test_compile_falls_back_to_eager_when_compilation_fails(monkeypatch):
    def broken(net, **kw):
        def fail(x):
            raise RuntimeError("no compiler")

        return fail

    monkeypatch.setattr(levers_mod, "compile_available", lambda: True)
    monkeypatch.setattr(torch, "compile", broken)
    ref, _ = _train(epochs=1)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        got, _ = _train(epochs=1, compile=True)
    assert torch.equal(_flat(ref), _flat(got))


@pytest.mark.slow
def test_compiled_training_stays_close_to_eager():
    if not levers_mod.compile_available():
        pytest.skip("torch.compile is unavailable on this machine")
    ref, _ = _train(epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: it really compiled
        got, _ = _train(epochs=2, compile=True)
    a, b = _flat(ref), _flat(got)
    assert (a - b).norm() <= 1e-3 * a.norm()


@pytest.mark.parametrize(
    ("field", "value"),
    [("precision", "fp16"), ("channels_last", "yes"), ("compile", 1)],
)
def test_bad_protocol_levers_are_one_line_config_errors(field, value):
    with pytest.raises(ConfigError) as e:
        get_protocol("fast").with_(**{field: value})
    assert "\n" not in str(e.value) and field in str(e.value)


# ------------------------------------------------------------------ DM / IDM
def _dm(method: str = "dm", **kw):
    opts = {"model": MODEL, "batch_real": 8, "iterations": 4}
    if method == "idm":
        opts.update(
            net_num=2, net_init_num=1, net_generate_interval=1, batch_net=16, ce_weight=0.01
        )
    return create_method(method, **opts, **kw).fit(tiny_digits().train, 2, seed=0)


@pytest.mark.parametrize("method", ["dm", "idm"])
def test_dm_default_in_exact_mode_is_fp32_and_unchanged(method):
    a, b = _dm(method), _dm(method, precision="fp32", channels_last=False, compile=False)
    assert torch.equal(a.images, b.images)
    assert a.meta["precision"] == "fp32" and a.meta["compile"] is False
    assert "channels_last" not in a.meta


@pytest.mark.parametrize("method", ["dm", "idm"])
@pytest.mark.parametrize(
    ("levers", "tol", "cos"),
    [({"channels_last": True}, 1e-4, 0.9999), ({"precision": "bf16"}, 0.05, 0.95)],
    ids=["channels_last", "bf16"],
)
def test_dm_levers_stay_close_to_float32(method, levers, tol, cos):
    start = create_method("random").fit(tiny_digits().train, 2, seed=0)
    ref, got = _dm(method), _dm(method, **levers)
    assert torch.isfinite(got.images).all()
    assert (got.images - ref.images).norm() <= tol * ref.images.norm()
    if "precision" in levers:  # autocast really ran
        assert not torch.equal(got.images, ref.images)
    if method == "dm":  # both learn the same update: the images moved the same way
        d_ref = (ref.images - start.images).flatten()
        d_got = (got.images - start.images).flatten()
        assert d_ref.norm() > 0 and F.cosine_similarity(d_ref, d_got, dim=0) > cos
    for key, value in levers.items():
        assert got.meta[key] == value


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"precision": "fp16"}, "precision"),
        ({"channels_last": "yes"}, "channels_last"),
        ({"precision": "bf16", "dtype": "float64"}, "dtype"),
    ],
)
def test_bad_dm_levers_are_one_line_config_errors(options, needle):
    with pytest.raises(ConfigError) as e:
        create_method("dm", **options)
    assert "\n" not in str(e.value) and needle in str(e.value)


@pytest.mark.parametrize("method", ["dm", "idm"])
def test_dm_compile_falls_back_to_eager_when_unavailable(monkeypatch, method):
    # for idm this also checks the compile path's queue handling: each queue network copied into
    # the template gives what the functional call on its stored tensors gives, bit for bit
    monkeypatch.setattr(levers_mod, "compile_available", lambda: False)
    with pytest.warns(UserWarning, match="torch.compile is unavailable"):
        got = _dm(method, compile=True)
    assert torch.equal(got.images, _dm(method).images) and got.meta["compile"] is True


def test_idm_compile_path_matches_several_networks_per_step(monkeypatch):
    # the compile path reloads one template per queue network; with two networks matched per
    # step the first one's graph must not see the second one's weights
    monkeypatch.setattr(levers_mod, "compile_available", lambda: False)
    with pytest.warns(UserWarning, match="torch.compile is unavailable"):
        got = _dm("idm", compile=True, match_net_num=2)
    ref = _dm("idm", match_net_num=2)
    assert torch.allclose(got.images, ref.images, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "extra"), [("dm", {}), ("idm", {}), ("idm", {"match_net_num": 2})]
)
def test_dm_compiled_stays_close_to_eager(method, extra):
    if not levers_mod.compile_available():
        pytest.skip("torch.compile is unavailable on this machine")
    ref, got = _dm(method, **extra), _dm(method, compile=True, precision="bf16", **extra)
    assert torch.isfinite(got.images).all()
    assert (got.images - ref.images).norm() <= 0.05 * ref.images.norm()
