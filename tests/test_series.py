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
from ddkit.testing import tiny_series

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
