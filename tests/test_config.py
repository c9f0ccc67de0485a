"""One config vocabulary: values checked when a method is created, old names through aliases,
old run folders still resume, presets with sources, the Distiller contract."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.methods import METHODS, create_method, load_all
from ddkit.methods.config import AUTO, MethodConfig
from ddkit.testing import method_test_overrides, tiny_digits

load_all()


@pytest.mark.parametrize(
    "method,options,message",
    [
        ("dm", {"batch_real": 1.5}, "batch_real must be an integer, got 1.5"),
        ("dm", {"lr_img": "abc"}, "lr_img must be a number, got 'abc'"),
        ("dm", {"lr_img": 0}, "lr_img must be > 0, got 0"),
        ("dm", {"vectorize": "yes"}, "vectorize must be true or false"),
        ("dm", {"augment": "color_warp"}, "unknown DSA operation 'warp'"),
        ("idm", {"factor": "big"}, "factor must be an integer or 'auto'"),
        ("dc", {"momentum_img": 1.5}, r"momentum_img must be in \[0, 1\), got 1.5"),
        ("mtt", {"backward": "adjoint"}, "backward must be 'unroll' or 'tesla'"),
        ("mtt", {"max_start_epoch": 30}, "exceed the 20 epochs of the expert trajectories"),
        ("sre2l", {"labels": "fuzzy"}, "labels must be 'hard' or 'soft' or 'views'"),
        ("rded", {"scale": [0.9, 0.1]}, "scale must satisfy"),
        ("herding", {"embedding": "bogus"}, "embedding must be one of"),
        ("dm", {"no_such_option": 1}, "unknown option 'no_such_option'"),
    ],
)
def test_bad_values_are_refused_when_the_method_is_created(method, options, message):
    with pytest.raises(ConfigError, match=message) as err:
        create_method(method, **options)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"method {method!r}: ")


def test_values_are_coerced_to_the_declared_type():
    cfg = create_method("dm", lr_img=2).config
    assert cfg.lr_img == 2.0 and isinstance(cfg.lr_img, float)
    assert create_method("sre2l", betas=[0.1, 0.2]).config.betas == (0.1, 0.2)


@pytest.mark.parametrize(
    "method,old,new",
    [
        ("dm", {"momentum": 0.9}, {"momentum_img": 0.9}),
        ("dm", {"dsa_strategy": "none"}, {"augment": "none"}),
        ("idm", {"train_batch": 32, "net_momentum": 0.5}, {"batch_net": 32, "momentum_net": 0.5}),
        ("idm", {"factor": 0}, {"factor": AUTO}),
        ("dc", {"dsa": True}, {"augment": AUTO}),
        ("dsa", {"dsa": False}, {"augment": "none"}),
        ("dc", {"dsa": True, "dsa_strategy": "crop"}, {"augment": "crop"}),
        ("dc", {"batch_train": 64, "outer_loop": None}, {"batch_net": 64, "outer_loop": AUTO}),
        (
            "mtt",
            {"expert_batch_size": 32, "lr_teacher": 0.02},
            {"expert_batch": 32, "syn_lr": 0.02},
        ),
        ("mtt", {"dsa": "dsa"}, {"augment": AUTO}),
        ("tesla", {"checkpoint_every": 0}, {"student_checkpoint_every": AUTO}),
        ("sre2l", {"lr": 0.1, "jitter": None}, {"lr_img": 0.1, "jitter": AUTO}),
        ("kcenter", {"embed_epochs": 2, "lr": 0.1}, {"epochs_net": 2, "lr_net": 0.1}),
        ("forgetting", {"epochs": 2, "batch_size": 8}, {"epochs_net": 2, "batch_net": 8}),
    ],
)
def test_old_option_names_keep_working_with_a_warning(method, old, new):
    with pytest.warns(FutureWarning, match="is deprecated; use"):
        cfg = create_method(method, **old).config
    assert {k: getattr(cfg, k) for k in new} == new


def test_an_old_name_and_its_new_name_must_agree():
    with pytest.raises(ConfigError, match="disagree"):
        with pytest.warns(FutureWarning):
            create_method("dm", momentum=0.9, momentum_img=0.5)


def test_one_vocabulary_across_families():
    """No registered config keeps a field under a name another config retired, and the shared
    concepts are spelled the same everywhere."""
    configs = [METHODS.get(n).Config for n in METHODS.names()]
    fields = {f.name for c in configs for f in dataclasses.fields(c)}
    retired = {old for c in configs for old, a in c.all_aliases().items() if a.new != old}
    assert not fields & retired, sorted(fields & retired)
    for stale in ("momentum", "dsa", "dsa_strategy", "batch_size", "lr", "train_batch"):
        assert stale not in fields, stale
    # "let ddkit choose" is "auto" everywhere: no field defaults to None
    for c in configs:
        for f in dataclasses.fields(c):
            assert f.default is not None or f.name in ("experts_dir", "teacher_dir"), (c, f.name)


def _tiny_dm(**kw):
    return create_method("dm", **{**method_test_overrides("dm"), "iterations": 4, **kw})


def test_a_checkpoint_written_with_old_option_names_still_resumes(tmp_path):
    train = tiny_digits().train
    full = _tiny_dm().fit(train, 2, seed=0)
    _tiny_dm().fit(train, 2, seed=0, iterations=2, checkpoint_dir=tmp_path, checkpoint_every=1)
    state = json.loads((tmp_path / "state.json").read_text())
    cfg = state["config"]
    cfg["momentum"] = cfg.pop("momentum_img")  # as ddkit 0.1 wrote it
    cfg["dsa_strategy"] = cfg.pop("augment")
    (tmp_path / state.pop("tensors")).rename(tmp_path / "state.safetensors")
    (tmp_path / "state.json").write_text(json.dumps(state))
    resumed = _tiny_dm().fit(train, 2, seed=0, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(resumed.images, full.images)
    cfg["momentum"] = 0.1  # a genuinely different config is still refused
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="different config"):
        _tiny_dm().fit(train, 2, seed=0, checkpoint_dir=tmp_path, resume=True)


def test_a_run_folder_written_with_old_option_names_still_resumes(tmp_path):
    from ddkit.runs import DistillRequest, distill_run

    splits = tiny_digits()
    opts = {**method_test_overrides("dm"), "iterations": 3}
    request = DistillRequest("digits", "dm", 2, seed=0, options=opts)
    first = distill_run(request, tmp_path, splits=splits)
    config = json.loads((tmp_path / "config.json").read_text())
    config["method_config"]["momentum"] = config["method_config"].pop("momentum_img")
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = distill_run(request, tmp_path, splits=splits, resume=True)
    assert torch.equal(again.images, first.images)


def test_initial_set_runs_init_without_iterating():
    train = tiny_digits().train
    method = create_method("dm", **method_test_overrides("dm"))
    start = method.initial_set(train, 2, seed=0)
    assert start.meta["iterations"] == 0 and start.meta["method"] == "dm"
    fitted = create_method("dm", **method_test_overrides("dm")).fit(train, 2, seed=0, iterations=0)
    assert torch.equal(start.images, fitted.images)


def test_init_is_told_the_total_number_of_iterations():
    seen = {}
    cls = METHODS.get("random")

    class Probe(cls):
        def init(self, train, ipc, generator, iterations):
            seen["iterations"] = iterations
            super().init(train, ipc, generator, iterations)

    Probe().fit(tiny_digits().train, 1, iterations=7)
    assert seen["iterations"] == 7


def test_a_config_checks_its_fields_declaratively():
    @dataclasses.dataclass(frozen=True)
    class Toy(MethodConfig):
        width: int = 3

    assert Toy().width == 3
    with pytest.raises(ConfigError, match="iterations must be >= 0"):
        Toy(iterations=-1)
    with pytest.raises(ConfigError, match="width must be an integer"):
        Toy(width="wide")


def test_a_kill_between_the_checkpoint_files_resumes_to_the_same_set(tmp_path, monkeypatch):
    """Fault injection: the tensors of iteration 4 are written, then the process dies before
    state.json is replaced; --resume must continue from iteration 2's consistent pair."""
    import ddkit.methods.base as base

    train = tiny_digits().train
    full = _tiny_dm(iterations=6).fit(train, 2, seed=0)
    real_write = base.atomic_write_json
    calls = []

    def dies_on_second_checkpoint(path, obj):
        calls.append(obj["iteration"])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real_write(path, obj)

    monkeypatch.setattr(base, "atomic_write_json", dies_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _tiny_dm(iterations=6).fit(train, 2, seed=0, checkpoint_dir=tmp_path, checkpoint_every=2)
    monkeypatch.setattr(base, "atomic_write_json", real_write)
    assert json.loads((tmp_path / "state.json").read_text())["iteration"] == 2
    resumed = _tiny_dm(iterations=6).fit(train, 2, seed=0, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(resumed.images, full.images)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["state-000000006.safetensors"]


def test_also_for_copies_one_datasets_presets_with_their_provenance():
    from ddkit.methods.config import Preset, also_for

    base = (
        Preset("digits", "*", {"a": 1}, "digits source"),
        Preset("mnist5k", 10, {"b": 2}, "chosen on validation"),
    )
    out = also_for(base, "mnist5k", "mnist")
    assert out[:2] == base and len(out) == 3
    copy = out[2]
    assert (copy.dataset, copy.ipc, dict(copy.values)) == ("mnist", 10, {"b": 2})
    assert "mnist5k" in copy.source and "chosen on validation" in copy.source
