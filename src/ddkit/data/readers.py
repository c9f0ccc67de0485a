"""Readers for standard on-disk dataset formats, registered as datasets that need a ``root``.

* ``mnist``, ``fashionmnist``, ``kmnist``: IDX files (plain or gzipped), see :func:`read_idx`.
* ``cifar10``, ``cifar100``: the "python version" batches, read by a restricted unpickler that
  can only rebuild numpy arrays (it never imports or calls anything else): :func:`read_cifar_batch`.
* ``svhn``: ``train_32x32.mat`` / ``test_32x32.mat`` (MATLAB v5, via :func:`scipy.io.loadmat`).
* ``imagefolder``: ``root/<class>/*.png`` (optionally under ``root/train`` and ``root/test``).
* ``npz``: a ``.npz`` file with ``x_train, y_train[, x_test, y_test, class_names]`` (read by
  :mod:`ddkit.data.npz`).

Every problem raises a ddkit error with a one-line message that names the file: a missing path
raises :class:`ConfigError`, a corrupt/truncated/wrong-format file :class:`FileFormatError`,
inconsistent contents (mismatched sizes or counts) :class:`DataError`.
"""

from __future__ import annotations

import codecs
import gzip
import io
import math
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from ddkit.data.builtin import RawData, register_dataset
from ddkit.data.dataset import to_labels
from ddkit.errors import ConfigError, DataError, DDKitError, FileFormatError

__all__ = [
    "idx_bytes",
    "read_cifar_batch",
    "read_cifar10",
    "read_cifar100",
    "read_idx",
    "read_mnist_family",
    "read_svhn",
]

PathLike = str | os.PathLike


def _root_dir(root: PathLike | None, dataset: str) -> Path:
    """``root`` as an existing folder, else a :class:`ConfigError`."""
    if root is None:
        raise ConfigError(f"dataset {dataset!r} reads files from disk: pass root=PATH (--root)")
    path = Path(root).expanduser()
    if not path.exists():
        raise ConfigError(f"{dataset}: root {str(path)!r} does not exist")
    if not path.is_dir():
        raise ConfigError(f"{dataset}: root {str(path)!r} is not a folder")
    return path


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim == 0 or labels.ndim == 0:
        raise DataError(f"{where}: images and labels must be arrays with one row per image")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")


# ----------------------------------------------------------------------------------------- IDX

# IDX type code -> (numpy big-endian dtype); see http://yann.lecun.com/exdb/mnist/
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CHUNK = 1 << 24


def _read_exact(f: io.BufferedIOBase, n: int) -> bytes:
    """Read up to ``n`` bytes in chunks (never pre-allocates what a header merely claims)."""
    parts, got = [], 0
    while got < n:
        part = f.read(min(_CHUNK, n - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` in the IDX format (the inverse of :func:`read_idx`); its dtype must be one IDX
    knows (uint8, int8, int16, int32, float32, float64)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}; use uint8, int32 or float32")
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (MNIST format), plain or gzip-compressed, into a native-endian array.

    The header is ``0x00 0x00 <type code> <ndim>`` followed by ``ndim`` big-endian uint32 sizes;
    the payload must have exactly the size the header announces.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"IDX file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if is_gzip else open
        f: io.BufferedIOBase = opener(path, "rb")  # noqa: SIM115
        with f:
            magic = _read_exact(f, 4)
            if len(magic) < 4:
                raise FileFormatError(f"{path}: not an IDX file (only {len(magic)} bytes)")
            if magic[:2] != b"\x00\x00" or magic[2] not in _IDX_DTYPES or magic[3] == 0:
                raise FileFormatError(f"{path}: not an IDX file (bad magic number 0x{magic.hex()})")
            dtype, ndim = _IDX_DTYPES[magic[2]], magic[3]
            head = _read_exact(f, 4 * ndim)
            if len(head) < 4 * ndim:
                raise FileFormatError(f"{path}: truncated IDX header ({ndim} dimensions expected)")
            shape = struct.unpack(f">{ndim}I", head)
            expected = math.prod(shape) * dtype.itemsize
            if not is_gzip:
                size = path.stat().st_size - 4 - 4 * ndim
                if size != expected:
                    raise FileFormatError(_size_message(path, shape, expected, size))
            payload = _read_exact(f, expected)
            extra = f.read(1)
    except DDKitError:
        raise
    except (OSError, EOFError, zlib.error) as err:
        raise FileFormatError(f"{path}: cannot read IDX file ({_one_line(err)})") from None
    if len(payload) != expected or extra:
        size = len(payload) + len(extra)
        raise FileFormatError(_size_message(path, shape, expected, size, approx=bool(extra)))
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _size_message(path: Path, shape: tuple, expected: int, size: int, approx: bool = False) -> str:
    what = "truncated" if size < expected else "has trailing data"
    got = f"more than {expected}" if approx else str(size)
    return f"{path}: IDX file {what}: header shape {shape} needs {expected} data bytes, found {got}"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_FOLDER_NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}
_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashionmnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],  # fmt: skip
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}


def _find_idx(root: Path, dataset: str, stem: str) -> Path | None:
    folders = [root, root / "raw", root / _FOLDER_NAMES[dataset] / "raw"]
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_mnist_family(root: PathLike, dataset: str = "mnist") -> RawData:
    """Read MNIST / Fashion-MNIST / KMNIST IDX files from ``root`` (or ``root/raw``).

    The training pair is required; the ``t10k`` pair is optional (without it the ddkit
    convention test = index % 5 == 0 applies).
    """
    if dataset not in _CLASS_NAMES:
        valid = sorted(_CLASS_NAMES)
        raise ConfigError(f"unknown MNIST-family dataset {dataset!r}; valid: {valid}")
    folder = _root_dir(root, dataset)
    found = {key: _find_idx(folder, dataset, stem) for key, stem in _MNIST_FILES.items()}
    for key in ("train_images", "train_labels"):
        if found[key] is None:
            raise ConfigError(
                f"{dataset}: no {_MNIST_FILES[key]}[.gz] in {str(folder)!r} or its raw/ subfolder"
            )
    if (found["test_images"] is None) != (found["test_labels"] is None):
        missing = "test_images" if found["test_images"] is None else "test_labels"
        raise ConfigError(f"{dataset}: no {_MNIST_FILES[missing]}[.gz] in {str(folder)!r}")
    arrays: dict[str, np.ndarray | None] = {}
    for key, path in found.items():
        if path is None:
            arrays[key] = None
            continue
        arr = read_idx(path)
        want = 3 if key.endswith("images") else 1
        if arr.ndim != want:
            raise FileFormatError(f"{path}: expected a {want}-D IDX array, got shape {arr.shape}")
        arrays[key] = arr
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images is not None:
            _check_pair(images, labels, str(found[f"{split}_images"]))
    labels = {
        key: None if arrays[key] is None else to_labels(arrays[key], str(found[key])).numpy()
        for key in ("train_labels", "test_labels")
    }
    return RawData(
        arrays["train_images"],
        labels["train_labels"],
        arrays["test_images"],
        labels["test_labels"],
        class_names=list(_CLASS_NAMES[dataset]),
        num_classes=10,
    )


def _managed(root: str | None, dataset: str) -> RawData:
    """Read ``dataset`` from ``root`` as given, or, without one, from its checksummed folder
    in the data root (:mod:`ddkit.data.store`)."""
    from ddkit.data.store import verified_folder

    return read_mnist_family(root if root is not None else verified_folder(dataset), dataset)


@register_dataset(
    "mnist", help="MNIST 60k/10k: the data root (`ddkit data fetch mnist`) or IDX files in --root"
)
def _mnist(root: str | None) -> RawData:
    return _managed(root, "mnist")


@register_dataset(
    "fashionmnist",
    help="Fashion-MNIST 60k/10k: the data root (`ddkit data fetch fashionmnist`) or --root",
)
def _fashionmnist(root: str | None) -> RawData:
    return _managed(root, "fashionmnist")


@register_dataset("kmnist", needs_root=True, help="Kuzushiji-MNIST from IDX files under root")
def _kmnist(root: str | None) -> RawData:
    return read_mnist_family(root, "kmnist")


# --------------------------------------------------------------------------------------- CIFAR

# The real functions, whatever module numpy keeps them in (numpy.core in 1.x, numpy._core in 2.x).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_FROMBUFFER = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]
_SAFE_KINDS = set("biufcSU")


class _Refused(Exception):
    """Raised inside the unpickler; turned into a FileFormatError naming the file."""


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only valid as ``_reconstruct``'s argument."""

    def __new__(cls, *args, **kwargs):
        raise _Refused("it calls numpy.ndarray directly")


def _safe_reconstruct(subtype, shape, dtype_code):
    # numpy pickles every array as ``_reconstruct(ndarray, (0,), b'b')`` + ``__setstate__``,
    # which checks the data length, so nothing larger than the file can be allocated.
    if subtype is not _NdarrayToken or tuple(shape) != (0,):
        raise _Refused(f"_reconstruct({subtype!r}, {shape!r})")
    return _RECONSTRUCT(np.ndarray, (0,), dtype_code)


def _safe_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _SAFE_KINDS:
        raise _Refused(f"_frombuffer with dtype {dtype!r}")
    return _FROMBUFFER(buf, dtype, shape, order)


def _safe_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str | bytes):
        raise _Refused(f"dtype {spec!r}")
    dtype = np.dtype(spec.decode("ascii") if isinstance(spec, bytes) else spec, align, copy)
    if dtype.kind not in _SAFE_KINDS:
        raise _Refused(f"dtype {dtype}")
    return dtype


def _safe_encode(text, encoding="utf-8"):
    # Python 3 writes ``bytes`` at protocol <= 2 as ``_codecs.encode(str, 'latin1')``.
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise _Refused("_codecs.encode with unexpected arguments")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _safe_encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numpy arrays and builtin containers, nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "ndarray"):
            return _NdarrayToken
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise _Refused(f"it references {module}.{name}, which ddkit refuses to load")
        return fn

    def persistent_load(self, pid):
        raise _Refused("it uses persistent ids")


def read_cifar_batch(path: PathLike) -> dict[str, object]:
    """Read one CIFAR python batch (a pickled dict) without executing arbitrary code.

    Only numpy arrays, ints, strings, bytes, lists and dicts can be rebuilt; any other global
    (``os.system``, classes, ...) raises :class:`FileFormatError`. ``bytes`` keys are decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"CIFAR batch {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except _Refused as err:
        raise FileFormatError(f"{path}: refused to unpickle: {err}") from None
    except MemoryError:
        raise FileFormatError(f"{path}: not a CIFAR batch (implausibly large contents)") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise FileFormatError(f"{path}: not a valid CIFAR batch ({_one_line(err)})") from None
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise FileFormatError(f"{path}: not a CIFAR batch (pickle holds {kind}, not dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_batch(path)
    for key in ("data", label_key):
        if key not in batch:
            keys = sorted(batch)
            raise FileFormatError(f"{path}: CIFAR batch has no {key!r} entry (keys: {keys})")
    data = batch["data"]
    ok = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
    if not ok or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise FileFormatError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(batch[label_key])
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError
        labels = labels.astype(np.int64)
    except (ValueError, TypeError):
        raise FileFormatError(f"{path}: {label_key!r} must be a list of integers") from None
    _check_pair(data, labels, str(path))
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_names(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    meta = read_cifar_batch(path)
    names = meta.get(key)
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise FileFormatError(f"{path}: {key!r} must be a list of strings")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def _cifar_folder(root: PathLike | None, dataset: str, sub: str, marker: str) -> Path:
    folder = _root_dir(root, dataset)
    if not (folder / marker).is_file() and (folder / sub / marker).is_file():
        folder = folder / sub
    if not (folder / marker).is_file():
        raise ConfigError(f"{dataset}: no {marker} in {str(folder)!r} or {str(folder / sub)!r}")
    return folder


def read_cifar10(root: PathLike) -> RawData:
    """CIFAR-10 python batches from ``root`` (the ``cifar-10-batches-py`` folder or its parent)."""
    folder = _cifar_folder(root, "cifar10", "cifar-10-batches-py", "data_batch_1")
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        if not (folder / name).is_file():
            raise ConfigError(f"cifar10: missing {name} in {str(folder)!r}")
        x, y = _cifar_arrays(folder / name, "labels")
        xs.append(x)
        ys.append(y)
    names = _cifar_names(folder / "batches.meta", "label_names")
    return RawData(
        np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5],
        class_names=names, num_classes=10,
    )  # fmt: skip


def read_cifar100(root: PathLike) -> RawData:
    """CIFAR-100 (fine labels) from ``root`` (the ``cifar-100-python`` folder or its parent)."""
    folder = _cifar_folder(root, "cifar100", "cifar-100-python", "train")
    if not (folder / "test").is_file():
        raise ConfigError(f"cifar100: missing test in {str(folder)!r}")
    x_train, y_train = _cifar_arrays(folder / "train", "fine_labels")
    x_test, y_test = _cifar_arrays(folder / "test", "fine_labels")
    names = _cifar_names(folder / "meta", "fine_label_names")
    return RawData(x_train, y_train, x_test, y_test, class_names=names, num_classes=100)


@register_dataset("cifar10", needs_root=True, help="CIFAR-10 python batches (cifar-10-batches-py)")
def _cifar10(root: str | None) -> RawData:
    return read_cifar10(root)


@register_dataset("cifar100", needs_root=True, help="CIFAR-100 python files, fine labels")
def _cifar100(root: str | None) -> RawData:
    return read_cifar100(root)


# ---------------------------------------------------------------------------------------- SVHN


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except Exception as err:  # noqa: BLE001 - scipy raises many types for bad files
        raise FileFormatError(f"{path}: cannot read MATLAB file ({_one_line(err)})") from None
    for key in ("X", "y"):
        if key not in mat:
            raise FileFormatError(f"{path}: no variable {key!r} in the .mat file")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise FileFormatError(f"{path}: 'X' must be uint8 (H, W, 3, N), got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iuf" or y.size != x.shape[3]:
        raise DataError(f"{path}: {x.shape[3]} images but 'y' has {y.size} {y.dtype} entries")
    y = to_labels(y.reshape(-1), f"{path}: 'y'").numpy().copy()
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def read_svhn(root: PathLike) -> RawData:
    """SVHN cropped digits from ``train_32x32.mat`` (and ``test_32x32.mat`` if present)."""
    folder = _root_dir(root, "svhn")
    train = folder / "train_32x32.mat"
    if not train.is_file():
        raise ConfigError(f"svhn: no train_32x32.mat in {str(folder)!r}")
    x_train, y_train = _read_svhn_mat(train)
    x_test = y_test = None
    if (folder / "test_32x32.mat").is_file():
        x_test, y_test = _read_svhn_mat(folder / "test_32x32.mat")
    return RawData(
        x_train, y_train, x_test, y_test, class_names=[str(i) for i in range(10)], num_classes=10
    )


@register_dataset("svhn", needs_root=True, help="SVHN digits (train_32x32.mat, test_32x32.mat)")
def _svhn(root: str | None) -> RawData:
    return read_svhn(root)
