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
    """Import every module that registers methods/selectors (kept lazy to keep import cheap)."""
    import importlib

    for mod in _METHOD_MODULES:
        importlib.import_module(mod)


_METHOD_MODULES = [
    "ddkit.coreset",
    "ddkit.methods.decoupled",
    "ddkit.methods.distribution_matching",
    "ddkit.methods.gradient_matching",
    "ddkit.methods.trajectory",
]
