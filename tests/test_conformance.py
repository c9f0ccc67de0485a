"""The conformance suite (ddkit.testing) run over every registered method and selector."""

from __future__ import annotations

import pytest

from ddkit.methods import METHODS, load_all
from ddkit.testing import (
    check_all,
    check_method,
    check_model,
    method_test_overrides,
    tiny_digits,
    tiny_series,
    tiny_table,
)

load_all()
#: every method that declares it needs only differentiable rows runs on a table too (issue 39)
TABLE_METHODS = [n for n in METHODS.names() if METHODS.get(n).needs == "differentiable"]


@pytest.mark.parametrize("name", METHODS.names())
def test_method_conformance(name):
    check_method(name)


@pytest.mark.parametrize("name", TABLE_METHODS)
def test_method_conformance_on_a_table(name):
    check_method(name, tiny_table())


@pytest.mark.parametrize("name", TABLE_METHODS)
def test_method_conformance_on_a_series(name):
    check_method(name, tiny_series())


def test_the_modality_agnostic_methods_are_in_the_table_suite():
    assert {"dm", "dc", "kip", "random", "herding", "kcenter"} <= set(TABLE_METHODS)
    assert "dsa" not in TABLE_METHODS
    assert tiny_table().spec.modality == "table" and tiny_table().spec.shape == (5, 1, 1)


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
        METHODS.remove(Broken.name)
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


# -------------------------------------------------------- codecs, applications and audits
from ddkit.apps.base import APPS  # noqa: E402
from ddkit.apps.base import load_all as load_apps  # noqa: E402
from ddkit.audits.base import AUDITS  # noqa: E402
from ddkit.audits.base import load_all as load_audits  # noqa: E402
from ddkit.data.codecs import CODECS  # noqa: E402
from ddkit.testing import (  # noqa: E402
    CODEC_CHECKS,
    MEMBER_CHECKS,
    check_app,
    check_audit,
    check_codec,
)

load_apps()
load_audits()


@pytest.mark.parametrize("check", list(CODEC_CHECKS))
@pytest.mark.parametrize("name", CODECS.names())
def test_codec_conformance(name, check):
    check_codec(name, [check])


@pytest.mark.parametrize("check", list(MEMBER_CHECKS))
@pytest.mark.parametrize("name", APPS.names())
def test_app_conformance(name, check):
    check_app(name, [check])


@pytest.mark.parametrize("check", list(MEMBER_CHECKS))
@pytest.mark.parametrize("name", AUDITS.names())
def test_audit_conformance(name, check):
    check_audit(name, [check])


def test_the_codec_checks_catch_a_codec_that_ignores_its_stored_tensor(monkeypatch):
    from ddkit.data.codecs.pixels import Pixels

    monkeypatch.setattr(Pixels, "decode", lambda self, stored: stored.detach() * 0)
    with pytest.raises(AssertionError, match="fails decodes"):
        check_codec("pixels", ["decodes"])


def test_the_member_checks_catch_an_app_that_writes_before_it_checks(monkeypatch):
    from pathlib import Path

    app = APPS.get("nas")

    def writes_first(args):
        Path(args.out).mkdir(parents=True)
        raise __import__("ddkit.errors").errors.DataError("unknown dataset")

    monkeypatch.setattr(app, "run", staticmethod(writes_first))
    with pytest.raises(AssertionError, match="created its --out folder"):
        check_app("nas", ["refuses_unknown_data"])
