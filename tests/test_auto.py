"""``--method auto`` (issue 87): a budgeted tournament on a validation split carved from the
training split picks the method, then the winner distils in the time left; the decision is
recorded, printed and reported; a resumed run reuses the finished rounds; the test split is
never read."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import ddkit.methods.auto.runner as scoring
import ddkit.methods.auto.validation as validation
import ddkit.runs
from ddkit.data.dataset import DatasetSplits
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.dispatch import EvalSettings
from ddkit.methods.auto import AutoRequest, choose
from ddkit.methods.auto.candidates import Candidate, candidates_for
from ddkit.methods.auto.record import record_table
from ddkit.methods.auto.tournament import (
    SLACK,
    Cost,
    Memo,
    Tournament,
    Trained,
    difference_error,
)
from ddkit.methods.auto.validation import FOLDS, carve, carve_folds
from ddkit.methods.base import create_method
from ddkit.runs import DistillRequest, distill_run
from ddkit.testing_data import tiny_digits, tiny_graph, tiny_series, tiny_table

# ---------------------------------------------------------------- the tournament, with fakes


@dataclasses.dataclass
class Fake:
    """A candidate's known cost and its validation accuracy as a function of iterations."""

    setup: float
    pace: float
    planned: int
    accuracy: float  # at its planned count (a selector: always)
    slope: float = 0.0  # accuracy lost per halving of the iterations below the planned count


class FakeRunner:
    """Returns the known costs and accuracies and counts what it was asked."""

    def __init__(self, fakes: dict[str, Fake]) -> None:
        self.fakes, self.calls, self.done = fakes, [], {}

    def estimate(self, c: Candidate) -> Cost:
        self.calls.append(("estimate", c.label))
        f = self.fakes[c.label]
        return Cost(f.setup, f.pace, f.planned, 0.5)

    def train(self, c: Candidate, iterations: int, seconds: float) -> Trained:
        self.calls.append(("train", c.label, iterations))
        f = self.fakes[c.label]
        if c.selector:
            return Trained(0, f.accuracy, 1.0, 1.0)
        gap = 0.0 if iterations >= f.planned else f.slope * (f.planned / max(iterations, 1))
        done = self.done.get(c.label)
        spent = f.pace * (iterations - (done or 0)) + (f.setup if done is None else 0) + 1.0
        self.done[c.label] = iterations  # as estimated: the fake's costs are exact
        return Trained(iterations, f.accuracy - gap, spent, 1.0)


CANDIDATES = [
    Candidate("random", "random"),
    Candidate("herding", "herding"),
    Candidate("dm", "dm"),
    Candidate("idm", "idm"),
    Candidate("dsa", "dsa"),
]


def _fakes() -> dict[str, Fake]:
    return {
        "random": Fake(0.1, 0.0, 0, 0.60),
        "herding": Fake(2.0, 0.0, 0, 0.65),
        "dm": Fake(3.0, 0.01, 2000, 0.80, 0.001),
        "idm": Fake(5.0, 0.02, 2000, 0.85, 0.001),
        "dsa": Fake(4.0, 0.5, 1000, 0.70, 0.001),
    }


def _slow_fakes() -> dict[str, Fake]:
    """No distiller reaches its planned count in a tournament of 300 s."""
    return {
        **_fakes(),
        "dm": Fake(3.0, 0.1, 2000, 0.80, 0.001),
        "idm": Fake(5.0, 0.2, 2000, 0.85, 0.001),
    }


def test_successive_halving_keeps_the_best_by_validation_accuracy() -> None:
    runner = FakeRunner(_slow_fakes())
    outcome = Tournament(CANDIDATES, runner, 300.0).run()
    assert outcome.winner.candidate.label == "idm"
    assert outcome.rounds == 2  # three distillers: 3 -> 2 (the selectors are finished)
    rows = {r.candidate.label: r for r in outcome.rows}
    assert rows["dsa"].stopped.startswith("round 0: ranked 3 of 3 distillers")
    assert rows["random"].stopped == "lost the last round"  # its score carried to the end
    assert rows["idm"].stopped == "the winner" and rows["idm"].reached == 1
    # a survivor's iterations grow from round to round (its share doubles as the pool halves)
    its = [r["iterations"] for r in rows["idm"].rounds]
    assert its == sorted(its) and len(its) >= 2
    assert outcome.spent_seconds <= 300.0 * (1 + SLACK)


def test_finished_candidates_take_no_place_in_the_halving_and_can_win() -> None:
    fakes = {**_slow_fakes(), "herding": Fake(2.0, 0.0, 0, 0.95)}  # a selector better than all
    outcome = Tournament(CANDIDATES, FakeRunner(fakes), 300.0).run()
    rows = {r.candidate.label: r for r in outcome.rows}
    assert outcome.winner is rows["herding"] and rows["herding"].reached == 1
    # both better distillers went on to the last round: herding took none of the two places
    assert [r["round"] for r in rows["dm"].rounds] == [0, 1]
    assert [r["round"] for r in rows["idm"].rounds] == [0, 1]


@pytest.mark.parametrize(("herding", "chosen"), [(0.835, "herding"), (0.80, "idm")])
def test_a_partly_trained_leader_within_the_noise_yields_to_a_finished_set(herding, chosen):
    # idm ends at about 0.84 short of its planned count; 800 validation rows give a standard
    # error of about 1.3 points there: a finished herding 0.5 points behind is preferred (its
    # set is known; idm's would train on), one 4 points behind is not
    fakes = {**_slow_fakes(), "herding": Fake(2.0, 0.0, 0, herding)}
    outcome = Tournament(CANDIDATES, FakeRunner(fakes), 300.0, val_rows=800).run()
    rows = {r.candidate.label: r for r in outcome.rows}
    assert rows["idm"].accuracy > herding and rows["idm"].trainable
    assert outcome.winner.candidate.label == chosen
    assert ("within one standard error" in outcome.tie) == (chosen == "herding")
    # without the validation rows' count there is no margin: the leader wins
    plain = Tournament(CANDIDATES, FakeRunner(fakes), 300.0).run()
    assert plain.winner.candidate.label == "idm"


@pytest.mark.parametrize(("rows", "chosen"), [(50, "herding"), (800, "idm")])
def test_a_synthetic_set_within_the_noise_of_the_best_real_rows_yields_to_them(rows, chosen):
    # every distiller finished; idm leads herding by 5 points: on 50 validation rows the
    # standard error of the difference is about 9 points (real rows are chosen), on 800 about
    # 2.3 (idm is)
    fakes = {**_fakes(), "herding": Fake(2.0, 0.0, 0, 0.80)}
    fakes |= {n: dataclasses.replace(f, planned=50) for n, f in fakes.items() if f.planned}
    outcome = Tournament(CANDIDATES, FakeRunner(fakes), 1000.0, val_rows=rows).run()
    assert all(not r.trainable for r in outcome.rows if r.rounds)  # no partly trained leader
    assert outcome.winner.candidate.label == chosen
    assert ("the real rows were preferred" in outcome.tie) == (chosen == "herding")
    margin = difference_error(0.85, 0.80, rows)
    assert (margin > 0.05) == (chosen == "herding")


@pytest.mark.parametrize("seconds", [5.0, 20.0, 60.0, 200.0, 1000.0])
def test_the_tournament_never_passes_its_budget_by_more_than_the_slack(seconds) -> None:
    outcome = Tournament(CANDIDATES, FakeRunner(_fakes()), seconds).run()
    assert outcome.spent_seconds <= seconds * (1 + SLACK)
    assert all(r.stopped for r in outcome.rows)  # every candidate says why it stopped


def test_a_candidate_whose_estimate_does_not_fit_is_skipped_with_the_reason() -> None:
    fakes = {**_fakes(), "dsa": Fake(500.0, 1.0, 1000, 0.99)}
    outcome = Tournament(CANDIDATES, FakeRunner(fakes), 60.0).run()
    dsa = next(r for r in outcome.rows if r.candidate.label == "dsa")
    assert not dsa.rounds and "does not buy its entry" in dsa.stopped
    assert outcome.winner.candidate.label != "dsa"


def test_the_cheapest_entries_are_admitted_and_the_rounds_follow_their_number() -> None:
    # dsa comes before idm but costs more to enter (set-up, 10 iterations, a scoring): of the
    # three distillers only two fit round 0's shares, so dm and idm play one round
    outcome = Tournament(CANDIDATES, FakeRunner(_fakes()), 60.0).run()
    rows = {r.candidate.label: r for r in outcome.rows}
    assert outcome.rounds == 1
    assert rows["dm"].rounds and rows["idm"].rounds
    assert not rows["dsa"].rounds and "does not buy its entry" in rows["dsa"].stopped


def test_every_candidate_is_scored_by_the_network_the_distillers_train_with() -> None:
    from ddkit.methods.auto.candidates import scoring_network

    dm, selectors = Candidate("dm", "dm"), CANDIDATES[:2]
    assert scoring_network([*selectors, dm], "mnist5k", 10, "image") == "convnet-w32"  # preset
    assert scoring_network([*selectors, dm], "digits", 10, "image") == "convnet"
    assert scoring_network(selectors, "mnist5k", 10, "image") is None  # the protocol's


def test_a_survivor_the_time_left_cannot_continue_keeps_its_score() -> None:
    class Overrunning(FakeRunner):  # dm runs far past its estimate in every round
        def train(self, c: Candidate, iterations: int, seconds: float) -> Trained:
            got = super().train(c, iterations, seconds)
            return dataclasses.replace(got, seconds=got.seconds + 40.0 * (c.label == "dm"))

    fakes = {**_slow_fakes(), "idm": Fake(5.0, 0.2, 2000, 0.95, 0.0001)}  # idm the best
    outcome = Tournament(CANDIDATES, Overrunning(fakes), 300.0).run()
    rows = {r.candidate.label: r for r in outcome.rows}
    assert outcome.winner is rows["idm"]  # scored in round 0; dm's overrun left it little
    assert outcome.spent_seconds <= 300.0 * (1 + SLACK) + 40.0


def test_a_distiller_may_use_its_share_of_the_round_where_its_estimate_is_less() -> None:
    class Recording(FakeRunner):
        def train(self, c: Candidate, iterations: int, seconds: float) -> Trained:
            self.calls.append(("seconds", c.label, seconds))
            return super().train(c, iterations, seconds)

    fakes = {**_fakes(), "dm": Fake(0.0, 0.0001, 100, 0.8)}  # needs far less than its share
    runner = Recording(fakes)
    Tournament(CANDIDATES, runner, 300.0).run()
    given = [s for kind, label, *rest in runner.calls if kind == "seconds" and label == "dm"
             for s in rest]  # fmt: skip
    assert given and given[0] > 0.0001 * 100 * (1 + SLACK) + 5.0  # more than its estimate ...
    assert given[0] <= 300.0  # ... within the tournament


def test_a_budget_that_fits_nothing_is_refused_in_one_line() -> None:
    fakes = {k: dataclasses.replace(f, setup=1e6) for k, f in _fakes().items()}
    with pytest.raises(ConfigError, match="no candidate fits") as err:
        Tournament(CANDIDATES[2:], FakeRunner(fakes), 10.0).run()
    assert "\n" not in str(err.value)


class Interrupted(Exception):
    pass


def test_a_resumed_tournament_reuses_every_finished_costing_and_round(tmp_path) -> None:
    path = tmp_path / "tournament.json"

    class Dying(FakeRunner):  # stops the process after its fourth round
        def train(self, c, iterations, seconds):
            if sum(call[0] == "train" for call in self.calls) == 4:
                raise Interrupted
            return super().train(c, iterations, seconds)

    first = Dying(_fakes())
    with pytest.raises(Interrupted):
        Tournament(CANDIDATES, first, 300.0, Memo(path, {"k": 1})).run()
    done = {c for c in first.calls[:-1]}
    again = FakeRunner(_fakes())
    outcome = Tournament(CANDIDATES, again, 300.0, Memo(path, {"k": 1})).run()
    assert not done & set(again.calls)  # nothing finished ran again
    assert outcome.winner.candidate.label == "idm"
    third = FakeRunner(_fakes())
    replay = Tournament(CANDIDATES, third, 300.0, Memo(path, {"k": 1})).run()
    assert third.calls == [] and replay.spent_seconds == outcome.spent_seconds
    with pytest.raises(ConfigError, match="other settings"):
        Memo(path, {"k": 2})


# ---------------------------------------------------------------- candidates and validation


def test_candidates_follow_the_rows_and_the_teacher() -> None:
    image = [c.method for c in candidates_for(tiny_digits().train, "tiny-digits", 1)]
    assert image[:3] == ["random", "herding", "kcenter"] and "dm" in image
    assert "rded" not in image
    taught = candidates_for(tiny_digits().train, "tiny-digits", 1, teacher="file:x.pt")
    assert any(c.method == "rded" and c.options["teacher"] == "file:x.pt" for c in taught)
    table = [c.method for c in candidates_for(tiny_table().train, "tiny-table", 1)]
    assert "dm" in table and "dsa" not in table and "gcond" not in table
    graph = [c.method for c in candidates_for(tiny_graph().train, "tiny-graph", 1)]
    assert "gcond" in graph and "dm" not in graph


def test_the_validation_split_is_carved_from_train_stratified_and_seeded() -> None:
    train = tiny_digits().train
    a, b = carve(train, 1), carve(train, 1)
    assert torch.equal(a.val.images, b.val.images)
    assert len(a.fit) + len(a.val) == len(train)
    assert all(n >= 1 for n in torch.bincount(a.val.labels, minlength=10).tolist())
    g = tiny_graph().train
    split = carve(g, 1)
    assert set(split.val.graph.test.tolist()) == set(split.val.nodes.tolist())
    assert not set(split.fit.graph.train.tolist()) & set(split.val.nodes.tolist())
    with pytest.raises(ConfigError, match="smaller --ipc"):
        carve(train, min(train.class_counts))


def test_small_data_is_cut_into_stratified_folds_that_hold_out_every_row_once() -> None:
    train = tiny_series().train  # a few dozen rows: one split would hold out a handful
    assert len(carve(train, 1).val) < validation.MIN_VAL_ROWS
    folds = carve_folds(train, 1)
    assert len(folds) == FOLDS
    held = torch.cat([f.val.images.flatten(1) for f in folds])
    assert len(held) == len(train)  # every row held out once ...
    assert len(torch.unique(held, dim=0)) == len(torch.unique(train.images.flatten(1), dim=0))
    for f in folds:  # ... by a fold stratified like the one split, that keeps the rest
        assert len(f.fit) + len(f.val) == len(train)
        assert torch.bincount(f.val.labels).min() >= 1
    assert torch.equal(folds[0].val.images, carve(train, 1).val.images)
    big = tiny_digits().train
    if len(carve(big, 1).val) >= validation.MIN_VAL_ROWS:
        assert len(carve_folds(big, 1)) == 1


def test_fold_runner_sums_the_costs_and_averages_the_scores() -> None:
    fast = FakeRunner({"dm": Fake(2.0, 0.5, 100, 0.8)})
    slow = FakeRunner({"dm": Fake(4.0, 1.5, 80, 0.6)})
    runner = scoring.FoldRunner([fast, slow])
    cost = runner.estimate(Candidate("dm", "dm"))
    assert (cost.setup_seconds, cost.seconds_per_iteration, cost.planned_iterations) == (
        6.0, 2.0, 80,
    )  # fmt: skip
    got = runner.train(Candidate("dm", "dm"), 80, 100.0)
    assert got.iterations == 80 and got.val_accuracy == pytest.approx(0.7)


# ---------------------------------------------------------------- real runs, tiny budgets


@pytest.fixture
def quick(monkeypatch):
    """A tournament of random real rows, k-center and one distiller per modality, scored by a
    recipe of seconds, warm-ups of a few steps."""
    monkeypatch.setattr(scoring, "VAL_EPOCHS", 3)
    monkeypatch.setattr(scoring, "VAL_RUNS", 1)
    monkeypatch.setattr(scoring, "VAL_LEARNERS", "knn")
    monkeypatch.setattr(ddkit.runs, "WARMUP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(validation, "MIN_VAL_ROWS", 0)  # one split (folds: their own test)
    from ddkit.methods.auto import candidates

    keep = {"random", "kcenter", "dm", "doscond"}
    entries = tuple(e for e in candidates.ENTRIES if e[0] in keep)
    monkeypatch.setattr(candidates, "ENTRIES", entries)


class NoTest:
    """A test split that fails on any access: --method auto must never read it."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_an_auto_run_never_reads_the_test_split_and_records_its_choice(tmp_path, quick) -> None:
    from ddkit.report import write_report

    splits = DatasetSplits(train=tiny_digits().train, test=NoTest())
    request = DistillRequest("tiny-digits", "auto", 1, iterations=5, budget=30, options={})
    syn = distill_run(request, tmp_path / "run", splits=splits)
    record = syn.meta["auto"]
    labels = [r["label"] for r in record["candidates"]]
    assert labels == ["random", "kcenter", "dm"]
    assert syn.meta["method"] == record["method"]
    assert record["validation"]["from"] == "train split" and record["validation"]["val_rows"] > 0
    for row in record["candidates"]:
        assert {"options", "cost", "val_accuracy", "measured_seconds", "round", "why"} <= set(row)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["auto"] == record and config["method"] == record["method"]
    assert SyntheticSet.load(tmp_path / "run" / "synthetic").meta["auto"] == record
    table = record_table(record)
    assert "chose " in table and "kcenter" in table
    page = write_report(tmp_path / "run").read_text()
    assert "How the method was chosen" in page and record["winner"] in page

    # resumed: every finished candidate is reused, none is run again
    calls = []

    def counted(self, c, iterations, seconds):
        calls.append(c.label)
        raise AssertionError("a finished candidate ran again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring.FitRunner, "train", counted)
        mp.setattr(scoring.FitRunner, "estimate", counted)
        again = distill_run(request, tmp_path / "run", splits=splits, resume=True)
    assert calls == [] and again.meta["auto"]["winner"] == record["winner"]


@pytest.mark.parametrize(
    "make", [tiny_table, tiny_series, tiny_graph], ids=["table", "series", "graph"]
)
def test_every_modality_gets_a_set_in_a_small_budget(tmp_path, quick, make) -> None:
    splits = make()
    name = splits.train.spec.name
    request = DistillRequest(name, "auto", 1, iterations=5, budget=30)
    syn = distill_run(request, tmp_path / "run", splits=DatasetSplits(splits.train, NoTest()))
    assert len(syn) == splits.train.spec.num_classes
    assert syn.meta["auto"]["winner"] in {r["label"] for r in syn.meta["auto"]["candidates"]}


def test_small_data_is_scored_over_folds(tmp_path, quick, monkeypatch) -> None:
    monkeypatch.setattr(validation, "MIN_VAL_ROWS", 10**9)  # fold whatever the rows
    splits = tiny_series()
    request = DistillRequest(splits.train.spec.name, "auto", 1, iterations=5, budget=60)
    syn = distill_run(request, tmp_path / "run", splits=DatasetSplits(splits.train, NoTest()))
    val = syn.meta["auto"]["validation"]
    assert val["folds"] == FOLDS and val["val_rows"] == len(splits.train)
    assert "validation folds" in record_table(syn.meta["auto"])
    runs = sorted(p.name for p in (tmp_path / "run" / "auto").glob("fold*"))
    assert runs == [f"fold{i}" for i in range(FOLDS)]  # the distiller ran on every fold


def test_a_scoring_longer_than_the_tournament_is_refused_before_it_runs(quick, monkeypatch):
    from ddkit.methods.auto import choose
    from ddkit.methods.auto.resolve import AutoRequest

    timed = []
    real = scoring.validation_score
    monkeypatch.setattr(
        scoring, "validation_score", lambda *a, **k: timed.append(a) or real(*a, **k)
    )
    with pytest.raises(ConfigError, match="scoring one set on the validation rows") as err:
        choose(tiny_digits().train, AutoRequest("tiny-digits", 1, 1e-4), lambda *a: (0, 0, 0))
    assert "\n" not in str(err.value) and len(timed) == 1  # the timing only, not the scoring


def test_tables_and_series_are_scored_by_the_distillers_network_and_nearest_neighbours(monkeypatch):
    seen = []
    monkeypatch.setattr(scoring, "evaluate_set", lambda syn, val, s: seen.append(s) or 1 / 0)
    for make, learner in ((tiny_table, "mlp"), (tiny_series, "conv1d")):
        train = make().train
        syn = SyntheticSet.from_real(train)
        with pytest.raises(ZeroDivisionError):
            scoring.validation_score(syn, train, network=learner)
        assert seen[-1].learners == f"{learner},{scoring.ROW_LEARNER}"
    with pytest.raises(ZeroDivisionError):
        scoring.validation_score(syn, train, network=None)
    assert seen[-1].learners == scoring.VAL_LEARNERS


def _costs(monkeypatch, seconds: dict[str, float]) -> list[str]:
    """Give each learner a fixed timed cost; the learners timed, in order."""
    timed = []

    def fake(syn, val, name, device):
        timed.append(name)
        return seconds[name]

    monkeypatch.setattr(scoring, "_learner_seconds", fake)
    return timed


def test_series_learners_are_added_cheapest_first_while_every_scoring_fits(monkeypatch):
    split = carve(tiny_series().train, 2)
    timed = _costs(monkeypatch, {"rocket": 1.0, "conv1d": 2.0, "resnet1d": 4.0, "knn": 0.1})
    # 10 scorings within half of 100 s: 5 s each; conv1d and knn are kept, rocket fits, resnet1d not
    got = scoring.scoring_learners(split, 2, "conv1d", scorings=10, seconds=100.0)
    assert got["learners"] == "conv1d,knn,rocket"
    assert sorted(timed) == ["conv1d", "knn", "resnet1d", "rocket"]  # each timed once
    assert got["allowance"] == pytest.approx(5.0) and got["estimates"]["resnet1d"] == 4.0
    roomy = scoring.scoring_learners(split, 2, "conv1d", scorings=10, seconds=1000.0)
    assert roomy["learners"] == "conv1d,knn,rocket,resnet1d"
    # the network and nearest neighbours stay, whatever they cost
    tight = scoring.scoring_learners(split, 2, "conv1d", scorings=10, seconds=1.0)
    assert tight["learners"] == "conv1d,knn"


def test_learners_are_not_chosen_for_images_and_are_pinned_by_val_learners(monkeypatch):
    timed = _costs(monkeypatch, {})
    digits = carve(tiny_digits().train, 1)
    assert scoring.scoring_learners(digits, 1, "convnet", 10, 100.0)["learners"] is None
    monkeypatch.setattr(scoring, "VAL_LEARNERS", "knn")
    table = carve(tiny_table().train, 2)
    assert scoring.scoring_learners(table, 2, "mlp", 10, 100.0)["learners"] == "knn"
    assert timed == []


def test_a_learner_s_estimate_scales_its_timed_run_to_the_recipe(monkeypatch):
    class Clock:
        now = 0.0

        def perf_counter(self):
            return self.now

    clock = Clock()

    def evaluate(syn, val, settings):  # a fixed part and a rate per epoch, per run
        clock.now += settings.runs * (0.5 + 0.01 * settings.epochs)

    monkeypatch.setattr(scoring, "time", clock)
    monkeypatch.setattr(scoring, "evaluate_set", evaluate)
    recipe = scoring.VAL_RUNS * (0.5 + 0.01 * scoring.VAL_EPOCHS)
    # a network from two short runs (its fixed part and its rate), a random learner from one
    # run of every seed's, a deterministic one from one run
    for name, runs in (("mlp", scoring.VAL_RUNS), ("rf", scoring.VAL_RUNS), ("knn", 1)):
        clock.now = 0.0
        estimate = scoring._learner_seconds(None, None, name, None)
        assert estimate == pytest.approx(recipe * runs / scoring.VAL_RUNS)
        if name == "mlp":
            assert clock.now < recipe / 2  # the network's timing is a part of its scoring


def test_a_resumed_tournament_scores_by_the_learners_it_chose(tmp_path, monkeypatch):
    monkeypatch.setattr(scoring, "VAL_EPOCHS", 3)
    monkeypatch.setattr(scoring, "VAL_RUNS", 1)
    monkeypatch.setattr(ddkit.runs, "WARMUP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(validation, "MIN_VAL_ROWS", 0)
    from ddkit.methods.auto import candidates

    entries = tuple(e for e in candidates.ENTRIES if e[0] in {"random", "kcenter"})
    monkeypatch.setattr(candidates, "ENTRIES", entries)
    _costs(monkeypatch, {"rocket": 0.01, "conv1d": 0.01, "resnet1d": 10**6, "knn": 0.01})
    train = tiny_series().train
    request = AutoRequest(train.spec.name, 2, 60.0)
    first = choose(train, request, lambda *a: (0, 0, 0), folder=tmp_path)
    chosen = first.record["scoring learners"]["learners"]
    assert chosen == "knn,rocket,conv1d"  # no network among the candidates: knn, then the rest
    assert "by knn, rocket, conv1d" in record_table(first.record)
    _costs(monkeypatch, {"rocket": 10**6, "conv1d": 10**6, "resnet1d": 0.01, "knn": 0.01})
    again = choose(train, request, lambda *a: (0, 0, 0), folder=tmp_path)
    assert again.record["scoring learners"]["learners"] == chosen


def test_a_learner_s_one_time_cost_is_paid_once_and_before_it_is_timed(monkeypatch):
    from ddkit.eval import learners

    events: list[str] = []

    class Recorded:
        def fit(self, x, y):
            events.append("fit")
            self.label = int(y[0])
            return self

        def predict(self, x):
            return [self.label] * len(x)

    recorded = learners.Learner(
        lambda seed, y: Recorded(), False, warm_up=lambda: events.append("warm")
    )
    monkeypatch.setattr(learners, "_WARM", set())
    learners.LEARNERS.add("recorded", recorded)
    try:
        split = carve(tiny_table().train, 1)
        syn = create_method("random").fit(split.fit, 1, seed=0)
        scoring._learner_seconds(syn, split.val, "recorded", None)
        scoring._learner_seconds(syn, split.val, "recorded", None)
    finally:
        learners.LEARNERS.remove("recorded")
    assert events == ["warm", "fit", "fit"]  # paid before the first timing, once per process


def test_a_table_s_score_is_the_mean_of_the_network_s_and_nearest_neighbours(monkeypatch):
    monkeypatch.setattr(scoring, "VAL_EPOCHS", 2)
    splits = tiny_table()
    syn = create_method("random").fit(splits.train, 2, seed=0)
    score, _ = scoring.validation_score(syn, splits.test, network="mlp")
    each = [
        scoring.evaluate_set(
            syn, splits.test, EvalSettings(runs=scoring.VAL_RUNS, epochs=2, seed=0, learners=name)
        )
        .report.results[0]
        .mean
        for name in ("mlp", scoring.ROW_LEARNER)
    ]
    assert score == pytest.approx(sum(each) / 2)
    assert each[0] != pytest.approx(each[1])  # two learners, not one counted twice


def test_auto_without_a_budget_or_with_options_is_refused_in_one_line(tmp_path) -> None:
    for request, words in [
        (DistillRequest("tiny-digits", "auto", 1), "pass --budget"),
        (DistillRequest("tiny-digits", "auto", 1, budget=60, options={"lr_img": 1}), "--set"),
    ]:
        with pytest.raises(ConfigError, match=words) as err:
            distill_run(request, tmp_path / "r", splits=tiny_digits())
        assert "\n" not in str(err.value) and not (tmp_path / "r").exists()


def test_the_dry_run_prints_the_plan_and_writes_nothing(capsys, tmp_path, quick) -> None:
    from ddkit.cli import main

    code = main(["distill", "--dataset", "digits", "--method", "auto", "--ipc", "1", "--budget",
                 "20s", "--quiet", "--dry-run", "--out", str(tmp_path / "r")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "--method auto: 3 candidates" in out
    for label in ("random", "kcenter", "dm"):  # each costed, or the reason it was not
        assert label in out
    assert not (tmp_path / "r").exists()


def test_choose_is_the_python_api(quick) -> None:
    train = tiny_digits().train
    fakes = {"random": Fake(0.1, 0.0, 0, 0.5), "kcenter": Fake(0.1, 0.0, 0, 0.7),
             "dm": Fake(0.5, 0.01, 100, 0.6)}  # fmt: skip
    choice = choose(train, AutoRequest("tiny-digits", 1, 60.0), lambda *a: (0, 0, 0),
                    runner=lambda split, cands: FakeRunner(fakes))  # fmt: skip
    assert choice.method == "kcenter" and choice.record["winner"] == "kcenter"


def test_a_method_of_no_iterations_is_scored_as_its_costing_and_every_row_says_why() -> None:
    fakes = {**_fakes(), "rded": Fake(1.0, 0.0, 0, 0.9)}
    cands = [*CANDIDATES, Candidate("rded", "rded", {"teacher": "file:t.pt"})]
    outcome = Tournament(cands, FakeRunner(fakes), 300.0).run()
    rded = next(r for r in outcome.rows if r.candidate.label == "rded")
    assert rded.rounds and outcome.winner is rded
    assert all(r.stopped for r in outcome.rows)
