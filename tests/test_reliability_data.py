"""The data readers' slice of the reliability audit (issue 83): tar shards decoded by several
worker processes, data that stays inside its folder, a cache cleanup that removes only its own
folders, sizes named by the data checked against the memory budget, a strict
``$DDKIT_MEMORY_BUDGET``, and one-line refusals where an ``unexpected`` error ended a run."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddkit.cli import main
from ddkit.data import folders, load_dataset
from ddkit.data.cache import BUILD_MARKER, CACHE_DIR_ENV, CACHE_MODE_ENV
from ddkit.data.folders import decode_progress, decoded_images, list_image_folder, plan_decode
from ddkit.data.shards import list_webdataset
from ddkit.errors import ConfigError, DataError
from ddkit.meter import BUDGET_ENV, memory_budget


def _png(seed: int, shape: tuple[int, int] = (6, 5)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _shards(root: Path, shards: int = 2, per_shard: int = 4, classes: int = 2) -> Path:
    """``shards`` tar shards of ``per_shard`` small PNGs with their ``.cls`` each."""
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tarfile.open(root / f"shard-{s:04d}.tar", "w") as archive:
            for i in range(per_shard):
                key = f"{s:02d}{i:05d}"
                _add(archive, f"{key}.png", _png(s * per_shard + i))
                _add(archive, f"{key}.cls", str(i % classes).encode())
    return root


def _folder(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / f"c{c}" / f"{i}.png").write_bytes(_png(c * per_class + i))
    return root


def refused(capsys: pytest.CaptureFixture, tmp_path: Path, dataset: str, root: Path) -> str:
    """Run ``ddkit distill`` on ``root``: exit 2 and exactly one error line, not unexpected."""
    capsys.readouterr()  # what making the data printed
    argv = ["distill", "--dataset", dataset, "--root", str(root), "--method", "random"]
    rc = main([*argv, "--ipc", "1", "--out", str(tmp_path / "run"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert lines[0].startswith("ddkit: error: ") and "unexpected" not in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def _within(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a blocked open (a FIFO) is interrupted after ``seconds``."""

    def _late(*_: object) -> None:
        raise TimeoutError(f"still waiting after {seconds} s")

    old = signal.signal(signal.SIGALRM, _late)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------ 1. shards decoded by worker processes


def test_shards_decode_the_same_in_two_worker_processes_as_in_one(tmp_path, monkeypatch):
    """Two forked decoders read the same bits as one: each reads its members by offset, never
    through a file position shared with the other (several rounds: a race shows in one)."""
    listing = list_webdataset(_shards(tmp_path / "wds", shards=2, per_shard=200))
    plan = plan_decode(listing)  # reads every header in this process, as a run does

    def decode(workers: int) -> np.ndarray:
        monkeypatch.setattr(folders, "decode_workers", lambda n: workers)
        rows = decoded_images(listing, plan, "train", decode_progress(listing))
        return np.stack([x for x, _ in rows])

    one = decode(0)
    for _ in range(3):
        np.testing.assert_array_equal(decode(2), one)


# ------------------------------------------------------------- 2. data stays in its folder


@pytest.mark.parametrize("case", ["file link", "class folder link", "fifo"])
def test_an_image_folder_entry_leading_out_of_it_or_not_a_file_is_refused(tmp_path, capsys, case):
    root = _folder(tmp_path / "data")
    outside = _folder(tmp_path / "private")
    if case == "file link":
        (root / "c0" / "9.png").symlink_to(outside / "c0" / "0.png")
    elif case == "class folder link":
        (root / "c9").symlink_to(outside / "c1")
    else:
        os.mkfifo(root / "c0" / "9.png")
    with _within(20):
        line = refused(capsys, tmp_path, "imagefolder", root)
    assert ("outside" in line) if case != "fifo" else ("not a regular file" in line), line


def test_a_link_within_the_folder_is_read_and_an_allowed_root_opens_the_door(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")
    (root / "c0" / "9.png").symlink_to(root / "c1" / "0.png")  # inside: fine
    assert list_image_folder(root).total == 7
    (root / "c0" / "8.png").symlink_to(_folder(tmp_path / "shared") / "c0" / "0.png")
    with pytest.raises(DataError, match="outside"):
        list_image_folder(root)
    monkeypatch.setenv("DDKIT_DATA_ALLOW_ROOT", str(tmp_path / "shared"))
    assert list_image_folder(root).total == 8


def test_a_tiny_imagenet_validation_image_linked_out_is_refused(tmp_path):
    from ddkit.data.layouts import list_tiny_imagenet

    root = tmp_path / "tiny"
    for w in ("n01", "n02"):
        _folder(root / "train" / w, classes=1)
        (root / "train" / w / "c0").rename(root / "train" / w / "images")
    (root / "wnids.txt").write_text("n01\nn02\n")
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "images" / "v0.png").symlink_to(_folder(tmp_path / "private") / "c0" / "0.png")
    (root / "val" / "val_annotations.txt").write_text("v0.png\tn01\n")
    with pytest.raises(DataError, match="outside"):
        list_tiny_imagenet(root)


def _tar_with(root: Path, member: tarfile.TarInfo) -> Path:
    root.mkdir(parents=True)
    with tarfile.open(root / "a.tar", "w") as archive:
        for i in range(4):
            _add(archive, f"{i}.png", _png(i))
            _add(archive, f"{i}.cls", str(i % 2).encode())
        archive.addfile(member)
        _add(archive, "x.cls", b"0")
    return root


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])
def test_a_shard_member_that_is_no_regular_file_is_refused(tmp_path, capsys, kind):
    member = tarfile.TarInfo("x.png")
    member.type = kind
    member.linkname = "/etc/hostname" if kind == tarfile.SYMTYPE else "0.png"
    root = _tar_with(tmp_path / "wds", member)
    assert "not a regular file" in refused(capsys, tmp_path, "webdataset", root)


def test_a_class_list_that_is_a_fifo_is_refused_not_waited_on(tmp_path, capsys):
    root = _shards(tmp_path / "wds")
    os.mkfifo(root / "classes.txt")
    with _within(20):
        assert "not a regular file" in refused(capsys, tmp_path, "webdataset", root)


def test_a_class_list_that_is_not_utf8_is_one_line(tmp_path, capsys):
    root = _shards(tmp_path / "wds")
    (root / "classes.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert "is not UTF-8 text" in refused(capsys, tmp_path, "webdataset", root)


def _hf_with_path(root: Path, path: str) -> Path:
    """A saved dataset whose last image is the bare ``path`` (no bytes), as a dataset written
    by another tool may hold (``save_to_disk`` itself embeds the bytes of a path)."""
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}
    )
    rows = [{"path": None, "bytes": _png(i)} for i in range(10)]
    table = datasets.Dataset.from_dict({"image": rows, "label": [0, 1] * 5}, features=features)
    table.save_to_disk(str(root))
    (arrow,) = root.glob("*.arrow")
    with pa.memory_map(str(arrow)) as src:
        stored = pa.ipc.open_stream(src).read_all()
    column = stored.column("image").combine_chunks()
    data, paths = column.field("bytes").to_pylist(), column.field("path").to_pylist()
    data[-1], paths[-1] = None, path
    fields = [pa.array(data, pa.binary()), pa.array(paths, pa.string())]
    at = stored.schema.get_field_index("image")
    image = pa.StructArray.from_arrays(fields, fields=list(column.type))
    stored = stored.set_column(at, stored.schema.field("image"), image)
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, stored.schema) as out:
        out.write_table(stored)
    return root


def test_a_hugging_face_image_path_outside_its_folder_is_refused(tmp_path, capsys):
    private = tmp_path / "private.png"
    private.write_bytes(_png(9))
    root = _hf_with_path(tmp_path / "hf", str(private))
    assert "outside" in refused(capsys, tmp_path, "hf-disk", root)


def test_a_hugging_face_image_path_to_a_fifo_is_refused_not_waited_on(tmp_path, capsys):
    root = _hf_with_path(tmp_path / "hf", str(tmp_path / "hf" / "pipe.png"))
    os.mkfifo(root / "pipe.png")
    with _within(20):
        assert "not a regular file" in refused(capsys, tmp_path, "hf-disk", root)


# ------------------------------------------------------------------------- 3. losses


def test_the_cache_cleanup_removes_only_what_ddkit_made(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    mine = cache / ".mywork.tmp-999999"
    mine.mkdir(parents=True)
    (mine / "file").write_text("a week of work")
    dead = cache / ".abc.tmp-999998"  # a killed ddkit build: its marker names a dead process
    dead.mkdir()
    (dead / BUILD_MARKER).write_text("999998")
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    monkeypatch.setenv(CACHE_MODE_ENV, "always")
    load_dataset("imagefolder", root=str(_folder(tmp_path / "data")))
    assert (mine / "file").read_text() == "a week of work"
    assert not dead.exists()


# ---------------------------------------------------------------- 4. sizes named by data


def test_an_image_too_large_to_decode_is_refused_from_its_header(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")
    (root / "c1" / "big.png").write_bytes(_png(0, (600, 600)))
    monkeypatch.setenv(BUDGET_ENV, "1M")
    monkeypatch.setattr(folders, "_load_image", lambda *a: pytest.fail("decoded"))
    with pytest.raises(DataError, match=r"big\.png.*memory budget"):
        folders.read_image_folder(root, image_size=4)


def test_images_too_large_together_are_refused_before_decoding(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(6):
            (root / f"c{c}" / f"{i}.png").write_bytes(_png(i, (200, 200)))
    monkeypatch.setenv(BUDGET_ENV, "2M")  # each image fits, the twelve together do not
    monkeypatch.setenv(CACHE_MODE_ENV, "never")
    monkeypatch.setattr(folders, "_load_image", lambda *a: pytest.fail("decoded"))
    with pytest.raises(DataError, match="its 12 images decoded in memory .*memory budget"):
        load_dataset("imagefolder", root=str(root))
    with pytest.raises(DataError, match="its 12 images decoded in memory .*memory budget"):
        folders.read_image_folder(root)


def test_a_compressed_tar_is_refused_in_one_line(tmp_path, capsys):
    root = _shards(tmp_path / "wds", shards=1)
    data = (root / "shard-0000.tar").read_bytes()
    (root / "shard-0000.tar").write_bytes(gzip.compress(data))
    assert "decompress" in refused(capsys, tmp_path, "webdataset", root)


def _cached(tmp_path: Path, monkeypatch) -> Path:
    """A folder's finished cache (in ``tmp_path/cache``): the folder of its files."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(CACHE_MODE_ENV, "always")
    load_dataset("imagefolder", root=str(_folder(tmp_path / "data")))
    (built,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    return built


def test_a_cache_index_claiming_a_billion_classes_is_refused(tmp_path, monkeypatch, capsys):
    import json

    built = _cached(tmp_path, monkeypatch)
    index = json.loads((built / "index.json").read_text())
    index["spec"]["num_classes"] = 10**9
    del index["spec"]["class_names"]
    (built / "index.json").write_text(json.dumps(index))
    assert "delete" in refused(capsys, tmp_path, "imagefolder", tmp_path / "data")


# ------------------------------------------------------------ 5. $DDKIT_MEMORY_BUDGET


def test_a_memory_budget_in_bytes_or_with_a_binary_suffix_is_read(monkeypatch):
    forms = {"100M": 100 * 2**20, "2G": 2 * 2**30, "1K": 1024, "3t": 3 * 2**40,
             "1.5e9": 1_500_000_000, "4096": 4096}  # fmt: skip
    for text, nbytes in forms.items():
        monkeypatch.setenv(BUDGET_ENV, text)
        assert memory_budget() == nbytes, text


@pytest.mark.parametrize("text", ["abc", "nan", "inf", "-5", "0", "1.5X", "0.2"])
def test_a_memory_budget_that_is_no_size_is_refused_in_one_line(monkeypatch, text):
    monkeypatch.setenv(BUDGET_ENV, text)
    with pytest.raises(ConfigError, match=r"DDKIT_MEMORY_BUDGET.*100M, 2G or 1\.5e9") as err:
        memory_budget()
    assert "\n" not in str(err.value)


def test_a_bad_memory_budget_ends_the_command_with_exit_2(tmp_path):
    env = {**os.environ, BUDGET_ENV: "abc"}
    root = _folder(tmp_path / "data")
    argv = ["distill", "--dataset", "imagefolder", "--root", str(root), "--method", "random"]
    argv += ["--ipc", "1", "--out", str(tmp_path / "run"), "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "ddkit", *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "DDKIT_MEMORY_BUDGET" in done.stderr


# --------------------------------------------------------- 6. one line, not "unexpected"


def test_an_empty_shard_is_one_line(tmp_path, capsys):
    (tmp_path / "wds").mkdir()
    with tarfile.open(tmp_path / "wds" / "a.tar", "w"):
        pass
    assert "no samples" in refused(capsys, tmp_path, "webdataset", tmp_path / "wds")


def test_a_class_file_that_is_no_text_is_one_line(tmp_path, capsys):
    root = _shards(tmp_path / "wds", shards=1)
    with tarfile.open(root / "shard-0000.tar", "a") as archive:
        _add(archive, "z.png", _png(0))
        _add(archive, "z.cls", b"\xff\xfe")
    assert "z.cls" in refused(capsys, tmp_path, "webdataset", root)


def test_a_class_folder_named_with_a_newline_is_one_line(tmp_path, capsys):
    root = _folder(tmp_path / "data")
    _folder(tmp_path / "x", classes=1).joinpath("c0").rename(root / "bad\nname")
    assert "rename" in refused(capsys, tmp_path, "imagefolder", root)


@pytest.mark.parametrize("part", ["train.npy", "train_labels.npy"])
def test_a_truncated_cache_file_is_one_line(tmp_path, monkeypatch, capsys, part):
    built = _cached(tmp_path, monkeypatch)
    data = (built / part).read_bytes()
    (built / part).write_bytes(data[: len(data) - 7])
    assert "delete" in refused(capsys, tmp_path, "imagefolder", tmp_path / "data")
