"""The image grid is built a block of rows at a time in bytes (issue 82): the same PNG as the
plain per-image float canvas, from a tensor or from a function giving some rows' pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit import viz


def _plain_grid(pixels: torch.Tensor, labels: torch.Tensor, k: int, per: int) -> np.ndarray:
    """The reference: a float canvas filled image by image, converted to bytes once."""
    n, c, h, w = pixels.shape
    scale, pad = max(1, -(-32 // max(h, w))), 2
    rows = [pixels[labels == j][:per] for j in range(k)]
    cols = max(1, max(len(r) for r in rows))
    H, W = h * scale + pad, w * scale + pad
    canvas = torch.ones(3, k * H + pad, cols * W + pad)
    for r, imgs in enumerate(rows):
        for j, img in enumerate(imgs):
            img = img.expand(3, h, w) if c == 1 else img[:3]
            img = img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            canvas[:, pad + r * H : pad + r * H + h * scale,
                   pad + j * W : pad + j * W + w * scale] = img  # fmt: skip
    return (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("channels", "size", "per"), [(3, 8, 10), (1, 28, 3), (3, 40, 2)])
def test_grid_in_blocks_is_the_plain_grid(tmp_path, monkeypatch, channels, size, per) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(23, channels, size, size + 1, generator=g) * 1.4 - 0.2  # some outside [0, 1]
    y = torch.randint(0, 4, (23,), generator=g)  # class 4 of 5 stays empty
    monkeypatch.setattr(viz, "GRID_BLOCK_ELEMENTS", 3 * size * size)  # a few rows a block
    want = _plain_grid(x, y, 5, per)
    for i, pixels in enumerate((x, lambda rows: x[rows])):
        path = viz.image_grid(pixels, y, 5, tmp_path / f"{i}.png", max_per_class=per)
        np.testing.assert_array_equal(np.array(Image.open(path)), want)


def test_named_rows_keep_the_grid_beside_the_margin(tmp_path) -> None:
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    plain = np.array(Image.open(viz.image_grid(x, y, 3, tmp_path / "a.png")))
    named = np.array(
        Image.open(viz.image_grid(x, y, 3, tmp_path / "b.png", class_names=["ab", "c", "d"]))
    )
    margin = named.shape[1] - plain.shape[1]
    assert margin > 0 and named.shape[0] == plain.shape[0]
    np.testing.assert_array_equal(named[:, margin:], plain)
    assert (named[:, :margin] < 128).any()  # dark text in the name margin
