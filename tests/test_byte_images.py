"""Images kept as 8-bit pixels read as the float32 images they stand for (ddkit.data.byte_images)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ddkit.data.byte_images import ByteImages, stored_rows
from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.data.spec import DatasetSpec
from ddkit.errors import DataError

MEAN, STD = (0.43, 0.5, 0.61), (0.21, 0.25, 0.3)


def _pair(n: int = 40) -> tuple[ByteImages, torch.Tensor]:
    """Every 8-bit value in every channel, as pixels and as the float path computes them
    (numpy's float32 scaling, then torch's normalisation)."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    pixels.view(-1)[: 256 * 3] = torch.arange(256).repeat(3).to(torch.uint8)
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    scaled = torch.from_numpy(pixels.numpy().astype(np.float32) / np.float32(255.0))
    return ByteImages(pixels, mean, std), (scaled - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def test_every_way_of_reading_gives_the_float_paths_bits():
    x, ref = _pair()
    assert x.dtype == torch.float32 and x.shape == ref.shape and len(x) == len(ref)
    idx = torch.tensor([[3, 1], [4, 1]])
    reads = {
        "rows": (x[torch.tensor([3, 1, 4])], ref[[3, 1, 4]]),
        "(K, B) rows": (x[idx], ref[idx]),
        "mask": (x[torch.arange(len(x)) % 3 == 0], ref[::3]),
        "one row": (x[5], ref[5]),
        "last row": (x[-1], ref[-1]),
        "index_select": (x.index_select(0, torch.tensor([7, 7])), ref[[7, 7]]),
        "a channel": (x[:, 1], ref[:, 1]),
        "a reduction": (x.sum(dim=(0, 2, 3)), ref.sum(dim=(0, 2, 3))),
        "a convolution": (
            torch.nn.functional.conv2d(x[:4], torch.ones(2, 3, 3, 3)),
            torch.nn.functional.conv2d(ref[:4], torch.ones(2, 3, 3, 3)),
        ),
        "float64": (x.to(torch.float64), ref.double()),
        "pickled": (pickle.loads(pickle.dumps(x)), ref),
    }
    for what, (got, want) in reads.items():
        assert type(got) is torch.Tensor, what
        assert torch.equal(got, want), what


def test_slices_and_moves_keep_the_pixels():
    x, ref = _pair()
    for kept, want in ((x[2:9], ref[2:9]), (x[:, :, 2:5], ref[:, :, 2:5]), (x.to("cpu"), ref)):
        assert isinstance(kept, ByteImages) and kept.pixels.dtype == torch.uint8
        assert torch.equal(kept.decoded(), want)
    assert x[2:9].pixels.data_ptr() == x.pixels[2:].data_ptr()  # a slice of the map, no copy
    rows = torch.tensor([5, 0, 9])
    assert isinstance(stored_rows(x, rows), ByteImages)
    assert torch.equal(stored_rows(x, rows).decoded(), ref[rows])


def test_a_dataset_of_pixels_subsets_and_fingerprints_as_its_float_twin():
    x, ref = _pair()
    spec = DatasetSpec(name="t", num_classes=4, channels=3, image_size=(8, 8), mean=MEAN, std=STD)
    labels = torch.arange(len(x)) % 4
    as_bytes, as_floats = ImageDataset(x, labels, spec), ImageDataset(ref, labels, spec)
    assert fingerprint(as_bytes) == fingerprint(as_floats)
    part = as_bytes.subset(torch.tensor([1, 2, 3]))
    assert isinstance(part.images, ByteImages)
    assert torch.equal(part.images.decoded(), ref[1:4])


def test_writing_in_place_is_refused_in_one_line():
    x, _ = _pair()
    with pytest.raises(DataError, match="cannot be written in place; write into a copy"):
        x[0] = 0.0
    with pytest.raises(DataError, match="cannot be written in place"):
        x.add_(1.0)
    copy = x.clone()
    copy[0] = 0.0
    assert type(copy) is torch.Tensor and float(copy[0].abs().sum()) == 0.0


def test_only_8_bit_images_are_kept_as_pixels():
    with pytest.raises(ValueError, match="uint8"):
        ByteImages(torch.zeros(2, 3, 4, 4), torch.zeros(3), torch.ones(3))
