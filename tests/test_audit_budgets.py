"""Per-method distillation budgets of the audits (``--iterations 200,dsa=20,dsa@50=5``): parsed,
checked, applied per (method, IPC), and keyed so that units kept under one number stay valid."""

from __future__ import annotations

import pytest
import torch

from ddkit.audits.adversarial import audit_sets
from ddkit.audits.base import AuditRun, Budgets, budgets_json, iterations_of
from ddkit.audits.privacy import PrivacyTraining, Source
from ddkit.errors import ConfigError
from ddkit.eval.protocol import get_protocol
from ddkit.testing import tiny_digits


def test_budgets_resolve_per_method_and_per_ipc():
    b = Budgets.parse("200, dsa=20, dsa@50=5")
    assert [b.of("dm", 10), b.of("dsa", 10), b.of("dsa", 50), b.of("kip", 50)] == [200, 20, 5, 200]
    assert Budgets.parse("dsa@50=5,dsa=20,200") == b  # order does not matter
    assert Budgets.parse("dsa=20").of("dm", 10) is None  # no default: the presets' budget
    assert b.to_json() == {"default": 200, "dsa": 20, "dsa@50": 5}
    # one number is recorded as audits with a single budget always recorded it
    assert Budgets.parse("200").to_json() == 200 and Budgets.parse(None).to_json() is None
    assert iterations_of(7, "dm", 10) == 7 and budgets_json(None) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("dm=x", "--iterations takes"),
        ("200,", "--iterations takes"),
        ("dm@ten=5", "--iterations takes"),
        ("@10=5", "--iterations takes"),
        ("dm=-1", "must be >= 0"),
    ],
)
def test_bad_budgets_are_one_line(text, message):
    with pytest.raises(ConfigError) as e:
        Budgets.parse(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_budget_for_no_registered_method_is_refused():
    Budgets.parse("10,dm=3,dsa@50=5").check()  # a method not distilled this time may be named
    with pytest.raises(ConfigError, match="dsaa") as e:
        Budgets.parse("10,dsaa=3").check()
    assert "\n" not in str(e.value)


def test_each_method_and_ipc_distils_with_its_own_budget():
    splits = tiny_digits()
    sets = audit_sets(splits, ["dm"], [1, 2], AuditRun.of(), full=False,
                      iterations=Budgets.parse("3,dm@2=1"),
                      options={"batch_real": 8, "model": "convnet1-w32"})  # fmt: skip
    assert sets["dm/ipc1"].meta["iterations"] == 3
    assert sets["dm/ipc2"].meta["iterations"] == 1


def test_a_single_number_keys_the_same_networks_and_other_methods_budgets_do_not_matter():
    how = PrivacyTraining(protocol=get_protocol("dc"), model="convnet1-w32", full_epochs=5)
    pool = torch.arange(20)
    dm = Source("distilled", "dm", 10)

    def key(iterations):
        return PrivacyTraining(**{**how.__dict__, "iterations": iterations}).fingerprint(
            dm, "digits", pool, 0
        )

    assert key(Budgets.parse("200")) == key(200)
    assert key(Budgets.parse("200,dsa=20,dsa@50=5")) == key(200)
    assert key(Budgets.parse("200,dm@10=50")) == key(50) != key(200)
