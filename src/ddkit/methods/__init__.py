"""Distillation methods behind one API: :func:`create_method` + :meth:`Distiller.fit`."""

from ddkit.methods.base import (
    METHODS,
    Callback,
    Distiller,
    MethodConfig,
    create_method,
    register_method,
    resolve_config,
)

__all__ = [
    "METHODS",
    "Callback",
    "Distiller",
    "MethodConfig",
    "create_method",
    "register_method",
    "resolve_config",
]


def load_all() -> None:
    """Import every module under :mod:`ddkit.methods`, so that each registers its methods.

    Methods are discovered by walking the package, not listed: a new module in a family folder
    is found by :func:`create_method`, ``ddkit list`` and the conformance suite without any
    edit elsewhere. Import errors are not swallowed.
    """
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)
