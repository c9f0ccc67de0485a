"""Every registered modality passes the conformance suite (:mod:`ddkit.testing_modalities`),
the suite catches a broken one, and a modality defined here (one registration, no edit to
ddkit) is a modality like the others."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from ddkit.data.modalities import MODALITIES, get_modality, register_modality
from ddkit.data.modalities.image import ImageModality
from ddkit.testing import check_modality
from ddkit.testing_modalities import MODALITY_CHECKS, modality_failures

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ddkit" / "data" / "modalities"


@pytest.mark.parametrize("check", list(MODALITY_CHECKS))
@pytest.mark.parametrize("name", MODALITIES.names())
def test_every_modality_passes_the_conformance_suite(name, check):
    check_modality(name, [check])


def test_every_module_registers_its_modality_and_the_five_are_there():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "base", "rows"}
    assert set(MODALITIES.names()) >= modules
    assert {"image", "table", "series", "graph", "paired"} <= set(MODALITIES.names())


def test_the_suite_catches_a_broken_modality():
    image = get_modality("image")
    broken = dataclasses.replace(image, name="broken-rows", models=("no-such-net",))
    register_modality(broken)
    try:
        failures = modality_failures("broken-rows")
    finally:
        MODALITIES.remove("broken-rows")
    joined = "\n".join(failures)
    assert "tiny_instance" in joined  # its tiny digits hold image rows, not broken-rows
    assert "unknown model families ['no-such-net']" in joined


class _Grey(ImageModality):
    """Images of one channel only: a modality defined outside ddkit."""

    def check_layout(self, spec):
        super().check_layout(spec)
        if spec.channels != 1:
            from ddkit.errors import DataError

            raise DataError(f"a grey row has one channel, got {spec.channels}")

    def tiny(self):
        from ddkit.testing_data import tiny_digits

        digits = tiny_digits()
        spec = dataclasses.replace(digits.train.spec, modality="grey")
        return type(digits)(
            dataclasses.replace(digits.train, spec=spec),
            dataclasses.replace(digits.test, spec=spec),
        )


def test_a_modality_defined_outside_ddkit_passes_and_leaves():
    grey = dataclasses.replace(get_modality("image"), name="grey", needs_words="grey images")
    register_modality(_Grey(**{f.name: getattr(grey, f.name) for f in dataclasses.fields(grey)}))
    try:
        check_modality("grey")
        spec = get_modality("grey").tiny().train.spec
        assert spec.kind.name == "grey" and spec.to_dict()["modality"] == "grey"
    finally:
        MODALITIES.remove("grey")
    assert "grey" not in MODALITIES


SRC = PACKAGE.parents[1]
#: Comparisons of a modality's name that stay, each with its reason (file, count).
KEPT_COMPARISONS: dict[str, int] = {}


def _modality_comparisons(tree: ast.AST) -> int:
    """Comparisons (``==``, ``!=``, ``in``, ``not in``) with an operand named ``modality``
    (``spec.modality``, a ``modality`` variable), and uses of the names that stood for one
    (``PAIRED_READERS``, ``_is_paired``)."""

    def named_modality(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "modality") or (
            isinstance(node, ast.Name) and node.id == "modality"
        )

    found = 0
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops)
            and any(named_modality(n) for n in (node.left, *node.comparators))
        ):
            found += 1
        elif isinstance(node, ast.Name) and node.id in ("PAIRED_READERS", "_is_paired"):
            found += 1
    return found


def test_no_code_outside_the_modalities_compares_a_modality_name():
    """A floor asks the registered modality (``spec.kind``) instead of comparing its name
    (issue 84): the count outside ``data/modalities/`` is the kept ones' only."""
    counts = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith("data/modalities/"):
            n = _modality_comparisons(ast.parse(path.read_text(), rel))
            if n:
                counts[rel] = n
    assert counts == KEPT_COMPARISONS
