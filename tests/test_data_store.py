"""The data root: checksummed dataset folders, offline install and resumable download (tested
against a local HTTP server; tests never touch the internet)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ddkit.cli import main
from ddkit.data import load_dataset, store
from ddkit.data.readers import idx_bytes
from ddkit.errors import DataError

RNG = np.random.default_rng(0)


def _mnist_like(n_train: int = 40, n_test: int = 20) -> dict[str, bytes]:
    """Four small IDX files under MNIST's names."""
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    return {name: idx_bytes(a) for name, a in arrays.items()}


FILES = _mnist_like()


def _remote(name: str = "mnist", mirrors: tuple[str, ...] = ()) -> store.Remote:
    files = tuple(store.DataFile(n, len(b), hashlib.md5(b).hexdigest()) for n, b in FILES.items())
    return store.Remote(name, files, mirrors, offline_hint="a test archive has them")


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty data root, and `mnist` registered with the fabricated files' checksums."""
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "data"))
    monkeypatch.setitem(store.REMOTES._items, "mnist", _remote())
    return tmp_path / "data"


def _place(folder: Path, files: dict[str, bytes], gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


# ---------------------------------------------------------------- the data root and loading


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "x"))
    assert store.data_root() == tmp_path / "x"
    monkeypatch.delenv(store.ENV_VAR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.data_root() == tmp_path / "xdg" / "ddkit"


@pytest.mark.parametrize("gz", [False, True])
def test_loads_from_the_data_root_without_root(root, gz):
    _place(root / "mnist", FILES, gz=gz)
    splits = load_dataset("mnist", val_fraction=0.25, seed=3)
    assert len(splits.train) == 30 and len(splits.val) == 10 and len(splits.test) == 20
    again = load_dataset("mnist", val_fraction=0.25, seed=3)
    assert torch_equal(splits.val.images, again.val.images)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_missing_file_names_file_folder_and_fix(root):
    _place(root / "mnist", {k: v for k, v in FILES.items() if not k.startswith("t10k-images")})
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte" in msg and str(root / "mnist") in msg
    assert "ddkit data fetch mnist" in msg and "\n" not in msg


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_checksum_failure_is_one_line(root, damage):
    files = dict(FILES)
    data = bytearray(files["train-images-idx3-ubyte"])
    if damage == "flip":
        data[100] ^= 1
    else:
        del data[-10:]
    files["train-images-idx3-ubyte"] = bytes(data)
    _place(root / "mnist", files)
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "\n" not in msg
    assert ("MD5" in msg) if damage == "flip" else ("bytes" in msg)


def test_explicit_root_still_reads_any_idx_files(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "empty"))
    _place(tmp_path / "mine", FILES)
    assert len(load_dataset("mnist", root=str(tmp_path / "mine")).train) == 40


# ---------------------------------------------------------------- install from local sources


def _tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian package: an ``ar`` archive whose data.tar.xz holds the files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./usr/share/datasets/mnist/{name}.gz")
            gz = gzip.compress(data)
            info.size = len(gz)
            tar.addfile(info, io.BytesIO(gz))
    members = [
        (b"debian-binary", b"2.0\n"),
        (b"control.tar.xz", b"x"),
        (b"data.tar.xz", buf.getvalue()),
    ]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8)
        out += header + str(len(body)).encode().ljust(10) + b"`\n" + body + b"\n" * (len(body) % 2)
    path.write_bytes(bytes(out))
    return path


@pytest.mark.parametrize("kind", ["folder", "tgz", "zip", "deb"])
def test_install_from_local_source(root, tmp_path, kind):
    if kind == "folder":
        source = tmp_path / "src"
        _place(source / "deep" / "er", FILES, gz=True)
    elif kind == "tgz":
        source = _tar(tmp_path / "pkg.tgz", FILES)
    elif kind == "zip":
        source = tmp_path / "pkg.zip"
        with zipfile.ZipFile(source, "w") as z:
            for name, data in FILES.items():
                z.writestr(f"x/{name}", data)
    else:
        source = _deb(tmp_path / "pkg.deb", FILES)
    folder = store.install("mnist", source, log=lambda _: None)
    assert folder == root / "mnist" and store.status("mnist") == "ready"
    assert len(load_dataset("mnist").test) == 20


def test_install_refuses_wrong_files_and_writes_nothing(root, tmp_path):
    bad = dict(FILES)
    bad["train-labels-idx1-ubyte"] = bad["train-labels-idx1-ubyte"][:-1] + b"\x03"
    source = _tar(tmp_path / "bad.tgz", bad)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        store.install("mnist", source, log=lambda _: None)
    assert not (root / "mnist" / "train-labels-idx1-ubyte").exists()
    assert not [p for p in (root / "mnist").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- download (local HTTP server)


class _Server:
    """Serves ``files`` (name -> bytes) over HTTP with Range support; records the requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = self.path.rsplit("/", 1)[-1]
                owner.requests.append((name, self.headers.get("Range")))
                data = owner.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = _Server({f"{n}.gz": gzip.compress(b) for n, b in FILES.items()})
    yield s
    s.close()


def test_download_verifies_and_resumes(root, server, monkeypatch):
    monkeypatch.setitem(store.REMOTES._items, "mnist", _remote(mirrors=(server.url,)))
    folder = root / "mnist"
    folder.mkdir(parents=True)
    gz = server.files["train-images-idx3-ubyte.gz"]
    (folder / "train-images-idx3-ubyte.gz.part").write_bytes(gz[: len(gz) // 2])
    store.download("mnist", log=lambda _: None)
    assert ("train-images-idx3-ubyte.gz", f"bytes={len(gz) // 2}-") in server.requests
    assert store.status("mnist") == "ready" and not list(folder.glob("*.part"))
    n = len(server.requests)
    store.download("mnist", log=lambda _: None)  # everything verified: nothing fetched again
    assert len(server.requests) == n


def test_download_falls_back_to_the_next_mirror(root, server, monkeypatch):
    dead = _Server({})
    try:
        remote = _remote(mirrors=(dead.url, server.url))
        monkeypatch.setitem(store.REMOTES._items, "mnist", remote)
        store.download("mnist", log=lambda _: None)
    finally:
        dead.close()
    assert len(dead.requests) == 4 and store.status("mnist") == "ready"


def test_download_refuses_a_corrupt_file(root, server, monkeypatch):
    server.files["t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"not the labels")
    monkeypatch.setitem(store.REMOTES._items, "mnist", _remote(mirrors=(server.url,)))
    with pytest.raises(DataError) as err:
        store.download("mnist", log=lambda _: None)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and "--from PATH" in msg and "\n" not in msg
    left = sorted(p.name for p in (root / "mnist").iterdir())
    assert "t10k-labels-idx1-ubyte.gz" not in left and not [n for n in left if n.endswith(".part")]


def test_cli_fetch_and_list(root, server, monkeypatch, capsys):
    monkeypatch.setitem(store.REMOTES._items, "mnist", _remote(mirrors=("http://127.0.0.1:9/",)))
    assert main(["data", "fetch", "mnist", "--mirror", server.url, "--quiet"]) == 0
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    line = next(t for t in out.splitlines() if t.split()[:1] == ["mnist"])
    assert line.split()[1] == "ready" and str(root / "mnist") in line
    assert main(["data", "fetch", "nosuchset"]) == 2
    assert "nosuchset" in capsys.readouterr().err
