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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ddkit.data import load_dataset
from ddkit.data.dataset import from_arrays
from ddkit.data.npz import read_npz
from ddkit.data.readers import idx_bytes, read_idx, read_mnist_family
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
_SAVED: dict[str, tuple[SyntheticSet, Path]] = {}


def _saved(key: str, make) -> tuple[SyntheticSet, Path]:  # noqa: ANN001 - a set factory
    """The set ``make()`` builds and where it was saved, made once per session."""
    if key not in _SAVED:
        syn = make()
        _SAVED[key] = syn, syn.save(Path(tempfile.mkdtemp(prefix="ddkit-fuzz-")) / "set")
    return _SAVED[key]


def _real_set() -> SyntheticSet:
    d = load_dataset("digits")
    idx = d.train.sample_per_class(2, torch.Generator().manual_seed(0)).flatten()
    return SyntheticSet.from_real(d.train, idx, meta={"method": "fuzz"})


def _saved_set() -> tuple[SyntheticSet, Path]:
    return _saved("set", _real_set)


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


# ------------------------------------------------------------------ codec sets (issue 42)
def _codec_set() -> SyntheticSet:
    """A haba set (saved without its images, decoded on load)."""
    from ddkit.data.codecs import make_codec
    from ddkit.testing import tiny_digits

    train = tiny_digits().train
    codec = make_codec("haba:2")
    codec.fit(train)
    index = train.sample_per_class(2, torch.Generator().manual_seed(0)).flatten()
    stored = codec.encode(train.images[index], torch.Generator().manual_seed(0))
    return SyntheticSet.from_codec(codec, stored, train.spec)


@FUZZ
@given(
    key=st.sampled_from(["codec", "hallucinator_weight_scale", "bases_per_class", "hallucinators",
                         "stored_tensors", "emitted_per_class", "latent_width", "x"]),
    value=JSON | st.sampled_from(["haba:1", "haba:7", "haba:1000000", "latent:4", "fred:0.5",
                                  "formation:2", "pixels", "haba:x"]),
    top=st.sampled_from(["provenance", "spec", "num_images", "images_decoded", None]),
    recompute=st.booleans(),  # a crafted file whose settings checksum was recomputed
)  # fmt: skip
@example(key="hallucinator_weight_scale", value=None, top="provenance", recompute=True)
def test_the_codec_set_loader_survives_any_edit_of_its_settings(key, value, top, recompute):
    import os
    from unittest import mock

    from ddkit.data.synthetic import settings_digest

    syn, folder = _saved("codec", _codec_set)
    budget = {"DDKIT_MEMORY_BUDGET": str(64 * 2**20)}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, budget):
        copy = Path(tmp) / "set"
        shutil.copytree(folder, copy)
        meta = json.loads((copy / "meta.json").read_text())
        if top in (None, "provenance"):
            meta["provenance"][key] = value
        elif top == "spec":
            meta["spec"][key if key != "x" else "image_size"] = value
        else:
            meta[top] = value
        if recompute:
            meta["settings_sha256"] = settings_digest(meta)
        (copy / "meta.json").write_text(json.dumps(meta))
        back = _one_line_ddkit_error(lambda: SyntheticSet.load(copy))
        if back is not None and not recompute:  # an edit nobody vouched for is never accepted
            assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)
        if back is not None:
            assert torch.isfinite(back.images).all() and len(back) == meta["num_images"]


# ------------------------------------------------------------------ report inputs (issue 42)
_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 8


@FUZZ
@given(
    name=st.sampled_from(["eval.json", "demo.json", "config.json", "log.jsonl"]),
    value=JSON,
    lines=st.lists(JSON, max_size=3),
    raw=st.booleans(),
)
def test_the_run_report_survives_any_run_file(name, value, lines, raw):
    import warnings

    from ddkit.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        (run / "synthetic").mkdir(parents=True)
        (run / "config.json").write_text('{"method": "dm"}')
        (run / "curve.png").write_bytes(_PNG)  # drawn already: nothing is plotted
        if name == "log.jsonl":
            text = "".join(json.dumps(v) + "\n" for v in lines)
        else:
            text = json.dumps(value)
        (run / name).write_bytes(text.encode()[:7] + b"\xff" if raw else text.encode())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            page = _one_line_ddkit_error(lambda: write_report(run))
        if page is not None:
            assert page.read_text().startswith("<!doctype html>")


# ------------------------------------------------------------------ results files (issue 42)
_ROW = st.fixed_dictionaries(
    {"dataset": st.sampled_from(["digits", 3]), "method": st.sampled_from(["random", "dm", None]),
     "ipc": st.sampled_from([1, 10, None, "1", 2.5])},
    optional={"mean": JSON | st.floats(0, 1), "std": JSON | st.floats(0, 1),
              "accuracies": JSON | st.lists(st.floats(0, 1), max_size=3), "error": JSON,
              "keep": JSON, "iterations": JSON, "distill_seconds": st.floats(0, 9),
              "eval_seconds": st.floats(0, 9), "peak_distill_mb": st.floats(0, 9),
              "epochs": st.integers(0, 3), "num_images": st.integers(0, 30)},
)  # fmt: skip


@FUZZ
@given(rows=st.lists(_ROW | JSON, max_size=4), top=JSON, whole=st.booleans())
def test_results_files_of_any_shape_are_read_or_refused_in_one_line(rows, top, whole):
    from ddkit.bench import Suite
    from ddkit.bench.results import finished_cells, read_results
    from ddkit.bench.runner import markdown_table

    suite = Suite(name="fuzz", datasets=("digits",), ipcs=(1, 10), protocol="smoke",
                  methods=("random", "dm"), full_data=False)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.json"
        path.write_text(json.dumps({"suite": "fuzz", "rows": rows} if whole else top))
        data = _one_line_ddkit_error(lambda: read_results(path, suite))
        if data is None:
            return
        done = finished_cells(data)
        for row in data["rows"]:
            if isinstance(row, dict) and "error" not in row and row.get("accuracies") == []:
                assert all(c.method != row.get("method") or c.ipc != row.get("ipc") for c in done)
        markdown_table(suite, data)
