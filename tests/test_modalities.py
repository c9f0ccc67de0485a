"""Every registered modality passes the conformance suite (:mod:`ddkit.testing_modalities`),
the suite catches a broken one, and a modality defined here (one registration, no edit to
ddkit) is a modality like the others."""

from __future__ import annotations

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
