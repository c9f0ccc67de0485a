"""Property tests: every input to ``from_arrays`` and the file readers either loads as valid
splits or raises a one-line :class:`DDKitError`; nothing else escapes, nothing bad is kept."""

from __future__ import annotations

import gzip
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ddkit.data import DatasetSplits, denormalise, from_arrays, load_dataset
from ddkit.errors import DDKitError

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "int64", "uint64", "float16", "float32",
          "float64", "bool", "complex64", "object", "U3"]  # fmt: skip
SPECIAL = [np.nan, np.inf, -np.inf, 3e38, -3e38, 1e300, 1e-40, 0.5, -1.0, 2.0**40]


def assert_valid(splits: DatasetSplits) -> None:
    """Finite normalised images, labels in range, >= 2 classes, every class in train."""
    k = splits.spec.num_classes
    assert k >= 2 and len(splits.spec.class_names) == k
    parts = [splits.train, splits.test] + ([splits.val] if splits.val is not None else [])
    for part in parts:
        assert part.images.dtype == torch.float32 and torch.isfinite(part.images).all()
        assert tuple(part.images.shape[1:]) == splits.spec.shape
        assert part.labels.dtype == torch.long and len(part.labels) == len(part.images)
        if len(part):
            assert 0 <= int(part.labels.min()) and int(part.labels.max()) < k
    assert min(torch.bincount(splits.train.labels, minlength=k).tolist()) >= 1
    assert all(np.isfinite(splits.spec.mean)) and all(np.isfinite(splits.spec.std))
    assert all(s > 0 for s in splits.spec.std)


def outcome(call: Callable[[], DatasetSplits]) -> DatasetSplits | None:
    """Run ``call``: valid splits, or ``None`` after a one-line DDKitError; anything else fails."""
    try:
        splits = call()
    except DDKitError as err:
        text = str(err)
        assert text and "\n" not in text, repr(text)
        return None
    assert_valid(splits)
    return splits


# ------------------------------------------------------------------------------- from_arrays


def make_array(data: st.DataObject, shape: tuple[int, ...], dtype: str, kind: str) -> np.ndarray:
    """Random values of ``dtype`` (images in [0, 255], labels in a drawn range), some of them
    replaced by special values (NaN, inf, huge, fractional, negative)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    if kind == "labels":
        top = data.draw(st.sampled_from([1, 2, 3, 5, 10**6]), label="label range")
        values = rng.integers(0, top, shape).astype(np.float64)
    else:
        values = rng.random(shape) * 255
    if values.size and data.draw(st.booleans(), label="special"):
        flat = values.reshape(-1)
        flat[rng.integers(0, flat.size)] = data.draw(st.sampled_from(SPECIAL), label="value")
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype in ("object", "U3"):
            return values.astype(dtype)
        if np.dtype(dtype).kind in "iub":
            values = np.nan_to_num(values, nan=0, posinf=0, neginf=0)
            info = np.iinfo(dtype) if np.dtype(dtype).kind != "b" else None
            if info is not None:
                values = np.clip(values, info.min, info.max)
        return values.astype(dtype)


@st.composite
def arrays_case(draw: st.DrawFn) -> dict:
    data = draw(st.data())
    n = draw(st.integers(0, 30), label="rows")
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    c = draw(st.sampled_from([1, 3]))
    layout = draw(st.sampled_from(["nhw", "nchw", "nhwc", "flat", "5d"]))
    shape = {"nhw": (n, h, w), "nchw": (n, c, h, w), "nhwc": (n, h, w, c), "flat": (n, h * w),
             "5d": (n, 1, c, h, w)}[layout]  # fmt: skip
    image_dtype = draw(st.sampled_from(DTYPES), label="image dtype")
    label_dtype = draw(st.sampled_from(DTYPES), label="label dtype")
    n_labels = n if draw(st.integers(0, 9)) else n + draw(st.sampled_from([-1, 1]))
    case = {
        "train_images": make_array(data, shape, image_dtype, "images"),
        "train_labels": make_array(data, (max(n_labels, 0),), label_dtype, "labels"),
        "num_classes": draw(st.sampled_from([None, None, None, 0, 1, 2, 3, 10**9])),
        "val_fraction": draw(st.sampled_from([0.0, 0.0, 0.2, 0.5, 0.99, -0.1, 1.0, float("nan")])),
    }
    if draw(st.booleans()):
        m = draw(st.integers(0, 8))
        case["test_images"] = make_array(data, (m, *shape[1:]), image_dtype, "images")
        case["test_labels"] = make_array(data, (m,), label_dtype, "labels")
    return case


@FUZZ
@given(arrays_case())
def test_from_arrays_valid_or_one_line_error(case):
    splits = outcome(lambda: from_arrays(**case))
    if splits is not None and case["num_classes"] is None:
        labels = np.asarray(case["train_labels"], dtype=np.float64)
        assert splits.spec.num_classes == int(labels.max()) + 1


@FUZZ
@given(st.integers(2, 6), st.integers(0, 2**16))
def test_from_arrays_clean_data_always_loads(k, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), 6)[rng.permutation(6 * k)]
    x = rng.integers(0, 256, (6 * k, 3, 3), dtype=np.uint8)
    splits = outcome(lambda: from_arrays(x, y, x[:k], y[:k], val_fraction=0.2, seed=seed))
    assert splits is not None and splits.spec.num_classes == k


# --------------------------------------------------------------------------------- mutations


def mutate(blob: bytes, how: str, data: st.DataObject) -> bytes:
    """``blob`` truncated, with a byte flipped, with bytes appended, or replaced by garbage."""
    if how == "truncate":
        return blob[: data.draw(st.integers(0, max(len(blob) - 1, 0)), label="cut")]
    if how == "flip":
        i = data.draw(st.integers(0, len(blob) - 1), label="at")
        return (
            blob[:i]
            + bytes([blob[i] ^ data.draw(st.integers(1, 255), label="xor")])
            + blob[i + 1 :]
        )
    if how == "append":
        return blob + data.draw(st.binary(min_size=1, max_size=16), label="tail")
    return data.draw(st.binary(max_size=64), label="garbage")


MUTATIONS = ["truncate", "flip", "append", "garbage"]


# --------------------------------------------------------------------------------------- IDX


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    head = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.tobytes()


IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # fmt: skip


@FUZZ
@given(
    st.data(),
    st.sampled_from(MNIST),
    st.sampled_from([*MUTATIONS, "dtype", "shape", "none"]),
    st.booleans(),
)
def test_idx_files_valid_or_one_line_error(data, target, how, gz):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    files = {
        MNIST[0]: idx_bytes(rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), 0x08),
        MNIST[1]: idx_bytes((np.arange(20) % 10).astype(np.uint8), 0x08),
        MNIST[2]: idx_bytes(rng.integers(0, 256, (5, 4, 4), dtype=np.uint8), 0x08),
        MNIST[3]: idx_bytes((np.arange(5) % 10).astype(np.uint8), 0x08),
    }
    labels, fractional = "labels" in target, False
    if how == "dtype":
        code = data.draw(st.sampled_from(sorted(IDX_CODES)), label="code")
        n = 20 if target.startswith("train") else 5
        values = np.arange(n) % 10 if labels else rng.random((n, 4, 4)) * 255
        if data.draw(st.booleans(), label="odd value"):
            values = values.astype(np.float64)
            values.reshape(-1)[0] = data.draw(st.sampled_from(SPECIAL), label="value")
        with np.errstate(invalid="ignore", over="ignore"):
            stored = values.astype(IDX_CODES[code])
        files[target] = idx_bytes(stored, code)
        fractional = bool(np.any(stored != np.round(stored)))
    elif how == "shape":
        shape = data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=4), label="shape")
        files[target] = idx_bytes(np.zeros(shape, np.uint8), 0x08)
    elif how != "none":
        files[target] = mutate(files[target], how, data)
    with tempfile.TemporaryDirectory() as tmp:
        for name, blob in files.items():
            path = Path(tmp) / (name + ".gz" if gz else name)
            path.write_bytes(gzip.compress(blob) if gz else blob)
        splits = outcome(lambda: load_dataset("mnist", root=tmp))
    if how in ("truncate", "append", "garbage") or (labels and fractional):
        assert splits is None, f"{how}: a malformed IDX file was accepted"
    if how == "none":
        assert splits is not None and len(splits.train) == 20


@FUZZ
@given(
    st.sampled_from(sorted(IDX_CODES)),
    st.lists(st.sampled_from([0, 1, 2, 9, *SPECIAL]), min_size=20, max_size=20),
)
def test_idx_labels_loaded_exactly_or_refused(code, values):
    with np.errstate(invalid="ignore", over="ignore"):
        stored = np.asarray(values, np.float64).astype(IDX_CODES[code])
    images = np.zeros((20, 2, 2), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / MNIST[0]).write_bytes(idx_bytes(images, 0x08))
        (Path(tmp) / MNIST[1]).write_bytes(idx_bytes(stored, code))
        splits = outcome(lambda: load_dataset("mnist", root=tmp))
    if splits is not None:  # never truncated or wrapped: the labels are the stored values
        kept = stored[np.arange(20) % 5 != 0].astype(np.float64)
        np.testing.assert_array_equal(splits.train.labels.numpy(), kept)


# --------------------------------------------------------------------------------------- npz


@FUZZ
@given(
    st.data(),
    st.sampled_from(["x_train", "y_train", "x_test", "y_test", "class_names"]),
    st.sampled_from([*MUTATIONS, "drop", "extra", "dtype", "reshape", "none"]),
)
def test_npz_valid_or_one_line_error(data, key, how):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    arrays = {
        "x_train": rng.random((12, 3, 3)).astype(np.float32),
        "y_train": np.arange(12) % 3,
        "x_test": rng.random((4, 3, 3)).astype(np.float32),
        "y_test": np.arange(4) % 3,
        "class_names": np.array(["a", "b", "c"]),
    }
    if how == "drop":
        del arrays[key]
    elif how == "extra":
        arrays["junk"] = np.zeros(3)
    elif how == "dtype":
        dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                arrays[key] = arrays[key].astype(dtype)
        except (TypeError, ValueError):  # e.g. class names "a" as uint8: no such array
            assume(False)
    elif how == "reshape":
        shape = data.draw(st.lists(st.integers(0, 4), max_size=4), label="shape")
        arrays[key] = np.zeros(shape, arrays[key].dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        if how in MUTATIONS:
            path.write_bytes(mutate(path.read_bytes(), how, data))
        splits = outcome(lambda: load_dataset("npz", root=str(path)))
    if how in ("truncate", "garbage"):
        assert splits is None, f"a {how}d npz file was accepted"
    if how in ("none", "extra"):
        assert splits is not None and splits.spec.class_names == ("a", "b", "c")


# ------------------------------------------------------------------------------ image folder


@FUZZ
@given(
    st.data(),
    st.sampled_from(["L", "RGB", "I;16"]),
    st.sampled_from([*MUTATIONS, "resize", "empty", "none"]),
)
def test_image_folder_valid_or_one_line_error(data, mode, how):
    from PIL import Image

    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    with tempfile.TemporaryDirectory() as tmp:
        paths, pixels = [], []
        for cls in ("cat", "dog"):
            for i in range(6):
                path = Path(tmp) / cls / f"{i}.png"
                path.parent.mkdir(exist_ok=True)
                shape, top, dtype = {"L": ((5, 4), 256, np.uint8), "RGB": ((5, 4, 3), 256, np.uint8),
                                     "I;16": ((5, 4), 65536, np.uint16)}[mode]  # fmt: skip
                arr = rng.integers(0, top, shape).astype(dtype)
                Image.fromarray(arr).save(path)
                paths.append(path)
                pixels.append(np.moveaxis(np.atleast_3d(arr), -1, 0) / (top - 1))
        victim = paths[data.draw(st.integers(0, len(paths) - 1), label="victim")]
        if how == "resize":
            Image.fromarray(np.zeros((3, 3), np.uint8)).save(victim)
        elif how == "empty":
            for p in victim.parent.iterdir():
                p.unlink()
        elif how in MUTATIONS:
            victim.write_bytes(mutate(victim.read_bytes(), how, data))
        splits = outcome(lambda: load_dataset("imagefolder", root=tmp))
    if how in ("resize", "empty", "garbage"):
        assert splits is None, f"{how}: a malformed image folder was accepted"
    if how == "none":  # pixels come back at their own bit depth, in [0, 1]
        assert splits is not None and splits.spec.channels == (3 if mode == "RGB" else 1)
        train = np.stack([x for i, x in enumerate(pixels) if i % 5 != 0])
        got = denormalise(splits.train.images, splits.spec).numpy()
        np.testing.assert_allclose(got, train, atol=1e-4)


@pytest.mark.parametrize("top", [255, 65535])
def test_image_folder_pixel_scale_matches_bit_depth(tmp_path, top):
    from PIL import Image

    from ddkit.data.folders import read_image_folder

    dtype = np.uint8 if top == 255 else np.uint16
    pixels = np.array([[0, top // 3, top]], dtype)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(pixels).save(tmp_path / cls / "x.png")
    raw = read_image_folder(tmp_path).train_images
    scaled = raw / 255.0 if raw.dtype == np.uint8 else raw
    np.testing.assert_allclose(scaled[0, 0], [0, 1 / 3, 1], atol=1e-4)
