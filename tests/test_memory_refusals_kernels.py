"""Kernel methods beyond KIP's ConvNet blocks, and the privacy audit's shadow networks, check
what a step holds before the work (issue 73): an absurd setting is refused in one line naming
the option to change; the test settings (and the digits presets' scale) are not."""

from __future__ import annotations

import pytest

from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.testing import method_test_overrides, tiny_digits

BUDGET = "DDKIT_MEMORY_BUDGET"


def _fit(name: str, **changes) -> None:
    method = create_method(name, **{**method_test_overrides(name), **changes})
    method.fit(tiny_digits().train, 2, iterations=1, seed=0)


@pytest.mark.parametrize(
    "name, changes, match",
    [
        ("frepo", {"pool_size": 10**7}, r"frepo's step \(10,000,000 pool networks .* pool_size"),
        ("kip", {}, r"kip's kernel matrices .* smaller batch_real or IPC"),
        # one narrow network, so that its weights (checked first) fit where its kernels do not
        ("rfad", {"width": 4, "depth": 1, "models": 1}, r"rfad's kernel matrices .* IPC"),
        ("frepo", {}, r"frepo's kernel matrices .* smaller batch_real or IPC"),
    ],
)
def test_a_step_past_the_budget_is_refused_before_it_runs(monkeypatch, name, changes, match):
    method = create_method(name, **{**method_test_overrides(name), **changes})
    steps = []
    monkeypatch.setattr(type(method), "step", lambda self, i: steps.append(i) or {})
    if "pool_size" not in changes:  # the kernel matrices of 2 x 10 support images: past 5 kB,
        monkeypatch.setenv(BUDGET, "5000")  # where frepo's network (4 kB) fits
    with pytest.raises(ConfigError, match=match) as err:
        method.fit(tiny_digits().train, 2, iterations=1, seed=0)
    assert "\n" not in str(err.value) and not steps


@pytest.mark.parametrize("name", ["frepo", "kip", "rfad"])
def test_the_test_settings_fit_a_small_budget(monkeypatch, name):
    monkeypatch.setenv(BUDGET, str(256 * 2**20))
    _fit(name)


def test_the_privacy_audits_shadow_statistics_are_checked_before_any_network(monkeypatch):
    from ddkit.audits.privacy_plan import Source, plan_membership

    monkeypatch.setenv(BUDGET, str(256 * 2**20))
    splits = tiny_digits()
    sources = [Source("full"), Source("random", "random", 1)]
    with pytest.raises(ConfigError, match=r"statistics of 2,000,002 target .* fewer --shadows"):
        plan_membership(splits, sources, shadows=10**6, pool=None, seed=0)
    rows, masks = plan_membership(splits, sources, shadows=4, pool=None, seed=0)
    assert masks.shape == (5, len(rows))
