"""The run context (issue 84): every DDKIT_* variable read in ddkit.context, parsed there, and
recorded in a distilled run's config.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ddkit import context
from ddkit.cli import main
from ddkit.errors import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src" / "ddkit"


def test_only_the_context_module_reads_the_environment():
    """ddkit's own variables and the other programs' it consults (torchrun's launch, the
    trackers', Python's) are all read or set in ddkit.context."""
    readers = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"os\.environ|os\.getenv|putenv", path.read_text())
    }
    assert readers == {"context.py"}


def test_another_programs_variable_must_be_declared(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert context.other_variable("WANDB_MODE") == "offline"
    with pytest.raises(ConfigError, match="not a variable ddkit consults"):
        context.other_variable("HOME")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert context.launch_environment() == {"WORLD_SIZE": "2", "RANK": "1"}


def test_every_variable_is_named_once_in_the_context_module():
    named = set(re.findall(r"\"(DDKIT_[A-Z_]+)\"", (SRC / "context.py").read_text()))
    assert named == set(context.VARIABLES)
    for path in SRC.rglob("*.py"):
        if path.name != "context.py":
            assert not re.search(r"\"DDKIT_[A-Z_]+\"", path.read_text()), path


def test_unset_variables_take_their_defaults(monkeypatch):
    for name in context.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    ctx = context.run_context()
    assert ctx.given == frozenset()
    assert ctx.values[context.FOLDER_CACHE_ENV] == "auto"
    assert ctx.values[context.DATA_CACHE_ENV] is None
    assert ctx.values[context.ALLOW_ROOT_ENV] == ()
    assert ctx.values[context.AUTOENCODER_CACHE_ENV] == Path("runs/autoencoders")
    assert ctx.values[context.BUDGET_ENV] > 0
    assert ctx.exact is False


def test_set_variables_are_parsed_and_marked_set(monkeypatch, tmp_path):
    monkeypatch.setenv(context.BUDGET_ENV, " 2G ")
    monkeypatch.setenv(context.FOLDER_CACHE_ENV, "Never")
    monkeypatch.setenv(context.DATA_ENV, str(tmp_path))
    monkeypatch.setenv(context.ALLOW_ROOT_ENV, f"{tmp_path}/a::{tmp_path}/b")
    ctx = context.run_context("cpu", processes=2)
    assert ctx.values[context.BUDGET_ENV] == 2 * 2**30
    assert ctx.values[context.FOLDER_CACHE_ENV] == "never"
    assert context.data_root() == tmp_path
    assert context.allowed_roots() == (tmp_path / "a", tmp_path / "b")
    record = ctx.to_dict()
    assert record["variables"][context.BUDGET_ENV] == {"value": 2 * 2**30, "set": True}
    assert record["variables"][context.DATA_CACHE_ENV] == {"value": None, "set": False}
    assert record["processes"] == 2 and record["device"] == "cpu"
    json.dumps(record)  # every value is JSON


@pytest.mark.parametrize(
    "name, text, fix",
    [
        (context.EXACT_ENV, "maybe", "use 1, true, yes or on"),
        (context.BUDGET_ENV, "lots", "100M, 2G or 1.5e9"),
        (context.FOLDER_CACHE_ENV, "sometimes", "use one of auto, always, never"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_the_variable(monkeypatch, name, text, fix):
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigError) as err:
        context.run_context()
    assert f"${name}=" in str(err.value) and fix in str(err.value)
    assert "\n" not in str(err.value)


def test_the_command_refuses_a_bad_variable_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(context.FOLDER_CACHE_ENV, "sometimes")
    assert main(["list"]) == 2
    assert "DDKIT_FOLDER_CACHE" in capsys.readouterr().err


def test_export_sets_a_variable_for_the_processes_started_later(monkeypatch):
    monkeypatch.delenv(context.EXACT_ENV, raising=False)
    context.export(context.EXACT_ENV, "1")
    assert context.exact_from_environment()
    with pytest.raises(ConfigError, match="not a ddkit variable"):
        context.export("DDKIT_NOPE", "1")


DISTILL = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]


def test_a_distilled_run_records_its_context_in_config_json(monkeypatch, tmp_path):
    monkeypatch.setenv(context.BUDGET_ENV, "3G")
    out = tmp_path / "run"
    assert main([*DISTILL, "--iterations", "1", "--out", str(out)]) == 0
    recorded = json.loads((out / "config.json").read_text())["context"]
    assert recorded["variables"][context.BUDGET_ENV] == {"value": 3 * 2**30, "set": True}
    assert recorded["variables"][context.FOLDER_CACHE_ENV]["set"] is False
    assert recorded["exact"] is True and recorded["device"] == "cpu"  # the suite is exact
    # a resumed run may continue under another environment; config.json records the new one
    monkeypatch.setenv(context.BUDGET_ENV, "4G")
    assert main([*DISTILL, "--iterations", "1", "--out", str(out), "--resume"]) == 0
    recorded = json.loads((out / "config.json").read_text())["context"]
    assert recorded["variables"][context.BUDGET_ENV]["value"] == 4 * 2**30
