"""Tables as datasets (issue 39): numeric and categorical columns, a target column, and the
tabular datasets ddkit ships or reads.

A table row is stored in the ``(F, 1, 1)`` layout of :mod:`ddkit.data.spec`: one channel per
numeric column (standardised with train statistics) and one per category of a categorical
column (one-hot, stored as is). A distilled row's categorical block holds free real scores, one
per category; :func:`decode_rows` reads it as the category of the largest score, so an exported
row always holds a valid category (the scores themselves stay in the saved set).

Input rules (one clear line, never a silent guess): a cell that is empty or one of
:data:`MISSING` is a missing value and is refused (fill or drop such rows first); a column
holding both numbers and text is refused; a target column that does not exist is refused with
the list of columns; a column of more than :data:`MAX_CATEGORIES` categories (likely an
identifier) is refused, and so is a target of more classes than half its rows (a continuous
value); a number beyond the float32 range, an infinite one, or a column whose distinct values
mostly merge in float32 (ids, timestamps) is refused; a column without a name (the index
pandas' ``to_csv`` writes) is refused; dates, times and nested values (lists, structs) are
refused. A CSV file may start with a byte-order mark and hold blank lines (both skipped); it
is estimated against the memory budget (:func:`ddkit.meter.check_memory`) before it is read,
and so is a parquet file. Without a test split the ddkit convention applies (rows whose index
``% 5 == 0`` are the test split).

Datasets: ``breast-cancer``, ``wine``, ``digits-tabular`` (scikit-learn's, embedded);
``csv-<target>`` / ``parquet-<target>`` (``--dataset csv --root FILE --target COLUMN``);
the mlbench tables of :mod:`ddkit.data.mlbench`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddkit.data.builtin import DATASETS, DatasetFamily, RawData, register_dataset
from ddkit.data.dataset import ArrayExtras, DatasetSplits, from_arrays
from ddkit.data.spec import Column, DatasetSpec
from ddkit.errors import ConfigError, DataError, FileFormatError, require_extra
from ddkit.meter import check_memory

__all__ = [
    "MAX_CATEGORIES",
    "MISSING",
    "decode_rows",
    "encode_table",
    "encode_target",
    "frame_table",
    "from_table",
    "read_csv",
    "read_parquet",
]

#: Cell texts read as a missing value (compared case-insensitively, after stripping spaces).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
#: More categories than this in one column is refused (an identifier, not a feature).
MAX_CATEGORIES = 1000
#: The largest magnitude a stored (float32) cell can hold.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Bytes of memory per byte of CSV text while it is read (measured: 12x for a table of floats,
#: 23x for one of one-digit cells, whose Python strings outweigh their text).
CSV_BYTES_PER_BYTE = 24
#: Bytes of memory per parquet cell while it is read (pandas' column, its Python values, the
#: float64 and float32 rows).
PARQUET_BYTES_PER_CELL = 64


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip().lower() in MISSING
    return isinstance(v, Real) and math.isnan(float(v))


def _as_number(v: Any) -> float | None:
    """``v`` as a float if it is a number or a text holding one, else ``None``."""
    if isinstance(v, Real) and not isinstance(v, bool):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def _check_complete(name: str, values: Sequence[Any], where: str) -> None:
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing:
        raise DataError(
            f"{where}: column {name!r} has {len(missing)} missing value(s) (first in data row "
            f"{missing[0] + 1}); fill them or drop those rows"
        )


def _numbers(name: str, values: Sequence[Any], where: str) -> np.ndarray | None:
    """The column as float64 if all of it is numbers, ``None`` if none of it is; a column
    mixing both is a :class:`DataError`."""
    parsed = [_as_number(v) for v in values]
    text = [i for i, p in enumerate(parsed) if p is None]
    if not text:
        return _storable(name, np.asarray(parsed, dtype=np.float64), where)
    if len(text) < len(values):
        i = text[0]
        raise DataError(
            f"{where}: column {name!r} mixes numbers and text (data row {i + 1}: "
            f"{values[i]!r}); make it all numbers or all categories"
        )
    return None


def _storable(name: str, nums: np.ndarray, where: str) -> np.ndarray:
    """``nums`` if no value is infinite or beyond the float32 range of stored rows."""
    big = np.flatnonzero(~(np.abs(nums) <= _FLOAT32_MAX))
    if len(big):
        raise DataError(
            f"{where}: column {name!r} holds {float(nums[big[0]]):g} (data row {big[0] + 1}), "
            f"beyond the float32 range of stored rows ({len(big)} such value(s)); rescale the "
            "column or drop those rows"
        )
    return nums


def _distinct(columns: np.ndarray) -> np.ndarray:
    """The number of distinct values in each column of ``columns`` ``(N, F)``."""
    ordered = np.sort(columns, axis=0)
    return 1 + (ordered[1:] != ordered[:-1]).sum(axis=0)


def _check_precision(exact: np.ndarray, names: Sequence[str], where: str) -> None:
    """Refuse a column of ``exact`` ``(N, F)`` (numbers as read) whose distinct values mostly
    merge in float32, the precision of stored rows (large numbers differing by small amounts)."""
    if not len(exact):
        return
    distinct, kept = _distinct(exact), _distinct(exact.astype(np.float32))
    bad = np.flatnonzero((distinct > 1) & (kept * 2 < distinct + 1))
    if len(bad):
        j = bad[0]
        raise DataError(
            f"{where}: column {names[j]!r} has {distinct[j]} distinct values but {kept[j]} in "
            "float32, the precision of stored rows (large numbers differing by small amounts: "
            "an id or a timestamp?); subtract an offset, rescale it or drop it"
        )


def _categories(name: str, values: Sequence[Any], where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Sorted category names and each row's index into them."""
    texts = np.asarray([str(v).strip() for v in values])
    cats, index = np.unique(texts, return_inverse=True)
    if len(cats) > MAX_CATEGORIES:
        raise DataError(
            f"{where}: column {name!r} has {len(cats)} categories (more than {MAX_CATEGORIES}), "
            "likely an identifier; drop it"
        )
    return tuple(str(c) for c in cats), index


def encode_target(
    values: Sequence[Any], where: str, name: str = "target"
) -> tuple[np.ndarray, list[str]]:
    """Class indices and class names of a target column's cells (numbers sorted numerically,
    texts alphabetically)."""
    parsed = [_as_number(v) for v in values]
    if all(p is not None for p in parsed):
        nums = np.asarray(parsed, dtype=np.float64)
        if not np.isfinite(nums).all():
            i = int(np.flatnonzero(~np.isfinite(nums))[0])
            raise DataError(
                f"{where}: target column {name!r} holds {float(nums[i]):g} (data row {i + 1}); a class "
                "must be a finite number or a name: fix or drop those rows"
            )
        classes, index = np.unique(nums, return_inverse=True)
        shown = [str(int(c)) if float(c).is_integer() else repr(float(c)) for c in classes]
    else:
        _numbers(name, values, where)  # a target mixing numbers and text is refused
        cats, index = np.unique([str(v).strip() for v in values], return_inverse=True)
        shown = [str(c) for c in cats]
    if len(shown) > max(len(values) // 2, 2):
        raise DataError(
            f"{where}: target column {name!r} has {len(shown)} distinct values in {len(values)} "
            "rows, more than one class per two rows (a continuous value or an id?); name a "
            "column of classes, or bin this one into classes first"
        )
    if len(shown) > MAX_CATEGORIES:
        raise DataError(
            f"{where}: target column {name!r} has {len(shown)} classes (more than "
            f"{MAX_CATEGORIES}); name a column of classes, or group these first"
        )
    return index.astype(np.int64), shown


def _find_target(names: Sequence[str], target: str, where: str) -> str:
    """The column called ``target`` (exactly, else case-insensitively)."""
    if target in names:
        return target
    close = [n for n in names if n.lower() == target.lower()]
    if len(close) == 1:
        return close[0]
    if close:
        raise DataError(
            f"{where}: target {target!r} matches columns {', '.join(close)} (letter case "
            "aside); pass one of them exactly (--target COLUMN)"
        )
    if not names:
        raise DataError(f"{where}: holds no columns")
    raise DataError(
        f"{where}: no target column {target!r}; columns: {', '.join(names)} (pass --target COLUMN)"
    )


def encode_table(
    table: dict[str, Sequence[Any]], target: str, where: str = "table"
) -> tuple[np.ndarray, np.ndarray, tuple[Column, ...], list[str]]:
    """Encode named columns (cells: numbers or texts) into rows ``(N, F)`` float32, class indices
    ``(N,)``, the feature :class:`Column` s and the class names, by the module's input rules.

    Numeric columns keep their values; a categorical column becomes one one-hot channel per
    category (sorted). ``where`` names the source in messages."""
    names = list(table)
    target = _find_target(names, target, where)
    unnamed = [i for i, n in enumerate(names) if not n.strip()]
    if unnamed:
        raise DataError(
            f"{where}: column {unnamed[0] + 1} has no name (a row index written by pandas' "
            "to_csv?); name it, or drop it (to_csv(index=False))"
        )
    if not len(table[target]):
        raise DataError(f"{where}: holds no data rows")
    for name in names:
        _check_complete(name, table[name], where)
    y, class_names = encode_target(table[target], where, target)
    blocks, columns, numeric = [], [], []
    for name in names:
        if name == target:
            continue
        values = table[name]
        nums = _numbers(name, values, where)
        if nums is not None:
            blocks.append(nums[:, None])
            columns.append(Column(name))
            numeric.append(len(blocks) - 1)
            continue
        cats, index = _categories(name, values, where)
        blocks.append(np.eye(len(cats))[index])
        columns.append(Column(name, "categorical", cats))
    if not columns:
        raise DataError(f"{where}: no feature column besides the target {target!r}")
    if numeric:
        exact = np.concatenate([blocks[i] for i in numeric], axis=1)
        _check_precision(exact, [columns[i].name for i in numeric], where)
    x = np.concatenate(blocks, axis=1, dtype=np.float32)  # every value fits (_storable)
    return x, y, tuple(columns), class_names


def table_raw(
    x: np.ndarray,
    y: np.ndarray,
    columns: tuple[Column, ...],
    class_names: list[str] | None = None,
) -> RawData:
    """:class:`RawData` of encoded rows ``(N, F)`` (test split: the ddkit convention)."""
    return RawData(
        x[:, :, None, None],
        y,
        class_names=class_names,
        num_classes=len(class_names) if class_names else None,
        modality="table",
        columns=columns,
    )


def from_table(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor | None = None,
    y_test: np.ndarray | torch.Tensor | None = None,
    *,
    columns: Sequence[Column] | None = None,
    name: str = "table",
    class_names: list[str] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetSplits:
    """Build table :class:`DatasetSplits` from encoded rows ``(N, F)`` (numeric, with one-hot
    blocks for the categorical ``columns``; default: ``F`` numeric columns ``x0 .. x{F-1}``)."""
    x = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x)
    if x.ndim != 2:
        raise DataError(f"table rows must have shape (N, F), got {x.shape}")
    cols = (
        tuple(columns) if columns is not None else tuple(Column(f"x{i}") for i in range(x.shape[1]))
    )
    xt = None
    if x_test is not None:
        xt = np.asarray(x_test.numpy() if isinstance(x_test, torch.Tensor) else x_test)
        if xt.ndim != 2 or xt.shape[1] != x.shape[1]:
            raise DataError(f"test rows have shape {xt.shape}, train rows (N, {x.shape[1]})")
        xt = xt[:, :, None, None]
    return from_arrays(
        x[:, :, None, None],
        y,
        xt,
        y_test,
        name=name,
        val_fraction=val_fraction,
        seed=seed,
        extras=ArrayExtras(class_names, modality="table", columns=cols),
    )


def column_values(rows: torch.Tensor, spec: DatasetSpec) -> list[tuple[Column, torch.Tensor]]:
    """Stored table rows ``(N, F, 1, 1)`` column by column: each numeric column de-normalised
    (float64 ``(N,)``), each categorical block as the index of its largest score (int64)."""
    if not spec.columns:  # only a table's spec has columns
        raise DataError(f"table columns of dataset {spec.name!r}, which holds {spec.modality}")
    x = rows.detach().double().flatten(1).cpu()
    x = x * torch.tensor(spec.std, dtype=torch.float64) + torch.tensor(
        spec.mean, dtype=torch.float64
    )
    out, at = [], 0
    for col in spec.columns:
        block = x[:, at : at + col.width]
        out.append((col, block[:, 0] if col.kind == "numeric" else block.argmax(1)))
        at += col.width
    return out


def decode_rows(rows: torch.Tensor, spec: DatasetSpec) -> list[dict[str, float | str]]:
    """Stored table rows ``(N, F, 1, 1)`` back in their columns: numeric values de-normalised,
    each categorical block read as the category of its largest score."""
    out: list[dict[str, float | str]] = [{} for _ in range(len(rows))]
    for col, values in column_values(rows, spec):
        shown = values.tolist() if col.kind == "numeric" else [col.categories[i] for i in values]
        for row, v in zip(out, shown):
            row[col.name] = v
    return out


# ---------------------------------------------------------------- files


def _table_file(root: str | None, dataset: str) -> Path:
    if root is None:
        raise ConfigError(f"dataset {dataset!r} reads a file: pass root=FILE (--root FILE)")
    path = Path(root).expanduser()
    if not path.is_file():
        raise ConfigError(f"{dataset}: root {str(path)!r} is not a file")
    return path


def read_csv(path: str | Path, target: str) -> RawData:
    """A CSV file with a header row as :class:`RawData` (target column ``target``); a leading
    byte-order mark and blank lines are skipped."""
    where = str(path)
    nbytes = Path(path).stat().st_size * CSV_BYTES_PER_BYTE
    check_memory(f"reading {where}", nbytes, "read a sample of its rows", DataError)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FileFormatError(f"{where}: not a readable UTF-8 CSV file ({e})") from None
    if len(rows) < 2:
        raise DataError(f"{where}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        raise DataError(
            f"{where}: the header is one column {header[0]!r}; ddkit reads comma-separated "
            "files: save it with commas"
        )
    twice = _named_twice(header)
    if twice is not None:
        raise DataError(f"{where}: the header names column {twice!r} twice; rename one")
    short = next((i for i, r in enumerate(rows[1:]) if len(r) != len(header)), None)
    if short is not None:
        raise DataError(
            f"{where}: data row {short + 1} has {len(rows[short + 1])} cells, the header "
            f"{len(header)}; give every row one cell per column (quote cells holding commas)"
        )
    table = {h: [r[j] for r in rows[1:]] for j, h in enumerate(header)}
    del rows
    return table_raw(*encode_table(table, target, where))


def _named_twice(names: Sequence[str]) -> str | None:
    """The first name that ``names`` holds twice, else ``None``."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _object_cells(name: str, col: Any, where: str) -> list[str | None]:
    """An object column's cells as texts (``None`` where missing; bytes decoded as UTF-8);
    nested values (lists, arrays, dicts: a struct or list column) are refused."""
    missing = col.isna().to_numpy()
    cells: list[str | None] = []
    for i, (v, gone) in enumerate(zip(col.tolist(), missing)):
        if gone or _is_missing(v):
            cells.append(None)
        elif isinstance(v, bytes):
            cells.append(v.decode("utf-8", "backslashreplace"))
        elif isinstance(v, list | tuple | dict | set | np.ndarray):
            raise DataError(
                f"{where}: column {name!r} holds a {type(v).__name__} in data row {i + 1}, not a "
                "number or a category; flatten it into columns or drop it"
            )
        else:
            cells.append(str(v))
    return cells


def frame_table(frame: Any, target: str, where: str) -> RawData:
    """A pandas DataFrame (from parquet, or an R data frame read by ``rdata``) as :class:`RawData`:
    number and boolean columns numeric, text and category columns categorical; dates, times and
    nested values are refused."""
    names = [str(n) for n in frame.columns]
    twice = _named_twice(names)
    if twice is not None:
        raise DataError(f"{where}: names column {twice!r} twice; rename one")
    table = {}
    for name, (_, col) in zip(names, frame.items()):
        kind = getattr(col.dtype, "kind", "O")
        if kind in "Mm":
            raise DataError(
                f"{where}: column {name!r} holds dates or times ({col.dtype}); convert it to "
                "numbers (e.g. days since a date) or drop it"
            )
        if kind in "iu" and not col.hasnans:  # ints beyond 2**53 lose digits in float64
            nums = col.to_numpy(dtype=np.float64)
            ints = col.to_numpy()
            if len(ints) and np.abs(ints).max() > 2**24:
                _check_precision(ints[:, None], [name], where)
            table[name] = nums.tolist()
        elif kind in "biuf":
            table[name] = col.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        else:
            table[name] = _object_cells(name, col, where)
    return table_raw(*encode_table(table, target, where))


def read_parquet(path: str | Path, target: str) -> RawData:
    """A parquet file as :class:`RawData` (needs the optional ``pyarrow``: extra ``tabular``)."""
    pq = require_extra("pyarrow.parquet", "tabular", "reading parquet files")
    try:
        file = pq.ParquetFile(str(path))
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own error types for a bad file
        raise FileFormatError(f"{path}: not a readable parquet file ({type(e).__name__})") from None
    names = file.schema_arrow.names
    twice = _named_twice(names)
    if twice is not None:
        raise DataError(f"{path}: names column {twice!r} twice; rename one")
    cells = file.metadata.num_rows * file.metadata.num_columns
    fix = "read a sample of its rows"
    check_memory(f"reading {path}", cells * PARQUET_BYTES_PER_CELL, fix, DataError)
    try:
        frame = file.read().to_pandas()
    except Exception as e:  # noqa: BLE001 - a damaged file, or a type pandas cannot hold
        raise FileFormatError(f"{path}: not a readable parquet file ({type(e).__name__})") from None
    return frame_table(frame, target, str(path))


FILE_FORMATS = ("csv", "parquet")


def dataset_with_target(dataset: str, target: str | None) -> str:
    """The dataset name for ``--dataset D [--target COLUMN]``: a table file format with its
    target column becomes ``<format>-<column>``; ``--target`` with another dataset, or a table
    file format without it, is a one-line :class:`ConfigError`."""
    if dataset.lower() in FILE_FORMATS:
        if not target:
            raise ConfigError(f"dataset {dataset!r} needs its target column: --target COLUMN")
        return f"{dataset.lower()}-{target}"
    if target:
        raise ConfigError(f"--target names the label column of {' / '.join(FILE_FORMATS)} files")
    return dataset


def _file_family(prefix: str, read: Any) -> DatasetFamily:
    def build(target: str):  # noqa: ANN202 - a dataset loader
        def load(root: str | None) -> RawData:
            return read(_table_file(root, f"{prefix}-{target}"), target)

        load.needs_root = True  # type: ignore[attr-defined]
        load.modality = "table"  # type: ignore[attr-defined]
        return load

    return DatasetFamily(prefix, "<target column>", build)


DATASETS.add_family(
    _file_family("csv", read_csv),
    help="a CSV file with a header: --dataset csv --root FILE --target COLUMN",
)
DATASETS.add_family(
    _file_family("parquet", read_parquet),
    help="a parquet file (extra 'tabular'): --dataset parquet --root FILE --target COLUMN",
)


# ---------------------------------------------------------------- scikit-learn's tables


def _sklearn_table(load: Any) -> RawData:
    d = load()
    columns = tuple(Column(str(n)) for n in d.feature_names)
    names = [str(n) for n in d.target_names]
    return table_raw(np.asarray(d.data, np.float32), d.target.astype(np.int64), columns, names)


@register_dataset(
    "breast-cancer",
    builtin=True,
    modality="table",
    help="sklearn's breast cancer table, 569 x 30, 2 classes",
)
def _breast_cancer(root: str | None = None) -> RawData:
    from sklearn.datasets import load_breast_cancer

    return _sklearn_table(load_breast_cancer)


@register_dataset(
    "wine", builtin=True, modality="table", help="sklearn's wine table, 178 x 13, 3 classes"
)
def _wine(root: str | None = None) -> RawData:
    from sklearn.datasets import load_wine

    return _sklearn_table(load_wine)


@register_dataset(
    "digits-tabular",
    builtin=True,
    modality="table",
    help="sklearn's 8x8 digits as a table of 64 features",
)
def _digits_tabular(root: str | None = None) -> RawData:
    from sklearn.datasets import load_digits

    return _sklearn_table(load_digits)
