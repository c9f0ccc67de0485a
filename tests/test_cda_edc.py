"""CDA (crop-scale curriculum) and EDC (class statistics, several teachers, flatness) on SRe2L."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ddkit.augment.crops import sample_boxes
from ddkit.methods.decoupled.recipes import (
    ClassStatLoss,
    class_bn_statistics,
    crop_scale_floor,
    flatness_loss,
)
from ddkit.testing import method_test_overrides, tiny_digits


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


def _method(name, **kw):
    from ddkit.methods import create_method

    return create_method(name, **{**method_test_overrides(name), **kw})


# ----------------------------------------------------------------------------- CDA
def test_crop_scale_floor_follows_the_curriculum():
    t = 100
    cos = [crop_scale_floor(i, t, "cosine", low=0.08, milestone=0.5) for i in range(t)]
    assert cos[0] == 1.0 and cos[25] == pytest.approx(0.08 + 0.92 * 0.5)
    assert all(a >= b for a, b in zip(cos, cos[1:])) and cos[50:] == [0.08] * 50
    lin = [crop_scale_floor(i, t, "linear", milestone=1.0) for i in (0, 50, 99)]
    assert lin == pytest.approx([1.0, 0.54, 0.08 + 0.92 * 0.01])
    assert crop_scale_floor(49, t, "step", milestone=0.5) == 1.0
    assert crop_scale_floor(50, t, "step", milestone=0.5) == 0.08
    assert crop_scale_floor(0, t, "fixed", low=0.3) == 0.3
    assert crop_scale_floor(0, t, "none") == 1.0


def test_fitted_boxes_are_whole_images_at_scale_one_and_stay_inside():
    g = torch.Generator().manual_seed(0)
    whole = sample_boxes(50, (8, 12), g, scale=(1.0, 1.0), fit=True)
    assert (whole == torch.tensor([0, 0, 8, 12])).all()
    boxes = sample_boxes(500, (28, 28), g, scale=(0.3, 1.0), fit=True)
    y0, x0, h, w = boxes.unbind(1)
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= 28).all() and (x0 + w <= 28).all()
    frac = (h * w).double() / 28**2
    assert frac.min() > 0.25 and frac.max() <= 1.0  # the drawn scale, up to rounding


def test_cda_recovery_draws_crops_on_its_schedule(tiny, monkeypatch):
    import ddkit.methods.decoupled.methods as dm

    scales = []
    real = dm.sample_boxes

    def spy(n, size, g, **kw):
        scales.append(kw["scale"][0])
        return real(n, size, g, **kw)

    monkeypatch.setattr(dm, "sample_boxes", spy)
    _method("cda", iterations=4, crop_milestone=0.5).fit(tiny.train, 1, seed=0)
    want = [1.0, 0.08 + 0.92 * 0.5 * (1 + math.cos(math.pi / 2)), 0.08, 0.08]
    assert scales == pytest.approx(want)
    scales.clear()
    _method("sre2l", iterations=2).fit(tiny.train, 1, seed=0)
    assert scales == []  # SRe2L's CIFAR recipe: no crops


# ----------------------------------------------------------------------------- EDC
@pytest.fixture(scope="module")
def teacher(tiny):
    from ddkit.eval.teacher import TeacherRecipe, train_teacher

    with torch.random.fork_rng(devices=[]):
        return train_teacher(tiny.train, TeacherRecipe("convnet3-bn-w8", epochs=1, seed=0))


def test_class_statistics_are_the_class_real_bn_statistics(tiny, teacher):
    from ddkit.methods.decoupled.bn import bn_layers

    train = tiny.train
    stats = class_bn_statistics(teacher, train.images, train.labels, 10, batch_size=64)
    layers = bn_layers(teacher)
    assert len(stats) == len(layers)
    for c in (0, 7):
        seen = []
        h = layers[1].register_forward_hook(lambda m, i, o, seen=seen: seen.append(i[0].double()))
        with torch.no_grad():
            teacher(train.images[train.labels == c])
        h.remove()
        x = seen[0]
        mean = x.mean((0, 2, 3))
        var = x.var((0, 2, 3), unbiased=False)
        torch.testing.assert_close(stats[1][0][c].double(), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stats[1][1][c].double(), var, rtol=1e-4, atol=1e-5)


def test_class_term_vanishes_on_the_real_classes_and_not_on_noise(tiny, teacher):
    train = tiny.train
    stats = class_bn_statistics(teacher, train.images, train.labels, 10)
    with ClassStatLoss(teacher, stats, train.labels) as real, torch.no_grad():
        teacher(train.images)
    noise = torch.randn(train.images.shape, generator=torch.Generator().manual_seed(0))
    with ClassStatLoss(teacher, stats, train.labels) as other, torch.no_grad():
        teacher(noise)
    assert float(real.total()) < 1e-3 * float(other.total())
    assert len(real._handles) == 0  # hooks removed


def test_flatness_is_zero_for_equal_outputs_and_grows():
    z = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    assert float(flatness_loss(z, z)) == pytest.approx(0.0, abs=1e-7)
    assert 0 < float(flatness_loss(z, z + 0.5 * z.flip(0))) < float(flatness_loss(z, z + z.flip(0)))


def test_each_edc_switch_adds_its_term_to_the_loss(tiny):
    """Same seed, same draws: switching on class statistics adds exactly r_bn * class_weight *
    the class term; flatness starts at zero (the average is the images) and then counts."""
    from ddkit.methods.base import Callback

    class Record(Callback):
        def __init__(self):
            self.rows = []

        def on_step_end(self, method, iteration, metrics):
            self.rows.append(dict(metrics))

    def run(**kw):
        rec = Record()
        _method("sre2l", iterations=3, init="real", **kw).fit(
            tiny.train, 1, seed=0, callbacks=[rec]
        )
        return rec.rows

    base = run()
    cls = run(class_stats=True, class_weight=2.0, r_bn=0.5)
    plain = run(r_bn=0.5)
    assert "class_bn" not in base[0] and cls[0]["class_bn"] > 0
    assert cls[0]["loss"] == pytest.approx(plain[0]["loss"] + 0.5 * 2.0 * cls[0]["class_bn"])
    flat = run(flatness=1.0)
    assert flat[0]["flatness"] == pytest.approx(0.0, abs=1e-6)
    assert flat[0]["loss"] == pytest.approx(base[0]["loss"])
    assert flat[2]["flatness"] > 0


def test_edc_uses_its_teachers_in_turn_and_records_them(tiny):
    m = _method("edc", iterations=2)
    syn = m.fit(tiny.train, 1, seed=0)
    assert len(m.teachers_) == 2 and m.teachers_[0] is not m.teachers_[1]
    assert len(syn.meta["extra_teacher_dirs"]) == 1
    assert m.config.init == "real" and m.config.class_stats and m.config.flatness > 0


def test_edc_and_cda_run_from_the_cli_with_their_switches(tmp_path):
    import json

    from ddkit.cli import main

    common = ["--dataset", "digits", "--ipc", "1", "--iterations", "2", "--quiet"]
    teacher = ["teacher_model=convnet3-bn-w8", "teacher_epochs=1", f"teacher_cache={tmp_path}/t"]
    sets = [x for kv in teacher for x in ("--set", kv)]
    extra = ["--set", 'extra_teachers=["convnet2-bn-w8"]', "--set", "class_stats=true"]
    assert (
        main(["distill", "--method", "edc", *common, *sets, *extra, "--out", f"{tmp_path}/e"]) == 0
    )
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert cfg["method_config"]["extra_teachers"] == ["convnet2-bn-w8"]
    assert cfg["method_config"]["class_stats"]
    assert main(["distill", "--method", "cda", *common, *sets, "--out", f"{tmp_path}/c"]) == 0
    assert (tmp_path / "c" / "synthetic" / "data.safetensors").is_file()


def test_flatness_averages_each_statistics_group_as_the_ce_does(tiny, monkeypatch):
    """Each image index is one of the reference's batches: its flatness KL is that batch's mean
    (K rows), as its CE, so the term's weight does not shrink with the IPC (it was the mean
    over all K * IPC rows, 1 / IPC of the reference's weight)."""
    import ddkit.methods.decoupled.methods as dm

    rows = []
    real = dm.flatness_loss

    def spy(logits, ema_logits, temperature=4.0, **kw):
        rows.append((len(logits), kw["rows"]))
        return real(logits, ema_logits, temperature, **kw)

    monkeypatch.setattr(dm, "flatness_loss", spy)
    k = tiny.train.spec.num_classes
    _method("sre2l", iterations=2, init="real", flatness=1.0).fit(tiny.train, 2, seed=0)
    assert rows == [(2 * k, k)] * 2
    rows.clear()
    _method("sre2l", iterations=1, flatness=1.0, bn_groups="all").fit(tiny.train, 2, seed=0)
    assert rows == [(2 * k, 2 * k)]


def _preset(cls, dataset: str) -> dict:
    return next(dict(p.values) for p in cls.presets if p.dataset == dataset)


def test_presets_follow_the_authors_scripts():
    """SRe2L's and CDA's Tiny-ImageNet scripts crop (0.08-1) and roll by 4 pixels (ddkit's auto
    jitter would be 8 at 64 px); EDC's recovery never rolls, weighs its global and class
    statistics 0.5 each under r_loss 0.01, and its CIFAR-10 script leaves flatness off."""
    from ddkit.methods.decoupled.methods import CDA, EDC, SRe2L

    tiny_sre2l = _preset(SRe2L, "tinyimagenet")
    assert tiny_sre2l["crop"] == "fixed" and tiny_sre2l["jitter"] == 4
    assert SRe2L.Config().crop_min == 0.08
    assert _preset(CDA, "tinyimagenet")["jitter"] == 4
    edc = EDC.Config()
    assert edc.jitter == 0 and edc.r_bn == pytest.approx(0.01 * 0.5) and edc.class_weight == 1
    cifar = {**dataclasses.asdict(edc), **_preset(EDC, "cifar10")}
    assert cifar["flatness"] == 0 and cifar["jitter"] == 0 and cifar["r_bn"] == 0.005
    assert cifar["crop"] == "fixed" and cifar["crop_min"] == 0.08


@pytest.mark.parametrize(
    "name,crop,side,schedule",
    [
        ("edc", "auto", 28, "none"),  # the default: no crops below CROP_FROM_PIXELS
        ("edc", "auto", 64, "fixed"),  # EDC's scripts' crops from it up
        ("sre2l", "auto", 224, "fixed"),
        ("cda", "auto", 63, "none"),
        ("cda", "auto", 64, "cosine"),
        ("edc", "fixed", 28, "fixed"),  # a schedule given is kept at any size
        ("sre2l", "none", 224, "none"),
    ],
)
def test_auto_crops_follow_the_scripts_from_64_pixels_only(name, crop, side, schedule):
    from ddkit.methods import create_method
    from ddkit.methods.decoupled.methods import CROP_FROM_PIXELS

    assert CROP_FROM_PIXELS == 64
    method = create_method(name, crop=crop)
    assert method.crop_schedule((side, side + 5)) == schedule
    assert create_method("edc").config.crop == "auto"
