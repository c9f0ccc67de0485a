"""Values travel as small records, not long keyword lists, and are parsed at the door (issue
84): fewer than ten functions of the package take ten or more parameters, and a protocol's name
is resolved (:func:`~ddkit.eval.protocol.get_protocol`) only at the entry points."""

from __future__ import annotations

import ast
from pathlib import Path

import ddkit

SRC = Path(ddkit.__file__).parent
#: At most this many functions may take ten or more parameters (the issue's bar: fewer than 10).
MOST_LONG_SIGNATURES = 9


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Every parameter but ``self`` / ``cls``: positional, keyword-only, ``*args``, ``**kw``."""
    a = fn.args
    named = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return (
        sum(n not in ("self", "cls") for n in named)
        + (a.vararg is not None)
        + (a.kwarg is not None)
    )


def long_signatures(root: Path = SRC) -> list[str]:
    """``file:function (n)`` for every function under ``root`` with ten or more parameters."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _parameters(node)
                if n >= 10:
                    found.append(f"{path.relative_to(root).as_posix()}:{node.name} ({n})")
    return found


def test_fewer_than_ten_functions_take_ten_or_more_parameters():
    found = long_signatures()
    assert len(found) <= MOST_LONG_SIGNATURES, "\n".join(found)


def test_the_count_sees_a_long_signature(tmp_path):
    (tmp_path / "m.py").write_text(
        "def f(a, b, c, d, e, f, g, h, *args, i=1, **kw):\n    pass\n"
        "class C:\n    def g(self, a, b, c, d, e, f, g, h, i):\n        pass\n"
    )
    assert long_signatures(tmp_path) == ["m.py:f (11)"]


#: Where :func:`~ddkit.eval.protocol.get_protocol` may be called: the entry points, which turn a
#: user's protocol name into a protocol once (the command line's modules, every function of a
#: path ending in ``/``; the commands of the applications and audits; the public functions that
#: take a name from a user). Anywhere else a call is allowed only at import (a named constant
#: such as ``GRAPH_PROTOCOL``), and code below takes an ``EvalProtocol``.
PROTOCOL_DOORS: dict[str, set[str]] = {
    "cli/": set(),
    "apps/continual.py": {"run"},
    "apps/federated.py": {"run"},
    "audits/adversarial.py": {"run"},
    "audits/backdoor.py": {"run"},
    "audits/privacy.py": {"run"},
    "eval/accounting.py": {"storage_report", "of"},  # RankingSettings.of
    "eval/estimate.py": {"estimate_evaluation"},
    "eval/evaluate.py": {"evaluate", "train_fresh_networks"},
}


def protocol_resolutions(root: Path = SRC) -> list[tuple[str, str]]:
    """``(file, function)`` for every call of ``get_protocol`` inside a function under ``root``
    (calls at a module's top level, resolved once at import, are not listed)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        found += [(rel, fn) for fn in _resolving_functions(ast.parse(path.read_text(), rel))]
    return found


def _resolving_functions(node: ast.AST, function: str | None = None) -> list[str]:
    """The enclosing function of each ``get_protocol(...)`` call below ``node``, in order."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        function = node.name
    found = []
    if isinstance(node, ast.Call) and function is not None:
        f = node.func
        if (f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)) == "get_protocol":
            found.append(function)
    for child in ast.iter_child_nodes(node):
        found += _resolving_functions(child, function)
    return found


def _at_a_door(rel: str, function: str) -> bool:
    return any(
        rel.startswith(door) if door.endswith("/") else rel == door and function in names
        for door, names in PROTOCOL_DOORS.items()
    )


def test_a_protocol_is_resolved_only_at_the_entry_points():
    found = protocol_resolutions()
    inner = sorted({f"{rel}:{fn}" for rel, fn in found if not _at_a_door(rel, fn)})
    assert not inner, "get_protocol below the entry points (take an EvalProtocol):\n" + "\n".join(
        inner
    )
    listed = {(door, fn) for door, names in PROTOCOL_DOORS.items() for fn in names}
    stale = sorted(f"{d}:{fn}" for d, fn in listed if (d, fn) not in set(found))
    assert not stale, f"entry points that no longer resolve a protocol (drop them): {stale}"


def test_the_count_sees_a_protocol_resolved_below_the_door(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "inner.py").write_text(
        "from ddkit.eval.protocol import get_protocol\n"
        "DEFAULT = get_protocol('dc')\n"  # at import: allowed
        "def train(p):\n    return protocol.get_protocol(p).epochs\n"
        "class Recipe:\n    def of(self, name):\n        return get_protocol(name)\n"
    )
    found = protocol_resolutions(tmp_path)
    assert found == [("eval/inner.py", "train"), ("eval/inner.py", "of")]
    assert not any(_at_a_door(rel, fn) for rel, fn in found)
    assert _at_a_door("eval/evaluate.py", "evaluate") and _at_a_door("cli/demo.py", "helper")
