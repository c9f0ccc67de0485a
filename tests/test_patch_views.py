"""RDED's training views (``patches:F``, :mod:`ddkit.augment.patches`): strips shuffled whole,
per image, seeded; a crop of at least one patch; refused spellings in one line."""

from __future__ import annotations

import pytest
import torch

from ddkit.augment.patches import PatchViews, is_patch_strategy, shuffle_patches
from ddkit.errors import ConfigError
from ddkit.eval.batches import Augmenter


def _columns(n: int, size: int) -> torch.Tensor:
    """Images whose pixel value is its column index."""
    return torch.arange(size, dtype=torch.float32).expand(n, 1, size, size).contiguous()


@pytest.mark.parametrize("size, factor", [(12, 3), (28, 2), (28, 3)])
def test_shuffle_moves_whole_strips(size, factor):
    x = _columns(64, size)
    out = shuffle_patches(x, factor, torch.Generator().manual_seed(0))[:, 0, 0]
    width = size // factor
    starts = [j * width for j in range(factor)]
    ends = starts[1:] + [size]
    strips = [list(range(a, b)) for a, b in zip(starts, ends, strict=True)]
    orders = set()
    for row in out.long().tolist():  # each row: the strips, whole and in some order
        pos, order = 0, []
        while pos < size:
            strip = next(s for s in strips if s[0] == row[pos])
            assert row[pos : pos + len(strip)] == strip
            order.append(strips.index(strip))
            pos += len(strip)
        assert sorted(order) == list(range(factor))
        orders.add(tuple(order))
    assert len(orders) > 1  # images get their own orders


def test_shuffle_is_seeded_and_moves_rows_too():
    x = torch.rand(8, 3, 12, 12)
    a = shuffle_patches(x, 2, torch.Generator().manual_seed(5))
    b = shuffle_patches(x, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # a permutation of pixels within each image and channel
    assert torch.equal(a.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    rows = torch.arange(12.0).view(1, 1, 12, 1).expand(64, 1, 12, 12).contiguous()
    moved = shuffle_patches(rows, 2, torch.Generator().manual_seed(0))[:, 0, :, 0]
    assert {tuple(r) for r in moved[:, [0, 6]].long().tolist()} == {(0, 6), (6, 0)}


def test_views_keep_shape_and_factor_one_keeps_the_image():
    x = torch.rand(5, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    assert PatchViews("patches:2")(x, g).shape == x.shape
    assert torch.allclose(PatchViews("patches:1")(x, g), x, atol=1e-5)  # one patch: the image


@pytest.mark.parametrize("spelling", ["patches:0", "patches:x", "patches:", "patches:1.5"])
def test_bad_spellings_are_refused_in_one_line(spelling):
    with pytest.raises(ConfigError, match="patches:F") as e:
        PatchViews(spelling)
    assert "\n" not in str(e.value)


def test_a_factor_larger_than_the_image_is_refused():
    with pytest.raises(ConfigError, match="at most 4"):
        PatchViews("patches:5")(torch.rand(2, 1, 4, 4), torch.Generator())


def test_the_evaluation_augmenter_uses_them(digits):
    assert is_patch_strategy("patches:2") and not is_patch_strategy("dsa")
    aug = Augmenter(digits.train.spec, "patches:2")
    x, t = digits.train.images[:6], digits.train.labels[:6]
    y, u = aug(x, t, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(u, t) and not torch.equal(y, x)
