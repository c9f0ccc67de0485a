import re

import numpy as np
import pytest
import torch

from ddkit.data import DatasetSpec, from_arrays, load_dataset
from ddkit.errors import ConfigError, DataError, UnknownNameError


def test_builtin_split_is_index_mod_5(digits):
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.arange(len(d.target))
    assert len(digits.test) == int((idx % 5 == 0).sum())
    assert torch.equal(digits.test.labels, torch.as_tensor(d.target[idx % 5 == 0]))
    assert torch.equal(digits.train.labels, torch.as_tensor(d.target[idx % 5 != 0]))


def test_normalisation_from_train_split(digits):
    x = digits.train.images
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert digits.spec.shape == (1, 8, 8) and digits.spec.num_classes == 10


def test_mnist5k_shape():
    s = load_dataset("mnist5k")
    assert (len(s.train), len(s.test)) == (4000, 1000)
    assert s.spec.shape == (1, 28, 28)


def test_validation_split_is_stratified_and_seeded():
    a = load_dataset("digits", val_fraction=0.2, seed=3)
    b = load_dataset("digits", val_fraction=0.2, seed=3)
    c = load_dataset("digits", val_fraction=0.2, seed=4)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    full = load_dataset("digits").train.labels
    expected = torch.round(0.2 * torch.bincount(full, minlength=10).double()).long()
    assert torch.equal(torch.bincount(a.val.labels, minlength=10), expected)
    assert len(a.train) + len(a.val) == 1437


def test_unknown_dataset():
    with pytest.raises(UnknownNameError, match="valid: .*digits"):
        load_dataset("imagenet-zzz")


def test_from_arrays_shapes_and_errors():
    x = np.random.default_rng(0).integers(0, 255, (50, 6, 6), dtype=np.uint8)
    y = np.arange(50) // 10  # every class in train and test (index % 5 == 0 is test)
    s = from_arrays(x, y, name="toy")
    assert s.spec.shape == (1, 6, 6) and s.spec.num_classes == 5
    assert len(s.test) == 10 and len(s.train) == 40
    s2 = from_arrays(np.repeat(x[:, None], 3, 1), y)  # NCHW
    assert s2.spec.channels == 3
    with pytest.raises(DataError, match="NaN"):
        xf = x.astype(np.float32)
        xf[0, 0, 0] = np.nan
        from_arrays(xf, y)
    with pytest.raises(DataError, match="out of range"):
        from_arrays(x, y, num_classes=3)
    with pytest.raises(DataError, match="shape"):
        from_arrays(x.reshape(50, -1), y)
    with pytest.raises(DataError, match="labels"):
        from_arrays(x, y[:-1])
    with pytest.raises(DataError, match="integers"):
        from_arrays(x, y + 0.5)


def test_ipc_checks(digits):
    digits.train.check_ipc(10)
    with pytest.raises(ConfigError, match="positive"):
        digits.train.check_ipc(0)
    with pytest.raises(ConfigError, match="larger than class"):
        digits.train.check_ipc(10_000)


def test_sample_per_class_uses_generator(digits):
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    state = torch.random.get_rng_state()
    a, b = digits.train.sample_per_class(4, g1), digits.train.sample_per_class(4, g2)
    assert torch.equal(a, b) and a.shape == (10, 4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for c in range(10):
        assert (digits.train.labels[a[c]] == c).all()


def test_spec_round_trip():
    spec = DatasetSpec("x", 3, 1, (4, 4), (0.5,), (0.2,))
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


# ------------------------------------------------------------------ no silent corruption
@pytest.mark.parametrize(
    "images, labels, kwargs, error, message",
    [
        (np.ones((20, 4, 4), np.complex64), np.arange(20) % 2, {}, DataError, "real numbers"),
        (np.full((20, 4, 4), None, object), np.arange(20) % 2, {}, DataError, "real numbers"),
        (
            np.where(np.arange(320).reshape(20, 4, 4) % 2, 3e38, -3e38).astype(np.float32),
            np.arange(20) % 2,
            {},
            DataError,
            "too large",
        ),
        (np.ones((20, 4, 4)), (np.arange(20) % 2) + 0.5, {}, DataError, "integers"),
        (np.ones((20, 4, 4)), np.r_[np.arange(19) % 2, 10**9], {}, DataError, "pass num_classes"),
        (np.ones((20, 4, 4)), np.zeros(20, int), {}, DataError, "at least 2 classes"),
        (np.ones((20, 4, 4)), np.where(np.arange(20) % 2, 3, 7), {}, DataError, "0, 1, 2, 4"),
        (np.ones((20, 4, 4)), (np.arange(20) % 2) + 1, {}, DataError, "1-based"),
        (np.ones((20, 4, 4)), np.arange(20) % 2, {"val_fraction": -0.1}, ConfigError, "[0, 1)"),
        (np.ones((20, 4, 4)), np.arange(20) % 2, {"val_fraction": 1.0}, ConfigError, "[0, 1)"),
    ],
)
def test_bad_arrays_are_refused_in_one_line(images, labels, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)) as err:
        from_arrays(images, labels, **kwargs)
    assert "\n" not in str(err.value)


def test_a_large_validation_fraction_leaves_every_class_a_training_row():
    x = np.random.default_rng(0).random((40, 4, 4))
    s = from_arrays(x, np.arange(40) % 4, val_fraction=0.99)
    assert set(s.train.labels.tolist()) == {0, 1, 2, 3}


def test_16_bit_images_keep_their_depth():
    import torch

    x = (np.arange(20 * 16).reshape(20, 4, 4) * 200).astype(np.uint16)
    s = from_arrays(x, np.arange(20) % 2)
    raw = s.train.images * torch.tensor(s.spec.std) + torch.tensor(s.spec.mean)
    assert float(raw.max()) > 0.9 and len(torch.unique(raw)) > 256 - 1


def test_a_wrong_number_of_class_names_is_one_line():
    with pytest.raises(DataError, match="3 class names for 2 classes"):
        from_arrays(np.ones((20, 4, 4)), np.arange(20) % 2, class_names=["a", "b", "c"])
