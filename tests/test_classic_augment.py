"""DC's per-image evaluation augmentation (ddkit.augment.classic) and the ``dc_aug`` protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddkit.augment.classic import ClassicAugment, dc_strategy, rotate_about_centre
from ddkit.data import DatasetSpec
from ddkit.errors import UnknownNameError
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import Augmenter


def _images(n: int = 6, size: int = 12) -> torch.Tensor:
    return torch.rand(n, 2, size, size, generator=torch.Generator().manual_seed(3))


def _crop_loop(x: torch.Tensor, shifts: torch.Tensor, crop: int) -> torch.Tensor:
    """The reference's crop, one image at a time: pad with the batch's channel means, cut."""
    mean = x.mean(dim=(0, 2, 3))
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(len(x)):
        canvas = mean[:, None, None].expand(-1, h + 2 * crop, w + 2 * crop).clone()
        canvas[:, crop : crop + h, crop : crop + w] = x[i]
        r, c = int(shifts[0, i]) + crop, int(shifts[1, i]) + crop
        out[i] = canvas[:, r : r + h, c : c + w]
    return out


def _scale_loop(x: torch.Tensor, new_h: list[int], new_w: list[int]) -> torch.Tensor:
    """The reference's scale: nearest resize, centred on a zero square canvas, centre cut."""
    out = torch.empty_like(x)
    _, c, h, w = x.shape
    for i in range(len(x)):
        nh, nw = new_h[i], new_w[i]
        tmp = F.interpolate(x[i : i + 1], [nh, nw])[0]
        m = max(nh, nw, h, w)
        canvas = torch.zeros(c, m, m)
        r, q = (m - nh) // 2, (m - nw) // 2
        canvas[:, r : r + nh, q : q + nw] = tmp
        r, q = (m - h) // 2, (m - w) // 2
        out[i] = canvas[:, r : r + h, q : q + w]
    return out


def test_crop_matches_the_per_image_reference() -> None:
    x = _images()
    aug = ClassicAugment("crop")
    got = aug._crop(x, x.mean(dim=(0, 2, 3)), torch.Generator().manual_seed(5))
    shifts = torch.randint(-4, 4, (2, len(x)), generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, _crop_loop(x, shifts, 4))


def test_scale_matches_the_per_image_reference() -> None:
    x = _images(n=8)
    aug = ClassicAugment("scale")
    got = aug._scale(x, x.mean(dim=(0, 2, 3)), torch.Generator().manual_seed(7))
    f = torch.rand(2, len(x), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    f = f * 0.4 + 0.8
    new_h, new_w = (f[0] * 12).long().tolist(), (f[1] * 12).long().tolist()
    assert len(set(new_h + new_w)) > 2  # the draw exercises both shrinking and growing
    assert torch.equal(got, _scale_loop(x, new_h, new_w))


def test_rotation_is_exact_on_quarter_turns_and_fills_the_corners() -> None:
    x = _images(n=2)
    assert torch.allclose(rotate_about_centre(x, torch.zeros(2), 0.5), x, atol=1e-5)
    quarter = rotate_about_centre(x, torch.full((2,), 90.0), 0.5)
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4) or torch.allclose(
        quarter, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-4
    )
    ones = torch.ones(1, 1, 15, 15)
    turned = rotate_about_centre(ones, torch.tensor([45.0]), 0.25)
    assert turned[0, 0, 0, 0] == pytest.approx(0.25, abs=1e-5)  # a corner leaves the image
    assert turned[0, 0, 7, 7] == pytest.approx(1.0, abs=1e-5)  # the centre stays


def test_one_family_per_image_and_same_seed_same_batch() -> None:
    x = _images(n=32)
    aug = ClassicAugment("crop_scale_rotate")
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and not torch.equal(a, x)
    assert torch.equal(ClassicAugment("")(x, torch.Generator()), x)


def test_strategy_by_dataset_and_unknown_family() -> None:
    assert dc_strategy("mnist") == dc_strategy("mnist5k") == "crop_scale_rotate"
    assert dc_strategy("fashionmnist") == dc_strategy("cifar10") == ""  # as DC's code
    with pytest.raises(UnknownNameError, match="unknown DC augmentation 'flip'"):
        ClassicAugment("crop_flip")


def test_dc_aug_protocol_augments_mnist_only() -> None:
    p = get_protocol("dc_aug")
    assert p.augment == "dc" and p.epochs == 1000  # DC's code: 1000 epochs when augmenting
    x = _images(n=16, size=28)[:, :1]
    t = torch.zeros(16, dtype=torch.long)
    mnist = DatasetSpec("mnist", 10, 1, (28, 28), (0.5,), (0.5,))
    cifar = DatasetSpec("cifar10", 10, 1, (28, 28), (0.5,), (0.5,))
    out, _ = Augmenter.from_protocol(p, mnist)(x, t, torch.Generator().manual_seed(0))
    assert not torch.equal(out, x)
    same, _ = Augmenter.from_protocol(p, cifar)(x, t, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)
