"""Distillation methods behind one API: :func:`create_method` + :meth:`Distiller.fit`."""

from ddkit.methods.base import (
    METHODS,
    Callback,
    Distiller,
    MethodConfig,
    ProgressReport,
    create_method,
    load_all,
    method_names,
    register_method,
    resolve_config,
)

__all__ = [
    "METHODS",
    "Callback",
    "Distiller",
    "ProgressReport",
    "MethodConfig",
    "create_method",
    "load_all",
    "method_names",
    "register_method",
    "resolve_config",
]
