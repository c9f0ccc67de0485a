"""Hostile and malformed inputs to the readers of tables, series and graphs (issue 73), tried as
a user would: through ``ddkit distill --dataset csv|parquet|graph|letter --root FILE`` (exit 2 and
one ``ddkit: error:`` line on stderr, nothing else) or through the Python loaders. Every case
ends in a one-line refusal that names the problem and the fix, or in data read correctly; the
cases marked ``# before:`` were a traceback, a second stderr line, a misleading line or silently
wrong data before the fixes of issue 73."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ddkit.cli import main
from ddkit.data import load_dataset
from ddkit.errors import DataError
from ddkit.meter import BUDGET_ENV, PeakRSS

N = 20
LABELS = [i % 2 for i in range(N)]


def _csv(rows: list[str], header: str = "a,label") -> str:
    return header + "\n" + "".join(r + "\n" for r in rows)


def _column(values: list[object], header: str = "a,label") -> str:
    return _csv([f"{v},{y}" for v, y in zip(values, LABELS)], header)


def _with(i: int, value: object) -> list[object]:
    """``0..N-1`` with ``value`` at row ``i``."""
    return [value if j == i else j for j in range(N)]


def refused(capsys: pytest.CaptureFixture, tmp_path: Path, dataset: str, root: Path, *extra: str):
    """Run ``ddkit distill`` on ``root``: exit 2 and exactly one error line on stderr."""
    argv = ["distill", "--dataset", dataset, "--root", str(root), "--method", "random"]
    rc = main([*argv, "--ipc", "1", "--out", str(tmp_path / "run"), "--quiet", *extra])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert lines[0].startswith("ddkit: error: ") and "unexpected" not in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- CSV

CSV_REFUSED = {
    "empty file": ("", r"needs a header row and at least one data row"),
    "header only": ("a,label\n", r"needs a header row and at least one data row"),
    "NaN cell": (
        _column(_with(3, "nan")),
        r"column 'a' has 1 missing value\(s\) \(first in data row 4\)",
    ),
    "empty cell": (_column(_with(3, "")), r"column 'a' has 1 missing value"),
    # before: 'a numeric column has infinite or too large values' (no column, no row)
    "inf cell": (
        _column(_with(3, "inf")),
        r"column 'a' holds inf \(data row 4\), beyond the float32 range.*rescale",
    ),
    "-Infinity cell": (_column(_with(3, "-Infinity")), r"column 'a' holds -inf \(data row 4\)"),
    # before: a numpy 'overflow encountered in cast' warning line, then the error line
    "1e39 cell": (_column(_with(3, "1e39")), r"column 'a' holds 1e\+39 \(data row 4\)"),
    "400-digit number": (_column(_with(2, 10**400)), r"column 'a' holds inf \(data row 3\)"),
    # before: accepted; the 20 timestamps were stored as 1 or 2 float32 values
    "ms timestamps merging in float32": (
        _column([1_700_000_000_000 + 7 * i for i in range(N)]),
        r"column 'a' has 20 distinct values but \d+ in float32.*subtract an offset",
    ),
    "text amid numbers": (
        _column(_with(5, "x")),
        r"column 'a' mixes numbers and text \(data row 6: 'x'\)",
    ),
    "NUL byte in a number": (_column(_with(0, "1\x00")), r"column 'a' mixes numbers and text"),
    "missing label": (
        _csv([f"{i},{'' if i == 4 else i % 2}" for i in range(N)]),
        r"column 'label' has 1 missing",
    ),
    # before: accepted as a class named 'inf'
    "infinite label": (
        _csv([f"{i},{'inf' if i % 2 else 0}" for i in range(N)]),
        r"target column 'label' holds inf \(data row 2\)",
    ),
    # before: 'num_classes=20 but only 16 training rows' (an option the user never set)
    "continuous label": (
        _csv([f"{i},{i / 7:.5f}" for i in range(N)]),
        r"target column 'label' has 20 distinct values in 20 rows.*bin this one into classes",
    ),
    # before: accepted, 2000 classes of 2 rows
    "2000 numeric classes": (
        _csv([f"{i},{i // 2}" for i in range(4000)]),
        r"target column 'label' has 2000 classes \(more than 1000\)",
    ),
    "one class": (_csv([f"{i},x" for i in range(N)]), r"the training rows hold a single class"),
    "one row": ("a,label\n1,0\n", r"the train split is empty"),
    "no target column": (
        _csv([f"{i},{i % 2}" for i in range(N)], "a,b"),
        r"no target column 'label'; columns: a, b \(pass --target COLUMN\)",
    ),
    # before: "no target column 'label'; columns: Label, LABEL"
    "target matching two columns": (
        _csv([f"{i},{i % 2},{i % 2}" for i in range(N)], "a,Label,LABEL"),
        r"target 'label' matches columns Label, LABEL.*pass one of them exactly",
    ),
    "only the target": (
        _csv([str(i % 2) for i in range(N)], "label"),
        r"no feature column besides the target 'label'",
    ),
    # before: 'the header names a column twice' (which one?)
    "duplicate column": (
        _csv([f"{i},{i},{i % 2}" for i in range(N)], "a,a,label"),
        r"names column 'a' twice; rename one",
    ),
    "duplicate after spaces": (
        _csv([f"{i},{i},{i % 2}" for i in range(N)], "a, a,label"),
        r"names column 'a' twice",
    ),
    # before: accepted, the row index became a feature
    "pandas index column": (
        _csv([f"{i},{i},{i % 2}" for i in range(N)], ",a,label"),
        r"column 1 has no name \(a row index written by pandas' to_csv\?\).*index=False",
    ),
    # before: "no target column 'label'; columns: a;label"
    "semicolon separated": (
        _csv([f"{i};{i % 2}" for i in range(N)], "a;label"),
        r"the header is one column 'a;label'.*save it with commas",
    ),
    "short row": (
        _csv(["1,0", "2"]),
        r"data row 2 has 1 cells, the header 2; give every row one cell",
    ),
    "unclosed quote": (
        'a,label\n"1,0\n' + _column(list(range(N))).split("\n", 1)[1],
        r"data row 1 has 1 cells",
    ),
    "field over the csv limit": (
        _csv([f"{'9' * 200_000},0"]),
        r"not a readable UTF-8 CSV file \(field larger than field limit",
    ),
    "latin-1 text": (None, r"not a readable UTF-8 CSV file \('utf-8' codec can't decode"),
    "binary garbage": (None, r"not a readable UTF-8 CSV file"),
}


@pytest.mark.parametrize("case", list(CSV_REFUSED))
def test_a_hostile_csv_is_one_line_and_exit_2(case, tmp_path, capsys):
    text, message = CSV_REFUSED[case]
    path = tmp_path / "t.csv"
    if case == "latin-1 text":
        path.write_bytes(_column(["é" if i % 3 else "a" for i in range(N)]).encode("latin-1"))
    elif case == "binary garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    else:
        path.write_text(text, encoding="utf-8")
    line = refused(capsys, tmp_path, "csv", path, "--target", "label")
    assert re.search(message, line), line


def test_a_csv_root_that_is_no_file_is_one_line(tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    assert "root" in refused(capsys, tmp_path, "csv", tmp_path / "dir.csv", "--target", "label")
    os.mkfifo(tmp_path / "fifo.csv")  # reading it would block forever
    line = refused(capsys, tmp_path, "csv", tmp_path / "fifo.csv", "--target", "label")
    assert line.endswith("fifo.csv' is not a file")
    line = refused(capsys, tmp_path, "csv", tmp_path / "none.csv", "--target", "label")
    assert line.endswith("none.csv' is not a file")


def test_a_csv_beyond_the_memory_budget_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text(_column(list(range(N))))
    monkeypatch.setenv(BUDGET_ENV, "1000")
    line = refused(capsys, tmp_path, "csv", path, "--target", "label")
    assert "more than the memory budget" in line and "read a sample of its rows" in line


def _load_csv(tmp_path: Path, text: str | bytes):
    path = tmp_path / "t.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return load_dataset("csv-label", root=str(path))


def test_csv_cases_read_correctly(tmp_path):
    # before: a byte-order mark became part of the first name ('\ufeffa'); with the target
    # first, "no target column 'label'"
    s = _load_csv(tmp_path, ("\ufeff" + _column(list(range(N)))).encode("utf-8"))
    assert [c.name for c in s.spec.columns] == ["a"]
    s = _load_csv(tmp_path, "\ufefflabel,a\n" + "".join(f"{i % 2},{i}\n" for i in range(N)))
    assert [c.name for c in s.spec.columns] == ["a"]
    # before: a blank line between rows or at the end was 'data row 21 has 0 cells'
    lines = _column(list(range(N))).splitlines()
    s = _load_csv(tmp_path, "\n".join(lines[:5] + [""] + lines[5:]) + "\n\n\n")
    assert len(s.train) + len(s.test) == N
    s = _load_csv(tmp_path, _column(list(range(N))).replace("\n", "\r\n"))
    assert len(s.train) + len(s.test) == N and s.spec.class_names == ("0", "1")
    # labels that are text, floats, negative, huge or booleans are class names
    for labels, names in [
        (["no", "yes"], ("no", "yes")),
        (["0.5", "1.5"], ("0.5", "1.5")),
        (["-1", "0"], ("-1", "0")),
        (["0", "1e18"], ("0", "1000000000000000000")),
        (["false", "true"], ("false", "true")),
    ]:
        rows = [f"{i},{labels[i % 2]}" for i in range(N)]
        assert _load_csv(tmp_path, _csv(rows)).spec.class_names == names
    # a constant column is kept (std floored), a hex-looking one is categorical
    s = _load_csv(tmp_path, _column([5] * N))
    assert s.spec.std == (1e-6,) and float(s.train.images.abs().max()) == 0.0
    s = _load_csv(tmp_path, _column([f"0x{i % 3}" for i in range(N)]))
    assert s.spec.columns[0].kind == "categorical" and s.spec.columns[0].categories == (
        "0x0",
        "0x1",
        "0x2",
    )


def test_a_csv_of_100000_columns_is_read_without_gigabytes(tmp_path):
    cols = 100_000
    path = tmp_path / "wide.csv"
    with open(path, "w") as f:
        f.write(",".join(f"c{j}" for j in range(cols)) + ",label\n")
        for i in range(10):
            f.write(",".join(str((i * j) % 7) for j in range(cols)) + f",{i % 2}\n")
    with PeakRSS() as m:
        s = load_dataset("csv-label", root=str(path))
    assert s.spec.channels == cols and len(s.train) + len(s.test) == 10
    assert m.extra_mb < 512, m.extra_mb


# ---------------------------------------------------------------- parquet


A = np.arange(N, dtype=float)


def frame(pd, **cols: object):
    """A parquet-bound frame: a numeric column ``a`` and the target ``label``, replaced by
    ``cols``."""
    return pd.DataFrame({"a": A, "label": LABELS} | cols)


PARQUET_FRAMES = {
    "NaN cell": (
        lambda pd: frame(pd, a=_with(3, np.nan)),
        r"column 'a' has 1 missing value\(s\) \(first in data row 4\)",
    ),
    # before: 'a numeric column has infinite or too large values' (no column, no row)
    "inf cell": (
        lambda pd: frame(pd, a=np.where(A == 3, np.inf, A)),
        r"column 'a' holds inf \(data row 4\)",
    ),
    "1e300 cell": (
        lambda pd: frame(pd, a=np.where(A == 3, 1e300, A)),
        r"column 'a' holds 1e\+300 \(data row 4\)",
    ),
    # before: accepted, every value the same float32
    "int64 ids merging in float32": (
        lambda pd: frame(pd, a=np.arange(N, dtype=np.int64) + 2**62),
        r"column 'a' has 20 distinct values but 1 in float32",
    ),
    "uint64 near 2**64": (
        lambda pd: frame(pd, a=np.uint64(2**64 - 1) - np.arange(N, dtype=np.uint64)),
        r"column 'a' has 20 distinct values but 1 in float32",
    ),
    # before: 'the train split is empty' (which file?)
    "no rows": (lambda pd: frame(pd).iloc[:0], r"holds no data rows"),
    "one class": (lambda pd: frame(pd, label=[0] * N), r"the training rows hold a single class"),
    "missing label": (
        lambda pd: frame(pd, label=_with(4, np.nan)),
        r"column 'label' has 1 missing value",
    ),
    # before: accepted as a class named 'inf'
    "infinite label": (
        lambda pd: frame(pd, label=[np.inf if y else 0 for y in LABELS]),
        r"target column 'label' holds inf",
    ),
    "no target column": (
        lambda pd: frame(pd).rename(columns={"label": "b"}),
        r"no target column 'label'; columns: a, b",
    ),
    "text amid numbers": (
        lambda pd: frame(pd, a=[str(v) for v in _with(5, "x")]),
        r"column 'a' mixes numbers and text",
    ),
    "nullable int NA": (
        lambda pd: frame(pd, a=pd.array(_with(2, None), dtype="Int64")),
        r"column 'a' has 1 missing value",
    ),
    # before: "column 'a' mixes numbers and text (data row 3: '<NA>')"
    "string NA": (
        lambda pd: frame(pd, a=pd.array(_with(2, None), dtype="string").astype("string")),
        r"column 'a' has 1 missing value\(s\) \(first in data row 3\)",
    ),
    "all-null column": (lambda pd: frame(pd, z=[None] * N), r"column 'z' has 20 missing value"),
    # before: accepted, every date a one-hot category
    "dates": (
        lambda pd: frame(pd, a=pd.date_range("2020-01-01", periods=N)),
        r"column 'a' holds dates or times \(datetime64.*convert it to numbers",
    ),
    "durations": (
        lambda pd: frame(pd, a=pd.to_timedelta(np.arange(N), unit="s")),
        r"column 'a' holds dates or times \(timedelta64",
    ),
}


PARQUET_ARROW = {
    # before: 'not a readable parquet file (ArrowInvalid)'
    "duplicate column": r"names column 'a' twice; rename one",
    # before: accepted, each list a category '[0 0]'
    "list column": r"column 'a' holds a ndarray in data row 1.*flatten it into columns",
    "struct column": r"column 'a' holds a dict in data row 1",
    "no columns": r"holds no columns",
    "binary garbage": r"not a readable parquet file \(ArrowInvalid\)",
    "empty file": r"not a readable parquet file",
}


def _write_arrow(case: str, path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    a, y = pa.array(np.arange(N, dtype=float)), pa.array(LABELS)
    tables = {
        "duplicate column": lambda: pa.table([a, a, y], names=["a", "a", "label"]),
        "list column": lambda: pa.table(
            [pa.array([[i, i] for i in range(N)]), y], names=["a", "label"]
        ),
        "struct column": lambda: pa.table(
            [pa.array([{"x": i} for i in range(N)]), y], names=["a", "label"]
        ),
        "no columns": lambda: pa.table({}),
    }
    if case in tables:
        pq.write_table(tables[case](), path)
    else:
        path.write_bytes(np.random.default_rng(0).bytes(4000) if case == "binary garbage" else b"")


@pytest.mark.parametrize("case", list(PARQUET_FRAMES))
def test_a_hostile_parquet_table_is_one_line_and_exit_2(case, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    make, message = PARQUET_FRAMES[case]
    path = tmp_path / "t.parquet"
    make(pd).to_parquet(path)
    line = refused(capsys, tmp_path, "parquet", path, "--target", "label")
    assert re.search(message, line), line


@pytest.mark.parametrize("case", list(PARQUET_ARROW))
def test_a_hostile_parquet_file_is_one_line_and_exit_2(case, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    _write_arrow(case, path)
    line = refused(capsys, tmp_path, "parquet", path, "--target", "label")
    assert re.search(PARQUET_ARROW[case], line), line


def test_parquet_cases_read_correctly(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"

    def load(**cols: object):
        pd.DataFrame({"a": np.arange(N, dtype=float), "label": LABELS} | cols).to_parquet(path)
        return load_dataset("parquet-label", root=str(path)).spec

    # before: bytes became categories named "b'blue'", "b'red'"
    spec = load(c=[b"red" if i % 3 else b"blue" for i in range(N)])
    assert spec.columns[1].categories == ("blue", "red")
    assert load(c=pd.Categorical([f"k{i % 3}" for i in range(N)])).columns[1].categories == (
        "k0",
        "k1",
        "k2",
    )
    assert [c.kind for c in load(c=[bool(i % 3) for i in range(N)]).columns] == [
        "numeric",
        "numeric",
    ]
    assert load(label=["no", "yes"] * (N // 2)).class_names == ("no", "yes")
    assert load(label=[y * 10**18 for y in LABELS]).class_names == ("0", "1000000000000000000")
    assert load(label=[-y for y in LABELS]).class_names == ("-1", "0")
    assert load(label=[bool(y) for y in LABELS]).class_names == ("0", "1")


def test_a_parquet_beyond_the_memory_budget_is_refused_before_it_is_read(
    tmp_path, capsys, monkeypatch
):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": np.arange(N, dtype=float), "label": LABELS}).to_parquet(path)
    monkeypatch.setenv(BUDGET_ENV, "1000")
    assert "more than the memory budget" in refused(
        capsys, tmp_path, "parquet", path, "--target", "label"
    )


# ---------------------------------------------------------------- graph .npz

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(30, 4)), np.arange(30) % 3
RING = np.array([[i, (i + 1) % 30] for i in range(30)]).T


def _npz_bytes(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _claiming(shape: tuple[int, ...]) -> bytes:
    """A .npz whose ``x`` header announces ``shape`` float64 but holds 64 bytes."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("x.npy", head.getvalue() + bytes(64))
        for key, value in (("y", Y), ("edges", RING)):
            arr = io.BytesIO()
            np.save(arr, value)
            z.writestr(f"{key}.npy", arr.getvalue())
    return out.getvalue()


def _junk_members() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for key in ("edges", "x", "y"):
            z.writestr(f"{key}.npy", b"junk")
    return out.getvalue()


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


GRAPH_REFUSED = {
    # before: unexpected EOFError / BadZipFile / TypeError ('please report it')
    "empty file": (lambda: b"", r"not a \.npz archive \(a zip of \.npy arrays"),
    "truncated zip": (
        lambda: _npz_bytes(edges=RING, x=X, y=Y)[:900],
        r"not a valid \.npz file \(BadZipFile",
    ),
    "a .npy named .npz": (_npy, r"holds a single \.npy array, not a \.npz archive"),
    # before: numpy's advice to load it with allow_pickle
    "binary garbage": (lambda: RNG.bytes(4000), r"not a \.npz archive"),
    # before: refused as 'got dtype |S4' (the raw bytes)
    "members that are not arrays": (_junk_members, r"member 'edges\.npy' is not a \.npy array"),
    # before: unexpected MemoryError (7 TiB)
    "header claiming 7 TiB": (
        lambda: _claiming((10**6, 10**6)),
        r"array 'x' announces shape \(1000000, 1000000\).*the file is damaged",
    ),
    # before: 'not a readable .npz file (Object arrays cannot be loaded ...)'
    "pickled labels": (
        lambda: _npz_bytes(edges=RING, x=X, y=np.array([0, "a", None] * 10, dtype=object)),
        r"array 'y' is an object array; ddkit loads \.npz files without pickle",
    ),
    "no edges": (lambda: _npz_bytes(x=X, y=Y), r"needs arrays edges, x and y; missing \['edges'\]"),
    "no labels": (lambda: _npz_bytes(edges=RING, x=X), r"missing \['y'\]"),
    "edge past the nodes": (
        lambda: _npz_bytes(edges=np.array([[0, 30]]).T, x=X, y=Y),
        r"edge 0 names node 30, but the graph has 30 nodes",
    ),
    "negative node id": (
        lambda: _npz_bytes(edges=np.array([[0, -1]]).T, x=X, y=Y),
        r"edge 0 names node -1",
    ),
    # before: 'names node -1' (the uint64 wrapped in int64)
    "uint64 node id": (
        lambda: _npz_bytes(edges=np.array([[0, 2**64 - 1]], dtype=np.uint64).T, x=X, y=Y),
        r"edge 0 names node 18446744073709551615",
    ),
    # before: 'names node -9223372036854775808'
    "1e30 node id": (
        lambda: _npz_bytes(edges=np.array([[0.0, 1e30]]).T, x=X, y=Y),
        r"edge 0 names node 1e\+30",
    ),
    # before: accepted as the edge 1 - 0
    "boolean edges": (
        lambda: _npz_bytes(edges=np.array([[True, False]]).T, x=X, y=Y),
        r"edges must name nodes by integer index, got bool",
    ),
    "fractional edges": (
        lambda: _npz_bytes(edges=np.array([[0.5, 1.0]]).T, x=X, y=Y),
        r"integer index, got float64",
    ),
    "edges of 3 rows": (
        lambda: _npz_bytes(edges=np.zeros((3, 5), int), x=X, y=Y),
        r"edges must have shape \(2, E\) or \(E, 2\), got \(3, 5\)",
    ),
    "an adjacency as edges": (
        lambda: _npz_bytes(edges=np.eye(30, dtype=int), x=X, y=Y),
        r"got \(30, 30\); an \(N, N\) adjacency\? pass np\.nonzero",
    ),
    "NaN feature": (
        lambda: _npz_bytes(edges=RING, x=np.where(np.arange(30)[:, None] == 3, np.nan, X), y=Y),
        r"missing \(NaN\) or infinite values \(first: node 3, feature 0\)",
    ),
    # before: 'image statistics are not finite (values too large); rescale the images'
    "1e300 feature": (
        lambda: _npz_bytes(edges=RING, x=np.where(np.arange(30)[:, None] == 3, 1e300, X), y=Y),
        r"values beyond the float32 range of stored rows \(first: node 3, feature 0\)",
    ),
    "text features": (
        lambda: _npz_bytes(edges=RING, x=X.astype(str), y=Y),
        r"node features must be real numbers",
    ),
    "features of no columns": (
        lambda: _npz_bytes(edges=RING, x=np.zeros((30, 0)), y=Y),
        r"node features must have shape \(N, F\), got \(30, 0\)",
    ),
    "no nodes": (
        lambda: _npz_bytes(edges=np.zeros((2, 0), int), x=np.zeros((0, 4)), y=np.zeros(0, int)),
        r"got \(0, 4\)",
    ),
    "text labels": (
        lambda: _npz_bytes(edges=RING, x=X, y=np.array(["a", "b", "c"] * 10)),
        r"node labels must be real numbers",
    ),
    "fractional labels": (
        lambda: _npz_bytes(edges=RING, x=X, y=Y + 0.5),
        r"must be integers \(class indices\), found 0\.5",
    ),
    "NaN label": (lambda: _npz_bytes(edges=RING, x=X, y=np.where(Y == 2, np.nan, Y)), r"found nan"),
    "negative labels": (
        lambda: _npz_bytes(edges=RING, x=X, y=Y - 1),
        r"class indices 0\.\.K-1, found -1",
    ),
    "label 1e18": (
        lambda: _npz_bytes(edges=RING, x=X, y=np.where(Y == 2, 10**18, Y)),
        r"found 1000000000000000000",
    ),
    "labels short": (
        lambda: _npz_bytes(edges=RING, x=X, y=Y[:5]),
        r"30 nodes \(rows of x\) but 5 node labels",
    ),
    "one class": (
        lambda: _npz_bytes(edges=RING, x=X, y=np.zeros(30, int)),
        r"the training rows hold a single class",
    ),
    # before: '1 class names for 3 classes'
    "class names in 2-D": (
        lambda: _npz_bytes(edges=RING, x=X, y=Y, class_names=np.array([["a", "b", "c"]])),
        r"class_names must be a 1-D array, got shape \(1, 3\)",
    ),
    "masks of the wrong length": (
        lambda: _npz_bytes(
            edges=RING, x=X, y=Y, train_mask=np.ones(5, bool), test_mask=np.ones(5, bool)
        ),
        r"train_mask must be a boolean \(or 0/1\) array of 30 entries",
    ),
    "an empty test mask": (
        lambda: _npz_bytes(
            edges=RING, x=X, y=Y, train_mask=np.ones(30, bool), test_mask=np.zeros(30, bool)
        ),
        r"the graph needs train and test nodes",
    ),
}


@pytest.mark.parametrize("case", list(GRAPH_REFUSED))
def test_a_hostile_graph_file_is_one_line_and_exit_2(case, tmp_path, capsys):
    make, message = GRAPH_REFUSED[case]
    path = tmp_path / "g.npz"
    path.write_bytes(make())
    line = refused(capsys, tmp_path, "graph", path)
    assert re.search(message, line) and "allow_pickle=" not in line, line


def test_a_graph_root_that_is_no_file_is_one_line(tmp_path, capsys):
    (tmp_path / "dir.npz").mkdir()
    assert "is not a file" in refused(capsys, tmp_path, "graph", tmp_path / "dir.npz")
    os.mkfifo(tmp_path / "fifo.npz")
    assert "is not a file" in refused(capsys, tmp_path, "graph", tmp_path / "fifo.npz")


def test_a_graph_beyond_the_memory_budget_is_refused_before_it_is_read(
    tmp_path, capsys, monkeypatch
):
    # 30 x 200,000 float64 zeros: 48 MB of arrays in a 50 kB file (a zip bomb, at small scale)
    path = tmp_path / "g.npz"
    np.savez_compressed(path, edges=RING, x=np.zeros((30, 200_000)), y=Y)
    assert path.stat().st_size < 2**20
    monkeypatch.setenv(BUDGET_ENV, str(100 * 2**20))
    line = refused(capsys, tmp_path, "graph", path)
    assert re.search(r"reading .*g\.npz would take 0\.2 GiB, more than the memory budget", line)


def test_graph_cases_read_correctly(tmp_path):
    path = tmp_path / "g.npz"

    def load(**arrays: object):
        np.savez(path, **({"x": X, "y": Y} | arrays))
        return load_dataset("graph", root=str(path)).train.graph

    with pytest.warns(UserWarning, match="dropped 30 self-loop"):
        assert load(edges=np.stack([np.arange(30)] * 2)).edges.shape == (2, 0)
    assert load(edges=np.zeros((2, 0), int)).num_nodes == 30  # every node isolated: kept
    assert load(edges=RING.astype(float)).edges.shape == (2, 30)  # whole floats are node ids
    assert load(edges=RING.T).edges.shape == (2, 30)  # (E, 2)
    assert load(edges=np.array([[0, 1], [2, 3]])).edges.tolist() == [[0, 1], [2, 3]]  # (2, E)
    np.savez(path, x=X, y=Y, edges=RING, class_names=np.array([7, 8, 9]))
    assert load_dataset("graph", root=str(path)).spec.class_names == ("7", "8", "9")


def test_a_graph_of_100000_features_is_read_without_gigabytes(tmp_path):
    path = tmp_path / "g.npz"
    np.savez(path, edges=RING, x=RNG.normal(size=(30, 100_000)).astype(np.float32), y=Y)
    with PeakRSS() as m:
        s = load_dataset("graph", root=str(path))
    assert s.spec.channels == 100_000 and m.extra_mb < 512, m.extra_mb


# ---------------------------------------------------------------- series (Python API)

SX, SY = RNG.normal(size=(20, 30)), np.arange(20) % 2
SERIES_REFUSED = {
    "ragged lengths": (
        lambda: ([RNG.normal(size=29 if i == 3 else 30) for i in range(20)], SY),
        r"series of unequal length \(row 3: \(29,\), row 0: \(30,\)\); resample, pad or truncate",
    ),
    "ragged channels": (
        lambda: ([np.zeros((3 if i == 3 else 2, 30)) for i in range(20)], SY),
        r"series of unequal shape",
    ),
    "NaN gap": (
        lambda: (np.where(np.arange(30) == 7, np.nan, SX), SY),
        r"20 series hold missing \(NaN\) or infinite values \(first: row 0, step 7\); fill, interpolate",
    ),
    "inf": (
        lambda: (np.where(np.arange(30) == 7, np.inf, SX), SY),
        r"infinite values \(first: row 0, step 7\)",
    ),
    # before: 'series rows contain missing (NaN), infinite or too large values' (where?)
    "1e300": (
        lambda: (np.where(np.arange(30) == 7, 1e300, SX), SY),
        r"values beyond the float32 range of stored rows \(first: row 0, step 7\); rescale",
    ),
    # before: 'must have shape (N, L) or (N, D, L), got (0, 1, 30)' (a shape never given)
    "no series": (lambda: (np.zeros((0, 30)), np.zeros(0, int)), r"train series: no series given"),
    "empty list": (lambda: ([], []), r"train series: no series given"),
    "one step": (lambda: (SX[:, :1], SY), r"a series needs at least 2 steps, got 1"),
    "4-D": (
        lambda: (SX[:, None, None, :], SY),
        r"must have shape \(N, L\) or \(N, D, L\), got \(20, 1, 1, 30\)",
    ),
    "text values": (
        lambda: (SX.astype(str), SY),
        r"train series must be real numbers, got dtype <U",
    ),
    "complex values": (lambda: (SX.astype(complex), SY), r"got dtype complex128"),
    # before: '20 train images but 5 train labels'
    "labels short": (
        lambda: (SX, SY[:5]),
        r"20 train series but 5 train labels; give one label per series",
    ),
    "text labels": (lambda: (SX, np.array(["a", "b"] * 10)), r"train labels must be real numbers"),
    "fractional labels": (lambda: (SX, SY + 0.5), r"found 0\.5"),
    "negative labels": (lambda: (SX, SY - 1), r"found -1"),
    "label 1e18": (lambda: (SX, np.where(SY == 1, 10**18, 0)), r"found 1000000000000000000"),
    "one class": (lambda: (SX, np.zeros(20, int)), r"the training rows hold a single class"),
    "one series": (lambda: (SX[:1], SY[:1]), r"the train split is empty"),
}


@pytest.mark.parametrize("case", list(SERIES_REFUSED))
def test_a_hostile_series_is_one_line(case):
    from ddkit.data.series import from_series

    make, message = SERIES_REFUSED[case]
    with pytest.raises(DataError) as e:
        from_series(*make())
    assert "\n" not in str(e.value) and e.match(message)


def test_series_cases_read_correctly():
    from ddkit.data.series import from_series

    s = from_series(SX, SY, SX[:, :], SY)  # a test split of its own
    assert s.spec.shape == (1, 1, 30) and len(s.train) == len(s.test) == 20
    assert from_series(SX > 0, SY).spec.num_classes == 2  # booleans are 0 / 1
    assert from_series(np.ones((20, 30)), SY).spec.std == (1e-6,)  # a constant series: kept
    big = from_series(np.where(np.arange(30) == 7, 3e38, SX), SY)  # within float32: kept
    assert np.isfinite(big.spec.std).all() and big.train.images.isfinite().all()


# ---------------------------------------------------------------- mlbench tables (R files)


def _rda(folder: Path, obj: object, name: str = "LetterRecognition") -> Path:
    rdata = pytest.importorskip("rdata")
    folder.mkdir(parents=True, exist_ok=True)
    rdata.write_rda(str(folder / "LetterRecognition.rda"), {name: obj})
    return folder


def test_hostile_mlbench_files_are_one_line_and_exit_2(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    # before: unexpected AttributeError ('please report it')
    line = refused(capsys, tmp_path, "letter", _rda(tmp_path / "vec", np.arange(5.0)))
    assert line.endswith("'LetterRecognition' is a ndarray, not a data frame (a table)")
    frame = pd.DataFrame(
        {"a": np.array([1.0, np.nan, 3.0] * 10), "lettr": pd.Categorical(list("xyz") * 10)}
    )
    line = refused(capsys, tmp_path, "letter", _rda(tmp_path / "nan", frame))
    assert "column 'a' has 10 missing value(s)" in line
    line = refused(capsys, tmp_path, "letter", _rda(tmp_path / "other", frame, "Other"))
    assert "holds ['Other'], not the table 'LetterRecognition'" in line
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "LetterRecognition.rda").write_bytes(RNG.bytes(3000))
    assert "not a readable R data file" in refused(capsys, tmp_path, "letter", tmp_path / "junk")
    # before: 'not a readable R data file (FileNotFoundError / IsADirectoryError / ...)'
    (tmp_path / "dir" / "LetterRecognition.rda").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    for root in ("none", "dir", "file"):
        line = refused(capsys, tmp_path, "letter", tmp_path / root)
        assert "no file LetterRecognition.rda in" in line and "ddkit data fetch letter" in line
