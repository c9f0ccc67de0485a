"""Paths read from inside the data stay inside the data (issue 83).

An image folder's files and class folders, a tar shard, a layout's class list or annotation
file, an hf-disk image path, a caption file's or split file's image: every path that the data
names is resolved (symbolic links followed) by :func:`inside_root` and refused, in one line,
when it leaves the data's root folder (an absolute path, ``../``, a link pointing out) or is
not a regular file (a FIFO, a device, a folder) — or not a folder, where one is expected. Only
``stat`` is called, so a FIFO is never opened and never waited on.

Data kept elsewhere on purpose is named explicitly: ``$DDKIT_DATA_ALLOW_ROOT`` lists more folders
(``:``-separated) that paths of any data folder may lead to.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from ddkit import context
from ddkit.errors import DataError

__all__ = ["ALLOW_ROOT_ENV", "allowed_roots", "inside_root", "read_text_inside"]

#: environment variable: more folders (``:``-separated) the paths of a data folder may lead to
ALLOW_ROOT_ENV = context.ALLOW_ROOT_ENV

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))  # fmt: skip


def allowed_roots(root: Path) -> tuple[Path, ...]:
    """``root`` and the folders named in ``$DDKIT_DATA_ALLOW_ROOT``, resolved."""
    return _resolved_roots(Path(root), context.allowed_roots())


@functools.lru_cache(maxsize=64)
def _resolved_roots(root: Path, named: tuple[Path, ...]) -> tuple[Path, ...]:
    """:func:`allowed_roots`, remembered per root and variable (a listing checks many paths)."""
    return tuple(p.resolve() for p in (root, *named))


def inside_root(
    path: Path,
    root: Path,
    where: str,
    *,
    folder: bool = False,
    noun: str = "file",
    fix: str = "",
) -> Path:
    """``path`` resolved, when it lies under ``root`` (or a folder of ``$DDKIT_DATA_ALLOW_ROOT``)
    and is a regular file (``folder=True``: a folder); else a one-line :class:`DataError` that
    starts with ``where`` (the data, file or row that named it), calls the path ``noun`` and
    ends with the fix (``fix`` is added to it)."""
    try:
        real = Path(path).resolve(strict=True)
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise DataError(f"{where}: {noun} {str(path)!r} does not exist; fix the path") from None
    except (OSError, RuntimeError) as err:  # a loop of links, a path too long, no permission
        why = getattr(err, "strerror", None) or "a loop of links"
        raise DataError(
            f"{where}: {noun} {str(path)!r} cannot be read ({why}); remove it"
        ) from None
    if not any(real.is_relative_to(r) for r in allowed_roots(root)):
        raise DataError(
            f"{where}: {noun} {str(path)!r} lies outside the data folder "
            f"{str(Path(root).resolve())!r} (it leads to {str(real)!r}); copy it into the "
            f"folder, or name its folder in ${ALLOW_ROOT_ENV}{fix}"
        )
    wanted = stat.S_ISDIR if folder else stat.S_ISREG
    if not wanted(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        expected = "a folder" if folder else "a regular file"
        raise DataError(
            f"{where}: {noun} {str(path)!r} is {kind}, not {expected}; replace it with one"
        )
    return real


def read_text_inside(path: Path, root: Path, where: str) -> str:
    """The UTF-8 text of a file the data names (a class list, an annotation file), checked by
    :func:`inside_root` first; text in another encoding is a one-line :class:`DataError`."""
    real = inside_root(path, root, where)
    try:
        return real.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{where}: {str(path)!r} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
