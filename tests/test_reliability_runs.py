"""Reliability audit (issue 83), run folders and what commands are given: no ``--out`` writes
over a saved set, a run's own files or a file ddkit did not write; stored label codecs and
regeneration boxes that cannot be right, an lgm that cannot fit or does not match the data, a
recipe whose digest was deleted, and option values (device, class count, a learning rate) that
cannot be used are each refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddkit.cli import main
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import FileFormatError
from ddkit.testing import tiny_digits

DDKIT = [sys.executable, "-m", "ddkit"]
RANDOM_RUN = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]

# one-epoch evaluations only check where the report goes
pytestmark = pytest.mark.filterwarnings("ignore:.*under-trained:UserWarning")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _ddkit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``ddkit ARGS`` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*DDKIT, *args], cwd=cwd, capture_output=True, text=True, env=env)


def _refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """The command ended with exit code 2 and one error line holding ``words``."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("ddkit: error")]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``ddkit distill`` run folder (``run/``, its set in ``run/synthetic``)."""
    where = tmp_path_factory.mktemp("runs")
    assert main([*RANDOM_RUN, "--out", str(where / "run")]) == 0
    return where


@pytest.mark.parametrize(
    "command, out, words",
    [
        (["evaluate", "run", "--protocol", "smoke"], "run/synthetic/meta.json", ["saved set"]),
        (["evaluate", "run", "--protocol", "smoke"], "run/synthetic", ["saved set", "not a file"]),
        (["evaluate", "run", "--protocol", "smoke"], "run/config.json", ["run folder"]),
        (["evaluate", "run", "--protocol", "smoke"], "run", ["run folder", "not a file"]),
        (["report", "run"], "run/synthetic/data.safetensors", ["saved set"]),
        (["report", "run"], "run/synthetic", ["saved set"]),  # a folder: the page goes inside
        (["report", "run"], "run/config.json", ["run folder"]),
        (["plot", "curve", "run"], "run/log.jsonl", ["run folder"]),
        (RANDOM_RUN, "run/synthetic", ["saved set"]),
        (RANDOM_RUN, "run/synthetic/inner", ["saved set"]),
        (RANDOM_RUN, "run/checkpoint", ["run folder"]),
        (["teacher", "--epochs", "1"], "run", ["run folder"]),
        (["app", "continual"], "run", ["run folder"]),
        (["audit", "privacy"], "run/synthetic", ["saved set"]),
    ],
)
def test_no_out_writes_over_a_saved_set_or_a_runs_own_files(run_folder, command, out, words):
    before = _files(run_folder)
    done = _ddkit([*command, "--out", out], cwd=run_folder)
    _refused(done, f"'{out}", "--out", *words)
    assert _files(run_folder) == before
    SyntheticSet.load(run_folder / "run" / "synthetic")  # still loads


def test_a_report_replaces_only_a_report_ddkit_wrote_and_goes_to_new_folders(run_folder, tmp_path):
    args = ["evaluate", str(run_folder / "run"), "--protocol", "smoke", "--runs", "1", "--quiet"]
    report = tmp_path / "new" / "eval.json"
    assert main([*args, "--out", str(report)]) == 0 and report.is_file()  # a new folder
    assert main([*args, "--out", str(report)]) == 0  # its own report, replaced
    page = tmp_path / "page.html"
    assert main(["report", str(report), "--out", str(page)]) == 0
    assert main(["report", str(report), "--out", str(page)]) == 0
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    for command in (args, ["report", str(report)], ["plot", "curve", str(run_folder / "run")]):
        done = _ddkit([*command, "--out", str(mine)], cwd=tmp_path)
        _refused(done, "exists and is not", "ddkit wrote", "--out")
        assert mine.read_text() == "my notes"


def test_distill_resumes_its_own_run_folder_but_never_nests_a_run_in_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*RANDOM_RUN, "--out", str(run)]) == 0
    assert main([*RANDOM_RUN, "--out", str(run), "--resume"]) == 0
    before = _files(run)
    assert main([*RANDOM_RUN, "--out", str(run / "inner")]) == 2
    err = capsys.readouterr().err
    assert "inside the run folder" in err and err.count("\n") == 1
    assert _files(run) == before


# ----------------------------------------------------------------------------- stored labels
def _rewrite_tensors(folder: Path, edit: dict[str, torch.Tensor]) -> None:
    """Replace tensors of the saved set ``folder`` by ``edit`` and record the new file's
    checksums, as a writer with a bug would: the set is then checked by what it holds."""
    from safetensors.torch import load_file, save_file

    from ddkit.data.set_meta import SETTINGS_KEY, settings_digest
    from ddkit.io import atomic_write_json, read_json, sha256_file

    tensors = load_file(str(folder / "data.safetensors"))
    assert set(edit) <= set(tensors)
    save_file({**tensors, **edit}, str(folder / "data.safetensors"))
    meta = read_json(folder / "meta.json")
    meta["sha256"] = sha256_file(folder / "data.safetensors")
    meta[SETTINGS_KEY] = settings_digest(meta)
    atomic_write_json(folder / "meta.json", meta)


@pytest.mark.parametrize("scale", [0.0, -0.01, float("nan"), float("inf")])
def test_int8_labels_with_a_scale_that_decodes_to_nothing_are_refused(tmp_path, scale):
    from ddkit.eval.relabel import encode_labels

    train = tiny_digits().train
    hard = SyntheticSet.from_real(train, torch.arange(6))
    soft = SyntheticSet(hard.images, torch.softmax(torch.randn(6, 10), 1), hard.spec)
    folder = encode_labels(soft, "int8").save(tmp_path / "set")
    assert SyntheticSet.load(folder).labels.sum(1).allclose(torch.ones(6))  # as saved: loads
    stored = load_file(str(folder / "data.safetensors"))["extra.label.scale"]
    bad = stored.clone()
    bad[2] = scale
    _rewrite_tensors(folder, {"extra.label.scale": bad})
    with pytest.raises(FileFormatError, match="finite positive scale") as err:
        SyntheticSet.load(folder)
    assert "\n" not in str(err.value) and "data.safetensors" in str(err.value)


def _regen_set(boxes: torch.Tensor) -> SyntheticSet:
    """Four real images with hard labels and the crop boxes of two views each (``regen``)."""
    train = tiny_digits().train
    hard = SyntheticSet.from_real(train, torch.arange(4))
    extras = {"view_boxes": boxes.to(torch.int16), "view_flip": torch.zeros(4, 2, dtype=torch.bool)}
    return SyntheticSet(hard.images, hard.labels, hard.spec, meta={"label_budget": "regen"},
                        extras=extras)  # fmt: skip


@pytest.mark.parametrize("box", [(0, 0, 30_000, 30_000), (-2, 0, 4, 4), (0, 6, 4, 4), (0, 0, 0, 3)])
def test_regen_crop_boxes_outside_the_image_are_refused(tmp_path, box):
    h, w = tiny_digits().train.spec.image_size
    good = torch.tensor([0, 0, h, w]).expand(4, 2, 4).clone()
    folder = _regen_set(good).save(tmp_path / "set")
    assert SyntheticSet.load(folder).extras["view_boxes"].shape == (4, 2, 4)  # as saved: loads
    bad = good.clone()
    bad[1, 1] = torch.tensor(box)  # digits are 8x8: each box leaves the image or is empty
    _rewrite_tensors(folder, {"extra.view_boxes": bad.to(torch.int16)})
    with pytest.raises(FileFormatError, match="outside the") as err:
        SyntheticSet.load(folder)
    assert "\n" not in str(err.value) and f"{h}x{w}" in str(err.value)


# ----------------------------------------------------------------------------- lgm
def _lgm_backbone(size: int) -> torch.nn.Module:
    from ddkit.models import create_model

    return create_model("convnet2-w8", num_classes=10, in_channels=1, image_size=size)


def test_lgm_views_beyond_memory_are_refused_before_the_backbone_is_built(tmp_path):
    from ddkit.errors import ConfigError
    from ddkit.methods import create_method

    train = tiny_digits().train
    m = create_method("lgm", views=100_000_000, backbone="convnet2-w8",
                      teacher_cache=str(tmp_path / "teachers"))  # fmt: skip
    with pytest.raises(ConfigError, match="views") as err:
        m.fit(train, 1, iterations=1, progress=False)
    assert "\n" not in str(err.value) and "GiB" in str(err.value)
    assert not (tmp_path / "teachers").exists()  # no teacher was trained for it


def test_lgm_refuses_a_backbone_made_for_another_image_size():
    from ddkit.errors import ConfigError
    from ddkit.methods import create_method

    train = tiny_digits().train
    h, w = train.spec.image_size
    kw = {"views": 1, "batch_real": 2, "iterations": 1, "augment": "none"}
    with pytest.raises(ConfigError, match=f"made for 1x28x28 images, the data has 1x{h}x{w}"):
        create_method("lgm", backbone=_lgm_backbone(28), **kw).fit(train, 1, progress=False)
    made = create_method("lgm", backbone=_lgm_backbone(h), **kw).fit(train, 1, progress=False)
    assert made.images.shape[1:] == (1, h, w)  # one made for the data's shape is used


# ----------------------------------------------------------------------------- recipes
def test_a_recipe_whose_settings_checksum_was_deleted_is_not_used_as_recorded(tmp_path, capsys):
    import json

    from ddkit.data.synthetic import META_FILE, SETTINGS_KEY
    from ddkit.eval.recipe import RECIPE_KEY, intended_protocol, set_recipe
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides

    config = {**method_test_overrides("dm"), "model": "convnet2"}
    syn = create_method("dm", **config).fit(tiny_digits().train, 1, seed=0, progress=False)
    folder = syn.save(tmp_path / "set")
    assert set_recipe(SyntheticSet.load(folder)).source == "recorded"  # as saved: vouched for
    meta = json.loads((folder / META_FILE).read_text())
    meta["provenance"][RECIPE_KEY]["protocol"]["epochs"] = 7  # an edit ...
    del meta[SETTINGS_KEY]  # ... whose checksum was deleted rather than forged
    (folder / META_FILE).write_text(json.dumps(meta))
    loaded = SyntheticSet.load(folder)
    recipe = set_recipe(loaded)
    assert recipe.source == "unchecked" and recipe.distilled_with is None
    assert recipe.protocol.name == intended_protocol(loaded) and recipe.protocol.epochs != 7
    args = ["evaluate", str(folder), "--dataset", "digits", "--runs", "1", "--epochs", "1"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "eval.json")]) == 0
    said = capsys.readouterr().out
    assert f"no {SETTINGS_KEY}" in said and "recorded in the set" not in said


# ----------------------------------------------------------------------------- option values
@pytest.mark.parametrize(
    "command",
    [
        [*RANDOM_RUN, "--device", "meta"],
        ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--set", "device=meta"],
        ["evaluate", "run", "--protocol", "smoke", "--device", "meta"],
    ],
)
def test_a_device_ddkit_does_not_compute_on_is_refused_in_one_line(run_folder, command, capsys):
    before = _files(run_folder)
    old = os.getcwd()
    os.chdir(run_folder)
    try:
        code = main([*command, "--quiet", "--out", "elsewhere"])
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'meta'" in err and "cpu, cuda" in err, err
    assert _files(run_folder) == before and not (run_folder / "elsewhere").exists()


@pytest.mark.parametrize("lr", [[0.1, 0.2], (0.1, 0.2), torch.tensor([0.1, 0.2]), "0.1,0.2"])
def test_a_set_whose_learned_lr_is_not_one_number_is_refused(tmp_path, lr):
    from ddkit.errors import DataError

    train = tiny_digits().train
    real = SyntheticSet.from_real(train, torch.arange(4))
    with pytest.raises(DataError, match="learned lr must be"):
        SyntheticSet(real.images, real.labels, real.spec, lr=lr)
    folder = SyntheticSet(real.images, real.labels, real.spec, lr=0.01).save(tmp_path / "set")
    assert SyntheticSet.load(folder).lr == pytest.approx(0.01)  # as saved: one number
    _rewrite_tensors(folder, {"lr": torch.tensor([0.1, 0.2])})
    with pytest.raises(FileFormatError, match="learned lr must be one number") as err:
        SyntheticSet.load(folder)
    assert "\n" not in str(err.value)


def test_a_dry_run_says_what_it_times_before_it_starts(tmp_path, capsys, monkeypatch):
    import ddkit.runs as runs

    said = []

    def estimate(**kwargs):  # what was said before the measuring began
        said.append(capsys.readouterr().err)
        return runs.CostEstimate(0.0, 0.0, 1)

    monkeypatch.setattr(runs, "estimate_distill", estimate)
    argv = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--dry-run"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert len(said) == 1 and "timing dm's set-up" in said[0] and said[0].count("\n") == 1
    assert main([*argv, "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert said[1] == ""  # --quiet: nothing but the estimate
