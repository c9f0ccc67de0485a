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


def _steps_take(monkeypatch, *seconds: float) -> None:
    """Make the dry run's first steps over one class take ``seconds``, one after the other."""
    took = iter(seconds)
    monkeypatch.setattr(dry_run, "_timed", lambda run, n: (next(took), run(n)))


def test_the_part_follows_the_first_step():
    # at most the target for as many one-class steps as classes: every class, whole steps
    assert part_of_step(0.001, 10, target=12.0) == 10 and part_of_step(0.01, 1000, 12.0) == 1000
    # past it: as many classes as take about the target at that pace (1.3 s a class: 9)
    assert part_of_step(1.3, 1000, target=12.0) == 9
    # a step over one class near or past the target: two classes, so that a line can be drawn
    assert part_of_step(7.0, 1000, target=12.0) == 2 and part_of_step(30.0, 1000, 12.0) == 2
    assert part_of_step(30.0, 2, target=12.0) == 2


def test_a_step_part_scales_along_the_line_and_says_what_it_timed():
    # one class 1.3 s (the fastest first step), 9 classes 4.5 s (the warm-up's steps after its
    # first): 0.4 s a class, 0.9 s for all classes alike, so a whole step takes 0.9 + 400 s
    part = StepPart(9, 1000, (1.6, 1.3), steps=[8.0, 4.5, 4.5])
    assert (part.one, part.pace, part.spent) == (1.3, 4.5, pytest.approx(2.9))
    assert part.per_class == pytest.approx(0.4)
    assert part.scale == pytest.approx((4.5 + 0.4 * 991) / 4.5)
    assert dry_run.step_scale([SetupCost("t", 1.0), part]) == part.scale
    assert dry_run.step_scale([SetupCost("t", 1.0)]) == 1.0 and dry_run.step_scale([]) == 1.0
    assert part.text() == (
        "steps over 9 of 1,000 classes timed, scaled x89.1 to all classes at 0.4 s a class "
        "(a first step over 1 of 1,000 classes took 1.3 s)"
    )
    # the part not clearly longer than one class (noise could make the difference): in
    # proportion to the classes, erring long; nor a line with a negative fixed part
    assert StepPart(9, 1000, (2.0,), steps=[2.5, 2.6]).scale == pytest.approx(1000 / 9)
    assert StepPart(4, 1000, (0.1,), steps=[4.0, 4.0]).scale == pytest.approx(250.0)
    assert StepPart(4, 1000, (0.1,)).scale == 250.0  # before any step: in proportion
    whole = StepPart(10, 10, (0.002,), steps=[0.02, 0.01])
    assert whole.scale == 1.0 and whole.text() == (
        "a first step over 1 of 10 classes took 0.002 s, so whole steps were timed"
    )
    # the warm-up's set-up keeps its first step's excess (compilation, 3.5 s, once) and drops
    # the first steps' 2.9 s, which the real run does not make
    from ddkit.runs import setup_and_pace

    setup, pace = setup_and_pace(5.0, part.steps, [part])
    assert setup == pytest.approx(5.0 - 2.9 + 3.5)
    assert pace == pytest.approx(4.5 * part.scale)  # the part's pace, scaled to a whole step


def test_a_step_part_times_the_steps_it_wraps(monkeypatch):
    clock = iter([0.0, 2.0, 2.0, 2.5])
    monkeypatch.setattr(dry_run, "step_clock", lambda: next(clock))
    part = StepPart(9, 1000, (1.0,))
    step = part.timing(lambda it: {"loss": float(it)})
    assert step(0) == {"loss": 0.0} and step(1) == {"loss": 1.0}
    assert part.steps == [2.0, 0.5] and part.pace == 0.5


def test_plan_steps_times_one_class_and_narrows_a_long_step(monkeypatch):
    narrowed: list[int | None] = []

    def narrow(classes):
        narrowed.append(classes)
        return True

    # one class: 1.6 s (lazy start-up), then 1.3 s: 1,000 classes may take 1,300 s, so the
    # steps run over 9 (12 s at that pace)
    _steps_take(monkeypatch, 1.6, 1.3)
    with estimating(steps_in_part=True) as costs:
        planned = plan_steps(narrow, lambda: None, 1000, target=12.0)
    assert costs == [planned] == [StepPart(9, 1000, (1.6, 1.3))] and narrowed == [1, 9]
    # a slow step over one class: no second one, and a part of two
    narrowed.clear()
    _steps_take(monkeypatch, 7.0)
    with estimating(steps_in_part=True):
        slow = plan_steps(narrow, lambda: None, 1000, target=12.0)
    assert slow == StepPart(2, 1000, (7.0,)) and narrowed == [1, 2]
    # a short step: one first step says so, and the steps go back to every class
    narrowed.clear()
    _steps_take(monkeypatch, 0.001)
    with estimating(steps_in_part=True):
        short = plan_steps(narrow, lambda: None, 10, target=12.0)
    assert short == StepPart(10, 10, (0.001,)) and narrowed == [1, None]


def test_plan_steps_does_nothing_unless_asked_and_able(monkeypatch):
    calls = []
    monkeypatch.setattr(dry_run, "_timed", lambda run, n: calls.append(n) or (9.0, run(n)))
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
    # a step over one class "takes" 2 s: 10 classes may take 20 s, past the 12 s target
    _steps_take(monkeypatch, 2.0, 2.0)
    seen = _StepClasses()
    m = NarrowDM(model="convnet2-w8", batch_real=8, augment="none", compile=False)
    with estimating(steps_in_part=True) as costs:
        m.fit(splits.train, 1, iterations=3, seed=0, callbacks=[seen], progress=False)
    assert [(c.part, c.whole, c.probes, len(c.steps)) for c in costs] == [(6, k, (2.0, 2.0), 3)]
    assert seen.changed == [list(range(6))] * 3  # every warm-up step over the first 6 classes
    # outside a dry run, or one whose caller does not scale the pace, the steps are whole
    for context in (estimating(), contextlib.nullcontext()):
        seen = _StepClasses()
        with context:
            m.fit(splits.train, 1, iterations=2, seed=0, callbacks=[seen], progress=False)
        assert seen.changed == [list(range(k))] * 2


def test_ncfm_calibrates_only_the_classes_of_a_narrowed_step(monkeypatch):
    """ncfm's calibration term (cross-entropy of the synthetic images under the expert's final
    network) takes the labels of the classes a step matches: a dry run's part of the classes
    once failed on every class's labels."""
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides

    splits = tiny_digits()
    options = {**method_test_overrides("ncfm"), "calib_weight": 1.0}
    _steps_take(monkeypatch, 2.0, 2.0)
    m = create_method("ncfm", **options)
    with estimating(steps_in_part=True) as costs:
        m.fit(splits.train, 1, iterations=2, seed=0, progress=False)
    assert [c.part < c.whole for c in costs if isinstance(c, StepPart)] == [True]
