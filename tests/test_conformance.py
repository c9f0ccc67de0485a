"""The conformance suite (ddkit.testing) run over every registered method and selector."""

from __future__ import annotations

import pytest

from ddkit.methods import METHODS, load_all
from ddkit.testing import check_all, check_method, check_model, method_test_overrides, tiny_digits

load_all()


@pytest.mark.parametrize("name", METHODS.names())
def test_method_conformance(name):
    check_method(name)


def test_tiny_fixture_is_small_and_balanced_enough():
    d = tiny_digits()
    assert d.train.spec.shape == (1, 8, 8) and d.train.spec.num_classes == 10
    assert 200 <= len(d.train) <= 260 and min(d.train.class_counts) >= 15


def test_check_method_reports_a_broken_method():
    """The suite catches a method that uses the global RNG and returns the wrong class counts."""
    import dataclasses

    import torch

    from ddkit.methods.base import MethodConfig
    from ddkit.methods.coreset import Selector

    class Broken(Selector):
        name = "broken-for-test"

        @dataclasses.dataclass(frozen=True)
        class Config(MethodConfig):
            pass

        def select(self, train, ipc, generator):
            torch.rand(1)  # global RNG: not allowed
            return train.class_indices[0][: ipc * train.spec.num_classes]  # all from class 0

    METHODS.add(Broken.name, Broken)
    try:
        failures = check_all([Broken.name])[Broken.name]
    finally:
        METHODS._items.pop(Broken.name)
        METHODS._help.pop(Broken.name)
    text = "\n".join(failures)
    assert "global RNG" in text and "class counts" in text and "seeds 0 and 1" in text, text
    with pytest.raises(AssertionError, match=r"(?s)failed 1 check.*fit raised ConfigError"):
        check_method("random", ipc=0)  # an error during fit is reported, not swallowed


def test_test_overrides_are_valid_options():
    for name in METHODS.names():
        cls = METHODS.get(name)
        cls(**method_test_overrides(name))  # unknown keys would raise ConfigError


@pytest.mark.parametrize("name", ["convnet-w8", "mlp-w16"])
def test_check_model(name):
    check_model(name)
