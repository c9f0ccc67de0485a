"""Atomic file writes and safe tensor (de)serialisation helpers."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ddkit.errors import ConfigError, FileFormatError


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this machine (this process counts as alive); the
    owner test of every lock file ddkit writes."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or raise a one-line error if it cannot be written."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=p, prefix=".ddkit-probe-", delete=True)
        probe.close()
    except OSError as e:
        raise ConfigError(f"cannot write to output folder {str(p)!r}: {e.strerror or e}") from None
    return p


def _kind_of(st: os.stat_result) -> str:
    """What a path is, in words."""
    kinds = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"),
             (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((name for test, name in kinds if test(st.st_mode)), "of another kind")


def _existing(path: str | os.PathLike) -> os.stat_result | None:
    """``os.stat(path)``, ``None`` where nothing is there; a path that cannot be looked at is
    one :class:`ConfigError` line."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"cannot write {str(path)!r}: {err.strerror or err}") from None


def check_replaceable_file(path: str | os.PathLike) -> None:
    """Refuse (:class:`ConfigError`) to replace ``path`` unless it is missing or a regular file
    (a link to one counts): a device, FIFO, socket or folder is never swapped for a file."""
    st = _existing(path)
    if st is None:
        return
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{str(path)!r} is {_kind_of(st)}, not a regular file; ddkit replaces only files: "
            "choose another path"
        )


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` over ``path`` (same folder, atomic);
    ``path`` must be missing or a regular file (:func:`check_replaceable_file`)."""
    path = Path(path)
    check_replaceable_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; files get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def json_sha256(obj: Any) -> str:
    """The SHA-256 (hex) of ``obj``'s canonical JSON: as it reads back from a file (tuples as
    lists, keys as strings), keys sorted, no spaces; the checksum of a JSON record ddkit keeps."""
    text = json.dumps(json.loads(json.dumps(obj)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def check_replaceable_dir(
    path: str | os.PathLike, owned: Callable[[Path], bool], kind: str = "a ddkit folder"
) -> None:
    """Refuse (:class:`ConfigError`) to replace ``path`` unless it is missing, an empty folder,
    or a folder ``owned(path)`` recognises as ``kind`` (what the writer itself made): never a
    file, a folder of other files, the working folder or one that holds it."""
    path = Path(path)
    st = _existing(path)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{str(path)!r} is {_kind_of(st)}, not a folder; choose a new folder")
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents):
        raise ConfigError(f"{str(path)!r} holds the working folder; choose a new folder")
    if any(path.iterdir()) and not owned(path):
        raise ConfigError(
            f"{str(path)!r} is not empty and is not {kind}; ddkit replaces only its own "
            "folders: choose a new or empty folder"
        )


#: the files of a saved set's folder (:class:`ddkit.data.synthetic.SyntheticSet`)
SET_FILES = ("meta.json", "data.safetensors")
#: what a run folder holds beside its config (:mod:`ddkit.runs`): never an output's place
RUN_ENTRIES = ("config.json", "log.jsonl", "grid.png", "synthetic", "checkpoint", ".lock")


def is_saved_set(folder: Path) -> bool:
    """Whether ``folder`` is a saved set's folder (it holds both :data:`SET_FILES`)."""
    return all((folder / name).is_file() for name in SET_FILES)


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a ``ddkit distill`` run folder: its ``config.json`` is an object
    naming a method and its settings."""
    if not (folder / "config.json").is_file():
        return False
    try:
        config = read_json(folder / "config.json", max_bytes=2**24)
    except (OSError, ValueError, FileFormatError):
        return False
    return isinstance(config, dict) and "method" in config and "method_config" in config


def check_out(
    path: str | os.PathLike,
    *,
    folder: bool,
    own: Callable[[Path], bool] = lambda file: False,
    kind: str = "a file",
    run_ok: bool = False,
    option: str = "--out",
) -> Path:
    """Refuse (one :class:`ConfigError` line) an output ``path`` that would write over what the
    command did not make; call it before any work. Never a saved set's folder or a place inside
    one, nor a place inside a run folder (a file output may sit right in one, beside its
    config, under a name of its own). A ``folder`` output may be a run folder only where
    ``run_ok`` (a command that resumes its run there); a file output may replace only a regular
    file that ``own(file)`` recognises as ``kind`` (what the command writes). Returns ``path``."""
    path = Path(path)
    fix = f"choose another {option}"
    st = _existing(path)
    if folder and st is not None and not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{str(path)!r} is {_kind_of(st)}, not a folder; {fix}")
    if not folder and st is not None and stat.S_ISDIR(st.st_mode):
        what = (
            "a saved set"
            if is_saved_set(path)
            else "a run folder"
            if is_run_folder(path)
            else "a folder"
        )
        raise ConfigError(f"{str(path)!r} is {what}, not a file; {fix} (a new file's path)")
    full = path.resolve()
    if folder and is_saved_set(full):
        raise ConfigError(f"{str(path)!r} is a saved set, which ddkit never writes into; {fix}")
    if folder and not run_ok and is_run_folder(full):
        raise ConfigError(
            f"{str(path)!r} is a run folder, which this command never writes into; {fix}"
        )
    for parent in full.parents:
        inside = full.relative_to(parent)
        if is_saved_set(parent):
            raise ConfigError(
                f"{str(path)!r} is inside the saved set {str(parent)!r}, which ddkit never "
                f"writes into; {fix} outside it"
            )
        direct = not folder and len(inside.parts) == 1 and inside.parts[0] not in RUN_ENTRIES
        if not direct and is_run_folder(parent):
            entry = inside.parts[0]
            where = f"is {entry!r} of" if entry in RUN_ENTRIES else "is inside"
            raise ConfigError(
                f"{str(path)!r} {where} the run folder {str(parent)!r}, which ddkit never "
                f"writes over; {fix} outside it"
            )
    if not folder and st is not None:
        check_replaceable_file(path)
        if not own(path):
            raise ConfigError(
                f"{str(path)!r} exists and is not {kind} ddkit wrote; remove it or {fix}"
            )
    return path


def starts_with(prefix: bytes, *within: bytes) -> Callable[[Path], bool]:
    """An ``own`` test for :func:`check_out`: the file starts with ``prefix`` and its first
    64 KiB hold each of ``within`` (the marks of what the command writes)."""

    def own(file: Path) -> bool:
        try:
            with open(file, "rb") as f:
                head = f.read(2**16)
        except OSError:
            return False
        return head.startswith(prefix) and all(mark in head for mark in within)

    return own


def json_with(key: str) -> Callable[[Path], bool]:
    """An ``own`` test for :func:`check_out`: the file (at most 256 MiB) is a JSON object
    with ``key``."""

    def own(file: Path) -> bool:
        try:
            data = read_json(file, max_bytes=2**28)
        except (OSError, ValueError, FileFormatError):
            return False
        return isinstance(data, dict) and key in data

    return own


def made_as(file: str, format_name: str) -> Callable[[Path], bool]:
    """An ``owned`` test for :func:`atomic_replace_dir`: the folder's JSON ``file`` (at most
    16 MiB) names ``"format": format_name``, as every ddkit folder's metadata does."""

    def owned(folder: Path) -> bool:
        try:
            meta = read_json(folder / file, max_bytes=2**24)
        except (OSError, ValueError, ConfigError, FileFormatError):
            return False
        return isinstance(meta, dict) and meta.get("format") == format_name

    return owned


def atomic_replace_dir(
    path: str | os.PathLike,
    fill: Callable[[Path], None],
    *,
    owned: Callable[[Path], bool] = lambda folder: False,
    kind: str = "a ddkit folder",
) -> None:
    """Build a folder with ``fill(tmp_dir)`` next to ``path``, then swap it in.

    ``path`` must be missing, empty, or ``kind``, a folder ``owned(path)`` recognises
    (:func:`check_replaceable_dir`, checked before ``fill`` runs): what the writer did not make
    is never replaced. The swap is one atomic ``renameat2(RENAME_EXCHANGE)`` where the system
    has it (Linux), so ``path`` is at every moment either the old folder or the new one.
    Elsewhere it is two renames; a kill between them leaves the old folder under a hidden
    name, which :func:`recover_replaced_dir` (called here and by the loaders) puts back.
    """
    path = Path(path)
    recover_replaced_dir(path)
    check_replaceable_dir(path, owned, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if path.exists() and _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
            return
        old = None
        if path.exists():
            old = _old_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_replaced_dir(path: str | os.PathLike) -> None:
    """Undo a folder swap that was interrupted between its two renames: when ``path`` is
    missing but its hidden old copy exists, move the old copy back."""
    path = Path(path)
    old = _old_name(path)
    if not path.exists() and old.is_dir():
        os.replace(old, path)


def _old_name(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2``); ``False`` where unsupported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def read_json(path: str | os.PathLike, *, max_bytes: int | None = None) -> Any:
    """The JSON value in ``path``; with ``max_bytes``, only from a regular file of at most that
    size (:func:`read_regular_file`: a file received from someone else)."""
    try:
        if max_bytes is not None:
            return json.loads(read_regular_file(path, max_bytes=max_bytes))
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileFormatError(f"missing file {str(path)!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileFormatError(f"corrupt JSON in {str(path)!r}: {e}") from None


def read_regular_file(path: str | os.PathLike, *, max_bytes: int, magic: bytes = b"") -> bytes:
    """The bytes of ``path`` when it is a regular file -- not a symbolic link, a FIFO or a
    device -- of at most ``max_bytes`` that starts with ``magic``; else a one-line
    :class:`FileFormatError` saying which. Nothing is waited on and nothing past the bound read."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileFormatError(f"missing file {str(p)!r}") from None
    except OSError as e:
        why = "is a symbolic link" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror})"
        raise FileFormatError(f"{str(p)!r} {why}; ddkit reads only regular files here") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FileFormatError(f"{str(p)!r} is not a regular file")
        data = f.read(max_bytes + 1) if info.st_size <= max_bytes else b""
    if info.st_size > max_bytes or len(data) > max_bytes:
        raise FileFormatError(f"{str(p)!r} is larger than the {max_bytes:,} bytes ddkit reads")
    if not data.startswith(magic):
        raise FileFormatError(f"{str(p)!r} is not of the expected type (wrong first bytes)")
    return data


def save_tensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write tensors as safetensors, atomically."""
    atomic_write(path, lambda p: write_safetensors(p, tensors, metadata))


def write_safetensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``tensors`` (detached, contiguous CPU copies) to ``path`` as safetensors (not
    atomically: the callers write into a temporary). A write that fails (a full disk, say)
    raises :class:`OSError` with the system's reason, which the CLI prints in one line."""
    import safetensors.torch
    from safetensors import SafetensorError

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        if _utf8(path):
            safetensors.torch.save_file(clean, str(path), metadata=metadata)
        else:  # safetensors takes UTF-8 paths only
            Path(path).write_bytes(safetensors.torch.save(clean, metadata=metadata))
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        number = int(code.group(1)) if code else errno.EIO
        raise OSError(number, os.strerror(number), str(path)) from None


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing, truncated or corrupt file raises FileFormatError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"missing file {str(p)!r}")
    try:
        if _utf8(p):
            return load_file(str(p))
        from safetensors.torch import load  # safetensors opens UTF-8 paths only

        return load(p.read_bytes())
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FileFormatError(f"corrupt or truncated tensor file {str(p)!r}: {msg}") from None


def safe_name(name: object, fallback: str = "unnamed", max_length: int = 64) -> str:
    """``name`` (a dataset, model or class name) as one safe file-name component: characters
    other than letters, digits, ``-``, ``_`` and ``.`` become ``_``, leading dots go (no
    ``..``, no hidden files), at most ``max_length`` characters; ``fallback`` when nothing is
    left. Whatever the name, the component stays inside the folder it is joined to."""
    safe = re.sub(r"[^\w.-]+", "_", str(name), flags=re.ASCII).lstrip(".")[:max_length]
    return safe or fallback


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as text to show or write into a page: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def _utf8(path: str | os.PathLike) -> bool:
    """Whether ``path`` is valid UTF-8 (a Linux name need not be: Python keeps its other bytes
    as surrogates, which libraries that take UTF-8 text refuse)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
