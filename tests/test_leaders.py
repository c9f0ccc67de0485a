"""Issue 37's family leaders in this folder's families: m3d and ncfm (distribution matching) and
latent-prototypes (generative): their losses, k-means, and runs from the API and the CLI."""

from __future__ import annotations

import pytest
import torch

from ddkit.cli import main
from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.generative.prototypes import kmeans
from ddkit.methods.matching.mmd import gaussian_mmd
from ddkit.methods.matching.ncfm import cf_loss
from ddkit.testing import method_test_overrides, tiny_digits


def _features(seed: int, k: int = 3, n: int = 40, f: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((k, n, f), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("bandwidth, kernels", [("median", 1), (2.0, 1), ("median", 3)])
def test_mmd_is_zero_for_the_same_set_and_grows_with_a_shift(bandwidth, kernels):
    x = _features(0)
    perm = x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))]
    same = gaussian_mmd(x, perm, bandwidth, kernels=kernels)
    assert same.abs().max() < 1e-12
    shifts = [
        gaussian_mmd(x, _features(2) + s, bandwidth, kernels=kernels) for s in (0.0, 1.0, 3.0)
    ]
    for small, large in zip(shifts, shifts[1:]):
        assert (large > small).all()
    assert (shifts[1] > 1e-3).all()


def test_mmd_sees_a_change_of_spread_that_the_mean_misses():
    """The point of m3d over dm: equal means, different variances still count."""
    x = _features(0, n=200)
    x = x - x.mean(1, keepdim=True)
    wide = 3 * x
    assert ((x.mean(1) - wide.mean(1)) ** 2).sum() < 1e-20  # dm's loss is zero here
    assert (gaussian_mmd(x, wide) > 1e-2).all()


def test_cf_loss_is_zero_for_the_same_features_and_grows_with_a_mean_shift():
    x = torch.nn.functional.normalize(_features(0), dim=-1)
    freqs = torch.randn((3, 512, 6), generator=torch.Generator().manual_seed(3)).double()
    perm = x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))]
    # only the phase term's clamp at 1e-12 is left: sqrt(0.5 * 1e-12)
    assert cf_loss(x, perm, freqs).max() < 1e-6
    losses = [cf_loss(x, x + s, freqs) for s in (0.05, 0.2, 0.5)]
    for small, large in zip(losses, losses[1:]):
        assert (large > small).all()
    assert (losses[0] > 1e-3).all()


def test_cf_loss_with_equal_weights_is_the_distance_of_the_characteristic_functions():
    x, y = _features(0), _features(1) + 0.3
    freqs = torch.randn((3, 64, 6), generator=torch.Generator().manual_seed(3)).double()

    def phi(z):
        return torch.exp(1j * (freqs @ z.transpose(1, 2))).mean(2)

    expected = (phi(x) - phi(y)).abs().mean(1)
    assert torch.allclose(cf_loss(x, y, freqs, 1.0, 1.0), expected, atol=1e-10)


def test_kmeans_finds_separable_blobs():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(3).repeat_interleave(30)
    pts = centres[labels] + 0.3 * torch.randn((90, 2), generator=g)
    order = torch.randperm(90, generator=g)
    pts, labels = pts[order], labels[order]
    # two groups: the blobs, and the blobs shifted, with padding rows in the second group
    points = torch.stack([pts, torch.cat([pts[:80] + 5.0, torch.zeros((10, 2))])])
    valid = torch.ones((2, 90), dtype=torch.bool)
    valid[1, 80:] = False
    found, assign = kmeans(points, valid, 3, torch.Generator().manual_seed(1), iterations=20)
    for group, shift, rows in ((0, 0.0, slice(0, 90)), (1, 5.0, slice(0, 80))):
        # every true blob is one cluster, and every cluster sits on a true centre
        a, true = assign[group, rows], labels[rows]
        for c in range(3):
            assert a[true == c].unique().numel() == 1
        assert a.unique().numel() == 3
        dist = torch.cdist(found[group], centres + shift)
        assert dist.min(1).values.max() < 0.3


def test_kmeans_refuses_groups_smaller_than_k():
    with pytest.raises(ConfigError, match="at least 3 points"):
        kmeans(torch.zeros((1, 2, 2)), torch.ones((1, 2), dtype=torch.bool), 3, torch.Generator())


def test_latent_prototypes_returns_ipc_decoded_rows_per_class():
    train = tiny_digits().train
    method = create_method("latent-prototypes", **method_test_overrides("latent-prototypes"))
    syn = method.fit(train, 3, seed=0)
    assert syn.images.shape == (3 * train.spec.num_classes, *train.spec.shape)
    assert torch.equal(syn.labels, torch.arange(train.spec.num_classes).repeat_interleave(3))
    # the images are the decoder's output at the stored centres
    with torch.no_grad():
        decoded = method.autoencoder_.decoder_(method.state_["centres"].flatten(0, 1))
    assert torch.allclose(syn.images, decoded)
    assert method.state_["centres"].shape[:2] == (train.spec.num_classes, 3)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("m3d", {"reweight": "kde"}, "reweight must be 'none'"),
        ("m3d", {"bandwidth": -1.0}, "bandwidth must be 'median' or a number > 0"),
        ("ncfm", {"zca": True}, "zca must be false"),
        ("ncfm", {"alpha": 0.0, "beta": 0.0}, "alpha \\+ beta must be > 0"),
        ("ncfm", {"num_freqs": 0}, "num_freqs"),
        ("ncfm", {"momentum_img": 0.9}, "momentum_img does not apply"),
    ],
)
def test_bad_options_are_refused_in_one_line(name, options, message):
    with pytest.raises(ConfigError, match=message):
        create_method(name, **options)


def test_ncfm_matches_with_interpolated_experts():
    train = tiny_digits().train
    method = create_method("ncfm", **method_test_overrides("ncfm"))
    method.start(train, 1, seed=0)
    buf = method.buffer_
    net = method._network(torch.Generator().manual_seed(5))
    theta = torch.nn.utils.parameters_to_vector(net.parameters())
    final = torch.nn.utils.parameters_to_vector(method.final_.parameters())
    starts = [buf.params(j, 0) for j in range(len(buf))]
    ends = [buf.params(j, buf.epochs) for j in range(len(buf))]
    j = next(i for i, e in enumerate(ends) if torch.equal(e, final))
    # theta = l * start + (1 - l) * end for one l in [0, 1]
    d = starts[j] - ends[j]
    mix = float((theta - ends[j]) @ d / (d @ d))
    assert 0.0 <= mix <= 1.0
    assert torch.allclose(theta, ends[j] + mix * d, atol=1e-5)


@pytest.mark.parametrize("name", ["m3d", "ncfm", "latent-prototypes"])
def test_distil_from_the_command_line(name, tmp_path, capsys):
    sets = [f"--set={k}={v}" for k, v in method_test_overrides(name).items() if k != "iterations"]
    out = tmp_path / "run"
    code = main(
        ["distill", "--dataset", "digits", "--method", name, "--ipc", "1", "--iterations", "2",
         "--quiet", "--out", str(out), *sets]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (out / "synthetic" / "data.safetensors").exists()
