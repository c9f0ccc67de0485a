"""Property-style fuzzing of everything that reads user files or arrays: every call returns a
valid result or raises a ddkit error with a one-line message -- never another exception, never a
silently accepted malformed input."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddkit.data import load_dataset
from ddkit.data.dataset import from_arrays
from ddkit.data.readers import idx_bytes, read_idx, read_mnist_family, read_npz
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import DDKitError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _one_line_ddkit_error(call):
    """Run ``call``; return its value, or None when it raised a one-line DDKitError."""
    try:
        return call()
    except DDKitError as e:
        assert "\n" not in str(e), f"multi-line error: {e}"
        return None


def _valid_splits(splits) -> None:
    k = splits.spec.num_classes
    assert torch.isfinite(splits.train.images).all() and torch.isfinite(splits.test.images).all()
    assert splits.train.labels.min() >= 0 and splits.train.labels.max() < k
    assert set(splits.train.labels.tolist()) == set(range(k))


# ------------------------------------------------------------------ synthetic-set files
_SAVED: dict[str, Path] = {}


def _saved_set() -> tuple[SyntheticSet, Path]:
    if "set" not in _SAVED:
        d = load_dataset("digits")
        idx = d.train.sample_per_class(2, torch.Generator().manual_seed(0)).flatten()
        syn = SyntheticSet.from_real(d.train, idx, meta={"method": "fuzz"})
        root = Path(tempfile.mkdtemp(prefix="ddkit-fuzz-"))
        syn.save(root / "set")
        _SAVED["set"], _SAVED["syn"] = root / "set", syn
    return _SAVED["syn"], _SAVED["set"]


@FUZZ
@given(
    key=st.sampled_from(["format", "format_version", "sha256", "spec", "provenance", "lr", "x"]),
    value=JSON,
    delete=st.booleans(),
)
def test_the_set_loader_survives_any_meta_json(key, value, delete):
    syn, folder = _saved_set()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "set"
        shutil.copytree(folder, copy)
        meta = json.loads((copy / "meta.json").read_text())
        if delete:
            meta.pop(key, None)
        else:
            meta[key] = value
        (copy / "meta.json").write_text(json.dumps(meta))
        back = _one_line_ddkit_error(lambda: SyntheticSet.load(copy))
        if back is not None:
            assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 10**6), truncate=st.booleans())
def test_the_set_loader_survives_any_damage_to_the_tensor_file(cut, flip, truncate):
    syn, folder = _saved_set()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "set"
        shutil.copytree(folder, copy)
        path = copy / "data.safetensors"
        data = bytearray(path.read_bytes())
        if truncate:
            data = data[: int(cut * len(data))]
        else:
            data[flip % len(data)] ^= 0xFF
        path.write_bytes(bytes(data))
        assert _one_line_ddkit_error(lambda: SyntheticSet.load(copy)) is None  # checksum


# ------------------------------------------------------------------ IDX files
@FUZZ
@given(
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 10**4), st.integers(1, 255)), max_size=3),
    gz=st.booleans(),
    n=st.integers(0, 6),
)
def test_idx_reading_survives_any_damage(cut, flips, gz, n):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (max(n, 1) * 2, 5, 5)).astype(np.uint8)
    data = bytearray(idx_bytes(images))
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    data = data[: max(0, len(data) - cut)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.idx.gz" if gz else "x.idx")
        path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
        arr = _one_line_ddkit_error(lambda: read_idx(path))
        if arr is not None:
            assert isinstance(arr, np.ndarray) and arr.size == int(np.prod(arr.shape))


@FUZZ
@given(
    drop=st.sampled_from([None, "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]),
    shrink=st.integers(0, 3),
    label_top=st.sampled_from([9, 10, 255]),
)
def test_the_mnist_reader_refuses_inconsistent_files(drop, shrink, label_top):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (40, 6, 6)).astype(np.uint8),
        "train-labels-idx1-ubyte": (np.arange(40 - shrink) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 6, 6)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": np.minimum(np.arange(20), label_top).astype(np.uint8),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in files.items():
            if name != drop:
                (Path(tmp) / name).write_bytes(idx_bytes(arr))
        raw = _one_line_ddkit_error(lambda: read_mnist_family(tmp, "mnist"))
        if raw is not None:
            splits = _one_line_ddkit_error(
                lambda: from_arrays(
                    raw.train_images,
                    raw.train_labels,
                    raw.test_images,
                    raw.test_labels,
                    num_classes=raw.num_classes,
                )
            )
            if splits is not None:
                assert shrink == 0 and label_top == 9 and drop is None
                _valid_splits(splits)


# ------------------------------------------------------------------ arrays and npz files
DTYPES = [
    "uint8",
    "uint16",
    "int64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    "object",
    "U3",
]


@st.composite
def arrays(draw):
    n = draw(st.integers(0, 30))
    shape = draw(st.sampled_from([(n, 4, 4), (n, 1, 4, 4), (n, 4, 4, 3), (n, 16), (n, 2, 2, 2, 2)]))
    dtype = draw(st.sampled_from(DTYPES))
    base = np.random.default_rng(draw(st.integers(0, 9))).random(shape) * draw(
        st.sampled_from([1, 255, 1e30, 3e38])
    )
    if draw(st.booleans()) and base.size:
        base.flat[0] = draw(st.sampled_from([np.nan, np.inf, -1.0]))
    with np.errstate(all="ignore"):
        x = base.astype(dtype) if dtype not in ("object", "U3") else base.astype(dtype)
    labels = draw(st.sampled_from(["mod2", "mod3", "const", "big", "float", "onebased", "short"]))
    y = {
        "mod2": np.arange(n) % 2,
        "mod3": np.arange(n) % 3,
        "const": np.zeros(n, int),
        "big": np.r_[np.arange(max(n - 1, 0)) % 2, [10**9]][:n],
        "float": (np.arange(n) % 2) + 0.5,
        "onebased": (np.arange(n) % 2) + 1,
        "short": np.arange(max(n - 1, 0)) % 2,
    }[labels]
    return x, y


@FUZZ
@given(data=arrays(), val_fraction=st.sampled_from([0.0, 0.2, 0.99, -0.5, 1.0]))
def test_from_arrays_returns_valid_splits_or_a_one_line_error(data, val_fraction):
    x, y = data
    splits = _one_line_ddkit_error(lambda: from_arrays(x, y, val_fraction=val_fraction))
    if splits is not None:
        _valid_splits(splits)


@FUZZ
@given(
    data=arrays(), keys=st.sampled_from([("x_train", "y_train"), ("train_images",), ("y_train",)])
)
def test_npz_reading_returns_valid_data_or_a_one_line_error(data, keys):
    x, y = data
    values = {"x_train": x, "y_train": y, "train_images": x}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        try:
            np.savez(path, **{k: values[k] for k in keys})
        except (ValueError, TypeError):  # numpy itself cannot write it
            return
        raw = _one_line_ddkit_error(lambda: read_npz(path))
        if raw is not None:
            splits = _one_line_ddkit_error(
                lambda: from_arrays(
                    raw.train_images,
                    raw.train_labels,
                    raw.test_images,
                    raw.test_labels,
                    num_classes=raw.num_classes,
                )
            )
            if splits is not None:
                _valid_splits(splits)
