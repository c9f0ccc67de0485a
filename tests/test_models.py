"""Conformance tests run over every registered model (plus a few variants)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from ddkit.errors import ConfigError, UnknownNameError
from ddkit.models import MODELS, ClassifierModel, create_model, has_batchnorm

NUM_CLASSES = 5
SIZES = [(1, 8), (1, 28), (3, 32)]

# Small-width variants keep the CPU tests fast; heads not listed here are tested as named.
SMALL = {
    "mlp": "mlp-w16",
    "alexnet": "alexnet-w8",
    "vgg11": "vgg11-w4",
    "resnet18": "resnet18-w4",
    "resnet10": "resnet10-w4",
    "vit": "vit-w16-d1-h2",
}
for _head in MODELS.names():
    if _head.startswith("convnet"):
        SMALL[_head] = f"{_head}-w8"

EXTRA = [
    "convnet3-bn-w8",
    "convnet4-w8-max-lrelu",
    "convnet3-w8-nopool-gn",
    "mlp-w16-d0",
    "mlp-w8-d3-tanh",
    "lenet-sigmoid",
    "alexnet-w8-bn",
    "vgg11-w4-bn",
    "resnet18-w4-in",
    "resnet18-w4-none",
    "resnet10-w4-gn",
    "vit-tiny-w16-d1-h2-p2",
]

NAMES = [SMALL.get(h, h) for h in MODELS.names()] + EXTRA
# Zoo heads must work on every tested size (ConvNet may refuse inputs too small for its depth).
MUST_WORK = ("mlp", "lenet", "alexnet", "vgg11", "resnet18", "resnet10", "vit")


def build(name: str, c: int, s: int, **kw):
    try:
        return create_model(name, num_classes=NUM_CLASSES, in_channels=c, image_size=s, **kw)
    except ConfigError as err:
        msg = str(err)
        assert "\n" not in msg and f"{s}x{s}" in msg, msg
        assert not name.startswith(MUST_WORK), f"{name} refused {c}x{s}x{s}: {msg}"
        pytest.skip(f"{name} refuses {s}x{s}: {msg}")


@pytest.mark.parametrize("c,s", SIZES, ids=[f"{c}x{s}x{s}" for c, s in SIZES])
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, c, s):
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build(name, c, s)
    assert isinstance(model, ClassifierModel)
    assert model.input_shape == (c, s, s)
    assert isinstance(model.classifier, torch.nn.Linear)
    assert model.classifier.in_features == model.num_features
    assert model.classifier.out_features == NUM_CLASSES
    x = torch.randn(2, c, s, s, generator=gen)
    x0 = x.clone()
    out = model(x)
    emb = model.embed(x)
    assert out.shape == (2, NUM_CLASSES)
    assert emb.shape == (2, model.num_features)
    assert torch.isfinite(out).all() and torch.isfinite(emb).all()
    torch.testing.assert_close(out, model.classifier(emb))
    assert torch.equal(x, x0)  # input untouched
    # The embedding depends on the input (no degenerate 1x1 instance-norm features).
    assert not torch.allclose(emb[0], emb[1])
    out.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_construction_is_deterministic(name):
    def make():
        with torch.random.fork_rng():
            torch.manual_seed(123)
            return build(name, 3, 32)

    state = torch.random.get_rng_state()
    a, b = make(), make()
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_stacked_copies(name):
    c, s = 3, 16
    with torch.random.fork_rng():
        torch.manual_seed(0)
        models = [build(name, c, s).double() for _ in range(2)]  # float64: exact comparison
    if has_batchnorm(models[0]):
        pytest.skip("BatchNorm models are trained one at a time")
    params, buffers = stack_module_state(models)
    x = torch.randn(2, c, s, s, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def run(p, b, xb):
        return functional_call(models[0], (p, b), (xb,))

    out = vmap(run, in_dims=(0, 0, None))(params, buffers, x)
    assert out.shape == (2, 2, NUM_CLASSES)
    for i, m in enumerate(models):
        torch.testing.assert_close(out[i], m(x))

    # Gradients through the vmapped call also match.
    def loss(p, b, xb):
        return run(p, b, xb).square().sum()

    g = vmap(torch.func.grad(loss), in_dims=(0, 0, None))(params, buffers, x)
    models[1].zero_grad()
    models[1](x).square().sum().backward()
    for k, p in models[1].named_parameters():
        torch.testing.assert_close(g[k][1], p.grad)


@pytest.mark.parametrize("head", MODELS.names())
def test_unknown_variant_token(head):
    with pytest.raises(UnknownNameError, match="bogus"):
        create_model(f"{head}-bogus", num_classes=3, in_channels=1, image_size=8)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_input_works_or_refuses_clearly(name):
    try:
        model = create_model(name, num_classes=3, in_channels=1, image_size=2)
    except ConfigError as err:
        msg = str(err)
        assert "\n" not in msg and "2x2" in msg and "at least" in msg, msg
        return
    out = model(torch.randn(2, 1, 2, 2))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_vit_refuses_patch_larger_than_image():
    with pytest.raises(ConfigError, match="at least 8x8"):
        create_model("vit-p8", num_classes=3, in_channels=1, image_size=4)


@pytest.mark.parametrize(
    "name,kw",
    [("vit-w30-h4", {}), ("mlp", {"depth": -1}), ("resnet18", {"width": 0}), ("vgg11-w0", {})],
)
def test_bad_hyperparameters(name, kw):
    with pytest.raises((ConfigError, UnknownNameError)):
        create_model(name, num_classes=3, in_channels=1, image_size=8, **kw)


def test_non_square_images():
    for name in ["mlp", "lenet", "alexnet-w8", "vgg11-w4", "resnet10-w4", "vit-w16-d1-h2"]:
        m = create_model(name, num_classes=3, in_channels=3, image_size=(16, 24))
        assert m(torch.randn(2, 3, 16, 24)).shape == (2, 3)


def test_default_sizes_match_references():
    """Default widths give the feature sizes of the DC / DC-bench reference networks."""
    expected = {
        ("mlp", 28): 128,
        ("lenet", 28): 84,
        ("lenet", 32): 84,
        ("alexnet", 28): 192 * 4 * 4,
        ("alexnet", 32): 192 * 4 * 4,
        ("alexnet", 8): 192 * 2 * 2,
        ("vgg11", 32): 512,
        ("resnet18", 32): 512,
        ("resnet10", 8): 512,
        ("vit", 32): 128,
    }
    for (name, s), nf in expected.items():
        m = create_model(name, num_classes=10, in_channels=1, image_size=s)
        assert m.num_features == nf, (name, s)
    # LeNet at 28x28 is the classic 16x5x5 map; ResNet-18 has its 2-2-2-2 blocks.
    lenet = create_model("lenet", num_classes=10, in_channels=1, image_size=28)
    assert any(isinstance(m, torch.nn.Linear) and m.in_features == 400 for m in lenet.modules())
    r18 = create_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    assert [len(st) for st in r18.stages] == [2, 2, 2, 2]
    assert has_batchnorm(r18)
    r18_in = create_model("resnet18-in", num_classes=10, in_channels=3, image_size=32)
    assert not has_batchnorm(r18_in)
    assert not has_batchnorm(create_model("vgg11", num_classes=10, in_channels=3, image_size=32))
    # Full-width ResNet-18 and VGG-11 run on 32x32.
    with torch.no_grad():
        for name in ["resnet18", "vgg11"]:
            m = create_model(name, num_classes=10, in_channels=3, image_size=32)
            assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_footprint_of_a_built_network_equals_that_of_its_name_and_sizes_predict(monkeypatch):
    """A network's activation footprint is measured on meta copies (nothing computed), and
    predict's default batch keeps a no-grad forward within a quarter of the memory budget."""
    from ddkit.meter import BUDGET_ENV
    from ddkit.models import predict
    from ddkit.models.footprint import footprint, inference_batch, module_footprint

    net = create_model("convnet3-bn", num_classes=10, in_channels=3, image_size=32)
    fp = module_footprint(net, net.input_shape)
    assert fp == footprint("convnet3-bn", num_classes=10, in_channels=3, image_size=32)
    assert fp.training > fp.inference > 4 * 3 * 32 * 32
    assert next(net.parameters()).device.type == "cpu" and net.training  # left as it was
    monkeypatch.setenv(BUDGET_ENV, str(4 * 3 * fp.inference))  # three images' worth
    assert inference_batch(net) == 3
    x = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(predict(net, x), predict(net, x, batch_size=7))


def test_convnet_takes_the_papers_depth_for_the_image_size_and_says_so_once():
    import warnings

    from ddkit.models import convnet

    def depth(net) -> int:
        return sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())

    convnet._told_depths.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for size, want in ((8, 3), (28, 3), (32, 3), (64, 4), (128, 5), (256, 6)):
            net = create_model("convnet", num_classes=10, in_channels=3, image_size=size)
            assert depth(net) == want, size
        create_model("convnet", num_classes=10, in_channels=3, image_size=64)  # said already
        for named in ("convnet3", "convnet-d3"):
            net = create_model(named, num_classes=10, in_channels=3, image_size=64)
            assert depth(net) == 3
    said = [str(w.message) for w in caught if issubclass(w.category, convnet.ResolutionNotice)]
    assert len(said) == 3 and "64x64 images is ConvNet-4" in said[0] and "'convnet3'" in said[0]


def test_resnet_takes_the_imagenet_stem_from_128_px_and_says_so_once():
    """resnet18 / resnet10 keep the 3x3 stem up to 64 px (Tiny-ImageNet's ResNet-18) and take
    the 7x7 stride-2 conv and max-pool from 128 px; 'cifar' / 'imagenet' tokens choose."""
    import warnings

    from ddkit.models import registry, zoo

    def imagenet_stem(net) -> bool:
        first = net.stem[0]
        return first.kernel_size == (7, 7) and isinstance(net.stem[-1], torch.nn.MaxPool2d)

    zoo._told_stems.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, size, want in (("resnet18", 32, False), ("resnet18", 64, False),
                                 ("resnet18", 128, True), ("resnet10", 224, True),
                                 ("resnet18", 224, True), ("resnet18-cifar", 224, False),
                                 ("resnet18-imagenet", 32, True)):  # fmt: skip
            net = create_model(name, num_classes=10, in_channels=3, image_size=size)
            assert imagenet_stem(net) == want, (name, size)
            assert net(torch.zeros(1, 3, size, size)).shape == (1, 10)
    said = [str(w.message) for w in caught if issubclass(w.category, registry.ResolutionNotice)]
    assert len(said) == 2 and "128x128 images has the ImageNet stem" in said[0]
    assert "'resnet18-cifar'" in said[0]
    with pytest.raises(ConfigError, match="resnet stem 'wide'"):
        create_model("resnet18", num_classes=10, in_channels=3, image_size=32, stem="wide")


def test_a_registry_removes_what_it_added_and_refuses_an_unknown_name():
    from ddkit.registry import Registry

    reg: Registry[int] = Registry("thing")
    reg.add("One", 1)
    reg.remove("one")
    assert "one" not in reg and reg.names() == []
    reg.add("one", 2)  # the name is free again
    with pytest.raises(UnknownNameError, match="unknown thing 'two'"):
        reg.remove("two")
