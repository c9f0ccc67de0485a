"""Linear Gradient Matching (lgm) and the linear-probe evaluation on frozen backbones (#69)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.probe import (
    FrozenBackbone,
    ProbeBaselines,
    ProbeRecipe,
    evaluate_probes,
    nearest_to_centroids,
    resolve_backbone,
    train_probes,
)
from ddkit.methods import METHODS, create_method, load_all
from ddkit.methods.common import initial_images
from ddkit.methods.probe.lgm import head_gradients, linear_gradient_loss
from ddkit.methods.probe.pyramid import decode, encode, level_sizes
from ddkit.models.helpers import build_network
from ddkit.testing import check_method, method_test_overrides, tiny_digits


def _lgm(**kw):
    return create_method("lgm", **{**method_test_overrides("lgm"), **kw})


# ------------------------------------------------------------------------------ the method
def test_lgm_is_registered_and_passes_the_conformance_suite():
    load_all()
    assert "lgm" in METHODS.names()  # so tests/test_conformance.py runs it too
    check_method("lgm")


def test_same_seed_same_set_other_seed_other_set():
    train = tiny_digits().train
    a = _lgm().fit(train, 1, seed=3)
    b = _lgm().fit(train, 1, seed=3)
    c = _lgm().fit(train, 1, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_steps_change_the_images_and_keep_pixels_in_range():
    train = tiny_digits().train
    m = _lgm(iterations=3, init="real", pyramid_grow=0)
    start = m.initial_set(train, 1, seed=0)
    out = m.fit(train, 1, seed=0)
    spec = train.spec
    raw = out.images * spec.std[0] + spec.mean[0]
    assert raw.min() > 0 and raw.max() < 1  # the sigmoid keeps every pixel inside (0, 1)
    assert (start.images - out.images).abs().max() > 1e-3


def test_real_start_is_the_real_images_through_the_pyramid():
    """init='real' with 0 iterations returns the real images it started from (the pyramid
    encodes them exactly; pixels at 0 or 1 move by at most eps)."""
    train = tiny_digits().train
    out = _lgm(init="real").fit(train, 2, seed=5, iterations=0)
    g = torch.Generator().manual_seed(5)
    expected = initial_images(train, 2, g, "real")
    eps_in_space = 2e-4 / train.spec.std[0]
    assert torch.allclose(out.images, expected, atol=eps_in_space)


def test_a_module_backbone_from_python():
    train = tiny_digits().train
    net = build_network("convnet2-w16", train.spec, 0)
    m = create_method("lgm", backbone=net, iterations=1, views=1, batch_real=2)
    out = m.fit(train, 1, seed=0)
    assert m.config.backbone == "module" and out.meta["backbone"] == type(net).__name__
    assert out.images.shape == (10, 1, 8, 8)


def test_bad_backbones_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="neither a ddkit model") as e:
        create_method("lgm", backbone="convnt3")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="given from Python"):
        create_method("lgm", backbone="module", iterations=1).fit(tiny_digits().train, 1)


# ------------------------------------------------------------------------------ the loss
def test_head_gradients_equal_autograd_in_float64():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(7, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (7,), generator=g)
    w = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(2, 3, generator=g, dtype=torch.float64)
    closed = head_gradients(feats, labels, w, b)
    for h in range(2):
        wh, bh = w[h].clone().requires_grad_(True), b[h].clone().requires_grad_(True)
        loss = F.cross_entropy(feats @ wh.T + bh, labels)
        gw, gb = torch.autograd.grad(loss, [wh, bh])
        assert torch.allclose(closed[h], torch.cat([gw.flatten(), gb]), atol=1e-12)


def test_matching_loss_is_zero_exactly_when_the_features_agree():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(12, 6, generator=g, dtype=torch.float64)
    labels = torch.arange(12) % 3
    w = torch.randn(4, 3, 6, generator=g, dtype=torch.float64) * 0.01
    b = torch.zeros(4, 3, dtype=torch.float64)
    same = linear_gradient_loss(feats, labels, feats.clone(), labels, w, b)
    assert same.shape == (4,) and same.abs().max() < 1e-12
    moved = feats + torch.randn(feats.shape, generator=g, dtype=torch.float64)
    assert (linear_gradient_loss(feats, labels, moved, labels, w, b) > 1e-3).all()


# ------------------------------------------------------------------------------ the pyramid
@pytest.mark.parametrize(("channels", "size", "levels"), [(1, (8, 8), None), (3, (8, 6), None),
                                                          (3, (5, 7), 2)])  # fmt: skip
def test_pyramid_reconstructs_a_given_image(channels, size, levels):
    g = torch.Generator().manual_seed(2)
    pixels = torch.rand((3, channels, *size), generator=g, dtype=torch.float64) * 0.98 + 0.01
    sizes = level_sizes(size, levels)
    assert sizes[-1] == size and (levels is not None or sizes[0] == (1, 1))
    parts = encode(pixels, sizes)
    assert [tuple(p.shape[-2:]) for p in parts] == sizes
    assert torch.allclose(decode(parts), pixels, atol=1e-10)
    # the coarse levels carry the image: without the finest level it is not the image
    if len(parts) > 1:
        assert not torch.allclose(decode([*parts[:-1], torch.zeros_like(parts[-1])]), pixels)


# ------------------------------------------------------------------------------ probes
def test_probes_trained_together_equal_probes_trained_alone():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(40, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (40,), generator=g)
    recipe = ProbeRecipe(steps=15, batch_size=16)  # mini-batches: per-seed orders
    w, b = train_probes(feats, labels, 3, [11, 22], recipe)
    for i, s in enumerate([11, 22]):
        w1, b1 = train_probes(feats, labels, 3, [s], recipe)
        assert torch.allclose(w[i], w1[0], atol=1e-12) and torch.allclose(b[i], b1[0], atol=1e-12)
    assert not torch.allclose(w[0], w[1])


def test_nearest_to_centroids_picks_the_row_nearest_the_class_mean():
    feats = torch.tensor([[0.0], [1.0], [5.0], [10.0], [11.0], [30.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    # class 0 mean 2 -> row 1 (1.0); class 1 mean 17 -> row 4 (11.0)
    assert nearest_to_centroids(feats, labels, 1, 2).tolist() == [1, 4]


def test_probe_evaluation_returns_rows_per_backbone_with_baselines():
    d = tiny_digits()
    nets = [build_network(n, d.train.spec, 0) for n in ("convnet2-w16", "mlp")]
    backbones = [resolve_backbone(n, d.train) for n in nets]
    backbones[1].name = "mlp"
    syn = SyntheticSet(initial_images(d.train, 1, torch.Generator().manual_seed(0)),
                       torch.arange(10), d.train.spec)  # fmt: skip
    rows = evaluate_probes({"set": syn}, backbones, d.train, d.test, runs=2,
                           recipe=ProbeRecipe(steps=60))  # fmt: skip
    names = [(r.backbone, r.set) for r in rows]
    assert names == [(b.name, s) for b in backbones
                     for s in ("set", "random real", "centroid nearest", "full data")]  # fmt: skip
    by = {(r.backbone, r.set): r for r in rows}
    for r in rows:
        assert len(r.accuracies) == 2 and 0 <= r.mean <= 100 and r.std >= 0
        assert r.to_dict()["mean"] == r.mean
    assert by[("mlp", "set")].images == 10 and by[("mlp", "full data")].images == len(d.train)
    # the full data's probe learns (chance is 10%); random real images differ between seeds
    assert by[("mlp", "full data")].mean > 50
    with pytest.raises(ConfigError, match="unknown baseline"):
        ProbeBaselines(("nearest",))


def test_a_function_backbone_and_its_features():
    d = tiny_digits()
    b = resolve_backbone(lambda x: x.flatten(1)[:, :5], d.train)
    assert isinstance(b, FrozenBackbone) and b.features_of(d.train.images, d.train.spec).shape == (
        len(d.train),
        5,
    )


def test_a_backbone_sees_images_in_the_normalisation_it_records():
    """A teacher trained on other data (its recorded spec) gets the images renormalised to its
    own statistics; one made for another image shape is refused in one line."""
    import dataclasses

    d = tiny_digits()
    spec = d.train.spec
    net = build_network("convnet2-w16", spec, 0)
    other = dataclasses.replace(spec, name="other", mean=(0.5,), std=(0.2,))
    net.teacher_meta_ = {"spec": other.to_dict()}
    b = resolve_backbone(net, d.train)
    assert b.space == other
    x = d.train.images[:4]
    raw = x * spec.std[0] + spec.mean[0]
    with torch.no_grad():
        expected = net.embed((raw - 0.5) / 0.2).flatten(1)
    assert torch.allclose(b.features_of(x, spec), expected, atol=1e-5)
    assert not torch.allclose(b.features_of(x, spec), net.embed(x).flatten(1).detach(), atol=1e-3)
    net.teacher_meta_ = {"spec": dataclasses.replace(other, image_size=(28, 28)).to_dict()}
    with pytest.raises(ConfigError, match="takes 1x") as e:
        resolve_backbone(net, d.train)
    assert "\n" not in str(e.value)
