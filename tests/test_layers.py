"""The package reads top-down: every import (function-level ones included) goes to a lower or
the same floor, and no set of modules imports itself in a circle.

Floors, ground first: utilities -> data (datasets, readers, the set format and its codecs) ->
models and augmentation -> evaluation -> methods -> applications, audits, bench, report, run
folders -> the command line. A module takes the floor of the package it is in; a module in
no listed package (a new top-level module) is refused by the test, never given the bare
package's floor, so it must be given its floor here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ddkit"

FLOORS: dict[str, int] = {
    # 0: utilities (they know no ddkit object beyond tensors, paths and dicts)
    "ddkit": 0, "ddkit.errors": 0, "ddkit.rng": 0, "ddkit.io": 0, "ddkit.progress": 0,
    "ddkit.meter": 0, "ddkit.registry": 0, "ddkit.commands": 0, "ddkit.viz": 0,
    "ddkit.distributed": 0, "ddkit.levers": 0, "ddkit.claims": 0, "ddkit.context": 0,
    "ddkit.__main__": 6,
    "ddkit.data": 1,
    "ddkit.models": 2, "ddkit.augment": 2,
    "ddkit.eval": 3,
    "ddkit.methods": 4,
    "ddkit.runs": 5, "ddkit.apps": 5, "ddkit.audits": 5, "ddkit.bench": 5, "ddkit.report": 5,
    "ddkit.testing": 5, "ddkit.testing_data": 5, "ddkit.testing_codecs": 5,
    "ddkit.testing_checks": 5, "ddkit.testing_modalities": 5,
    "ddkit.plots": 5,
    "ddkit.trackers": 5,
    "ddkit.cli": 6,  # the package: build_parser and main, and one module per core command
}  # fmt: skip


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_edges(root: Path) -> dict[str, set[str]]:
    """``module -> {imported ddkit modules}`` for every module below ``root``, counting imports
    anywhere in the file (inside functions and ``if TYPE_CHECKING`` too). ``from a import b``
    names module ``a.b`` where that is a module, else ``a``."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            edges[name].update(t for t in targets if t.split(".")[0] == root.name and t != name)
    return edges


def floor_of(module: str, floors: dict[str, int]) -> int:
    """The floor of the longest listed prefix of ``module`` short of the bare package (whose
    floor is its own ``__init__``'s only): a module in no listed package has none."""
    parts = module.split(".")
    for i in range(len(parts), 0 if len(parts) == 1 else 1, -1):
        if ".".join(parts[:i]) in floors:
            return floors[".".join(parts[:i])]
    raise KeyError(module)


def upward_imports(edges: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    return sorted(
        f"{a} (floor {floor_of(a, floors)}) imports {b} (floor {floor_of(b, floors)})"
        for a, targets in edges.items()
        for b in targets
        if floor_of(b, floors) > floor_of(a, floors)
    )


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_floor():
    unplaced = []
    for path in SRC.rglob("*.py"):
        try:
            floor_of(module_name(path, SRC), FLOORS)
        except KeyError:
            unplaced.append(module_name(path, SRC))
    assert not unplaced, f"give these modules a floor in tests/test_layers.py: {unplaced}"


def test_no_import_runs_upward():
    up = upward_imports(import_edges(SRC), FLOORS)
    assert not up, "imports that run up a floor:\n" + "\n".join(up)


def test_no_import_circles():
    found = circles(import_edges(SRC))
    assert not found, f"import circles: {found}"


def test_the_core_command_line_imports_no_family_application_or_audit():
    families = {p.name for p in (SRC / "methods").iterdir() if (p / "__init__.py").is_file()}
    edges = import_edges(SRC)
    core = [m for m in edges if m == "ddkit.cli" or m.startswith("ddkit.cli.")]
    assert len(core) > 1, "the core commands live in ddkit/cli/, one module each"
    imported = set().union(*(edges[m] for m in core))
    wrong = [
        m
        for m in imported
        if m.split(".")[1:2] in (["apps"], ["audits"])
        or (m.startswith("ddkit.methods.") and m.split(".")[2] in families)
    ]
    assert not wrong, f"the core CLI imports {wrong}: register their sub-commands in their cli.py"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A tiny package with one upward import (inside a function) and one circle."""
    root = tmp_path / "ddkit"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "data" / "__init__.py").write_text("")
    (root / "data" / "a.py").write_text("def f():\n    from ddkit.eval import b\n")
    (root / "eval").mkdir()
    (root / "eval" / "__init__.py").write_text("")
    (root / "eval" / "b.py").write_text("from ddkit.eval import c\n")
    (root / "eval" / "c.py").write_text("from . import b\n")
    return root


def test_a_module_without_a_floor_is_refused(planted: Path):
    """A new top-level module does not inherit the package's floor 0: it must be listed."""
    (planted / "newcomer.py").write_text("")
    assert floor_of("ddkit", FLOORS) == 0 and floor_of("ddkit.eval.b", FLOORS) == 3
    with pytest.raises(KeyError):
        floor_of(module_name(planted / "newcomer.py", planted), FLOORS)


def test_the_checks_catch_a_planted_upward_import_and_circle(planted: Path):
    edges = import_edges(planted)
    assert upward_imports(edges, FLOORS) == [
        "ddkit.data.a (floor 1) imports ddkit.eval.b (floor 3)"
    ]
    assert circles(edges) == [["ddkit.eval.b", "ddkit.eval.c"]]
