"""Paths read from inside the data (issue 83): a caption file, a split file or a saved
dataset that names image files may name only regular files inside the data's own folder.

:func:`file_inside` resolves a named path (symbolic links too) and refuses, in one line, one
that leaves the root folder (an absolute path, ``../``, a link pointing out) or that is not a
regular file (a FIFO, a device, a folder: checked with ``stat`` before anything opens it, so a
FIFO never hangs a read).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ddkit.errors import DataError

__all__ = ["file_inside"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))  # fmt: skip


def file_inside(path: Path, root: Path, where: str, fix: str = "") -> Path:
    """``path`` resolved, when it is a regular file inside the folder ``root`` (resolved too);
    else a one-line :class:`DataError` that starts with ``where`` (the file and row that named
    ``path``) and ends with the fix (``fix``, where given, is added to it)."""
    real_root = Path(root).resolve()
    try:
        real = Path(path).resolve(strict=True)
        info = os.stat(real)
    except FileNotFoundError:
        raise DataError(f"{where}: image file {str(path)!r} does not exist; fix the path") from None
    except (OSError, RuntimeError) as err:  # a loop of links, a path too long, no permission
        why = getattr(err, "strerror", None) or type(err).__name__
        raise DataError(f"{where}: image file {str(path)!r} cannot be read ({why})") from None
    if not real.is_relative_to(real_root):
        raise DataError(
            f"{where}: image {str(path)!r} lies outside the data folder {str(real_root)!r}; "
            f"name images by paths inside it{fix}"
        )
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        raise DataError(
            f"{where}: image {str(path)!r} is {kind}, not a regular file; name an image file"
        )
    return real
