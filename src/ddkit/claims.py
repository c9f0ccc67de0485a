"""Claiming units of work among processes that share a folder: a trajectory expert
(:mod:`ddkit.methods.trajectory.experts`), a privacy audit's network (:mod:`ddkit.audits.privacy`).

A process claims a unit by creating its lock file with ``O_CREAT | O_EXCL``, holding the
process's pid and host; other processes skip a unit that a live process holds. A lock whose
process is gone (same host, pid not alive) is stale and is taken over, as is one left empty for
longer than a holder takes to write it; a lock from another host is respected, since its pid
cannot be checked from here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ddkit.io import process_alive

__all__ = ["claim", "claimed_by_other", "release", "try_claim"]


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
