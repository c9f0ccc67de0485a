"""Claiming units of work among processes that share a folder: a trajectory expert
(:mod:`ddkit.methods.trajectory.experts`), a privacy audit's network (:mod:`ddkit.audits.privacy`).

A process claims a unit by creating its lock file with ``O_CREAT | O_EXCL``, holding the
process's pid and host; other processes skip a unit that a live process holds. A lock whose
process is gone (same host, pid not alive) is stale and is taken over, as is one left empty for
longer than a holder takes to write it; a lock from another host is respected, since its pid
cannot be checked from here.

A command's output folder is held the same way for as long as the command writes it
(:func:`hold_folder`): one holder file per process, naming the command's settings, so that a
second command on the folder is refused, and processes running the same command may share it
where the command is made for that.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddkit.io import atomic_write_json, process_alive

__all__ = [
    "claim",
    "claimed_by_other",
    "command_key",
    "hold_folder",
    "hold_output",
    "release",
    "try_claim",
]


def _holder(path: Path) -> dict:
    """The lock's ``{"pid", "host"}`` (``{}`` when unreadable: a holder still writing it)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def _is_me(info: dict) -> bool:
    return info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()


#: seconds a new lock may stay empty while its holder writes its pid
_WRITING_SECONDS = 10.0


def _is_stale(path: Path, info: dict) -> bool:
    """Held by a process of this host that no longer runs, or left empty."""
    if not info:
        try:
            return time.time() - path.stat().st_mtime > _WRITING_SECONDS
        except OSError:
            return True
    return info.get("host") in (None, socket.gethostname()) and not process_alive(
        int(info.get("pid", -1))
    )


def try_claim(path: Path) -> bool:
    """Claim the unit whose lock file is ``path`` for this process (re-entrant). Returns
    ``False`` if a live process holds it; a stale lock is removed and the claim retried once."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = _holder(path)
            if _is_me(info):
                return True
            if _is_stale(path, info):
                # take over atomically (rename, so that two takers cannot both win)
                grave = path.with_name(f"{path.name}.stale-{os.getpid()}")
                try:
                    os.replace(path, grave)
                    grave.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return True
    return False


def release(path: Path) -> None:
    """Remove the lock file ``path`` if this process holds it."""
    if _holder(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def claimed_by_other(path: Path) -> bool:
    """Whether a live process other than this one holds the lock file ``path``."""
    if not path.exists():
        return False
    info = _holder(path)
    return not _is_me(info) and not _is_stale(path, info)


@contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Claim the unit for the block (:func:`try_claim`); yields whether this process holds it,
    and releases it afterwards."""
    if not try_claim(path):
        yield False
        return
    try:
        yield True
    finally:
        release(path)


# ============================================================================ output folders
def _holder_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".held-*.json"))


@contextmanager
def hold_folder(
    folder: Path, what: str, command: str, *, shared: bool = False, option: str = "--out"
) -> Iterator[None]:
    """Hold the output ``folder`` of a command for the block (issue 75): this process's holder
    file ``folder/.held-<host>-<pid>.json`` names it and ``command`` (a digest of its settings:
    :func:`command_key`). A live holder of another process refuses this one in one
    :class:`~ddkit.errors.ConfigError` line, unless ``shared`` and it runs the same command
    (processes that share the units of one folder: a privacy audit's networks, a bench suite's
    cells); a holder whose process is gone is taken over with a notice. Two processes that
    start at the same moment may both be refused; neither writes. Re-entrant in one process.
    ``option``: the command's option that names the folder, for the refusal."""
    from ddkit.errors import ConfigError, warn_at_caller

    folder.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
    mine = folder / f".held-{me['host']}-{me['pid']}.json"
    if mine.exists():  # this process holds it already (a command inside a command)
        yield
        return
    atomic_write_json(mine, me)  # never read half-written
    try:
        for path in _holder_files(folder):
            info = _holder(path)
            if path == mine or _is_me(info):
                continue
            if _is_stale(path, info):
                path.unlink(missing_ok=True)
                warn_at_caller(
                    f"took over {what} {str(folder)!r} from process {info.get('pid', '?')}, "
                    "which stopped without releasing it; its kept units are checked as they "
                    "are read"
                )
                continue
            if not shared or info.get("command") != command:
                other = "" if not shared else " with other settings"
                raise ConfigError(
                    f"{what} {str(folder)!r} is in use by process {info.get('pid', '?')}{other}; "
                    f"wait for it to finish or choose another {option}"
                )
    except BaseException:
        mine.unlink(missing_ok=True)
        raise
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)


@contextmanager
def hold_output(args: Any, what: str, name: str, *, shared: bool = False) -> Iterator[Path]:
    """``args.out`` (a command's parsed options) created and held for the block by the command
    ``name`` (:func:`hold_folder`, keyed by :func:`command_key` of its options); ``what`` names
    the folder in a refusal (``"audit folder"``)."""
    from ddkit.io import check_out, ensure_writable_dir

    out = ensure_writable_dir(check_out(args.out, folder=True))  # never a set or a run folder
    with hold_folder(out, what, command_key({**vars(args), "command": name}), shared=shared):
        yield out


#: the options that do not change what a command writes (where and how it runs, what it shows)
HOW_OPTIONS = frozenset({"out", "quiet", "device", "debug", "exact", "func", "dry_run",
                         "kept_only", "results", "markdown"})  # fmt: skip


def command_key(options: dict, ignore: frozenset[str] = HOW_OPTIONS) -> str:
    """A digest of a command's plain options (an ``argparse`` namespace's ``vars``) but
    ``ignore``: two processes with the same key write the same units."""
    from ddkit.io import json_sha256

    plain = (str, int, float, bool, type(None), list, tuple)
    return json_sha256(
        {k: v for k, v in options.items() if k not in ignore and isinstance(v, plain)}
    )[:20]
