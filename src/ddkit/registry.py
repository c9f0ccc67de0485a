"""A small name -> factory registry, shared by datasets, models, methods and protocols."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ddkit.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually factories).

    >>> models = Registry("model")
    >>> @models.register("mlp")
    ... def mlp(**kw): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, *, help: str | None = None) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` (lower-case, unique)."""

        def deco(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return deco

    def add(self, name: str, obj: T, *, help: str | None = None) -> None:
        key = name.lower()
        if key in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[key] = obj
        self._help[key] = help or first_paragraph(getattr(obj, "__doc__", None) or "")

    def remove(self, name: str) -> None:
        """Unregister ``name`` (e.g. a plugin or a method defined in a test); unknown names are
        refused like :meth:`get` refuses them."""
        self.get(name)
        key = name.lower()
        del self._items[key], self._help[key]

    def add_class(self, cls: Any) -> Any:
        """Class decorator: register ``cls`` under its ``name`` with its ``help`` (or the first
        line of its docstring)."""
        self.add(cls.name, cls, help=getattr(cls, "help", None) or None)
        return cls

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._items:
            valid = ", ".join(self.names())  # a subclass's names (dataset families too)
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {valid}")
        return self._items[key]

    def help(self, name: str) -> str:
        return self._help[name.lower()]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def import_submodules(package: str) -> None:
    """Import every module below the (already imported) ``package``, walking its ``__path__``,
    so that each registers what it defines: discovery instead of lists. A folder appended to
    the package's ``__path__`` is walked too. Import errors are not swallowed."""
    root = sys.modules[package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)


def first_paragraph(doc: str) -> str:
    """The first paragraph of a docstring on one line (a help line that never stops
    mid-sentence)."""
    lines = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)
