"""Tests for ddkit.augment.dsa: gradcheck per family, Siamese replay, known values, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddkit.augment import DSA, FAMILIES, DSAParams, default_strategy
from ddkit.errors import ConfigError, DataError, UnknownNameError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


def _params(family: str, n: int = 1, **values) -> DSAParams:
    return DSAParams(
        (family,), {k: torch.as_tensor(v).reshape(n) for k, v in values.items()}, shared=(n == 1)
    )


# fixed parameters for every family (away from any kink; all ops are linear in x anyway)
FIXED = {
    "color": dict(brightness=[0.3, 0.8], saturation=[0.6, 0.2], contrast=[0.1, 0.9]),
    "crop": dict(crop_dy=[1, -1], crop_dx=[-1, 0]),
    "cutout": dict(cutout_cy=[2, 5], cutout_cx=[0, 3]),
    "flip": dict(flip=[True, False]),
    "scale": dict(scale_x=[0.9, 1.13], scale_y=[1.1, 0.87]),
    "rotate": dict(rotate=[0.17, -0.21]),
}


@pytest.fixture(autouse=True)
def _global_rng_untouched():
    state = torch.random.get_rng_state()
    yield
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG was used"


@pytest.mark.parametrize("family", FAMILIES)
def test_gradcheck_per_family(family: str) -> None:
    dsa = DSA(family)
    p = _params(family, 2, **FIXED[family])
    x = _x(2, 2, 6, 6, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: dsa.apply(t, p), (x,))


@pytest.mark.parametrize("family", FAMILIES)
def test_shape_dtype_and_siamese_replay(family: str) -> None:
    dsa = DSA(family)
    for dtype in (torch.float32, torch.float64):
        p = dsa.sample(1, _gen(3), shared=True)
        a, b = _x(3, 3, 8, 8, seed=1, dtype=dtype), _x(5, 3, 8, 8, seed=2, dtype=dtype)
        out = dsa.apply(torch.cat([a, b]), p)
        assert out.shape == (8, 3, 8, 8) and out.dtype == dtype
        torch.testing.assert_close(out, torch.cat([dsa.apply(a, p), dsa.apply(b, p)]))
        # shared params give every sample the same transform: identical inputs -> identical outputs
        same = dsa.apply(a[:1].expand(4, -1, -1, -1), p)
        torch.testing.assert_close(same, same[:1].expand_as(same))


@pytest.mark.parametrize("mode", ["one", "all"])
def test_determinism_and_per_sample_draws(mode: str) -> None:
    dsa = DSA(mode=mode)
    x = _x(6, 3, 8, 8)
    p1 = dsa.sample(6, _gen(7), shared=False)
    p2 = dsa.sample(6, _gen(7), shared=False)
    assert p1.families == p2.families
    assert all(torch.equal(p1.values[k], p2.values[k]) for k in p1.values)
    assert torch.equal(dsa(x, _gen(11)), dsa(x, _gen(11)))
    assert p1.batch_size == 6 and not p1.shared
    if mode == "all":
        assert p1.families == FAMILIES
        assert set(p1.values) == {
            "brightness",
            "saturation",
            "contrast",
            "crop_dy",
            "crop_dx",
            "cutout_cy",
            "cutout_cx",
            "flip",
            "scale_x",
            "scale_y",
            "rotate",
        }
    else:
        assert len(p1.families) == 1


def test_one_mode_draws_every_family_and_all_mode_changes_input() -> None:
    dsa = DSA()
    seen = {dsa.sample(1, _gen(s)).family for s in range(60)}
    assert seen == set(FAMILIES)
    x = _x(2, 3, 8, 8)
    assert not torch.equal(DSA(mode="all")(x, _gen(0)), x)


def test_per_sample_params_need_matching_batch() -> None:
    dsa = DSA("color")
    p = dsa.sample(4, _gen(), shared=False)
    with pytest.raises(DataError, match="4 samples"):
        dsa.apply(_x(3, 3, 8, 8), p)
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        dsa.apply(_x(3, 8, 8), p)


def test_params_to_device_and_image_size_resolution() -> None:
    dsa = DSA("crop_cutout", mode="all")
    p = dsa.sample(1, _gen(5), image_size=(8, 8)).to("cpu")
    assert p.values["crop_dy"].dtype == torch.int64
    assert p.values["crop_dy"].abs().max() <= 1  # round(8 / 8) = 1
    q = dsa.sample(1, _gen(5))  # fractions, resolved at apply time
    assert q.values["crop_dy"].is_floating_point()
    x = _x(2, 3, 8, 8)
    assert torch.equal(dsa.apply(x, p), dsa.apply(x, q))


def test_ranges_match_reference() -> None:
    dsa = DSA(mode="all")
    p = dsa.sample(4000, _gen(1), shared=False, image_size=(32, 32))
    v = p.values
    for k in ("brightness", "saturation", "contrast"):
        assert 0 <= v[k].min() and v[k].max() < 1
    for k in ("scale_x", "scale_y"):
        assert v[k].min() >= 1 / 1.2 and v[k].max() <= 1.2
    assert v["rotate"].abs().max() <= math.radians(15)
    assert set(v["crop_dy"].tolist()) == set(range(-4, 5))  # round(32 * 0.125) = 4
    assert set(v["cutout_cy"].tolist()) == set(range(0, 33))  # even cutout: randint(0, 33)
    assert 0.45 < v["flip"].double().mean() < 0.55


# ---------------------------------------------------------------- known values


def test_brightness_known_value() -> None:
    dsa = DSA("color")
    x = _x(2, 3, 5, 5, dtype=torch.float64)
    # saturation r=0.5 -> factor 1; contrast r=0.5 -> factor 1: only brightness (r - 0.5) remains
    p = _params("color", 1, brightness=0.8, saturation=0.5, contrast=0.5)
    torch.testing.assert_close(dsa.apply(x, p), x + 0.3)


def test_color_matches_plain_formula() -> None:
    dsa = DSA("color")
    x = _x(2, 3, 5, 5, dtype=torch.float64)
    p = _params("color", 2, **FIXED["color"])
    out = dsa.apply(x, p)
    for i in range(2):
        b, s, c = (float(p.values[k][i]) for k in ("brightness", "saturation", "contrast"))
        y = x[i] + (b - 0.5)
        y = (y - y.mean(0, keepdim=True)) * (2 * s) + y.mean(0, keepdim=True)
        y = (y - y.mean()) * (c + 0.5) + y.mean()
        torch.testing.assert_close(out[i], y)


def test_flip_flips() -> None:
    dsa = DSA("flip")
    x = _x(2, 3, 4, 6)
    out = dsa.apply(x, _params("flip", 2, flip=[True, False]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


def test_crop_moves_pixel_and_zero_pads() -> None:
    dsa = DSA("crop")
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    out = dsa.apply(x, _params("crop", 1, crop_dy=1, crop_dx=-2))  # out[i, j] = x[i+1, j-2]
    assert out[0, 0, 2, 6] == 1.0 and out.sum() == 1.0
    ones = dsa.apply(torch.ones(1, 1, 8, 8), _params("crop", 1, crop_dy=1, crop_dx=-2))
    assert ones[0, 0, 7].sum() == 0 and ones[0, 0, :, :2].sum() == 0 and ones.sum() == 7 * 6


def test_crop_matches_reference_pad_then_index() -> None:
    dsa = DSA("crop")
    x = _x(3, 2, 8, 8)
    dy, dx = torch.tensor([1, -1, 0]), torch.tensor([-1, 1, 1])
    out = dsa.apply(x, _params("crop", 3, crop_dy=dy, crop_dx=dx))
    pad = F.pad(x, [1, 1, 1, 1])
    for b in range(3):
        r = (torch.arange(8) + dy[b] + 1).clamp(0, 9)
        c = (torch.arange(8) + dx[b] + 1).clamp(0, 9)
        torch.testing.assert_close(out[b], pad[b][:, r][:, :, c])


def test_cutout_zeroes_expected_region() -> None:
    dsa = DSA("cutout")
    out = dsa.apply(torch.ones(1, 2, 8, 8), _params("cutout", 1, cutout_cy=3, cutout_cx=7))
    expect = torch.ones(8, 8)
    expect[1:5, 5:8] = 0  # 4x4 square from (3-2, 7-2), clipped at the right border
    assert torch.equal(out[0, 0], expect) and torch.equal(out[0, 1], expect)


def test_scale_and_rotate_identity_and_known_rotation() -> None:
    x = _x(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(
        DSA("scale").apply(x, _params("scale", 1, scale_x=1.0, scale_y=1.0)), x
    )
    torch.testing.assert_close(DSA("rotate").apply(x, _params("rotate", 1, rotate=0.0)), x)
    # rotating a square image by 90 degrees is an exact index permutation
    out = DSA("rotate").apply(x, _params("rotate", 1, rotate=math.pi / 2))
    # out[i, j] = x[j, n-1-i]; the angle is stored in float32, hence the tolerance
    torch.testing.assert_close(out, x.flip(-1).transpose(-1, -2), atol=1e-5, rtol=1e-5)


def test_identity_strategy() -> None:
    x = _x(2, 3, 4, 4)
    for s in ("none", "None", ""):
        assert torch.equal(DSA(s)(x, _gen()), x)


# ---------------------------------------------------------------- errors, strategies


def test_unknown_op_error() -> None:
    with pytest.raises(UnknownNameError) as err:
        DSA("color_blur_flip")
    msg = str(err.value)
    assert "'blur'" in msg and "color, crop, cutout, flip, scale, rotate" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError):
        DSA(mode="many")


def test_default_strategy() -> None:
    assert default_strategy(1, "mnist") == "color_crop_cutout_scale_rotate"
    assert default_strategy(1, "FashionMNIST") == "color_crop_cutout_scale_rotate"
    assert default_strategy(3, "svhn") == "color_crop_cutout_scale_rotate"
    assert default_strategy(1, "digits") == "color_crop_cutout_scale_rotate"
    assert default_strategy(3, "cifar10") == "color_crop_cutout_flip_scale_rotate"
