"""On-disk format readers: round-trips on tiny fabricated files, and clear errors on bad ones."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from ddkit.data import DATASETS, load_dataset
from ddkit.data.folders import read_image_folder
from ddkit.data.npz import read_npz
from ddkit.data.readers import (
    idx_bytes,
    read_cifar10,
    read_cifar100,
    read_cifar_batch,
    read_idx,
    read_mnist_family,
    read_svhn,
)
from ddkit.errors import ConfigError, DataError, FileFormatError

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------ helpers


def write(path, data: bytes, gz: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_mnist(folder, n_train=12, n_test=5, gz=False, with_test=True):
    xtr = RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    ytr = (np.arange(n_train) % 10).astype(np.uint8)
    write(folder / "train-images-idx3-ubyte", idx_bytes(xtr), gz)
    write(folder / "train-labels-idx1-ubyte", idx_bytes(ytr), gz)
    xte = RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    yte = (np.arange(n_test) % 10).astype(np.uint8)
    if with_test:
        write(folder / "t10k-images-idx3-ubyte", idx_bytes(xte), gz)
        write(folder / "t10k-labels-idx1-ubyte", idx_bytes(yte), gz)
    return xtr, ytr, xte, yte


def py2_cifar_pickle(data: np.ndarray, labels: list[int], label_key: str = "labels") -> bytes:
    """Protocol-2 stream laid out as Python 2's cPickle wrote the real CIFAR batches
    (str keys/strings as BINSTRING, arrays via numpy.core.multiarray._reconstruct)."""

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b

    def i(v: int) -> bytes:  # BININT
        return b"J" + struct.pack("<i", v)

    arr = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
        + i(0) + b"\x85" + s(b"b") + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
        + b"(" + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
        + b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
        + b"\x89" + s(data.tobytes()) + b"tb"
    )  # fmt: skip
    labs = b"](" + b"".join(i(v) for v in labels) + b"e"
    names = b"](" + b"".join(s(f"img_{k}.png".encode()) for k in range(len(labels))) + b"e"
    body = (
        s(b"batch_label") + s(b"training batch 1 of 5")
        + s(b"data") + arr + s(label_key.encode()) + labs + s(b"filenames") + names
    )  # fmt: skip
    return b"\x80\x02}(" + body + b"u."


def cifar_dict(n: int, key: str = "labels", bytes_keys: bool = True, first: int | None = None):
    """A CIFAR batch dict: random labels, or ``first, first+1, ...`` (mod 10) if given."""
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    if first is None:
        labels = [int(v) for v in RNG.integers(0, 10, n)]
    else:
        labels = [(first + k) % 10 for k in range(n)]
    d = {"data": data, key: labels, "filenames": [f"f{k}.png".encode() for k in range(n)],
         "batch_label": "batch"}  # fmt: skip
    if bytes_keys:
        d = {k.encode(): v for k, v in d.items()}
    return d, data, labels


def make_cifar10(folder, n=4, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for b, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d, data, labels = cifar_dict(n, first=b * n)  # every class has training rows
        (folder / name).write_bytes(pickle.dumps(d, protocol=protocol))
        xs.append(data)
        ys.append(labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip
    meta = {b"label_names": names, b"num_cases_per_batch": n, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return xs, ys


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def save_png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


# ---------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_roundtrip(tmp_path, gz, dtype):
    arr = (RNG.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write(tmp_path / "a-idx3", idx_bytes(arr), gz)
    out = read_idx(path)
    assert out.shape == (3, 4, 5) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    path = write(tmp_path / "t-idx3", data[:-10], gz)
    with pytest.raises(FileFormatError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_idx_trailing_data_and_short_header(tmp_path):
    data = idx_bytes(np.zeros((2, 3), np.uint8))
    with pytest.raises(FileFormatError, match="trailing"):
        read_idx(write(tmp_path / "x", data + b"\0"))
    with pytest.raises(FileFormatError, match="trailing"):
        read_idx(write(tmp_path / "y", data + b"\0", gz=True))
    with pytest.raises(FileFormatError, match="header"):
        read_idx(write(tmp_path / "z", data[:6]))


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"])
def test_read_idx_wrong_magic(tmp_path, head):
    path = write(tmp_path / "bad", head + b"\0" * 16)
    with pytest.raises(FileFormatError, match="magic") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 100)))
    path = tmp_path / "c.gz"
    path.write_bytes(good[:12] + bytes(len(good) - 12))
    with pytest.raises(FileFormatError, match="c.gz"):
        read_idx(path)


def test_read_idx_missing(tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_load_dataset_mnist_end_to_end(tmp_path, gz):
    xtr, ytr, xte, yte = make_mnist(tmp_path, gz=gz)
    splits = load_dataset("mnist", root=str(tmp_path))
    assert splits.spec.num_classes == 10 and splits.spec.shape == (1, 28, 28)
    assert len(splits.train) == 12 and len(splits.test) == 5
    np.testing.assert_array_equal(splits.train.labels.numpy(), ytr)
    np.testing.assert_array_equal(splits.test.labels.numpy(), yte)


def test_mnist_family_raw_subfolder_and_class_names(tmp_path):
    xtr, ytr, xte, yte = make_mnist(tmp_path / "raw", gz=True)
    raw = read_mnist_family(tmp_path, "fashionmnist")
    np.testing.assert_array_equal(raw.train_images, xtr)
    np.testing.assert_array_equal(raw.test_images, xte)
    assert raw.train_labels.dtype == np.int64
    assert raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"
    assert DATASETS.get("kmnist")(str(tmp_path)).class_names[0] == "o"


def test_mnist_without_test_files_and_missing_files(tmp_path):
    make_mnist(tmp_path, with_test=False)
    raw = read_mnist_family(tmp_path)
    assert raw.test_images is None and raw.test_labels is None
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match="train-labels-idx1-ubyte"):
        read_mnist_family(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset("mnist", root=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="root"):
        load_dataset("kmnist")


def test_mnist_count_mismatch(tmp_path):
    make_mnist(tmp_path, with_test=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DataError, match="12 images but 11 labels"):
        read_mnist_family(tmp_path)


# -------------------------------------------------------------------------------------- CIFAR


def test_cifar_batch_py2_layout(tmp_path):
    data = RNG.integers(0, 256, (3, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_cifar_pickle(data, [3, 1, 4]))
    batch = read_cifar_batch(path)
    np.testing.assert_array_equal(batch["data"], data)
    assert batch["labels"] == [3, 1, 4] and batch["filenames"][0] == b"img_0.png"


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar_batch_py3_protocols(tmp_path, protocol, bytes_keys):
    d, data, labels = cifar_dict(5, bytes_keys=bytes_keys)
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    batch = read_cifar_batch(path)
    np.testing.assert_array_equal(batch["data"], data)
    assert batch["labels"] == labels


def test_cifar10_roundtrip_parent_folder(tmp_path):
    xs, ys = make_cifar10(tmp_path / "cifar-10-batches-py")
    raw = read_cifar10(tmp_path)
    assert raw.train_images.shape == (20, 3, 32, 32) and raw.test_images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(raw.train_images.reshape(20, -1), np.concatenate(xs[:5]))
    np.testing.assert_array_equal(raw.train_labels, np.concatenate(ys[:5]))
    np.testing.assert_array_equal(raw.test_labels, ys[5])
    assert raw.class_names[:2] == ["airplane", "automobile"]
    splits = load_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"))
    assert splits.spec.shape == (3, 32, 32) and len(splits.test) == 4


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = {}
    for name, n in (("train", 6), ("test", 2)):
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine[name] = [int(v) for v in RNG.integers(0, 100, n)]
        d = {b"data": data, b"fine_labels": fine[name], b"coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    meta = {b"fine_label_names": [f"c{k}".encode() for k in range(100)], b"coarse_label_names": []}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    raw = read_cifar100(tmp_path)
    assert raw.num_classes == 100 and raw.class_names[7] == "c7"
    assert raw.train_images.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(raw.train_labels, fine["train"])
    np.testing.assert_array_equal(raw.test_labels, fine["test"])


def test_cifar_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    d, _, _ = cifar_dict(2)
    d[b"labels"] = _Evil(marker)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(FileFormatError, match="refused") as err:
        read_cifar_batch(path)
    msg = str(err.value)
    assert "system" in msg and str(path) in msg and "\n" not in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1q\x00\x85R.",  # builtins.eval
        b"\x80\x02cnumpy\nload\n.",  # a numpy function outside the allowlist
        b"\x80\x02cnumpy\ndtype\nU\x02O8K\x00K\x01\x87R.",  # object dtype
        b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x40\x85R.",  # a 1 GiB ndarray(shape)
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"J\x00\x00\x00\x40\x85U\x01b\x87R.",  # _reconstruct with a huge shape
    ],
)
def test_cifar_refuses_other_globals(tmp_path, payload):
    path = tmp_path / "x"
    path.write_bytes(payload)
    with pytest.raises(FileFormatError, match="refused"):
        read_cifar_batch(path)


def test_cifar_bad_files(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(FileFormatError, match="not a valid CIFAR batch"):
        read_cifar_batch(path)
    d, _, _ = cifar_dict(2)
    path.write_bytes(pickle.dumps(d, protocol=2)[:-40])
    with pytest.raises(FileFormatError, match=str(path)):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(FileFormatError, match="not dict"):
        read_cifar_batch(path)
    make_cifar10(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)
    )
    with pytest.raises(FileFormatError, match=r"data_batch_3.*\(N, 3072\)"):
        read_cifar10(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="data_batch_3"):
        read_cifar10(tmp_path / "c")
    with pytest.raises(ConfigError, match="data_batch_1"):
        read_cifar10(tmp_path)


# --------------------------------------------------------------------------------------- SVHN


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    x = RNG.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8)  # every digit has a train row
    y = np.array([[10], [1], [2], [3], [10], [5], [9], [4], [6], [7], [8], [1]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    savemat(tmp_path / "test_32x32.mat", {"X": x[..., :2], "y": y[:2]})
    raw = read_svhn(tmp_path)
    assert raw.train_images.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(raw.train_images[4, 1], x[:, :, 1, 4])
    np.testing.assert_array_equal(raw.train_labels, [0, 1, 2, 3, 0, 5, 9, 4, 6, 7, 8, 1])
    assert len(load_dataset("svhn", root=str(tmp_path)).test) == 2
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB garbage" * 20)
    with pytest.raises(FileFormatError, match="train_32x32.mat"):
        read_svhn(tmp_path)
    (tmp_path / "train_32x32.mat").unlink()
    with pytest.raises(ConfigError, match="train_32x32.mat"):
        read_svhn(tmp_path)


# ------------------------------------------------------------------------------- image folder


def test_image_folder_gray_and_class_order(tmp_path):
    imgs = {}
    for cls in ("zebra", "ant", "bee"):
        for k in range(2):
            arr = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
            save_png(tmp_path / cls / f"{k}.png", arr)
            imgs[(cls, k)] = arr
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    raw = read_image_folder(tmp_path)
    assert raw.class_names == ["ant", "bee", "zebra"] and raw.num_classes == 3
    assert raw.train_images.shape == (6, 6, 5) and raw.test_images is None
    np.testing.assert_array_equal(raw.train_labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(raw.train_images[4], imgs[("zebra", 0)])


def test_image_folder_rgb_splits_and_load_dataset(tmp_path):
    rgb = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    for split in ("train", "test"):
        save_png(tmp_path / split / "a" / "x.png", rgb)
        save_png(tmp_path / split / "b" / "y.png", rgb[..., 0])  # grayscale mixed in -> RGB
    raw = read_image_folder(tmp_path)
    assert raw.train_images.shape == (2, 3, 4, 4) and raw.test_images.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(raw.train_images[0], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(raw.train_images[1, 2], rgb[..., 0])
    splits = load_dataset("imagefolder", root=str(tmp_path))
    assert splits.spec.shape == (3, 4, 4) and len(splits.test) == 2


def test_image_folder_size_mismatch_and_resize(tmp_path):
    save_png(tmp_path / "a" / "1.png", np.zeros((8, 8), np.uint8))
    save_png(tmp_path / "b" / "2.png", np.zeros((10, 6), np.uint8))
    with pytest.raises(DataError, match=r"2\.png is 6x10") as err:
        read_image_folder(tmp_path)
    assert "\n" not in str(err.value)
    raw = read_image_folder(tmp_path, image_size=(4, 5))
    assert raw.train_images.shape == (2, 4, 5)
    with pytest.raises(ConfigError, match="image_size"):
        read_image_folder(tmp_path, image_size=0)


def test_image_folder_corrupt_png(tmp_path):
    save_png(tmp_path / "a" / "ok.png", np.zeros((8, 8), np.uint8))
    good = (tmp_path / "a" / "ok.png").read_bytes()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(FileFormatError, match="bad.png"):
        read_image_folder(tmp_path)
    (tmp_path / "b" / "bad.png").write_bytes(good[:-30] + bytes(30))  # header fine, data broken
    with pytest.raises(FileFormatError, match="bad.png"):
        read_image_folder(tmp_path)


def test_image_folder_bad_layouts(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_image_folder(tmp_path / "none")
    with pytest.raises(DataError, match="no class sub-folders"):
        read_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        read_image_folder(tmp_path)


# ---------------------------------------------------------------------------------------- npz


def test_npz_roundtrip(tmp_path):
    x = RNG.random((6, 1, 4, 4)).astype(np.float32)
    y = np.arange(6) % 3
    path = tmp_path / "d.npz"
    names = np.array(["a", "b", "c"])
    np.savez(path, x_train=x, y_train=y, x_test=x[:2], y_test=y[:2], class_names=names)
    raw = read_npz(path)
    np.testing.assert_array_equal(raw.train_images, x)
    np.testing.assert_array_equal(raw.test_labels, y[:2])
    assert raw.class_names == ["a", "b", "c"] and raw.num_classes == 3
    path2 = tmp_path / "e.npz"
    np.savez(path2, train_images=(x * 255).astype(np.uint8), train_labels=y)
    splits = load_dataset("npz", root=str(path2))
    assert len(splits.train) + len(splits.test) == 6


def test_npz_errors(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4)), y_train=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(FileFormatError, match="'y_train' is an object array"):
        read_npz(path)
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(FileFormatError, match="x_train"):
        read_npz(tmp_path / "k.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FileFormatError, match="bad.npz"):
        read_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "m.npz", x_train=np.zeros((3, 4, 4)), y_train=np.zeros(2, int))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        read_npz(tmp_path / "m.npz")
    with pytest.raises(ConfigError, match="missing.npz"):
        load_dataset("npz", root=str(tmp_path / "missing.npz"))


# ------------------------------------------------------- values read faithfully or refused


def test_image_folder_16bit_png_scaled_by_bit_depth_not_clipped(tmp_path):
    deep = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    save_png(tmp_path / "a" / "deep.png", deep)
    save_png(tmp_path / "b" / "flat.png", np.full((4, 5), 255, np.uint8))
    raw = read_image_folder(tmp_path)
    assert raw.train_images.dtype == np.float32
    np.testing.assert_allclose(raw.train_images[0], deep / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(raw.train_images[1], 1.0)  # 8-bit scaled by 255
    save_png(tmp_path / "c" / "rgb.png", np.zeros((4, 5, 3), np.uint8))
    rgb = read_image_folder(tmp_path).train_images
    assert rgb.shape == (3, 3, 4, 5)
    np.testing.assert_allclose(rgb[0, 2], deep / 65535.0, rtol=1e-6)


def test_idx_fractional_labels_refused_not_truncated(tmp_path):
    make_mnist(tmp_path)
    labels = (np.arange(12) % 10).astype(">f4") + 0.5
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*integers.*0\.5"):
        read_mnist_family(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes((np.arange(12) % 10).astype(">f4")))
    assert read_mnist_family(tmp_path).train_labels.dtype == np.int64  # whole floats are fine


def test_svhn_fractional_labels_refused(tmp_path):
    from scipy.io import savemat

    x = RNG.integers(0, 256, (32, 32, 3, 3), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[1.0], [2.5], [3.0]])})
    with pytest.raises(DataError, match=r"train_32x32\.mat.*integers.*2\.5"):
        read_svhn(tmp_path)


def test_npz_scalar_arrays_refused(tmp_path):
    np.savez(tmp_path / "s.npz", x_train=np.float32(1), y_train=np.int64(0))
    with pytest.raises(DataError, match="one row per image"):
        read_npz(tmp_path / "s.npz")
