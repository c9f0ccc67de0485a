"""``.npz`` files: the ``npz`` dataset (``x_train, y_train[, x_test, y_test, class_names]``)
and :func:`npz_arrays`, the checked loader it and the graph reader share (no pickle, headers
read before any array, the memory budget checked first)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from ddkit.data.builtin import RawData, register_dataset
from ddkit.data.readers import PathLike, _check_pair, _one_line
from ddkit.errors import ConfigError, DataError, DDKitError, FileFormatError
from ddkit.meter import check_memory

__all__ = ["NPZ_COPIES", "npz_arrays", "read_npz"]

_NPZ_KEYS = (
    ("x_train", "y_train", "x_test", "y_test"),
    ("train_images", "train_labels", "test_images", "test_labels"),
)


#: Bytes of memory per byte of a ``.npz`` file's arrays while a reader turns them into rows (the
#: arrays, a float32 copy, the normalised rows and their float64 working copy; measured: 4x for
#: a graph of float64 node features).
NPZ_COPIES = 4


def _npy_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[str, int]:
    """The array name of a ``.npz`` member and the bytes its header announces; a member that
    is not a ``.npy`` array, holds objects (pickle) or announces more than it holds is refused."""
    key = info.filename.removesuffix(".npy")
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                read = np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
        except Exception:  # noqa: BLE001 - numpy raises several types for a bad header
            raise FileFormatError(f"{path}: member {info.filename!r} is not a .npy array") from None
    if dtype.hasobject:
        raise FileFormatError(
            f"{path}: array {key!r} is an object array; ddkit loads .npz files without pickle "
            "(save plain numeric/string arrays)"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise FileFormatError(
            f"{path}: array {key!r} announces shape {tuple(shape)} ({nbytes:,} bytes) but holds "
            f"{info.file_size:,} bytes; the file is damaged"
        )
    return key, nbytes


def npz_arrays(path: PathLike) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file, read without pickle; a file that is not a ``.npz`` archive
    (a single ``.npy``, garbage, a truncated zip), a member that is not a ``.npy`` array, an
    object array, a header announcing more than its member holds, or arrays beyond the memory
    budget (:func:`ddkit.meter.check_memory`, with the copies a reader makes) are refused in one
    line naming the file."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise FileFormatError(f"{path}: holds a single .npy array, not a .npz archive")
    if not magic.startswith(b"PK"):
        raise FileFormatError(f"{path}: not a .npz archive (a zip of .npy arrays: np.savez)")
    try:
        with zipfile.ZipFile(path) as z:
            heads = [_npy_header(z, info, path) for info in z.infolist()]
            total = sum(nbytes for _, nbytes in heads)
            check_memory(f"reading {path}", total * NPZ_COPIES, "use a smaller file", DataError)
            arrays = {}
            for (key, _), info in zip(heads, z.infolist()):
                with z.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
    except DDKitError:
        raise
    except Exception as err:  # noqa: BLE001 - zipfile/numpy raise many types for bad files
        raise FileFormatError(f"{path}: not a valid .npz file ({_one_line(err)})") from None
    return arrays


def read_npz(path: PathLike) -> RawData:
    """Read a ``.npz`` with ``x_train, y_train`` (or ``train_images, train_labels``), optional
    test arrays and ``class_names``. Loaded without pickle: object arrays are refused."""
    if path is None:
        raise ConfigError("dataset 'npz' reads a file: pass root=PATH.npz (--root)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"npz: file {str(path)!r} does not exist")
    arrays = npz_arrays(path)

    keys = next((k for k in _NPZ_KEYS if k[0] in arrays and k[1] in arrays), None)
    if keys is None:
        raise FileFormatError(
            f"{path}: needs arrays x_train and y_train (or train_images and train_labels); "
            f"found {sorted(arrays)}"
        )
    x_train, y_train = arrays[keys[0]], arrays[keys[1]]
    x_test, y_test = arrays.get(keys[2]), arrays.get(keys[3])
    if (x_test is None) != (y_test is None):
        raise FileFormatError(f"{path}: has only one of {keys[2]} and {keys[3]}")
    _check_pair(x_train, y_train, f"{path} (train)")
    if x_test is not None:
        _check_pair(x_test, y_test, f"{path} (test)")
    for key, labels in ((keys[1], y_train), (keys[3], y_test)):
        if labels is not None and labels.dtype.kind in "US":
            seen = ", ".join(repr(str(v)) for v in np.unique(labels)[:3])
            raise DataError(
                f"{path}: {key} holds text labels ({seen}); store class indices 0..K-1 there and "
                "the names as class_names (names, y = np.unique(labels, return_inverse=True), "
                "over the train and test labels together)"
            )
    class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            desc = f"{names.dtype} {names.shape}"
            raise FileFormatError(f"{path}: class_names must be a 1-D array of strings, got {desc}")
        class_names = [
            n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names.tolist()
        ]
    return RawData(
        x_train, y_train, x_test, y_test, class_names=class_names,
        num_classes=len(class_names) if class_names is not None else None,
    )  # fmt: skip


@register_dataset("npz", needs_root=True, help="a .npz file: x_train, y_train[, x_test, y_test]")
def _npz(root: str | None) -> RawData:
    return read_npz(root)
