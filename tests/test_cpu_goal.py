"""The CPU goal of issue 74 (benchmarks/campaigns/bench_cpu_goal.py) presumes that the runs it measures are
compiled by default: a DM run of 1,000 iterations and a 1,000-epoch evaluation of MNIST-sized
sets (IPC 1, 10, 50) must not fall under the compile floors (ddkit.levers)."""

from __future__ import annotations

import pytest

from ddkit import levers
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import TrainRecipe
from ddkit.methods import create_method
from ddkit.testing import tiny_digits


@pytest.fixture
def fast_machine(monkeypatch):
    """Outside exact mode, on a machine with native bf16 and a working compiler."""
    monkeypatch.setattr(levers, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(levers, "compile_available", lambda: True)
    with levers.exact(False):
        yield


def test_a_thousand_iteration_dm_run_is_compiled(fast_machine):
    dm = create_method("dm", model="convnet-w8", batch_real=8)
    dm.start(tiny_digits().train, 2, seed=0, iterations=1000)  # compiles lazily: nothing yet
    assert dm.compile_ is True and dm.precision_ == "bf16"
    short = create_method("dm", model="convnet-w8", batch_real=8)
    short.start(tiny_digits().train, 2, seed=0, iterations=levers.COMPILE_MIN_STEPS - 1)
    assert short.compile_ is False


@pytest.mark.parametrize("ipc", [1, 10, 50])
def test_a_thousand_epoch_evaluation_of_mnist_sets_is_compiled(fast_machine, ipc):
    dsa = get_protocol("dsa")
    assert dsa.epochs == 1000
    recipe = TrainRecipe.of_protocol(dsa, dsa.lr, "cpu", images=10 * ipc, row_values=28 * 28)
    assert (recipe.compile, recipe.channels_last, recipe.precision) == (True, True, "bf16")
