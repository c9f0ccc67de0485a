"""Tests for gradient matching: DC's gradient distance, per-class gradients (vectorised vs loop),
the DC / DSA methods (presets, IPC rule, determinism) and slow "it really learns" checks."""

from __future__ import annotations

import math

import pytest
import torch
from paths import as_float64
from torch import nn

from ddkit.errors import ConfigError, DataError
from ddkit.methods import create_method, resolve_config
from ddkit.methods.matching.gradient import DC, DC_LOOPS, DSA, loops_for_ipc
from ddkit.methods.matching.losses import (
    class_gradients,
    class_gradients_loop,
    gradient_distance,
    gradient_matching_loss,
    matched_parameter_names,
)
from ddkit.models import create_model
from ddkit.testing import tiny_digits


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("global_rng_untouched")


# ============================================================== plain float64 reference
def _reference_distance(g_real, g_syn, metric):
    """Element-by-element loops in Python floats, following the authors' match_loss."""
    if metric == "ours":
        total = 0.0
        for a, b in zip(g_real, g_syn):
            if a.ndim == 1:
                continue  # 'do nothing' for biases / norm parameters
            a2, b2 = a.reshape(a.shape[0], -1).tolist(), b.reshape(b.shape[0], -1).tolist()
            for ra, rb in zip(a2, b2):
                dot = sum(x * y for x, y in zip(ra, rb))
                na = math.sqrt(sum(x * x for x in ra))
                nb = math.sqrt(sum(y * y for y in rb))
                total += 1.0 - dot / (na * nb + 1e-6)
        return total
    if metric == "l1-conv":  # IDC: L1 over parameters of >= 3 dimensions (convolution weights)
        return sum(
            abs(x - y)
            for a, b in zip(g_real, g_syn)
            if a.ndim >= 3
            for x, y in zip(a.flatten().tolist(), b.flatten().tolist())
        )
    va = [x for a in g_real for x in a.flatten().tolist()]
    vb = [y for b in g_syn for y in b.flatten().tolist()]
    if metric == "mse":
        return sum((x - y) ** 2 for x, y in zip(va, vb))
    dot = sum(x * y for x, y in zip(va, vb))
    return 1.0 - dot / (
        math.sqrt(sum(x * x for x in va)) * math.sqrt(sum(y * y for y in vb)) + 1e-6
    )


SHAPES = [
    (6, 3, 3, 3),
    (6,),
    (4, 5),
    (4,),
    (3, 2, 5),
    (2, 1, 1, 1),
]  # conv, bias, linear, bias, 3-D, 1x1 conv


@pytest.mark.parametrize("metric", ["ours", "mse", "cos", "l1-conv"])
def test_gradient_distance_matches_plain_reference(metric: str) -> None:
    g = _gen(1)
    for trial in range(3):
        gr = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
        gs = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
        if trial == 2:  # nearly aligned gradients: small distances
            gs = [a + 0.01 * b for a, b in zip(gr, gs)]
        got = gradient_distance(gr, gs, metric)
        assert got.dtype == torch.float64 and got.ndim == 0
        assert float(got) == pytest.approx(
            _reference_distance(gr, gs, metric), rel=1e-12, abs=1e-12
        )


@pytest.mark.parametrize("metric", ["ours", "mse", "cos", "l1-conv"])
def test_gradient_distance_batched_over_classes(metric: str) -> None:
    g = _gen(2)
    k = 4
    gr = [torch.randn((k, *s), generator=g, dtype=torch.float64) for s in SHAPES]
    gs = [torch.randn((k, *s), generator=g, dtype=torch.float64) for s in SHAPES]
    batched = gradient_distance(gr, gs, metric, batch_dims=1)
    assert batched.shape == (k,)
    for c in range(k):
        ref = _reference_distance([a[c] for a in gr], [b[c] for b in gs], metric)
        assert float(batched[c]) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    # mappings work like sequences; vmap over classes gives the same numbers
    names = [f"p{i}" for i in range(len(SHAPES))]
    as_dict = gradient_distance(dict(zip(names, gr)), dict(zip(names, gs)), metric, batch_dims=1)
    torch.testing.assert_close(as_dict, batched)
    vm = torch.vmap(lambda a, b: gradient_distance(a, b, metric))(gr, gs)
    torch.testing.assert_close(vm, batched)


def test_gradient_distance_properties_and_errors() -> None:
    g = _gen(3)
    gr = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    # (eps = 1e-6 in the cosine keeps these from being exact)
    assert float(gradient_distance(gr, gr, "ours")) == pytest.approx(0.0, abs=1e-3)
    assert float(gradient_distance(gr, [2.5 * t for t in gr], "ours")) == pytest.approx(
        0.0, abs=1e-3
    )  # scale-free
    assert float(gradient_distance(gr, [-t for t in gr], "ours")) == pytest.approx(
        2 * (6 + 4 + 3 + 2), rel=1e-4
    )
    assert float(gradient_distance(gr, gr, "mse")) == 0.0
    only_bias = [torch.randn(5, generator=g)], [torch.randn(5, generator=g)]
    assert float(gradient_distance(*only_bias, "ours")) == 0.0  # 1-D parameters are ignored
    with pytest.raises(ConfigError, match="unknown gradient distance"):
        gradient_distance(gr, gr, "l1")
    with pytest.raises(DataError, match="shapes differ"):
        gradient_distance(gr, [t.T if t.ndim == 2 else t for t in gr], "ours")
    with pytest.raises(DataError, match="length"):
        gradient_distance(gr, gr[:-1], "mse")


def test_gradient_distance_is_differentiable_float64() -> None:
    g = _gen(4)
    gr = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES[:3]]
    gs = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in SHAPES[:3]]
    for metric in ("ours", "mse", "cos"):
        assert torch.autograd.gradcheck(
            lambda *t, m=metric: gradient_distance(gr, list(t), m), tuple(gs)
        )


# ============================================================== vectorised vs class loop
def _net(name: str = "convnet", seed: int = 0, size: int = 8) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model(name, num_classes=3, in_channels=2, image_size=size)
    return net.double()


@pytest.mark.parametrize("model", ["convnet", "convnet2-ln", "mlp"])
def test_class_gradients_vectorised_equals_loop(model: str) -> None:
    net = _net(model)
    x = torch.randn(3, 5, 2, 8, 8, generator=_gen(5), dtype=torch.float64)
    y = torch.randint(0, 3, (3, 5), generator=_gen(6))
    vec = class_gradients(net, x, y)
    ref = class_gradients_loop(net, x, y)
    assert list(vec) == [n for n, _ in net.named_parameters()]
    for n in vec:
        torch.testing.assert_close(vec[n], ref[n], rtol=1e-10, atol=1e-12)
    chunked = class_gradients(net, x, y, names=matched_parameter_names(net), chunk_size=2)
    for n in chunked:
        torch.testing.assert_close(chunked[n], ref[n], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", ["ours", "mse", "cos", "l1-conv"])
def test_matching_loss_and_image_gradient_vectorised_equals_loop(metric: str) -> None:
    """One DC matching step in float64: same per-class loss and same gradient w.r.t. the
    synthetic images from the vmap path and the plain class-by-class path."""
    net = _net()
    real = torch.randn(3, 6, 2, 8, 8, generator=_gen(7), dtype=torch.float64)
    out = {}
    for vectorize in (True, False):
        syn = torch.randn(3, 2, 2, 8, 8, generator=_gen(8), dtype=torch.float64).requires_grad_(
            True
        )
        loss = gradient_matching_loss(net, real, syn, metric=metric, vectorize=vectorize)
        (g,) = torch.autograd.grad(loss.sum(), syn)
        out[vectorize] = (loss.detach(), g)
        assert all(p.grad is None for p in net.parameters())  # weights are not trained here
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out[True][1], out[False][1], rtol=1e-8, atol=1e-12)
    assert out[True][0].shape == (3,) and bool((out[True][1] != 0).any())


def test_weighted_real_gradients_are_those_of_the_weighted_cross_entropy() -> None:
    """``real_weights`` (reweight="kde") make each class's real gradient that of the weighted
    sum of its rows' cross-entropies: equal to autograd of that sum, the same on the vmap and
    the loop path, and the plain mean's gradient when the weights are uniform."""
    net = _net()
    x = torch.randn(3, 5, 2, 8, 8, generator=_gen(11), dtype=torch.float64)
    y = torch.arange(3).unsqueeze(1).expand(3, 5)
    w = torch.rand(3, 5, generator=_gen(12), dtype=torch.float64)
    w = w / w.sum(1, keepdim=True)
    got = class_gradients(net, x, y, weights=w)
    params = dict(net.named_parameters())
    for k in range(3):
        ce = nn.functional.cross_entropy(net(x[k]), y[k], reduction="none")
        ref = torch.autograd.grad((ce * w[k]).sum(), list(params.values()))
        for n, r in zip(params, ref, strict=True):
            torch.testing.assert_close(got[n][k], r, rtol=1e-10, atol=1e-12)
    uniform = class_gradients(net, x, y, weights=torch.full((3, 5), 0.2, dtype=torch.float64))
    plain = class_gradients(net, x, y)
    for n in plain:
        torch.testing.assert_close(uniform[n], plain[n], rtol=1e-10, atol=1e-12)
    assert any(not torch.allclose(got[n], plain[n]) for n in plain)
    syn = torch.randn(3, 2, 2, 8, 8, generator=_gen(13), dtype=torch.float64)
    vec, loop = (
        gradient_matching_loss(net, x, syn, vectorize=v, real_weights=w) for v in (True, False)
    )
    torch.testing.assert_close(vec, loop, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(vec, gradient_matching_loss(net, x, syn))


def test_real_forward_computes_the_real_batches_only() -> None:
    """``real_forward`` (the compile lever's hook) replaces the network for the real batches,
    once per class, and never for the synthetic ones, whose gradients are differentiated again;
    the same function of the same weights gives the same loss and image gradient bit for bit."""
    net = _net()
    real = torch.randn(3, 6, 2, 8, 8, generator=_gen(7), dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def counted(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return net(x)

    out = []
    for forward in (None, counted):
        syn = torch.randn(3, 2, 2, 8, 8, generator=_gen(8), dtype=torch.float64)
        syn.requires_grad_(True)
        loss = gradient_matching_loss(net, real, syn, vectorize=False, real_forward=forward)
        out.append((loss.detach(), torch.autograd.grad(loss.sum(), syn)[0]))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert len(seen) == 3 and all(torch.equal(x, r) for x, r in zip(seen, real))
    halved = gradient_matching_loss(
        net, real, real[:, :2], vectorize=False, real_forward=lambda x: net(x) / 2
    )
    assert not torch.allclose(
        halved, gradient_matching_loss(net, real, real[:, :2], vectorize=False)
    )


@pytest.mark.paths_agree("float64")
@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_method_step_vectorised_equals_loop_float64(name: str) -> None:
    """A whole DC/DSA iteration (matching, network training, matching) in float64 with the same
    seed: the vectorised and the loop implementation give the same loss and images (float64
    data gives a float64 network)."""
    from ddkit.data.dataset import ImageDataset

    data = tiny_digits().train
    data64 = ImageDataset(data.images.double(), data.labels, data.spec)
    results = {}
    for vectorize in (True, False):
        m = create_method(
            name, ipc=2, outer_loop=2, inner_loop=1, batch_real=6, vectorize=vectorize
        )
        m.fit(data64, 2, iterations=0, seed=3)
        assert m.state_["images"].dtype == torch.float64
        metrics = m.step(0)
        results[vectorize] = (metrics["loss"], m.state_["images"].detach().clone())
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-9)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-9, atol=1e-10)


@pytest.mark.paths_agree("float64")
def test_batchnorm_network_uses_the_bn_trick() -> None:
    """DC on a batch-norm network: the vectorised and the loop path agree (float64)."""
    data = as_float64(tiny_digits().train)
    syn = {}
    for vectorize in (True, False):
        m = create_method(
            "dc",
            iterations=1,
            outer_loop=2,
            inner_loop=1,
            batch_real=4,
            model="convnet-bn",
            vectorize=vectorize,
        )
        syn[vectorize] = m.fit(data, 1, seed=0)
    torch.testing.assert_close(syn[True].images, syn[False].images, rtol=1e-6, atol=1e-6)


# ============================================================== methods, presets, rules
def test_presets_and_ipc_rule() -> None:
    for ipc, loops in DC_LOOPS.items():
        assert loops_for_ipc(ipc) == loops
        for cls in (DC, DSA):
            cfg = resolve_config(cls, "mnist", ipc)
            assert (cfg["outer_loop"], cfg["inner_loop"]) == loops
    # unlisted IPCs: both loops interpolated between the listed neighbours, not the nearest one's
    assert loops_for_ipc(5) == (5, 23) and loops_for_ipc(2) == (2, 6)
    assert loops_for_ipc(15) == (15, 38) and loops_for_ipc(45) == (45, 13)
    assert loops_for_ipc(100) == (50, 10)
    pairs = [loops_for_ipc(k) for k in range(1, 51)]
    assert all(a[0] <= b[0] for a, b in zip(pairs, pairs[1:]))  # more images, more matching
    m = create_method("dc", dataset="digits", ipc=7)
    assert m.config.outer_loop == "auto" and m.loops(7) == (7, 34)
    assert create_method("dsa", ipc=7, outer_loop=3).loops(7) == (3, 34)
    d = create_method("dsa", ipc=10)
    assert d.config.augment == "auto" and d.config.lr_img == 0.1 and d.config.momentum_img == 0.5
    assert d.config.batch_real == 256 and d.config.iterations == 1000 and d.loops(10) == (10, 50)
    assert create_method("dc").config.augment == "none"
    assert create_method("dc", dataset="digits", ipc=1).config.model == "convnet2"
    assert create_method("dc", dataset="mnist5k", ipc=1).config.model == "convnet-w32"
    assert create_method("dc", dataset="cifar10", ipc=1).config.model == "convnet"


def test_ipc7_runs_and_records_schedule() -> None:
    data = tiny_digits().train
    syn = create_method("dc", ipc=7, iterations=1, outer_loop=2, inner_loop=1, batch_real=4).fit(
        data, 7
    )
    assert syn.images.shape == (70, 1, 8, 8)
    assert (
        syn.meta["outer_loop"] == 2 and syn.meta["inner_loop"] == 1 and syn.meta["method"] == "dc"
    )
    m = create_method("dc", ipc=7, iterations=0)
    m.fit(data, 7)
    assert (m.outer_loop_, m.inner_loop_) == (7, 34)


@pytest.mark.parametrize(
    "bad",
    [
        {"lr_img": 0},
        {"metric": "l2"},
        {"init": "zeros"},
        {"outer_loop": 0},
        {"batch_real": 0},
        {"class_chunk": -1},
        {"momentum_img": 1.5},
    ],
)
def test_bad_config_raises(bad) -> None:
    with pytest.raises(ConfigError):
        create_method("dc", **bad)


@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_determinism_and_learning_signal(name: str) -> None:
    data = tiny_digits().train
    kw = dict(iterations=2, **DC.test_overrides)
    a = create_method(name, **kw).fit(data, 2, seed=5)
    b = create_method(name, **kw).fit(data, 2, seed=5)
    c = create_method(name, **kw).fit(data, 2, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    start = create_method(name, iterations=0).fit(data, 2, seed=5)
    assert not torch.equal(start.images, a.images)  # the images moved
    assert torch.equal(a.labels, torch.arange(10).repeat_interleave(2))
    if name == "dsa":
        assert a.meta["dsa_strategy"] == "color_crop_cutout_scale_rotate"  # digits: no flip


def test_noise_init() -> None:
    # (the conformance suite in tests/test_conformance.py covers dc and dsa with test_overrides)
    data = tiny_digits().train
    syn = create_method("dc", init="noise", iterations=1, **DC.test_overrides).fit(data, 1)
    assert torch.isfinite(syn.images).all() and syn.images.abs().max() > 0


# ============================================================== slow: it really learns
def _random_baseline(splits, ipc, seed):
    return create_method("random").fit(splits.train, ipc, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_distilled_digits_beat_random_real_at_ipc1(name: str) -> None:
    from ddkit.data.builtin import load_dataset
    from ddkit.eval import evaluate

    splits = load_dataset("digits")
    # the digits preset (ConvNet-2), published lr/momentum/real batch; 100 of the 1000 iterations
    syn = create_method(name, dataset="digits", ipc=1, iterations=100).fit(splits.train, 1, seed=0)
    protocol = "fast"  # 100 epochs with DSA augmentation, 3 runs
    ours, rand = [], []
    for seed in range(2):
        ours.append(evaluate(syn, splits.test, protocol, seed=seed).results[0].mean)
        rand.append(
            evaluate(_random_baseline(splits, 1, seed), splits.test, protocol, seed=seed)
            .results[0]
            .mean
        )
    mean_ours, mean_rand = sum(ours) / len(ours), sum(rand) / len(rand)
    print(
        f"\n{name} digits IPC 1: distilled {100 * mean_ours:.1f}%  random real {100 * mean_rand:.1f}%"
        f"  (per seed {[round(100 * a, 1) for a in ours]} vs {[round(100 * a, 1) for a in rand]})"
    )
    assert mean_ours > mean_rand + 0.03


def test_a_network_too_deep_for_the_images_is_warned_about() -> None:
    import warnings

    data = tiny_digits().train
    with pytest.warns(UserWarning, match="gradient-matching objective is then too rough"):
        create_method("dc", model="convnet", iterations=0).fit(data, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_method("dsa", dataset="digits", ipc=1, iterations=0).fit(data, 1)  # convnet2


# ============================================================== IDC
def test_idc_pixel_bounds_and_image_learning_rate() -> None:
    from ddkit.data.dataset import denormalise
    from ddkit.data.spec import DatasetSpec
    from ddkit.methods.matching.idc import idc_image_lr, pixel_bounds

    spec = DatasetSpec("m", 10, 1, (28, 28), mean=(0.13,), std=(0.31,))
    low, high = pixel_bounds(spec)
    raw = denormalise(torch.stack([low, high]).expand(2, 1, 28, 28), spec)
    torch.testing.assert_close(raw[0], torch.zeros(1, 28, 28))
    torch.testing.assert_close(raw[1], torch.ones(1, 28, 28))
    # IDC's 5e-3 * ipc / 10 for 28x28 pixels in [0, 1], the same step in normalised units
    assert idc_image_lr(10, spec) == pytest.approx(5e-3 / 0.31**2)
    assert idc_image_lr(1, spec) == pytest.approx(5e-4 / 0.31**2)


def test_idc_clamps_stored_pixels_and_trains_its_networks_on_real_images(monkeypatch) -> None:
    from ddkit.eval import train as train_module
    from ddkit.methods.matching.idc import pixel_bounds
    from ddkit.testing import method_test_overrides

    data = tiny_digits().train
    overrides = {**method_test_overrides("idc"), "lr_img": 1e-12, "codec": "formation:2"}
    m = create_method("idc", **overrides)
    m.fit(data, 1, iterations=0, seed=0)
    assert m.state_["images"].shape[0] == 10  # one stored image per class ...
    seen = []
    real = train_module.sgd_train

    def spy(net, images, targets, recipe, **kw):
        seen.append((images, targets))
        return real(net, images, targets, recipe, **kw)

    monkeypatch.setattr(train_module, "sgd_train", spy)
    with torch.no_grad():
        m.state_["images"].fill_(100.0)
    m.step(0)
    low, high = pixel_bounds(data.spec)
    assert torch.allclose(m.state_["images"], high.expand_as(m.state_["images"]), atol=1e-6)
    # between its 2 matching steps the network trained once, on real rows with their labels
    assert len(seen) == 1
    images, targets = seen[0]
    rows = [int((data.images == x).flatten(1).all(1).nonzero()[0]) for x in images]
    assert torch.equal(data.labels[rows], targets)
    syn = m.result()
    assert len(syn) == 40 and syn.meta["formation_factor"] == 2  # ... emitting 4 per class


def test_idc_stores_multi_formation_images_only_where_tiles_hold_an_image() -> None:
    from ddkit.data.spec import DatasetSpec
    from ddkit.methods.matching.idc import IDC

    idc = create_method("idc")
    assert isinstance(idc, IDC)
    for side, codec in [(8, "pixels"), (16, "formation:2"), (28, "formation:2")]:
        spec = DatasetSpec("m", 10, 1, (side, side), mean=(0.1,), std=(0.3,))
        assert idc.codec_for(spec) == codec
    assert create_method("idc", codec="fred:0.5").codec_for(spec) == "fred:0.5"
    with pytest.raises(ConfigError):
        create_method("dc", codec="auto")


def test_a_matching_step_that_cannot_fit_the_budget_is_refused_before_it_starts(monkeypatch):
    from ddkit.meter import BUDGET_ENV
    from ddkit.testing import method_test_overrides

    # 2 MiB: dc's network (1.2 MB, sized before it is built) fits, a class's step does not
    monkeypatch.setenv(BUDGET_ENV, str(2 * 2**20))
    with pytest.raises(ConfigError, match=r"dc's matching step \(1 class\(es\) x .*batch_real"):
        create_method("dc", **method_test_overrides("dc")).fit(tiny_digits().train, 2, seed=0)
