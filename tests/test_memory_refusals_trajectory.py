"""Trajectory matching checks what it will hold before the work (issue 73): the student's
unrolled graph and the experts' training against the memory budget, the experts' snapshots
against the free disk. An absurd setting is refused in one line naming the option; the
settings a user runs are not."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.trajectory import memory
from ddkit.methods.trajectory.experts import ExpertSettings, train_experts
from ddkit.testing import method_test_overrides, tiny_digits

BUDGET = "DDKIT_MEMORY_BUDGET"


def _mtt(**changes):
    return create_method("mtt", **{**method_test_overrides("mtt"), **changes})


def test_an_absurd_unroll_is_refused_in_one_line_before_any_step(monkeypatch):
    monkeypatch.setenv(BUDGET, str(2**30))
    steps = []
    method = _mtt(syn_steps=10**6)
    monkeypatch.setattr(type(method), "step", lambda self, i: steps.append(i) or {})
    with pytest.raises(ConfigError, match=r"student's unroll \(1,000,000 steps") as err:
        method.fit(tiny_digits().train, 2, iterations=1, seed=0)
    assert "syn_steps" in str(err.value) and "\n" not in str(err.value) and not steps
    tesla = _mtt(syn_steps=10**6, backward="tesla")  # sqrt(N) checkpoints: this fits
    monkeypatch.setattr(type(tesla), "step", lambda self, i: steps.append(i) or {})
    tesla.fit(tiny_digits().train, 2, iterations=1, seed=0)
    every = _mtt(syn_steps=10**7, backward="tesla", student_checkpoint_every=1)
    with pytest.raises(ConfigError, match=r"tesla's student \(10,000,000 steps .* batch_syn"):
        every.fit(tiny_digits().train, 2, iterations=1, seed=0)
    steps.clear()
    # the digits preset's own unroll (the CPU default) fits a budget of a gigabyte
    _mtt(syn_steps=10).fit(tiny_digits().train, 2, iterations=1, seed=0)


def test_the_unroll_estimate_holds_the_measured_graph_and_not_far_more():
    """The estimate is of what the graph holds: above the measured growth of the peak per
    student step, and within twice it (an earlier estimate refused runs that fit); measured on
    CIFAR-shaped images, where activations outweigh the allocator's small blocks."""
    from ddkit.data.spec import DatasetSpec
    from ddkit.meter import PeakRSS
    from ddkit.methods.trajectory.student import FlatModel, Student, make_plan, unrolled_step
    from ddkit.models import build_network

    spec = DatasetSpec("cifar-shaped", 10, 3, (32, 32), (0.0,) * 3, (1.0,) * 3)
    net = build_network("convnet3-w32", spec, 0)
    fm, n = FlatModel(net), 32
    images = torch.randn(n, *spec.shape, requires_grad=True)
    labels, lr = torch.arange(n) % spec.num_classes, torch.tensor(0.01, requires_grad=True)
    start = fm.flatten(net).detach()
    peaks = []
    for steps in (2, 12):
        plan = make_plan(n, steps, 0, torch.Generator().manual_seed(0), None, spec.image_size)
        with PeakRSS() as m:
            unrolled_step(Student(fm), start, start + 0.01, images, lr, labels, plan).backward()
        peaks.append(m.extra_mb * 2**20)
    measured = (peaks[1] - peaks[0]) / 10
    estimate = memory.unroll_bytes(net, spec, 1, n)
    assert measured < estimate < 2 * measured


def test_experts_past_the_free_disk_or_the_memory_budget_are_refused_before_any_write(
    tmp_path, monkeypatch
):
    train = tiny_digits().train
    out = tmp_path / "experts"
    with pytest.raises(ConfigError, match=r"snapshots of 100,000 experts .* on disk") as err:
        train_experts(train, "convnet2-w8", 10**5, 10**4, out)
    assert "num_experts or expert_train_epochs" in str(err.value) and not out.exists()
    monkeypatch.setenv(BUDGET, str(2**20))
    with pytest.raises(ConfigError, match=r"training 4 expert\(s\) at once .* smaller together"):
        train_experts(train, "convnet2-w8", 4, 1, out, ExpertSettings(batch_size=256), together=4)
    assert not out.exists()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**40, 0, 2**40))
    monkeypatch.setenv(BUDGET, str(2**30))  # the digits preset's experts: trained
    assert len(train_experts(train, "convnet2-w8", 2, 1, out, ExpertSettings(batch_size=32))) == 2


def test_snapshot_bytes_count_every_epoch_and_the_momentum_buffer():
    assert memory.snapshot_bytes(100, 3, 5, 0.0) == 4 * 100 * 6 * 3
    assert memory.snapshot_bytes(100, 3, 5, 0.9) == 2 * memory.snapshot_bytes(100, 3, 5, 0.0)
