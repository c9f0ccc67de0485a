import numpy as np
import pytest
import torch

from ddkit.data import ArrayExtras, DatasetSpec, from_arrays, load_dataset
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
    y = np.arange(50) // 10  # not % 5: the index % 5 test split would take all of class 0
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


# ------------------------------------------------- bad input refused, never silently accepted


def toy(n: int = 40, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 5x5 images with labels ``i // (n / k)`` (every class in the train split)."""
    x = np.random.default_rng(seed).random((n, 5, 5)).astype(np.float32)
    return x, np.arange(n) * k // n


def one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    "images",
    [
        toy()[0].astype(np.complex64),
        toy()[0].astype(object),
        toy()[0].astype(str),
        torch.complex(torch.rand(40, 5, 5), torch.rand(40, 5, 5)),
        [[1.0, 2.0], [3.0]],  # ragged
    ],
    ids=["complex", "object", "str", "torch-complex", "ragged"],
)
def test_non_real_images_refused(images):
    with pytest.raises(DataError, match="images must be") as err:
        from_arrays(images, toy()[1])
    one_line(err)


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3"])
def test_non_real_labels_refused(dtype):
    x, y = toy()
    with pytest.raises(DataError, match="labels must be") as err:
        from_arrays(x, y.astype(dtype))
    one_line(err)


def test_bool_and_float16_and_int_images_accepted():
    x, y = toy()
    for images in (x > 0.5, x.astype(np.float16), (x * 1000).astype(np.int32)):
        s = from_arrays(images, y)
        assert torch.isfinite(s.train.images).all() and s.spec.num_classes == 4


def test_huge_values_near_float32_limit_normalise_correctly():
    x, y = toy()
    big = (x * 3e38).astype(np.float32)
    s = from_arrays(big, y)
    assert all(np.isfinite(s.spec.std)) and all(v > 0 for v in s.spec.std)
    assert abs(float(s.train.images.std()) - 1) < 1e-2  # not all -0 after dividing by inf
    with pytest.raises(DataError, match="float32 range") as err:
        from_arrays(x.astype(np.float64) * 1e300, y)
    one_line(err)


def test_label_far_beyond_row_count_refused_without_building_names():
    x, y = toy()
    y[3] = 10**6
    with pytest.raises(DataError, match="remap the labels") as err:
        from_arrays(x, y)
    one_line(err)
    with pytest.raises(DataError, match="class indices"):
        from_arrays(x, np.where(y == 10**6, 10**12, y))
    with pytest.raises(ConfigError, match="num_classes=1000000 but only"):
        from_arrays(x, toy()[1], num_classes=10**6)


def test_negative_labels_refused():
    x, y = toy()
    with pytest.raises(DataError, match="found -1"):
        from_arrays(x, y - 1)


@pytest.mark.parametrize("num_classes", [None, 1])
def test_single_class_refused(num_classes):
    x, _ = toy()
    with pytest.raises(DataError, match="at least 2 classes") as err:
        from_arrays(x, np.zeros(40, int), num_classes=num_classes)
    one_line(err)


def test_empty_classes_named_at_load_time():
    x, _ = toy()
    sparse = np.where(np.arange(40) < 20, 3, 7)
    with pytest.raises(DataError, match=r"class\(es\) 0, 1, 2, 4, 5, 6 have no training rows"):
        from_arrays(x, sparse)
    with pytest.raises(DataError, match=r"class\(es\) 0 have no .*remap the labels to 0..K-1"):
        from_arrays(x, toy()[1] + 1)  # 1-based labels
    with pytest.raises(DataError, match=r"class\(es\) 4 have no"):
        from_arrays(x, toy()[1], num_classes=5)  # num_classes does not waive an empty class


def test_class_names_must_match_classes():
    x, y = toy()
    with pytest.raises(DataError, match="3 class names for 4 classes"):
        from_arrays(x, y, extras=ArrayExtras(class_names=["a", "b", "c"]))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, float("nan"), "0.2", True])
def test_val_fraction_out_of_range_refused(fraction):
    x, y = toy()
    with pytest.raises(ConfigError, match=r"validation fraction must be a number in \[0, 1\)"):
        from_arrays(x, y, val_fraction=fraction)


def test_val_fraction_must_leave_training_rows_in_every_class():
    x, y = toy(n=10, k=2)  # 4 training rows per class after the index % 5 test split
    with pytest.raises(ConfigError, match="leaves class 0 .* no training rows") as err:
        from_arrays(x, y, val_fraction=0.9)
    one_line(err)
    s = from_arrays(x, y, val_fraction=0.5)
    assert torch.bincount(s.train.labels).tolist() == [2, 2]


# ------------------------------------------------------------------ names reaching the file system
@pytest.mark.parametrize("name", ["../../../escape", "/etc/evil", "a/../../b", "..", "x\0y", ""])
def test_artifact_caches_stay_inside_their_root_whatever_the_dataset_is_named(tmp_path, name):
    import numpy as np

    from ddkit.data import from_arrays
    from ddkit.data.codecs.autoencoder import artifact_folder
    from ddkit.eval.teacher import teacher_cache_dir
    from ddkit.methods import create_method
    from ddkit.methods.trajectory.methods import _auto_cache_dir

    rng = np.random.default_rng(0)
    x, y = rng.random((20, 8, 8)).astype(np.float32), np.arange(20) % 2
    train = from_arrays(x, y, name=name or "custom").train
    object.__setattr__(train.spec, "name", name)  # as a spec read from a file may carry it
    root = tmp_path / "cache"
    mtt = create_method("mtt", experts_cache=str(root))
    folders = [
        artifact_folder(root, train, {"latent_dim": 4}),
        teacher_cache_dir(root, train, "../convnet"),
        _auto_cache_dir(mtt.config, train),
    ]
    for folder in folders:
        assert folder.parent == root and folder.name not in ("", ".", "..")
        assert (
            "/" not in folder.name and "\0" not in folder.name and not folder.name.startswith(".")
        )


def test_check_images_finds_a_nan_past_its_first_block() -> None:
    from ddkit.data.dataset import check_images

    x = torch.zeros(40, 3, 224, 224)  # several blocks of rows
    check_images(x)
    x[37, 2, 100, 7] = float("nan")
    with pytest.raises(DataError, match="NaN or infinite"):
        check_images(x)
