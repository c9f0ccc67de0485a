"""Time series as a modality (issue 39): datasets and arrays, 1-D nets, series augmentation,
methods and learners, on fabricated series (ddkit.testing.tiny_series)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from ddkit.data import DATASETS
from ddkit.data.series import UCR_SETS, from_series, series_array
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.models import build_network, create_model
from ddkit.testing import method_test_overrides, tiny_series

SERIES_MODELS = ["conv1d", "conv1d-bn-k5", "conv1d-w16-max-d2", "resnet1d-w8", "resnet1d-w8-in"]


# ---------------------------------------------------------------------------- data


def test_from_series_lays_rows_out_as_channels_over_time():
    x = np.random.default_rng(0).normal(size=(30, 3, 20))
    splits = from_series(x, np.arange(30) % 3)
    spec = splits.spec
    assert spec.modality == "series" and spec.shape == (3, 1, 20)
    assert splits.train.images.shape == (24, 3, 1, 20) and len(splits.test) == 6
    # per-channel statistics over all steps: the stored train rows are standardised per channel
    flat = splits.train.images.transpose(0, 1).flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    univariate = from_series(x[:, 0], np.arange(30) % 3).spec
    assert univariate.shape == (1, 1, 20)


def test_from_series_refuses_unequal_lengths_in_one_line():
    rows = [np.zeros(10), np.ones(10), np.zeros(12)]
    with pytest.raises(DataError, match=r"unequal length \(row 2.*resample, pad or truncate") as e:
        from_series(rows, [0, 1, 0])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="test series have"):
        from_series(np.zeros((10, 8)), np.arange(10) % 2, np.zeros((4, 9)), [0, 1, 0, 1])


def test_from_series_refuses_missing_values_with_their_place():
    x = np.random.default_rng(0).normal(size=(10, 2, 16))
    x[7, 1, 5] = np.nan
    x[8, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"2 series hold missing \(NaN\).*row 7, step 5") as e:
        from_series(x, np.arange(10) % 2)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="at least 2 steps"):
        series_array(np.zeros((4, 1)))


def test_ucr_sets_are_registered_as_series():
    for ucr in UCR_SETS:
        assert getattr(DATASETS.get(ucr.name), "modality", None) == "series"


def test_a_ucr_set_loads_through_sktime_with_its_split():
    pytest.importorskip("sktime")
    from ddkit.data import load_dataset

    splits = load_dataset("italypowerdemand")
    assert splits.spec.modality == "series" and splits.spec.shape == (1, 1, 24)
    assert (len(splits.train), len(splits.test)) == (67, 1029)
    assert splits.spec.class_names == ("1", "2")


def test_series_set_round_trip_keeps_the_modality(tmp_path):
    data = tiny_series()
    syn = SyntheticSet.from_real(data.train, torch.arange(6))
    back = SyntheticSet.load(syn.save(tmp_path / "s"))
    assert back.spec == data.spec and back.spec.modality == "series"
    assert torch.equal(back.images, syn.images)


# ---------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", SERIES_MODELS)
@pytest.mark.parametrize("d,length", [(1, 24), (3, 150), (2, 5)])
def test_series_models_keep_the_contract(name, d, length):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(name, num_classes=4, in_channels=d, image_size=(1, length))
    x = torch.randn(3, d, 1, length, generator=torch.Generator().manual_seed(0))
    out, emb = model(x), model.embed(x)
    assert out.shape == (3, 4) and emb.shape == (3, model.num_features)
    torch.testing.assert_close(out, model.classifier(emb))
    assert not torch.allclose(emb[0], emb[1])
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_series_models_refuse_images_and_image_models_refuse_series():
    with pytest.raises(ConfigError, match=r"series rows laid out \(D, 1, L\).*8x8"):
        create_model("conv1d", num_classes=2, in_channels=1, image_size=8)
    with pytest.raises(ConfigError, match="does not take series rows; use one of: conv1d"):
        build_network("convnet", tiny_series().spec, 0)


def test_conv1d_is_a_one_dimensional_convolution():
    """A (1, k) kernel over the (D, 1, L) row equals torch's conv1d of the (D, L) series."""
    model = create_model(
        "conv1d-none-nopool-d1-k5", num_classes=2, in_channels=2, image_size=(1, 16)
    )
    conv = model.features[0][1]
    x = torch.randn(4, 2, 16, generator=torch.Generator().manual_seed(1))
    want = torch.nn.functional.conv1d(x, conv.weight[:, :, 0], conv.bias, padding=2)
    got = model.features[:2](x[:, :, None, :])[:, :, 0]
    torch.testing.assert_close(got, want)


def test_conv1d_copies_train_together_under_vmap():
    spec = tiny_series().spec
    nets = [build_network("conv1d-w8", spec, s).double() for s in range(2)]
    params, buffers = stack_module_state(nets)
    x = tiny_series().train.images[:5].double()
    out = vmap(lambda p, b: functional_call(nets[0], (p, b), (x,)))(params, buffers)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(x))


# ---------------------------------------------------------------------------- augmentation
from ddkit.augment import SeriesAugment  # noqa: E402
from ddkit.augment.series import SERIES_FAMILIES, hashed_normal  # noqa: E402
from ddkit.methods import create_method  # noqa: E402
from ddkit.methods.common import make_augment  # noqa: E402


def _batch(n=6, d=2, length=40, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, 1, length, generator=g, dtype=dtype)


@pytest.mark.parametrize("family", SERIES_FAMILIES)
@pytest.mark.parametrize("shared", [True, False])
def test_series_augmentations_are_seeded_and_keep_shapes(family, shared):
    aug, x = SeriesAugment(family), _batch()

    def run(seed):
        p = aug.sample(len(x), torch.Generator().manual_seed(seed), shared=shared)
        return aug.apply(x, p)

    a, b, c = run(1), run(1), run(2)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("family", SERIES_FAMILIES)
def test_series_augmentations_are_differentiable(family):
    aug = SeriesAugment(family)
    x = _batch(3, 2, 12, dtype=torch.float64).requires_grad_()
    p = aug.sample(3, torch.Generator().manual_seed(0), shared=False)
    assert torch.autograd.gradcheck(lambda t: aug.apply(t, p), (x,))


def test_one_draw_replays_on_any_grouping_of_rows():
    """DM augments classes that drew the same family in one call: with hashed jitter noise and
    per-row values that equals augmenting each class alone."""
    from ddkit.methods.matching.distribution import augment_per_class, sample_class_draws

    aug, x = SeriesAugment(mode="all"), _batch(12).view(3, 4, 2, 1, 40)
    draws = sample_class_draws(aug, 3, torch.Generator().manual_seed(0), (1, 40))
    want = torch.stack([aug.apply(x[k], draws[k]) for k in range(3)])
    torch.testing.assert_close(augment_per_class(aug, x, draws), want)


def test_hashed_noise_is_standard_normal_and_keyed():
    z = hashed_normal(torch.tensor([3, 3, 4]), 20000, torch.float64)
    assert torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])
    assert abs(float(z[2].mean())) < 0.03 and abs(float(z[2].std()) - 1) < 0.03


def test_window_slice_of_a_ramp_is_a_stretched_window_of_it():
    aug = SeriesAugment("slice")
    ramp = torch.arange(20.0).view(1, 1, 1, 20)
    out = aug.apply(ramp, aug.sample(1, torch.Generator().manual_seed(3)))[0, 0, 0]
    window = 18  # ceil(0.9 * 20)
    assert 0 <= float(out[0]) <= 20 - window and float(out[-1] - out[0]) == pytest.approx(17.0)
    assert torch.allclose(out.diff(), torch.full((19,), 17.0 / 19))


def test_matching_augmentation_fits_the_modality():
    series, image = tiny_series().spec, tiny_series().spec.__class__("d", 2, 1, (8, 8), (0,), (1,))
    assert isinstance(make_augment("auto", series), SeriesAugment)
    assert make_augment("jitter_slice", series).families == ("jitter", "slice")
    assert make_augment("none", series) is None
    with pytest.raises(ConfigError, match="needs images.*use augment='series' or 'none'") as e:
        make_augment("color_crop", series)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="needs series; dataset 'd' holds image rows"):
        make_augment("series", image)
    with pytest.raises(ConfigError, match="unknown series operation 'bogus'"):
        create_method("dm", augment="jitter_bogus")
    assert create_method("dm", augment="jitter_warp").config.augment == "jitter_warp"


# ---------------------------------------------------------------------------- methods


def test_dsa_refuses_a_series_in_one_line():
    with pytest.raises(
        ConfigError, match="'dsa' needs images; dataset 'tiny-series' holds series"
    ) as e:
        create_method("dsa", modality="series", iterations=1).fit(tiny_series().train, 1, seed=0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["dm", "dc", "kip", "mtt", "random", "herding", "kcenter"])
def test_same_seed_same_series_set(name):
    data = tiny_series().train

    cfg = {k: v for k, v in method_test_overrides(name).items() if k != "model"}

    def fit(seed):
        return create_method(name, modality="series", **cfg).fit(data, 2, seed=seed)

    a, b = fit(0), fit(0)
    assert a.spec.modality == "series" and a.images.shape == (6, 2, 1, 64)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    if name not in ("herding", "kcenter"):  # the greedy selectors do not depend on the seed
        assert not torch.equal(a.images, fit(1).images)


def test_conv1d_learns_a_separable_series_set():
    from ddkit.eval import evaluate

    data = tiny_series()
    syn = SyntheticSet.from_real(data.train, torch.arange(len(data.train)))
    report = evaluate(syn, data.test, "series", models=["conv1d-w16"], runs=1, epochs=40)
    assert report.results[0].accuracies[0] >= 0.9  # chance is 1/3


def test_series_learners_and_their_defaults():
    from ddkit.eval.learners import evaluate_learners, learner_names

    assert learner_names(None, "series") == ["rocket", "conv1d", "resnet1d", "knn"]
    with pytest.raises(ConfigError, match="learner 'rocket' takes series; this set holds table"):
        learner_names("rocket", "table")
    data = tiny_series()
    syn = create_method("herding", modality="series").fit(data.train, 5, seed=0)
    report = evaluate_learners(syn, data.test, "knn,conv1d", runs=1, epochs=5)
    assert [r.model for r in report.results] == ["knn", "conv1d"]
    assert report.protocol.name == "series" and report.results[0].accuracies[0] > 0.5


def test_series_learners_see_each_series_z_normalised():
    # a distilled series' level and scale are free; the learners judge its shape: the same
    # rows scaled by 5 and shifted by 3 (in real units) score as they are
    from dataclasses import replace

    from ddkit.data.series import znormalize
    from ddkit.eval.learners import evaluate_learners

    data = tiny_series()
    syn = SyntheticSet.from_real(data.train, torch.arange(0, len(data.train), 4))
    mean = torch.tensor(syn.spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(syn.spec.std).view(1, -1, 1, 1)
    real = syn.images * std + mean
    loud = replace(syn, images=(5 * real + 3 - mean) / std)
    a, b = (evaluate_learners(s, data.test, "knn", runs=1).results[0] for s in (syn, loud))
    assert a.accuracies == b.accuracies and a.accuracies[0] > 0.5
    z = znormalize(real)
    assert torch.allclose(z.mean(-1), torch.zeros(()), atol=1e-5)
    assert torch.allclose(z.std(-1, unbiased=False), torch.ones(()), atol=1e-4)
    assert torch.allclose(znormalize(5 * real + 3), z, atol=1e-4)


@pytest.mark.slow  # sktime's MiniRocket compiles with numba on its first use (minutes)
def test_rocket_learner_on_series():
    pytest.importorskip("sktime")
    from ddkit.eval.learners import evaluate_learners

    data = tiny_series()
    syn = SyntheticSet.from_real(data.train, torch.arange(len(data.train)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = evaluate_learners(syn, data.test, "rocket", runs=1)
        # numba's OpenMP layer sets the process's threads when it first runs: the learners
        # after rocket must still train on the threads torch had
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert report.results[0].accuracies[0] >= 0.9


def test_series_set_picture_is_per_class_line_plots(tmp_path):
    from PIL import Image

    syn = SyntheticSet.from_real(tiny_series().train, torch.arange(9))
    path = syn.save_grid(tmp_path / "grid.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > im.height  # three class columns, two channels
    with pytest.raises(DataError, match="series rows have no pixels"):
        syn.pixels()


def test_cli_distills_a_ucr_set_and_evaluates_it_by_learners(tmp_path, capsys):
    import json

    pytest.importorskip("sktime")
    from ddkit.cli import main

    out = tmp_path / "run"
    args = ["distill", "--dataset", "italypowerdemand", "--ipc", "2", "--quiet", "--out", str(out)]
    assert main([*args, "--method", "dm", "--iterations", "2"]) == 0
    syn = SyntheticSet.load(out / "synthetic")
    assert syn.spec.modality == "series" and syn.meta["config"]["model"] == "conv1d"
    assert syn.meta["config"]["augment"] == "auto" and (out / "grid.png").is_file()
    assert main(["evaluate", str(out), "--learners", "knn,conv1d", "--epochs", "2", "--runs", "1",
                 "--quiet"]) == 0  # fmt: skip
    report = json.loads((out / "eval.json").read_text())
    assert [r["model"] for r in report["results"]] == ["knn", "conv1d"]
    assert "conv1d" in capsys.readouterr().out


def test_without_the_timeseries_extra_the_sets_and_rocket_are_refused_in_one_line(monkeypatch):
    import sys

    from ddkit.data import load_dataset
    from ddkit.eval.learners import evaluate_learners

    monkeypatch.setitem(sys.modules, "sktime.datasets", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "sktime.transformations.panel.rocket", None)
    with pytest.raises(ConfigError, match=r"dataset 'gunpoint' needs .*ddkit\[timeseries\]") as e:
        load_dataset("gunpoint")
    assert "\n" not in str(e.value)
    syn = SyntheticSet.from_real(tiny_series().train, torch.arange(6))
    with pytest.raises(ConfigError, match=r"rocket needs .*ddkit\[timeseries\]"):
        evaluate_learners(syn, tiny_series().test, "rocket", runs=1)


def test_evaluation_augmentation_on_series_points_at_the_series_protocol():
    from ddkit.eval.train import Augmenter

    with pytest.raises(ConfigError, match="needs images.*use the 'series' protocol"):
        Augmenter(tiny_series().spec, "dsa")


@pytest.mark.parametrize("shape", [(20, 0), (20, 3, 0)])
def test_from_arrays_refuses_series_of_no_steps_in_one_line(shape):
    """Zero-length series through from_arrays (modality 'series') were refused as 'image
    statistics are not finite ... rescale the images', after a torch warning (issue 42)."""
    import warnings

    from ddkit.data import ArrayExtras, from_arrays

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"series rows hold no values \(shape"):
            from_arrays(np.zeros(shape), np.arange(20) % 2, extras=ArrayExtras(modality="series"))
