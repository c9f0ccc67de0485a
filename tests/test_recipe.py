"""A set carries its evaluation recipe (issues 40 and 41): the protocol it was made for and the
network it was distilled with, recorded at fit time, kept by save / load, used by ``evaluate``
and ``ddkit evaluate`` unless told otherwise, with a note when the networks differ."""

from __future__ import annotations

import json

import pytest
import torch

from ddkit.cli import main
from ddkit.data.synthetic import META_FILE, SETTINGS_KEY, SyntheticSet, settings_digest
from ddkit.errors import FileFormatError
from ddkit.eval import evaluate
from ddkit.eval.recipe import RECIPE_KEY, intended_protocol, network_mismatch, set_recipe
from ddkit.methods import create_method
from ddkit.testing import method_test_overrides, tiny_digits

# one-epoch evaluations only check which networks and protocol were used
pytestmark = pytest.mark.filterwarnings("ignore:.*under-trained:UserWarning")


def _fit(name: str, **overrides):
    config = {**method_test_overrides(name), **overrides}
    return create_method(name, **config).fit(tiny_digits().train, 1, seed=0)


def test_a_distilled_set_records_its_network_and_protocol_and_keeps_them_on_save(tmp_path):
    syn = _fit("dm", model="convnet2")
    recipe = set_recipe(syn)
    assert (recipe.source, recipe.distilled_with) == ("recorded", "convnet2")
    assert recipe.protocol.name == "dsa" and recipe.protocol.models == ("convnet2",)
    syn.save(tmp_path / "set")
    again = set_recipe(SyntheticSet.load(tmp_path / "set"))
    assert again == recipe


def test_learned_regression_labels_call_for_mse_and_real_rows_name_no_network():
    kip = _fit("kip", learn_labels=True)
    assert kip.regression and set_recipe(kip).protocol.name == "mse"
    herding = _fit("herding")
    recipe = set_recipe(herding)
    assert recipe.protocol.name == "dsa" and recipe.distilled_with is None


def test_a_method_that_names_its_papers_protocol_records_it_with_its_networks():
    frepo = _fit("frepo")
    recipe = set_recipe(frepo)
    assert recipe.protocol.name == "frepo" and recipe.protocol.models == ("frepoconv-none",)
    assert recipe.distilled_with == frepo.meta["config"]["model"]


def test_a_set_without_a_recipe_gets_the_protocol_its_labels_call_for():
    d = tiny_digits().train
    hard = SyntheticSet.from_real(d, torch.arange(10))
    assert intended_protocol(hard) == "dsa" and set_recipe(hard).source == "labels"
    probs = torch.full((10, 10), 0.1)
    soft = SyntheticSet(hard.images, probs, hard.spec)
    assert intended_protocol(soft) == "soft"
    soft.meta["teacher_dir"] = "runs/teachers/x"
    assert intended_protocol(soft) == "teacher-kd"
    regression = SyntheticSet(hard.images, probs - 0.1, hard.spec, regression=True)
    assert intended_protocol(regression) == "mse"


def test_evaluate_uses_the_recorded_protocol_unless_told_otherwise():
    syn = _fit("dm", model="convnet2")
    test = tiny_digits().test
    report = evaluate(syn, test, runs=1, epochs=1)
    assert report.protocol.name == "dsa" and [r.model for r in report.results] == ["convnet2"]
    other = evaluate(syn, test, "smoke", runs=1, epochs=1)
    assert [r.model for r in other.results] == ["convnet"]


def test_the_mismatch_note_names_both_networks_and_only_when_they_differ():
    syn = _fit("dm", model="convnet2")
    recipe = set_recipe(syn)
    assert network_mismatch(recipe, ("convnet2",)) is None
    note = network_mismatch(recipe, ("convnet2", "mlp"))
    assert note is not None and "distilled with convnet2" in note and "mlp" in note
    assert network_mismatch(set_recipe(_fit("herding")), ("mlp",)) is None


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_ddkit_evaluate_announces_the_recorded_recipe_and_the_network_mismatch(tmp_path, capsys):
    run = tmp_path / "run"
    distill = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1"]
    options = ["--iterations", "2", "--set", "model=convnet2", "--out", str(run), "--quiet"]
    assert _run([*distill, *options], capsys)[0] == 0
    code, out, err = _run(["evaluate", str(run), "--epochs", "1", "--runs", "1", "--quiet"], capsys)
    assert code == 0, err
    assert "protocol dsa (1000 epochs, convnet2), recorded in the set" in out
    assert "note:" not in out
    assert json.loads((run / "eval.json").read_text())["results"][0]["model"] == "convnet2"

    args = ["evaluate", str(run), "--protocol", "smoke", "--models", "convnet", "--quiet"]
    code, out, err = _run([*args, "--runs", "1", "--epochs", "1"], capsys)
    assert code == 0, err
    assert "recorded in the set" not in out
    assert "note: the set was distilled with convnet2; evaluating with convnet" in out


def test_a_damaged_recipe_is_refused_in_one_line(tmp_path, capsys):
    syn = _fit("dm")
    folder = syn.save(tmp_path / "set")
    meta = json.loads((folder / META_FILE).read_text())
    meta["provenance"][RECIPE_KEY]["protocol"]["epochs"] = "many"
    meta[SETTINGS_KEY] = settings_digest(meta)  # an edit that also forged the checksum
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="recorded recipe is damaged"):
        set_recipe(SyntheticSet.load(folder))
    code, _, err = _run(["evaluate", str(folder), "--dataset", "digits", "--quiet"], capsys)
    assert code == 2 and "recorded recipe is damaged" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("epochs", 10**12, "epochs 1,000,000,000,000 is past the limit"),
        ("runs", 10**5, "runs 100,000 is past the limit"),
        ("models", ["convnet-w10000000"], "has 1,"),
        ("lr", float("inf"), "lr must be > 0 and finite"),
    ],
)
def test_a_recorded_recipe_past_the_bounds_is_refused(tmp_path, field, value, said):
    """Issue 75: a set's recipe from someone else was trusted as it was (10^12 epochs, 10^5
    networks, a width of 10^7), with a forged checksum; now refused in one line before work."""
    syn = _fit("dm")
    folder = syn.save(tmp_path / "set")
    meta = json.loads((folder / META_FILE).read_text())
    meta["provenance"][RECIPE_KEY]["protocol"][field] = value
    meta[SETTINGS_KEY] = settings_digest(meta)
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="recorded recipe is damaged") as err:
        set_recipe(SyntheticSet.load(folder))
    assert said in str(err.value)
