"""Teacher training keeps a checkpoint after every epoch and resumes from it, bit-identical to an
uninterrupted run; a checkpoint of another recipe or other data is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.eval import teacher as teacher_module
from ddkit.eval.teacher import TeacherRecipe, load_teacher, train_teacher
from ddkit.eval.train import TrainRecipe, sgd_train, train_networks
from ddkit.io import read_json
from ddkit.testing import tiny_digits

MODEL = "convnet3-bn-w8"
RECIPE = {"epochs": 3, "lr": 0.05, "seed": 3, "batch_size": 64}  # 4 batches an epoch, crop


class Crash(Exception):
    """A simulated interruption."""


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "t"
    return train_teacher(tiny.train, TeacherRecipe(MODEL, **RECIPE), out_dir=folder), folder


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _interrupt(monkeypatch, train, folder: Path, after: int, **recipe) -> None:
    """Run ``train_teacher`` into ``folder`` and crash right after epoch ``after``'s checkpoint
    is written."""
    write = teacher_module._Checkpoint.write

    def write_then_crash(self, net, opt, gen, epoch, seconds):
        write(self, net, opt, gen, epoch, seconds)
        if epoch == after:
            raise Crash

    with monkeypatch.context() as m:
        m.setattr(teacher_module._Checkpoint, "write", write_then_crash)
        with pytest.raises(Crash):
            train_teacher(train, TeacherRecipe(MODEL, **{**RECIPE, **recipe}), out_dir=folder)
    ckpt = read_json(folder / "checkpoint" / "checkpoint.json")
    assert ckpt["epoch"] == after and (folder / "checkpoint" / "state.safetensors").is_file()


@pytest.mark.parametrize("after", [1, 2])
def test_interrupted_teacher_resumes_to_the_uninterrupted_weights(
    tiny, uninterrupted, tmp_path, monkeypatch, after
):
    folder = tmp_path / "t"
    _interrupt(monkeypatch, tiny.train, folder, after)
    net = train_teacher(tiny.train, TeacherRecipe(MODEL, **RECIPE), out_dir=folder)
    assert net.teacher_meta_["resumed_after_epoch"] == after
    assert _same(net, uninterrupted[0])
    assert _same(load_teacher(folder)[0], uninterrupted[0])
    assert sorted(p.name for p in folder.iterdir()) == ["teacher.json", "teacher.safetensors"]


def test_uninterrupted_teacher_is_train_networks_and_leaves_no_checkpoint(tiny, uninterrupted):
    net, folder = uninterrupted
    protocol = TeacherRecipe(MODEL, **RECIPE).protocol()  # crop, weight decay 5e-4
    old = train_networks(
        MODEL,
        tiny.train.spec,
        tiny.train.images,
        tiny.train.labels,
        protocol,
        [RECIPE["seed"]],
        lr=RECIPE["lr"],
        vectorize=False,
    ).models[0]
    assert _same(net, old) and _same(load_teacher(folder)[0], old)
    assert net.teacher_meta_["resumed_after_epoch"] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["teacher.json", "teacher.safetensors"]


def test_checkpoint_of_another_recipe_or_data_is_refused(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "t"
    _interrupt(monkeypatch, tiny.train, folder, 1)
    before = (folder / "checkpoint" / "state.safetensors").read_bytes()
    where = str(folder / "checkpoint")
    with pytest.raises(ConfigError, match="epochs 3, not 4") as e:
        train_teacher(tiny.train, TeacherRecipe(MODEL, **{**RECIPE, "epochs": 4}), out_dir=folder)
    msg = str(e.value)
    assert "\n" not in msg and where in msg and "delete it" in msg and "another out_dir" in msg
    with pytest.raises(ConfigError, match="other training data"):
        train_teacher(tiny_digits(rows=200).train, TeacherRecipe(MODEL, **RECIPE), out_dir=folder)
    assert (folder / "checkpoint" / "state.safetensors").read_bytes() == before  # untouched
    assert not (folder / "teacher.json").exists()


def test_sgd_train_refuses_a_start_epoch_out_of_range(tiny):
    net = torch.nn.Linear(64, 10)
    with pytest.raises(ConfigError, match="start_epoch"):
        sgd_train(
            net, tiny.train.images.flatten(1), tiny.train.labels, TrainRecipe(2, 0.1, 64),
            generator=torch.Generator(), start_epoch=3,
        )  # fmt: skip
