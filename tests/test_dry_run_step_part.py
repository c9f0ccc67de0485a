"""Issue 82, estimates in seconds at any data size: where one step would run long (dm over
1,000 classes at 224 px), a dry run times steps over a part of the classes and scales their pace
linearly to every class, saying what it timed; a short step is timed whole as before. Timings are
injected: the tests check the decision and the arithmetic, never how long anything took."""

from __future__ import annotations

import contextlib

import pytest

from ddkit.eval import dry_run
from ddkit.eval.dry_run import SetupCost, StepPart, estimating, part_of_step, plan_steps
from ddkit.methods import Callback
from ddkit.testing import tiny_digits


def _probe_takes(monkeypatch, *seconds: float) -> list[int]:
    """Make the dry run's timed pieces take ``seconds`` (one after the other); returns the list
    that counts them."""
    took = iter(seconds)
    calls: list[int] = []

    def timed(run, n):
        calls.append(n)
        return next(took), run(n)

    monkeypatch.setattr(dry_run, "_timed", timed)
    return calls


def test_the_part_follows_the_first_steps_pace():
    # a whole step within the target: every class
    assert part_of_step(0.001, 10, target=6.0) == 10 and part_of_step(0.006, 1000, 6.0) == 1000
    # past it: as many classes as take about the target (0.3 s a class: 20 in 6 s)
    assert part_of_step(0.3, 1000, target=6.0) == 20 and part_of_step(0.5, 1000, 6.0) == 12
    # one class alone past the target: one class, never none
    assert part_of_step(10.0, 1000, target=6.0) == 1


def test_a_step_part_scales_linearly_and_says_what_it_timed():
    part = StepPart(50, 1000, 0.3, spent=0.8)
    assert part.scale == 20.0 and dry_run.step_scale([SetupCost("t", 1.0), part]) == 20.0
    assert dry_run.step_scale([SetupCost("t", 1.0)]) == 1.0 and dry_run.step_scale([]) == 1.0
    assert part.text() == (
        "a first step over 1 of 1,000 classes took 0.3 s, so steps over 50 of 1,000 classes "
        "were timed, scaled x20 to a whole step"
    )
    whole = StepPart(10, 10, 0.002, spent=0.002)
    assert whole.scale == 1.0 and whole.text().endswith("so whole steps were timed")
    # 3 warm-up steps over 50 of 1,000 classes, the first compiling for 10 s more: the set-up
    # keeps the compilation (once) and drops the probe's 0.8 s (the real run makes no probe);
    # the pace of a whole step is the part's, 2 s, x 20
    from ddkit.runs import setup_and_pace

    setup, _ = setup_and_pace(5.0, [12.0, 2.0, 2.0], [part])
    assert setup == pytest.approx(5.0 - 0.8 + 10.0) and 2.0 * part.scale == 40.0


def test_plan_steps_times_one_class_and_narrows_a_long_step(monkeypatch):
    narrowed: list[int | None] = []

    def narrow(classes):
        narrowed.append(classes)
        return True

    steps = []
    # the first piece (lazy start-up) 0.5 s, the next 0.3 s: 1,000 classes would take minutes
    calls = _probe_takes(monkeypatch, 0.5, 0.3)
    with estimating(steps_in_part=True) as costs:
        planned = plan_steps(narrow, lambda: steps.append(1), 1000, target=6.0)
    assert planned == StepPart(20, 1000, 0.3, spent=0.8) and costs == [planned]
    assert narrowed == [1, 20] and len(calls) == len(steps) == 2
    # a short step: one piece says so, and the steps go back to every class
    narrowed.clear()
    _probe_takes(monkeypatch, 0.001)
    with estimating(steps_in_part=True) as costs:
        planned = plan_steps(narrow, lambda: None, 10, target=6.0)
    assert planned == StepPart(10, 10, 0.001, spent=0.001) and narrowed == [1, None]


def test_plan_steps_does_nothing_unless_asked_and_able(monkeypatch):
    calls = _probe_takes(monkeypatch, 9.0, 9.0)
    narrowed = []
    with estimating() as costs:  # the caller does not scale a partial step's pace
        assert plan_steps(lambda c: narrowed.append(c) or True, lambda: None, 1000) is None
    assert plan_steps(lambda c: narrowed.append(c) or True, lambda: None, 1000) is None
    with estimating(steps_in_part=True) as costs:
        assert plan_steps(lambda c: False, lambda: None, 1000) is None  # a method that cannot
        assert plan_steps(lambda c: True, lambda: None, 1) is None  # one class: nothing to cut
    assert narrowed == [] and calls == [] and costs == []


class _StepClasses(Callback):
    """The images each warm-up step changed, by class."""

    def on_start(self, method, total, start):
        self.last = method.state_["images"].detach().clone()
        self.changed = []

    def on_step_end(self, method, iteration, metrics):
        now = method.state_["images"].detach()
        moved = (now != self.last).flatten(1).any(1)
        self.changed.append(moved.nonzero().flatten().tolist())
        self.last = now.clone()


def test_a_dm_that_narrows_its_steps_is_timed_over_a_part(monkeypatch):
    """dm's step over its first N classes (what a class-split rank computes) changes only those
    classes' images, and the dry run's warm-up runs over the part the first step chose."""
    from ddkit.methods.matching.distribution import DM

    class NarrowDM(DM):
        def narrow_steps(self, classes):
            self.classes_ = None if classes is None else list(range(classes))
            return True

    splits = tiny_digits()
    k = splits.train.spec.num_classes
    _probe_takes(monkeypatch, 1.5, 1.5)  # a step over one class "takes" 1.5 s: 4 in 6 s
    seen = _StepClasses()
    m = NarrowDM(model="convnet2-w8", batch_real=8, augment="none", compile=False)
    with estimating(steps_in_part=True) as costs:
        m.fit(splits.train, 1, iterations=3, seed=0, callbacks=[seen], progress=False)
    assert costs == [StepPart(4, k, 1.5, spent=3.0)]
    assert seen.changed == [[0, 1, 2, 3]] * 3  # every warm-up step over the first 4 classes
    # outside a dry run, or one whose caller does not scale the pace, the steps are whole
    for context in (estimating(), contextlib.nullcontext()):
        seen = _StepClasses()
        with context:
            m.fit(splits.train, 1, iterations=2, seed=0, callbacks=[seen], progress=False)
        assert seen.changed == [list(range(k))] * 2
