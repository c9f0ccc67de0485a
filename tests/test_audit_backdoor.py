"""``ddkit audit backdoor``: the trigger, the poisoning, the ASR on non-target images, DOORPING's
re-stamping through a fit callback, and the audit, on the tiny digits split (8x8 images)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from audit_helpers import QUICK, without_timings
from torch import nn

from ddkit.audits.backdoor import (
    BackdoorAttack,
    BackdoorAudit,
    DoorpingCallback,
    DoorpingConfig,
    Trigger,
    attack_success_rate,
    backdoor_audit,
    doorping_refusal,
    optimise_trigger,
    poison,
    real_image_copies,
    stamp,
    top_neurons,
    triggered_test,
)
from ddkit.audits.base import AuditRun
from ddkit.data.dataset import ImageDataset, denormalise
from ddkit.errors import ConfigError
from ddkit.methods import METHODS, create_method, load_all
from ddkit.testing import tiny_digits

# A strong, cheap setup: half the non-target rows carry a 3x3 white patch; DM (10 iterations,
# one-layer ConvNet) distils 5 images per class, networks train 60 epochs.
STRONG = dict(attack=BackdoorAttack(trigger=Trigger(3), fraction=0.5, target=0), iterations=10,
              options={"model": "convnet1-w32", "batch_real": 32})  # fmt: skip
RUN = AuditRun.of(QUICK, seed=0)


@pytest.fixture(scope="module")
def splits():
    return tiny_digits()


@pytest.fixture(scope="module")
def naive(splits):
    return backdoor_audit(splits, ["dm"], [5], RUN, **STRONG)


def test_trigger_geometry(splits):
    spec = splits.spec  # 1 x 8 x 8
    assert Trigger(2).corner(spec) == (5, 5)  # one pixel in from the border, as BadNets
    assert Trigger(2, "top-left").corner(spec) == (1, 1)
    assert Trigger(8).corner(spec) == (0, 0)  # no room for a margin
    assert Trigger(2, "3,4").corner(spec) == (3, 4)
    mask = Trigger(2, "0,6").mask(spec)
    assert mask.sum() == 4 and mask[0, 0, :2, 6:].eq(1).all()
    pattern = Trigger(3, value=0.25).pattern(spec)
    assert pattern.max() == 0.25 and pattern.sum() == pytest.approx(9 * 0.25)


def test_stamp_sets_the_patch_pixels_and_nothing_else(splits):
    trig = Trigger(2, "2,3", 0.75)
    x = splits.train.images[:10]
    out = stamp(x, splits.spec, trig.mask(splits.spec), trig.pattern(splits.spec))
    pixels, before = denormalise(out, splits.spec), denormalise(x, splits.spec)
    torch.testing.assert_close(pixels[:, :, 2:4, 3:5], torch.full((10, 1, 2, 2), 0.75))
    inside = trig.mask(splits.spec).bool().expand_as(x)
    torch.testing.assert_close(pixels[~inside], before[~inside])


def test_poison_stamps_and_relabels_a_fraction_of_the_non_target_rows(splits):
    train = splits.train
    before = train.images.clone()
    p = poison(train, Trigger(2), fraction=0.3, target=4,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    others = int((train.labels != 4).sum())
    assert len(p.rows) == round(0.3 * others)
    assert (train.labels[p.rows] != 4).all()  # drawn among the non-target classes
    assert (p.train.labels[p.rows] == 4).all()
    untouched = torch.ones(len(train), dtype=torch.bool)
    untouched[p.rows] = False
    assert torch.equal(p.train.images[untouched], train.images[untouched])
    assert torch.equal(p.train.labels[untouched], train.labels[untouched])
    pixels = denormalise(p.train.images[p.rows], train.spec)
    assert pixels[:, :, 5:7, 5:7].eq(1.0).all()
    assert torch.equal(train.images, before)  # the clean split is left alone
    gen = torch.Generator().manual_seed(0)
    assert len(poison(train, Trigger(2), fraction=0.0, target=4, generator=gen).rows) == 0
    assert len(poison(train, Trigger(2), fraction=1.0, target=4, generator=gen).rows) == others


class _Oracle(nn.Module):
    """Labels each image by its nearest test image, comparing pixels outside the trigger's patch:
    it recognises every test image's own class, trigger or not (a network with no backdoor)."""

    def __init__(self, test: ImageDataset, keep: torch.Tensor) -> None:
        super().__init__()
        self.ref, self.labels, self.keep = test.images * keep, test.labels, keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist((x * self.keep).flatten(1), self.ref.flatten(1))
        return nn.functional.one_hot(self.labels[d.argmin(1)], 10).float()


def test_asr_counts_only_non_target_test_images(splits):
    """A network without a backdoor keeps labelling triggered images by their own class, so its
    ASR must be 0. Counting the target class's triggered images (which it rightly labels
    ``target``) would give it about 1/K instead."""
    trig, target, test = Trigger(2), 3, splits.test
    mask, pattern = trig.mask(test.spec), trig.pattern(test.spec)
    oracle = _Oracle(test, 1 - mask)
    triggered = triggered_test(test, mask, pattern, target)
    assert len(triggered) == int((test.labels != target).sum())
    assert (triggered.labels != target).all()
    assert attack_success_rate(oracle, triggered, target) == 0.0
    every_row = ImageDataset(stamp(test.images, test.spec, mask, pattern), test.labels, test.spec)
    share = float((test.labels == target).float().mean())
    assert attack_success_rate(oracle, every_row, target) == pytest.approx(share)
    always = _Oracle(ImageDataset(test.images, torch.full_like(test.labels, target), test.spec),
                     1 - mask)  # fmt: skip
    assert attack_success_rate(always, triggered, target) == 1.0


def test_a_backdoored_set_carries_the_backdoor_and_the_floors_do_not_fool(naive):
    sets = naive["sets"]
    assert set(sets) == {"dm/ipc5/poisoned", "dm/ipc5/clean", "random/ipc5/poisoned"}
    bd, clean = sets["dm/ipc5/poisoned"]["mean"], sets["dm/ipc5/clean"]["mean"]
    assert bd["asr"] > 0.6 and clean["asr"] < 0.1
    assert bd["asr"] > clean["asr"] + 0.5
    assert bd["clean_accuracy"] > 0.8  # the backdoor costs little clean accuracy
    assert sets["random/ipc5/poisoned"]["poisoned_images"] > 0
    for row in sets.values():
        assert len(row["networks"]) == QUICK.runs
        assert {"model", "run", "seed", "asr", "clean_accuracy"} <= set(row["networks"][0])


def test_the_record_names_seeds_runs_and_budgets(naive, splits):
    b = naive["budgets"]
    assert naive["seed"] == 0 and naive["runs"] == QUICK.runs
    assert b["attack"] == "naive" and b["fraction"] == 0.5 and b["target"] == 0
    assert b["trigger"] == {"size": 3, "position": "bottom-right", "value": 1.0, "corner": [4, 4]}
    assert b["distillation_iterations"] == 10 and b["poisoned_rows_seed"] > 0
    assert b["asr_test_images"] == int((splits.test.labels != 0).sum())
    assert naive["protocol"]["epochs"] == QUICK.epochs


@pytest.mark.usefixtures("global_rng_untouched")
def test_same_seed_same_result(naive, splits):
    again = backdoor_audit(splits, ["dm"], [5], RUN, **STRONG)
    assert without_timings(again) == without_timings(naive)


def _doorping_fit(splits, config, **options):
    trig = Trigger(2)
    p = poison(splits.train, trig, fraction=0.3, target=0,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    first = p.train.images.clone()
    cb = DoorpingCallback(p, trig, config, seed=0)
    method = create_method("dm", dataset=splits.spec.name, model="convnet1-w32", batch_real=8,
                           **options)  # fmt: skip
    syn = method.fit(p.train, 2, iterations=4, seed=0, callbacks=[cb])
    return p, first, cb, method, syn


def test_doorping_reoptimises_the_trigger_and_restamps_the_poisoned_rows(splits):
    config = DoorpingConfig(every=2, model="convnet1-w32", net_epochs=2, steps=5)
    p, first, cb, method, syn = _doorping_fit(splits, config)
    assert [h["iteration"] for h in cb.history_] == [2, 4]
    initial = Trigger(2).pattern(splits.spec)
    assert not torch.equal(cb.pattern_, initial)
    assert torch.equal(cb.pattern_ * (1 - cb.mask_), torch.zeros_like(initial))  # patch only
    assert cb.pattern_.min() >= 0 and cb.pattern_.max() <= 1
    restamped = stamp(first[p.rows], splits.spec, cb.mask_, cb.pattern_)
    torch.testing.assert_close(p.train.images[p.rows], restamped)
    others = torch.ones(len(first), dtype=torch.bool)
    others[p.rows] = False
    assert torch.equal(p.train.images[others], first[others])
    assert len(syn) == 20
    _, _, cb2, _, syn2 = _doorping_fit(splits, config)  # same seed => same trigger and set
    assert torch.equal(cb2.pattern_, cb.pattern_) and torch.equal(syn2.images, syn.images)


def test_the_trigger_step_excites_its_neurons_on_real_rows_and_stays_visible():
    """Optimised stamped on real rows, the trigger raises its neurons' activation there; alone
    on a black image it used to meet its target by fading to black (invisible on MNIST)."""
    from ddkit.data import load_dataset
    from ddkit.eval.train import TrainRecipe, sgd_train
    from ddkit.models import build_network

    data = load_dataset("digits")
    net = build_network("convnet1-w32", data.spec, 0)
    recipe = TrainRecipe(epochs=5, lr=0.01, batch_size=256)
    sgd_train(net, data.train.images, data.train.labels, recipe,
              generator=torch.Generator().manual_seed(0))  # fmt: skip
    trig = Trigger(2)
    mask, first = trig.mask(data.spec), trig.pattern(data.spec)
    carriers, neurons = data.train.images[:128], top_neurons(net, 1)
    config = DoorpingConfig(steps=50)
    new, _ = optimise_trigger(net, carriers, data.spec, mask, first, neurons, config)

    def activation(pattern):
        with torch.no_grad():
            return float(net.embed(stamp(carriers, data.spec, mask, pattern))[:, neurons].mean())

    assert activation(new) > activation(first)
    assert new[mask.bool().expand_as(new)].max() > 0.1  # brighter than the black background


def test_doorping_restamps_a_methods_own_copy_of_the_real_images(splits):
    config = DoorpingConfig(every=4, model="convnet1-w32", net_epochs=0, steps=3)
    p, _, cb, method, _ = _doorping_fit(splits, config, dtype="float64")
    assert method.real_.dtype == torch.float64 and len(cb.copies_) == 1
    torch.testing.assert_close(method.real_.float(), p.train.images)


def test_a_transformed_copy_of_the_real_images_is_refused(splits):
    method = create_method("dm", dataset=splits.spec.name)
    method.train_ = splits.train
    method.whitened_ = splits.train.images * 2.0
    with pytest.raises(ConfigError, match="transformed copy of the real images"):
        real_image_copies(method, splits.train.images)


def test_doorping_refuses_methods_whose_steps_never_read_real_images(splits):
    load_all()
    for name in ("mtt", "tesla", "sre2l", "random"):
        reason = doorping_refusal(METHODS.get(name))
        assert reason is not None and "\n" not in reason
    for name in ("dm", "dc", "dsa", "kip", "frepo"):
        assert doorping_refusal(METHODS.get(name)) is None
    with pytest.raises(ConfigError, match="DOORPING cannot attack 'mtt'"):
        backdoor_audit(splits, ["mtt"], [2], AuditRun.of(), attack=BackdoorAttack("doorping"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fraction": 1.5}, "fraction must be in [0, 1]"),
        ({"fraction": -0.1}, "fraction must be in [0, 1]"),
        ({"target": 10}, "target class 10 does not exist"),
        ({"target": -1}, "target class -1 does not exist"),
        ({"trigger": Trigger(9)}, "larger than the 8x8 images"),
        ({"trigger": Trigger(0)}, "trigger size must be an integer >= 1"),
        ({"trigger": Trigger(2, "7,7")}, "does not fit"),
        ({"trigger": Trigger(2, "middle")}, "trigger position must be one of"),
        ({"trigger": Trigger(2, value=2.0)}, "pixel value in [0, 1]"),
        ({"methods": ["dm", "nope"]}, "unknown method 'nope'"),
        ({"attack": "sneaky"}, "unknown attack 'sneaky'"),
        ({"ipcs": [0]}, "IPC must be >= 1"),
        ({"ipcs": [20], "fraction": 0.9}, "after poisoning 0.9 of the non-target rows"),
    ],
)
def test_bad_inputs_are_one_line_errors_before_any_work(splits, kwargs, message):
    args = {"methods": ["dm"], "ipcs": [2], **kwargs}
    methods, ipcs = args.pop("methods"), args.pop("ipcs")
    with pytest.raises(ConfigError) as err:  # the attack's own fields are checked as it is built
        backdoor_audit(splits, methods, ipcs, AuditRun.of(), attack=BackdoorAttack(**args))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_doorping_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="doorping topk must be an integer >= 1"):
        DoorpingConfig(topk=0)
    with pytest.raises(ConfigError, match="doorping lr must be > 0"):
        DoorpingConfig(lr=0.0)
    with pytest.raises(ConfigError, match="unknown doorping option 'speed'"):
        DoorpingConfig.from_options({"speed": 3})


def _argv(tmp_path, *extra):
    return ["audit", "backdoor", "--methods", "dm", "--ipc", "2", "--iterations", "2",
            "--set", "batch_real=8", "--set", "model=convnet1-w32", "--runs", "1",
            "--epochs", "3", "--quiet", "--out", str(tmp_path), *extra]  # fmt: skip


def test_cli_writes_json_and_plot(tmp_path):
    from ddkit.cli import main

    argv = _argv(tmp_path, "--attack", "doorping", "--doorping", "model=convnet1-w32",
                 "--doorping", "net_epochs=1", "--doorping", "steps=2", "--target", "7")  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "backdoor.json").read_text())
    assert result["budgets"]["attack"] == "doorping" and result["budgets"]["target"] == 7
    assert result["budgets"]["doorping"]["steps"] == 2
    assert len(result["sets"]["dm/ipc2/poisoned"]["trigger_updates"]) == 2
    assert (tmp_path / "backdoor.png").stat().st_size > 1000


def test_cli_rerun_resumes_from_kept_rows_and_refuses_another_command(tmp_path, monkeypatch):
    from ddkit.audits import backdoor
    from ddkit.cli import main

    assert main(_argv(tmp_path)) == 0
    first = json.loads((tmp_path / "backdoor.json").read_text())
    assert {p.name for p in (tmp_path / "results").iterdir()} == {"dm-ipc2.json",
                                                                  "random-ipc2.json"}  # fmt: skip

    def no_work(*args, **kwargs):
        raise AssertionError("distilled or trained again")

    monkeypatch.setattr(backdoor, "distil", no_work)
    monkeypatch.setattr(backdoor, "train_on_set", no_work)
    assert main(_argv(tmp_path)) == 0
    assert json.loads((tmp_path / "backdoor.json").read_text()) == first
    assert main(_argv(tmp_path, "--fraction", "0.2")) == 2  # kept rows of another command
    assert json.loads((tmp_path / "backdoor.json").read_text()) == first


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fraction", "2"], "--fraction must be in [0, 1]"),
        (["--target", "12"], "target class 12 does not exist"),
        (["--trigger-size", "30"], "larger than the 8x8 images"),
        (["--methods", "nope"], "unknown method 'nope'"),
        (["--attack", "doorping", "--methods", "mtt"], "DOORPING cannot attack 'mtt'"),
        (["--doorping", "speed=3"], "unknown doorping option 'speed'"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, extra, message):
    from ddkit.cli import main

    assert main(_argv(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "backdoor.json").exists()


def test_cli_refuses_a_doorping_topk_past_the_embedding_before_creating_out(tmp_path, capsys):
    from ddkit.cli import main

    out = tmp_path / "out"
    argv = _argv(tmp_path, "--attack", "doorping", "--doorping", "model=convnet1-w32",
                 "--doorping", "topk=1000000000")  # fmt: skip
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "doorping topk 1000000000 exceeds the" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_audit_class_parser_defaults():
    parser = argparse.ArgumentParser()
    BackdoorAudit.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.attack, args.fraction, args.target, args.trigger_size) == ("naive", 0.1, 0, 2)


def test_doorping_trigger_network_is_the_methods_own_by_default():
    """The authors' code optimises the trigger on DC's matching network; ``model="auto"`` takes
    the network the method distils with (a width-128 ConvNet for a width-32 method made each
    CPU iteration take minutes), and a method without one (a kernel) the dataset's convnet."""
    dm = create_method("dm", dataset="digits", model="convnet1-w32")
    kip = create_method("kip", dataset="digits")
    assert DoorpingConfig().network_for(dm) == "convnet1-w32"
    assert DoorpingConfig().network_for(kip) == "convnet"
    assert DoorpingConfig(model="convnet2").network_for(dm) == "convnet2"
