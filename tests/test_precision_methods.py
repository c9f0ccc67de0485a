"""The bf16 speed lever (issue 14) in gradient matching (DC, DSA, IDC) and trajectory matching
(MTT, TESLA, DATM): ``precision=fp32`` (the default) is unchanged bit for bit, bf16 stays close
to float32 and finite, TESLA's hand-made backward equals MTT's autograd under autocast, bad
values are one-line errors, and a bf16 set records it. Never timed: benchmarks/campaigns/bench_speed.py
(part ``matching``) measures the speed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.common import method_precision
from ddkit.methods.matching.losses import gradient_matching_loss
from ddkit.models import build_network, create_model
from ddkit.testing import method_test_overrides, tiny_digits

GRADIENT = ["dc", "dsa", "idc"]
TRAJECTORY = ["mtt", "tesla", "datm"]


def _opts(name: str, **kw) -> dict:
    # gradient matching on 8x8 digits: ConvNet-2 keeps 4x4 maps (ConvNet-3's 2x2 maps under
    # instance norm give an objective too rough for any two runs to agree)
    model = {"model": "convnet2-w16"} if name in GRADIENT else {}
    return {**method_test_overrides(name), **model, **kw}


def _fit(name: str, iterations: int = 2, **kw):
    opts = _opts(name, iterations=iterations, **kw)
    return create_method(name, **opts).fit(tiny_digits().train, 2, seed=0)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------ methods
@pytest.mark.parametrize("name", GRADIENT + TRAJECTORY)
def test_default_precision_is_fp32_and_unchanged(name):
    a, b = _fit(name), _fit(name, precision="fp32")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.lr == b.lr
    assert a.meta["precision"] == "fp32"


@pytest.mark.parametrize("name", GRADIENT + TRAJECTORY)
def test_bf16_is_finite_close_to_fp32_and_recorded(name):
    start = _fit(name, iterations=0)
    ref, got = _fit(name), _fit(name, precision="bf16")
    assert torch.isfinite(got.images).all() and torch.isfinite(got.labels.float()).all()
    assert not torch.equal(got.images, ref.images)  # autocast really ran
    assert _rel(got.images, ref.images) <= 0.05
    d_ref = (ref.images - start.images).flatten()
    d_got = (got.images - start.images).flatten()
    assert d_ref.norm() > 0  # the images moved, and in about the same direction
    assert F.cosine_similarity(d_ref, d_got, dim=0) > 0.95
    if ref.lr is not None:  # the learned step size too
        assert got.lr == pytest.approx(ref.lr, rel=0.05)
    assert got.meta["precision"] == "bf16"


@pytest.mark.parametrize("name", ["dc", "mtt"])
def test_auto_precision_is_bf16_where_the_cpu_has_it(name, monkeypatch):
    from ddkit import levers as levers_mod

    with levers_mod.exact(False):
        monkeypatch.setattr(levers_mod, "cpu_has_bf16", lambda: False)
        assert _fit(name, iterations=1, precision="auto").meta["precision"] == "fp32"
        monkeypatch.setattr(levers_mod, "cpu_has_bf16", lambda: True)
        assert _fit(name, iterations=1, precision="auto").meta["precision"] == "bf16"
    assert _fit(name, iterations=1, precision="auto").meta["precision"] == "fp32"  # exact mode


@pytest.mark.parametrize("name", GRADIENT + TRAJECTORY)
def test_bad_precision_is_a_one_line_config_error(name):
    with pytest.raises(ConfigError) as e:
        create_method(name, precision="fp16")
    assert "\n" not in str(e.value) and "precision" in str(e.value)


@pytest.mark.parametrize("name", ["dc", "idc", "mtt"])
def test_bf16_refuses_float64_data(name):
    train = tiny_digits().train
    data = type(train)(train.images.double(), train.labels, train.spec)
    m = create_method(name, **_opts(name, iterations=1, precision="bf16"))
    with pytest.raises(ConfigError) as e:
        m.fit(data, 2, seed=0)
    assert "\n" not in str(e.value) and "float32" in str(e.value)


def test_method_precision_rule():
    assert method_precision("fp32", torch.float32) == "fp32"
    assert method_precision("bf16", torch.float32) == "bf16"
    assert method_precision("auto", torch.float64) == "fp32"
    assert method_precision("bf16", "float32") == "bf16"
    with pytest.raises(ConfigError, match="dtype must be float32, got 'float64'"):
        method_precision("bf16", torch.float64)


# ------------------------------------------------------------------ the pieces
@pytest.mark.parametrize("vectorize", [False, True], ids=["loop", "vmap"])
def test_gradient_matching_loss_in_bf16_is_close_and_differentiable(vectorize):
    train = tiny_digits().train
    net = build_network("convnet2-w16", train.spec, 0)
    g = torch.Generator().manual_seed(0)
    real = train.images[train.sample_per_class(8, g)]
    syn0 = train.images[train.sample_per_class(2, g)]
    out = {}
    for precision in ("fp32", "bf16"):
        syn = syn0.clone().requires_grad_(True)
        loss = gradient_matching_loss(net, real, syn, vectorize=vectorize, precision=precision)
        assert loss.dtype == torch.float32  # the distance stays float32
        loss.sum().backward()
        out[precision] = (loss.detach(), syn.grad)
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    assert torch.isfinite(l16).all() and torch.isfinite(g16).all()
    assert not torch.equal(l16, l32)
    torch.testing.assert_close(l16, l32, rtol=0.05, atol=0.05)
    assert F.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) > 0.9


@pytest.mark.parametrize("label_mode", ["hard", "logits"])
def test_tesla_backward_under_autocast_equals_unrolled(label_mode):
    """TESLA's reverse accumulation (torch.func.vjp of recomputed bf16 steps) gives MTT's
    autograd gradient of the same bf16 unroll, and both stay close to float32."""
    from ddkit.augment import DSA
    from ddkit.methods.trajectory.student import (
        FlatModel,
        Student,
        make_plan,
        tesla_step,
        unrolled_step,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model("convnet2-w8", num_classes=3, in_channels=1, image_size=8)
    fm = FlatModel(net)
    g = torch.Generator().manual_seed(0)
    start = fm.flatten(net)
    target = start + 0.05 * torch.randn(start.shape, generator=g)
    images0 = torch.randn(6, 1, 8, 8, generator=g)
    labels0 = torch.tensor([0, 0, 1, 1, 2, 2])
    if label_mode == "logits":
        labels0 = torch.randn(6, 3, generator=g)
    dsa = DSA("color_crop_cutout_scale_rotate")
    plan = make_plan(6, 4, 4, g, dsa, (8, 8))

    def unrolled(precision):
        images = images0.clone().requires_grad_(True)
        lr = torch.tensor(0.1, requires_grad=True)
        labels = labels0.clone().requires_grad_(label_mode == "logits")
        student = Student(fm, dsa, label_mode, precision)
        loss = unrolled_step(student, start, target, images, lr, labels, plan)
        loss.backward()
        return float(loss.detach()), images.grad, lr.grad, labels.grad

    l32, gi32, gl32, _ = unrolled("fp32")
    l16, gi16, gl16, gy16 = unrolled("bf16")
    r = tesla_step(
        Student(fm, dsa, label_mode, "bf16"), start, target, images0, torch.tensor(0.1), labels0,
        plan, checkpoint_every=2,
    )  # fmt: skip
    assert r.loss == pytest.approx(l16, rel=1e-5)
    torch.testing.assert_close(r.grad_images, gi16, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(r.grad_lr, gl16, rtol=1e-3, atol=1e-6)
    if label_mode == "logits":
        torch.testing.assert_close(r.grad_labels, gy16, rtol=1e-3, atol=1e-6)
    assert r.grad_images.dtype == torch.float32 and torch.isfinite(r.grad_images).all()
    assert l16 != l32 and l16 == pytest.approx(l32, rel=0.05)
    assert F.cosine_similarity(gi16.flatten(), gi32.flatten(), dim=0) > 0.9
    assert float(gl16) == pytest.approx(float(gl32), rel=0.1, abs=1e-6)


# ------------------------------------------------------------------ compile (inner loop, real gradients)
@pytest.mark.parametrize("name", GRADIENT)
def test_compile_falls_back_to_eager_bit_for_bit_and_is_recorded(monkeypatch, name):
    from ddkit import levers as levers_mod

    monkeypatch.setattr(levers_mod, "compile_available", lambda: False)
    with pytest.warns(UserWarning, match="torch.compile is unavailable"):
        got = _fit(name, outer_loop=2, inner_loop=2, compile=True)
    ref = _fit(name, outer_loop=2, inner_loop=2)
    assert torch.equal(got.images, ref.images) and got.meta["compile"] is True
    assert ref.meta["compile"] is False


@pytest.mark.slow
def test_compiled_dc_stays_close_to_eager():
    from ddkit import levers as levers_mod

    if not levers_mod.compile_available():
        pytest.skip("torch.compile is unavailable on this machine")
    start = _fit("dc", iterations=0)
    ref = _fit("dc", outer_loop=2, inner_loop=2)
    got = _fit("dc", outer_loop=2, inner_loop=2, compile=True)
    assert not torch.equal(got.images, start.images)
    assert _rel(got.images, ref.images) <= 1e-3
