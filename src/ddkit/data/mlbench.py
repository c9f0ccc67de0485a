"""Real tables from R's ``mlbench`` package (Leisch & Dimitriadou), read without R.

Debian ships the package as ``r-cran-mlbench``; its ``data/*.rda`` files are installed into the
data root the way MNIST is (:mod:`ddkit.data.store`, checksums verified)::

    apt-get download r-cran-mlbench            # r-cran-mlbench_2.1-3-1_amd64.deb
    ddkit data fetch letter --from r-cran-mlbench_2.1-3-1_amd64.deb

and read through the PyPI package ``rdata`` (extra ``tabular``), which parses R's serialisation
format in Python. The recorded checksums are those of the Debian package 2.1-3-1; other versions
may hold other bytes and are refused by the checksum. The UCI tables have no fixed test split
here, so the ddkit convention applies (rows whose index ``% 5 == 0`` are the test split).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ddkit.data.builtin import RawData, register_dataset
from ddkit.data.store import REMOTES, DataFile, Remote, verified_folder
from ddkit.data.table import frame_table
from ddkit.errors import ConfigError, FileFormatError, require_extra

_HINT = "the Debian package r-cran-mlbench 2.1-3-1 holds it (apt-get download r-cran-mlbench)"


@dataclass(frozen=True)
class MlbenchTable:
    """One table: its ddkit name, the ``.rda`` file and R object in it, the target column."""

    name: str
    file: DataFile
    target: str
    help: str

    @property
    def r_object(self) -> str:
        return self.file.name.removesuffix(".rda")


TABLES = (
    MlbenchTable(
        "letter",
        DataFile("LetterRecognition.rda", 162580, "e987247fa4b45c92191efd9322952737"),
        "lettr",
        "mlbench LetterRecognition: 20,000 x 16, 26 classes (`ddkit data fetch letter`)",
    ),
    MlbenchTable(
        "satellite",
        DataFile("Satellite.rda", 109096, "7a34cc4153a892f6be26d2aacaa8b119"),
        "classes",
        "mlbench Satellite (Landsat): 6,435 x 36, 6 classes (`ddkit data fetch satellite`)",
    ),
    MlbenchTable(
        "shuttle",
        DataFile("Shuttle.rda", 371492, "2dd38ffe9dda175c3c7609881a7b8f3f"),
        "Class",
        "mlbench Shuttle (Statlog): 58,000 x 9, 7 classes (`ddkit data fetch shuttle`)",
    ),
)


def read_rda_table(path: str | Path, r_object: str, target: str) -> RawData:
    """The data frame ``r_object`` of the R data file ``path`` as table :class:`RawData`."""
    rdata = require_extra("rdata", "tabular", "reading R data files (mlbench tables)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Unknown encoding. Assumed ASCII."
            objects = rdata.read_rda(str(path))
    except Exception as e:  # rdata raises several error types for a damaged file
        raise FileFormatError(f"{path}: not a readable R data file ({type(e).__name__})") from None
    if r_object not in objects:
        raise FileFormatError(f"{path}: holds {sorted(objects)}, not the table {r_object!r}")
    frame = objects[r_object]
    if not hasattr(frame, "columns"):
        kind = type(frame).__name__
        raise FileFormatError(f"{path}: {r_object!r} is a {kind}, not a data frame (a table)")
    return frame_table(frame, target, str(path))


def _loader(table: MlbenchTable):  # noqa: ANN202 - a dataset loader
    def load(root: str | None = None) -> RawData:
        folder = Path(root).expanduser() if root is not None else verified_folder(table.name)
        path = folder / table.file.name
        if not path.is_file():
            raise ConfigError(
                f"{table.name}: no file {table.file.name} in {str(folder)!r}; pass the folder "
                f"holding it (--root), or install it: ddkit data fetch {table.name}"
            )
        return read_rda_table(path, table.r_object, table.target)

    load.__name__ = f"_{table.name}"
    return load


for _table in TABLES:
    REMOTES.add(
        _table.name,
        Remote(_table.name, (_table.file,), mirrors=(), offline_hint=_HINT),
        help=_table.help,
    )
    register_dataset(_table.name, modality="table", help=_table.help)(_loader(_table))
