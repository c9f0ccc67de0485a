"""The evaluators (:mod:`ddkit.eval.evaluators`): each holds only its own frozen settings, the
fields of :class:`~ddkit.eval.evaluators.EvalSettings` it accepts, and one rule refuses any
other field given, in one line naming its flag, what judges the set and the fix (issue 84)."""

from __future__ import annotations

import dataclasses

import pytest

from ddkit.data.modalities import MODALITIES, get_modality
from ddkit.errors import ConfigError
from ddkit.eval import Report
from ddkit.eval.dispatch import Evaluation
from ddkit.eval.evaluators import AMBIENT, EVALUATORS, EvalSettings, own_settings

GIVEN = {"protocol": object(), "models": "mlp", "learners": "knn", "groups": True,
         "precision": "bf16", "compile": True, "teacher": "file:t.pt", "budget": 60.0}  # fmt: skip


def test_every_modality_names_a_registered_evaluator_and_each_serves_one():
    served = {get_modality(m).evaluator for m in MODALITIES.names()}
    assert served <= set(EVALUATORS.names())
    assert set(EVALUATORS.names()) == {"networks", "learners", "gcn", "retrieval"}


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_an_evaluator_holds_frozen_settings_of_eval_settings_fields(name):
    evaluator = EVALUATORS.get(name)
    fields = {f.name: f for f in dataclasses.fields(EvalSettings)}
    assert evaluator.settings.__dataclass_params__.frozen
    for f in dataclasses.fields(evaluator.settings):
        assert f.name in fields and f.default == fields[f.name].default, f.name
    own = own_settings(evaluator, EvalSettings(runs=2, epochs=3, seed=4), "this set")
    assert (own.runs, own.epochs, own.seed) == (2, 3, 4)


@pytest.mark.parametrize("name", EVALUATORS.names())
@pytest.mark.parametrize("field", sorted(GIVEN))
def test_a_setting_an_evaluator_does_not_take_is_refused_in_one_line(name, field):
    evaluator = EVALUATORS.get(name)
    s = EvalSettings(**{field: GIVEN[field]})
    if field in evaluator.accepts:
        own_settings(evaluator, s, "this set")
        return
    with pytest.raises(ConfigError) as e:
        own_settings(evaluator, s, "this table set")
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--{field} is for evaluation by ")
    assert f"does not apply to this table set, judged by {evaluator.judges}" in message
    assert message.endswith(evaluator.fixes.get(field, "drop it"))


def test_the_sessions_fields_are_ignored_where_not_taken():
    s = EvalSettings(device="cpu", progress=True, started=1.0, seed=3)
    assert AMBIENT == {"seed", "device", "progress", "started"}
    for name in EVALUATORS.names():
        own_settings(EVALUATORS.get(name), s, "this set")


def test_an_evaluation_holds_a_report():
    hints = {f.name: f.type for f in dataclasses.fields(Evaluation)}
    assert hints["report"] in ("Report", Report)
