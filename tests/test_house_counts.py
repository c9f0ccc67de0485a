"""Values travel as small records, not long keyword lists (issue 84): fewer than ten functions
of the package take ten or more parameters."""

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
