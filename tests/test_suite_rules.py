"""Rules the test suite keeps about itself (issue 73): an equivalence test of two code paths
pins its precision (tests/paths.py), so that no test passes or fails by CPU kind alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from paths import check_marker

TESTS = Path(__file__).parent
#: Calls that compare within a tolerance.
TOLERANCE_CALLS = {"allclose", "assert_close", "assert_allclose", "isclose"}
#: Calls that run an iterated computation (a method, a training, an evaluation, one step).
RUN_CALLS = {"fit", "step", "train_networks", "train_experts", "train_teacher", "evaluate"}


def _name(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)


def _negated(tree: ast.AST) -> set[int]:
    """ids of the calls under a ``not``: a test that two things differ holds on any CPU."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.update(id(sub) for sub in ast.walk(node.operand))
    return out


def _paths_agree(fn: ast.FunctionDef) -> ast.Call | None:
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and _name(dec) == "paths_agree":
            return dec
    return None


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _runs_behind(fn: ast.FunctionDef) -> dict[str, set[int]]:
    """For each name in ``fn`` that holds what a run computed, the runs behind it (ids of the
    run calls), followed through other names: ``syn = m.fit(...)``, ``m.step(0)`` changing
    ``m``, ``sets.append(m.fit(...))``, ``a, b = (s.images for s in sets)``. A run call inside
    a loop stands for several runs (its id and its negation)."""
    looped = {
        id(c) for loop in ast.walk(fn) if isinstance(loop, ast.For | ast.comprehension)
        for c in ast.walk(loop)
    }  # fmt: skip
    flows: list[tuple[set[str], ast.AST]] = []  # (names written, expression read)
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flows.append((set().union(*map(_names, targets)), node.value))
        elif isinstance(node, ast.For | ast.comprehension):
            pairs = (  # for a, b in zip(x, y): a from x, b from y
                zip(node.target.elts, node.iter.args)
                if isinstance(node.target, ast.Tuple)
                and isinstance(node.iter, ast.Call)
                and _name(node.iter) == "zip"
                and len(node.target.elts) == len(node.iter.args)
                else [(node.target, node.iter)]
            )
            flows.extend((_names(target), source) for target, source in pairs)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value  # m.step(0) changes m; sets.append(x) changes sets
            mutates = node.func.attr in ("append", "extend", "update") or _name(node) in RUN_CALLS
            if mutates and isinstance(receiver, ast.Name | ast.Attribute | ast.Subscript):
                flows.append((_names(receiver), node))

    behind: dict[str, set[int]] = {}

    def runs_of(expr: ast.AST) -> set[int]:
        out: set[int] = set()
        for c in ast.walk(expr):
            if isinstance(c, ast.Call) and _name(c) in RUN_CALLS:
                out |= {id(c), -id(c)} if id(c) in looped else {id(c)}
        for name in _names(expr):
            out |= behind.get(name, set())
        return out

    changed = True
    while changed:
        changed = False
        for written, read in flows:
            runs = runs_of(read)
            for name in written:
                if not runs <= behind.get(name, set()):
                    behind[name] = behind.get(name, set()) | runs
                    changed = True
    return behind, runs_of


def equivalence_tests(source: str) -> list[ast.FunctionDef]:
    """The test functions of ``source`` that compare, within a tolerance, what two different
    runs computed (the shape of an equivalence test of two iterated code paths)."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")):
            continue
        negated = _negated(fn)
        _, runs_of = _runs_behind(fn)
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and _name(call) in TOLERANCE_CALLS):
                continue
            if id(call) in negated or len(call.args) < 2:
                continue
            a, b = (runs_of(op) for op in call.args[:2])
            if a and b and (a != b or any(run < 0 for run in a)):
                found.append(fn)
                break
    return found


def _unpinned(source: str) -> list[str]:
    """Names of ``source``'s equivalence tests without a valid ``paths_agree`` marker."""
    out = []
    for fn in equivalence_tests(source):
        dec = _paths_agree(fn)
        if dec is None:
            out.append(f"{fn.name}: no paths_agree marker")
            continue
        try:
            args = [ast.literal_eval(a) for a in dec.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
            precision = args[0] if args else kwargs.get("precision")
            check_marker(precision, kwargs.get("steps"))
        except (ValueError, IndexError) as e:
            out.append(f"{fn.name}: {e}")
    return out


def test_every_equivalence_test_pins_its_precision():
    bad = [
        f"{path.name}::{problem}"
        for path in sorted(TESTS.glob("test_*.py"))
        for problem in _unpinned(path.read_text())
    ]
    assert not bad, "equivalence tests that do not pin their precision:\n" + "\n".join(bad)


_UNPINNED = """
def test_loop_equals_vectorised(data):
    a = create_method("dsa", iterations=3).fit(data, 2, seed=0)
    b = create_method("dsa", iterations=3, vectorize=False).fit(data, 2, seed=0)
    assert torch.allclose(a.images, b.images, atol=1e-3)
"""


@pytest.mark.parametrize(
    ("decorator", "problem"),
    [
        ("", "no paths_agree marker"),
        ("@pytest.mark.paths_agree('fp32', steps=3)", "compare them in float64"),
        ("@pytest.mark.paths_agree('fp16')", "use one of"),
        ("@pytest.mark.paths_agree('fp32', steps=1)", None),
        ("@pytest.mark.paths_agree('float64')", None),
    ],
)
def test_the_rule_catches_an_unpinned_comparison_of_two_runs(decorator, problem):
    got = _unpinned(decorator + _UNPINNED)
    if problem is None:
        assert got == []
    else:
        assert len(got) == 1 and problem in got[0]
    differ = _UNPINNED.replace("assert torch.allclose", "assert not torch.allclose")
    assert _unpinned(differ) == []  # that two runs differ holds on any CPU


@pytest.mark.paths_agree("float64")
def test_the_marker_pins_the_arithmetic_inside_the_test():
    """The conftest fixture applies the marker: exact mode and float64 by default."""
    import torch

    from ddkit import levers

    assert torch.get_default_dtype() == torch.float64
    with levers.exact(False):
        assert not levers.exact_mode()
    assert levers.exact_mode()
