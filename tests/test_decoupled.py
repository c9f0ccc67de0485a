"""Decoupled distillation: BN-statistic loss, teachers, SRe2L, RDED, relabeling (the soft-label
protocols, storage accounting and DD-Ranking-style scores are in test_protocols.py)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError
from ddkit.eval.teacher import TeacherRecipe, load_teacher, train_teacher
from ddkit.methods import create_method
from ddkit.methods.decoupled.bn import BNStatLoss, bn_layers, bn_statistic_loss
from ddkit.models import create_model
from ddkit.testing import method_test_overrides, tiny_digits


def _model(name: str, seed: int = 0, size: int = 8, k: int = 10) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, num_classes=k, in_channels=1, image_size=size)


def _bn_model_with_stats(seed: int = 0) -> torch.nn.Module:
    net = _model("convnet3-bn-w8", seed)
    g = torch.Generator().manual_seed(seed + 1)
    for m in bn_layers(net):
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


@pytest.fixture(scope="module")
def tiny_teacher(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "t"
    recipe = TeacherRecipe("convnet3-bn-w8", epochs=2, seed=0)
    net = train_teacher(tiny.train, recipe, val=tiny.test, out_dir=folder)
    return net, folder


# ----------------------------------------------------------------------------- BN statistics
@pytest.mark.parametrize("groups", [1, 3])
def test_bn_statistic_loss_matches_float64_reference(groups):
    net = _bn_model_with_stats()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    _, loss = bn_statistic_loss(net, x, groups=groups, first_multiplier=10.0)

    # plain float64 reference: record each BN layer's input, then loop over groups and channels
    ref_net = _bn_model_with_stats().double()
    inputs: list[np.ndarray] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach().numpy().copy()))
        for m in bn_layers(ref_net)
    ]
    with torch.no_grad():
        ref_net(x.double())
    for h in hooks:
        h.remove()
    total = 0.0
    for li, (inp, m) in enumerate(zip(inputs, bn_layers(ref_net))):
        rm, rv = m.running_mean.numpy(), m.running_var.numpy()
        n = inp.shape[0] // groups
        layer = 0.0
        for g in range(groups):
            part = inp[g * n : (g + 1) * n]
            dm, dv = 0.0, 0.0
            for c in range(inp.shape[1]):
                vals = part[:, c].reshape(-1)
                mu = sum(float(v) for v in vals) / len(vals)
                var = sum((float(v) - mu) ** 2 for v in vals) / len(vals)
                dm += (mu - rm[c]) ** 2
                dv += (var - rv[c]) ** 2
            layer += math.sqrt(dm) + math.sqrt(dv)
        total += layer * (10.0 if li == 0 else 1.0)
    assert float(loss.detach()) == pytest.approx(total, rel=1e-4)


def test_bn_statistic_loss_gradcheck_and_hooks_removed():
    net = _bn_model_with_stats().double()
    x = torch.randn(
        4,
        1,
        8,
        8,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(
        lambda z: bn_statistic_loss(net, z, groups=2)[1], (x,), eps=1e-6, atol=1e-5
    )
    assert all(not m._forward_hooks for m in bn_layers(net))


def test_bn_statistic_loss_needs_batchnorm():
    with pytest.raises(ConfigError, match="BatchNorm"):
        BNStatLoss(_model("convnet3"))


# ----------------------------------------------------------------------------- teacher
def test_teacher_save_load_round_trip(tiny_teacher, tiny):
    net, folder = tiny_teacher
    back, meta = load_teacher(folder)
    sa, sb = net.state_dict(), back.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert meta["model"] == "convnet3-bn-w8" and meta["epochs"] == 2 and meta["seed"] == 0
    assert meta["spec"]["name"] == tiny.train.spec.name and 0 <= meta["train_accuracy"] <= 1
    assert meta["val_accuracy"] is not None and not back.training
    with torch.no_grad():
        assert torch.equal(net(tiny.test.images), back(tiny.test.images))
    # safetensors, not a pickle: 8-byte little-endian header length, then a JSON header
    raw = (folder / "teacher.safetensors").read_bytes()
    assert raw[8:9] == b"{" and int.from_bytes(raw[:8], "little") < len(raw)


def test_teacher_tampered_or_missing_is_refused(tiny_teacher, tmp_path):
    import shutil

    _, folder = tiny_teacher
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    w = bad / "teacher.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="checksum"):
        load_teacher(bad)
    with pytest.raises(FileFormatError, match="no teacher"):
        load_teacher(tmp_path / "nothing")


def test_teacher_training_is_seeded_and_leaves_global_rng(tiny):
    rng = torch.random.get_rng_state()
    a = train_teacher(tiny.train, TeacherRecipe("convnet3-bn-w8", epochs=1, seed=5))
    b = train_teacher(tiny.train, TeacherRecipe("convnet3-bn-w8", epochs=1, seed=5))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_teacher_cli(tmp_path, capsys):
    from ddkit.cli import build_parser

    args = build_parser().parse_args(
        [
            "teacher",
            "--dataset",
            "digits",
            "--model",
            "convnet3-bn-w8",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "t"),
        ]
    )
    assert args.func(args) == 0
    assert "val accuracy" in capsys.readouterr().out
    _, meta = load_teacher(tmp_path / "t")
    assert meta["dataset"] == "digits" and meta["epochs"] == 1


# ----------------------------------------------------------------------------- methods
def _overrides(name: str, tmp_path=None, **kw):
    out = method_test_overrides(name)
    out.update(kw)
    return out


def test_rded_is_deterministic_with_a_seed_and_changes_with_another(tiny):
    cfg = _overrides("rded", labels="soft", num_crops=3, scale=(0.5, 1.0))  # random crops
    a = create_method("rded", **cfg).fit(tiny.train, 2, seed=0)
    b = create_method("rded", **cfg).fit(tiny.train, 2, seed=0)
    c = create_method("rded", **cfg).fit(tiny.train, 2, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.soft and a.meta["teacher_dir"] and a.meta["factor"] == 1


def test_rded_crops_whole_images_below_64_px_and_as_its_scripts_from_64_up(tiny):
    m = create_method("rded", **_overrides("rded", num_crops=2))
    m.fit(tiny.train, 2, seed=0)
    h, w = tiny.train.spec.image_size
    assert (m.state_["boxes"] == torch.tensor([0, 0, h, w])).all()  # the whole image
    big = dataclasses.replace(tiny.train.spec, image_size=(64, 64))
    assert m._scale(SimpleNamespace(spec=big)) == (0.08, 1.0)  # the scripts' RandomResizedCrop
    assert create_method("rded", scale=(0.5, 1.0))._scale(tiny.train) == (0.5, 1.0)


def test_rded_keeps_the_most_realistic_crops(tiny):
    import torch.nn.functional as F

    m = create_method("rded", **_overrides("rded", num_crops=3, candidates=None))
    m.fit(tiny.train, 2, seed=0)
    scores = m.state_["scores"]  # (K, n_patch), selected crops' CE, best first
    assert torch.equal(scores, scores.sort(dim=1, stable=True).values)
    # the selected crops are the class's lowest-CE images (one crop each); recompute one class
    src, boxes = m.state_["src"][0], m.state_["boxes"][0]
    x = m._score_input(tiny.train.images[src], boxes, (8, 8), (8, 8))
    with torch.no_grad():
        ce = F.cross_entropy(m.teacher_(x), tiny.train.labels[src], reduction="none")
    torch.testing.assert_close(ce, scores[0])
    assert len(set(src.tolist())) == len(src)  # diverse: distinct source images


def test_rded_stitches_factor_two(tmp_path):
    from ddkit.data import from_arrays

    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 16, 16, generator=g)
    y = torch.arange(120) % 3
    splits = from_arrays(x, y, name="toy16", num_classes=3)
    m = create_method(
        "rded", **_overrides("rded", labels="soft", store_region_labels=True, factor=2)
    )
    syn = m.fit(splits.train, 2, seed=0)
    assert syn.meta["factor"] == 2 and syn.images.shape == (6, 1, 16, 16)
    assert syn.extras["region_labels"].shape == (6, 4, 3)
    torch.testing.assert_close(
        syn.labels, syn.extras["region_labels"].float().mean(1), atol=2e-3, rtol=0
    )


def test_sre2l_reduces_its_loss_and_records_the_teacher(tiny):
    from ddkit.methods import Callback

    log = []

    class Rec(Callback):
        def on_step_end(self, method, iteration, metrics):
            log.append(metrics)

    m = create_method("sre2l", **_overrides("sre2l", iterations=30, labels="soft"))
    syn = m.fit(tiny.train, 2, seed=0, callbacks=[Rec()])
    assert log[-1]["loss"] < log[0]["loss"]
    assert syn.soft and syn.meta["label_temperature"] == 4.0 and "label_agreement" in syn.meta
    lo = (0 - tiny.train.spec.mean[0]) / tiny.train.spec.std[0]
    hi = (1 - tiny.train.spec.mean[0]) / tiny.train.spec.std[0]
    assert syn.images.min() >= lo - 1e-5 and syn.images.max() <= hi + 1e-5
    back, _ = load_teacher(syn.meta["teacher_dir"])
    assert back.teacher_meta_["model"] == "convnet3-bn-w16"


def test_decoupled_methods_reject_a_teacher_for_other_data(tiny, tiny_teacher, tmp_path):
    from ddkit.data import from_arrays

    _, folder = tiny_teacher
    other = from_arrays(torch.rand(60, 16, 16), torch.arange(60) % 3, name="toy16", num_classes=3)
    with pytest.raises(ConfigError, match="does not fit"):
        create_method("rded", teacher=str(folder)).fit(other.train, 2, seed=0)


# ----------------------------------------------------------------------------- relabel
def test_relabel_per_image_and_per_view_shapes(tiny, tiny_teacher):
    from ddkit.eval.relabel import decompress_view_labels, expand_views, relabel

    net, _ = tiny_teacher
    syn = SyntheticSet.from_real(tiny.train, torch.arange(12))
    per_image = relabel(syn, net, temperature=2.0)
    assert per_image.labels.shape == (12, 10) and per_image.meta["label_temperature"] == 2.0
    torch.testing.assert_close(per_image.labels.sum(1), torch.ones(12))

    g = torch.Generator().manual_seed(0)
    views = relabel(syn, net, temperature=2.0, views=3, generator=g, topk=4)
    ex = views.extras
    assert ex["view_boxes"].shape == (12, 3, 4) and ex["view_boxes"].dtype == torch.int16
    assert (
        ex["view_flip"].dtype == torch.uint8 and ex["view_flip"].sum() == 0
    )  # no flips for digits
    assert ex["view_values"].shape == (12, 3, 4) and ex["view_values"].dtype == torch.float16
    assert ex["view_indices"].shape == (12, 3, 4) and ex["view_indices"].dtype == torch.int16
    full = decompress_view_labels(views)
    assert full.shape == (12, 3, 10)
    torch.testing.assert_close(full.sum(-1), torch.ones(12, 3))
    top = torch.gather(full, -1, ex["view_indices"].long())
    torch.testing.assert_close(top, ex["view_values"].float(), atol=2e-3, rtol=0)
    big = expand_views(views)
    assert big.images.shape == (36, 1, 8, 8) and big.labels.shape == (36, 10)
    again = relabel(
        syn, net, temperature=2.0, views=3, generator=torch.Generator().manual_seed(0), topk=4
    )
    assert all(torch.equal(ex[k], again.extras[k]) for k in ex)
    no_idx = relabel(syn, net, views=2, generator=torch.Generator().manual_seed(0))
    assert "view_indices" not in no_idx.extras and no_idx.extras["view_values"].shape == (12, 2, 10)


def test_relabel_crops_one_teacher_batch_of_views_at_a_time(tiny, tiny_teacher, monkeypatch):
    """Issue 73: relabelling cropped all N x V views at once (ImageNet IPC 50 with 4 views:
    about 120 GB of crops); it now crops each teacher batch of views when it asks the teacher,
    and refuses in one line when the labels themselves cannot fit the memory budget."""
    import ddkit.eval.relabel as relabel_module
    from ddkit.meter import BUDGET_ENV

    net, _ = tiny_teacher
    syn = SyntheticSet.from_real(tiny.train, torch.arange(200))
    sizes = []
    real_crop = relabel_module.crop_resize

    def counted(x, *args, **kwargs):
        sizes.append(len(x))
        return real_crop(x, *args, **kwargs)

    monkeypatch.setattr(relabel_module, "crop_resize", counted)
    out = relabel_module.relabel(syn, net, views=6, generator=torch.Generator().manual_seed(0))
    assert out.extras["view_values"].shape == (200, 6, 10)
    assert sum(sizes) == 1200 and max(sizes) <= 512 and len(sizes) == 3
    monkeypatch.setenv(BUDGET_ENV, str(10_000))
    with pytest.raises(ConfigError, match="relabel's soft labels of 200 images x 6 views"):
        relabel_module.relabel(syn, net, views=6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"expanded to 1,200 views .* \(teacher-kd\)"):
        relabel_module.expand_views(out)


def test_full_box_crop_is_identity():
    from ddkit.augment.crops import crop_resize, sample_boxes

    x = torch.randn(3, 2, 8, 8)
    boxes = torch.tensor([[0, 0, 8, 8]] * 3)
    torch.testing.assert_close(crop_resize(x, boxes, (8, 8)), x)
    torch.testing.assert_close(crop_resize(x, boxes, (8, 8), torch.tensor([True] * 3)), x.flip(3))
    b = sample_boxes(500, (8, 8), torch.Generator().manual_seed(0), scale=(0.25, 1.0))
    assert (
        (b[:, 0] >= 0).all() and (b[:, 0] + b[:, 2] <= 8).all() and (b[:, 1] + b[:, 3] <= 8).all()
    )


@pytest.mark.parametrize(
    "options, words",
    [
        ({"labels": "soft", "label_budget": "prune:2"}, "labels='views'"),
        ({"labels": "soft", "label_budget": "logits:5"}, "labels='views'"),
        ({"labels": "views", "label_views": 4, "label_budget": "prune:8"}, "R <= 4"),
    ],
)
def test_pruned_and_logit_budgets_are_refused_before_distilling(options, words):
    with pytest.raises(ConfigError, match=words) as e:
        create_method("rded", **options)
    assert "\n" not in str(e.value)
