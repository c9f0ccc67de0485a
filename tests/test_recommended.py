"""``--method recommended`` (issue 82): dm with a real batch that follows the classes, a narrow
network on a CPU for data without a preset, a time budget of its own, and the choice recorded."""

from __future__ import annotations

import json

import pytest

from ddkit.errors import ConfigError
from ddkit.methods.recommended import (
    CPU_MODEL,
    DEFAULT_BUDGET_SECONDS,
    MIN_BATCH_REAL,
    REAL_IMAGES_PER_STEP,
    recommend,
    recommended_batch_real,
    resolve_method,
    run_budget,
)
from ddkit.testing_data import tiny_digits, tiny_table


@pytest.mark.parametrize(
    ("preset", "classes", "batch"),
    [(256, 10, 256), (256, 32, 256), (256, 200, 40), (256, 1000, MIN_BATCH_REAL), (128, 10, 128)],
)
def test_the_real_batch_keeps_a_step_under_its_image_count(preset, classes, batch) -> None:
    got = recommended_batch_real(preset, classes)
    assert got == batch
    assert got * classes <= max(REAL_IMAGES_PER_STEP, MIN_BATCH_REAL * classes)


def test_data_without_a_preset_gets_the_narrow_network_on_a_cpu_only() -> None:
    train = tiny_digits().train
    cpu = recommend(train, "tiny-digits", 1)
    assert cpu.method == "dm" and cpu.options["model"] == CPU_MODEL
    assert "model" not in recommend(train, "tiny-digits", 1, on_cpu=False).options
    assert "model" not in recommend(train, "digits", 1).options  # dm has a digits preset


def test_the_users_options_win_and_are_named_as_theirs() -> None:
    rec = recommend(tiny_digits().train, "tiny-digits", 1, {"batch_real": 5, "model": "convnet"})
    assert rec.options == {"batch_real": 5, "model": "convnet"}
    assert "batch_real 5" in rec.why and "at most" not in rec.why and "narrow" not in rec.why


def test_other_rows_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="image data") as err:
        recommend(tiny_table().train, "tiny-table", 1)
    assert "\n" not in str(err.value)


def test_only_the_name_recommended_is_resolved_and_it_brings_a_budget() -> None:
    train = tiny_digits().train
    assert resolve_method("dm", train, "tiny-digits", 1, {"x": 1}) == ("dm", {"x": 1}, None)
    method, _, rec = resolve_method("recommended", train, "tiny-digits", 1, None)
    assert method == "dm" and rec is not None
    assert run_budget("recommended", None) == DEFAULT_BUDGET_SECONDS
    assert run_budget("recommended", "5m") == "5m" and run_budget("dm", None) is None


def test_a_recommended_run_records_what_it_chose(tmp_path) -> None:
    from ddkit.runs import DistillRequest, distill_run

    request = DistillRequest("tiny-digits", "recommended", 1, iterations=2,
                             options={"augment": "none"})  # fmt: skip
    syn = distill_run(request, tmp_path / "run", splits=tiny_digits())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["method"] == "dm" and config["recommended"]["method"] == "dm"
    assert config["method_config"]["model"] == CPU_MODEL
    assert config["recommended"]["options"]["augment"] == "none"
    assert syn.meta["iterations"] == 2


def test_the_dry_run_says_what_it_chose_and_what_its_budget_fits(capsys, tmp_path) -> None:
    from ddkit.cli import main

    code = main(["distill", "--dataset", "digits", "--method", "recommended", "--ipc", "1",
                 "--iterations", "4", "--quiet", "--dry-run", "--out", str(tmp_path / "r")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "--method recommended: dm" in out
    assert "a --budget of 1h00m fits all 4 iterations" in out
    assert not (tmp_path / "r").exists()
