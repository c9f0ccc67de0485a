"""User-facing errors.

Every problem caused by user input (an unknown name, a bad shape, a corrupt file) raises a
:class:`DDKitError` subclass with a one-line message. The CLI prints that line and exits
non-zero without a traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class DDKitError(Exception):
    """Base class of ddkit's user-facing errors: ``str(err)`` is one line that names the problem."""


class UnknownNameError(DDKitError, KeyError):
    """A registry lookup failed (unknown dataset, model, method, protocol, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(DDKitError, ValueError):
    """Input data has the wrong shape, dtype, range or values (NaN/inf, labels out of range, ...)."""


class FileFormatError(DDKitError, ValueError):
    """A file is truncated, corrupt, tampered with, or not of the expected format."""


class ConfigError(DDKitError, ValueError):
    """A hyper-parameter or option is invalid (IPC <= 0, IPC larger than a class, ...)."""


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with ``message``, attributed to the first line outside ddkit on the call stack (the
    user's call, however deep inside ddkit the warning arises), as Python 3.12's
    ``skip_file_prefixes`` does."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def require_extra(module: str, extra: str, what: str):  # noqa: ANN201 - returns the module
    """Import the optional package ``module``, or raise a one-line :class:`ConfigError` saying
    that ``what`` needs it and which extra of ddkit installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{what} needs the optional package {module!r}: pip install 'ddkit[{extra}]'"
        ) from None


def run_script(main: Callable[[], object], name: str) -> NoReturn:
    """Run a script's ``main`` and exit with what it returns; a :class:`DDKitError` ends the
    script with the one line ``name: message`` (exit status 1) instead of a traceback, as the
    ``ddkit`` command ends (the benchmark and study scripts' entry point)."""
    try:
        result = main()
    except DDKitError as exc:
        raise SystemExit(f"{name}: {exc}") from None
    raise SystemExit(result)
