"""``ddkit audit adversarial``: FGSM / PGD in pixel space and the robustness audit, on the tiny
digits split (8x8 images) with one-layer ConvNets, so the whole file runs in seconds."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from audit_helpers import QUICK, trained_net, without_timings

from ddkit.audits.adversarial import (
    AdversarialAudit,
    PixelSpaceModel,
    RobustnessAttack,
    adversarial_audit,
    fgsm,
    pgd,
    pixel_test,
    robust_accuracy,
)
from ddkit.audits.base import AuditRun, random_real
from ddkit.data.dataset import denormalise, from_arrays
from ddkit.data.synthetic import SyntheticSet
from ddkit.data.zca import ZCA
from ddkit.errors import ConfigError, DataError
from ddkit.eval.evaluate import test_in_set_space as in_set_space
from ddkit.eval.protocol import get_protocol
from ddkit.testing import tiny_digits

EPS = [0.0, 4 / 255, 16 / 255, 64 / 255]


@pytest.fixture(scope="module")
def splits():
    return tiny_digits()


@pytest.fixture(scope="module")
def model(splits):
    return PixelSpaceModel(trained_net(splits).requires_grad_(False), splits.spec).eval()


@pytest.fixture(scope="module")
def pixels(splits):
    return pixel_test(splits.test)


def test_pixel_model_is_the_network_on_normalised_images(splits, model, pixels):
    with torch.no_grad():
        direct = model.net(splits.test.images)
        folded = model(pixels)
    torch.testing.assert_close(folded, direct, atol=1e-4, rtol=1e-4)


def test_pixel_model_folds_a_sets_zca_whitening(splits, model, pixels):
    zca = ZCA().fit(splits.train.images)
    spec = dataclasses.replace(splits.spec, transform="zca")
    extras = {f"zca.{k}": v for k, v in zca.to_tensors().items()}
    syn = SyntheticSet(zca.transform(splits.train.images), splits.train.labels, spec,
                       extras=extras)  # fmt: skip
    whitened = PixelSpaceModel(model.net, syn.spec, syn.zca()).eval()
    with torch.no_grad():
        expect = model.net(in_set_space(syn, splits.test).images)
        torch.testing.assert_close(whitened(pixels), expect, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("eps", [1 / 255, 8 / 255, 0.3])
def test_attacks_stay_in_the_epsilon_ball_and_in_pixel_range(splits, model, pixels, eps):
    y = splits.test.labels
    g = torch.Generator().manual_seed(0)
    for adv in (fgsm(model, pixels, y, eps),
                pgd(model, pixels, y, eps, steps=5, step_size=eps / 2, generator=g)):  # fmt: skip
        assert (adv - pixels).abs().max() <= eps + 1e-6
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert not torch.equal(adv, pixels)


def test_epsilon_zero_changes_nothing_and_gives_clean_accuracy(splits, model, pixels):
    y = splits.test.labels
    g = torch.Generator().manual_seed(0)
    assert torch.equal(fgsm(model, pixels, y, 0.0), pixels)
    assert torch.equal(pgd(model, pixels, y, 0.0, steps=3, step_size=0.1, generator=g), pixels)
    acc = robust_accuracy(model, pixels, y, [0.0], steps=3, generator=g)
    with torch.no_grad():
        clean = float((model(pixels).argmax(1) == y).float().mean())
    assert acc["clean"] == pytest.approx(clean)
    assert acc["fgsm"] == acc["pgd"] == acc["pgd_only"] == [pytest.approx(clean)]


def test_pgd_at_most_fgsm_at_most_clean_and_attacks_bite(splits, model, pixels):
    g = torch.Generator().manual_seed(1)
    acc = robust_accuracy(model, pixels, splits.test.labels, EPS, steps=5, generator=g,
                          batch_size=17)  # fmt: skip
    assert acc["clean"] > 0.8
    for f, p, only in zip(acc["fgsm"], acc["pgd"], acc["pgd_only"], strict=True):
        assert p <= f <= acc["clean"]
        assert p <= only <= acc["clean"]
    assert acc["pgd"][-1] < acc["fgsm"][-1] < acc["clean"]  # a large budget breaks most images
    assert acc["pgd"] == sorted(acc["pgd"], reverse=True)


def test_pgd_returns_a_misclassified_point_wherever_any_iterate_was(splits, model, pixels):
    """A plain PGD loop from the same random start: the images fooled at some iterate are
    exactly those fooled at the point PGD returns (AutoAttack's reporting)."""
    x, y = pixels, splits.test.labels
    eps, steps, step = 16 / 255, 5, 8 / 255
    kept = pgd(model, x, y, eps, steps=steps, step_size=step,
               generator=torch.Generator().manual_seed(2))  # fmt: skip
    g = torch.Generator().manual_seed(2)
    adv = (x + (2 * torch.rand(x.shape, generator=g) - 1) * eps).clamp(0, 1)
    ever = torch.zeros(len(x), dtype=torch.bool)
    for i in range(steps + 1):
        adv = adv.detach().requires_grad_(True)
        logits = model(adv)
        ever |= logits.argmax(1) != y
        if i == steps:
            break
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), adv)
        adv = torch.minimum(torch.maximum(adv + step * grad.sign(), x - eps), x + eps)
        adv = adv.clamp(0, 1)
    with torch.no_grad():
        fooled = model(kept).argmax(1) != y
        last = model(adv).argmax(1) != y
    assert ever.any() and torch.equal(fooled, ever)
    assert fooled.sum() >= last.sum()


@pytest.mark.usefixtures("global_rng_untouched")
def test_same_seed_same_audit_and_the_record_names_seeds_runs_budgets(splits):
    sets = {"random/ipc3": random_real(splits.train, 3, seed=0)}
    attack = RobustnessAttack(epsilons=[0, 8 / 255], steps=3, max_test=40)
    run = AuditRun.of(QUICK.with_(runs=1, epochs=20), seed=5)
    a = adversarial_audit(splits, sets, run, attack=attack)
    b = adversarial_audit(splits, sets, run, attack=attack)
    assert without_timings(a) == without_timings(b)
    assert a["seed"] == 5 and a["runs"] == 1
    assert a["budgets"]["pgd_steps"] == 3 and a["budgets"]["test_images"] == 40
    assert a["budgets"]["pgd_step_sizes"] == [0.0, pytest.approx(2.5 * (8 / 255) / 3)]
    assert a["protocol"]["epochs"] == 20
    (net,) = a["sets"]["random/ipc3"]["networks"]
    assert {"model", "run", "seed", "attack_seed", "clean", "fgsm", "pgd"} <= set(net)
    assert net["fgsm"][0] == net["pgd"][0] == net["clean"]
    c = adversarial_audit(splits, sets, AuditRun.of(run.protocol, seed=6), attack=attack)
    assert without_timings(c)["sets"] != without_timings(a)["sets"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilons": [-1 / 255]}, "epsilon must be >= 0"),
        ({"epsilons": [8]}, "[0, 1] pixel scale"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"step_size": 0.0}, "step size must be > 0"),
        ({"max_test": 0}, "max_test must be >= 1"),
        ({"protocol": "nope"}, "unknown protocol"),
    ],
)
def test_bad_budgets_are_one_line_errors(splits, kwargs, message):
    sets = {"r": SyntheticSet.from_real(splits.train, torch.arange(20))}
    attack = {k: v for k, v in kwargs.items() if k != "protocol"}
    with pytest.raises((ConfigError, KeyError)) as err:  # checked as the run and attack are built
        run = AuditRun.of(get_protocol(kwargs.get("protocol", "dc")))  # resolved at the door
        adversarial_audit(splits, sets, run, attack=RobustnessAttack(**attack))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_no_sets_and_unknown_methods_are_refused(splits):
    from ddkit.audits.adversarial import audit_sets

    with pytest.raises(ConfigError, match="no training sets"):
        adversarial_audit(splits, {}, AuditRun.of())
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        audit_sets(splits, ["dm", "nope"], [1], AuditRun.of())


def test_pixels_outside_zero_one_are_refused():
    x = torch.rand(40, 4, 4) * 3.0  # pixel scale [0, 3]: the budgets would mean nothing
    splits = from_arrays(x, torch.arange(40) % 2)
    with pytest.raises(DataError, match=r"pixel values in \[0, 1\]"):
        pixel_test(splits.test)
    assert denormalise(splits.test.images, splits.spec).max() > 1


def _args(tmp_path, **changes):
    parser = argparse.ArgumentParser()
    AdversarialAudit.add_arguments(parser)
    argv = ["--methods", "dm", "--ipc", "2", "--iterations", "2", "--set", "batch_real=8",
            "--set", "model=convnet1-w32", "--protocol", "dc", "--runs", "1", "--epochs", "5",
            "--epsilons", "0,8/255", "--steps", "2", "--max-test", "30", "--no-full", "--quiet",
            "--out", str(tmp_path)]  # fmt: skip
    for key, value in changes.items():
        argv.append(f"--{key.replace('_', '-')}={value}")
    return argv


def test_cli_writes_json_and_plot(tmp_path):
    from ddkit.cli import main

    assert main(["audit", "adversarial", *_args(tmp_path), "--dataset", "digits"]) == 0
    result = json.loads((tmp_path / "adversarial.json").read_text())
    assert set(result["sets"]) == {"dm/ipc2", "random/ipc2"}
    assert result["epsilons"] == [0.0, 8 / 255] and result["runs"] == 1
    assert (tmp_path / "adversarial.png").stat().st_size > 1000


def test_cli_rerun_resumes_from_kept_units_and_refuses_another_command(tmp_path, monkeypatch):
    from ddkit.audits import adversarial
    from ddkit.cli import main

    assert main(["audit", "adversarial", *_args(tmp_path), "--dataset", "digits"]) == 0
    first = json.loads((tmp_path / "adversarial.json").read_text())
    assert (tmp_path / "sets" / "dm-ipc2" / "meta.json").is_file()
    assert (tmp_path / "results" / "dm-ipc2.json").is_file()

    def no_work(*args, **kwargs):
        raise AssertionError("distilled or trained again")

    monkeypatch.setattr(adversarial, "distil", no_work)
    monkeypatch.setattr(adversarial, "train_on_set", no_work)
    assert main(["audit", "adversarial", *_args(tmp_path), "--dataset", "digits"]) == 0
    assert json.loads((tmp_path / "adversarial.json").read_text()) == first
    # another seed: the kept units do not belong to this command
    assert main(["audit", "adversarial", *_args(tmp_path), "--seed", "1"]) == 2
    assert json.loads((tmp_path / "adversarial.json").read_text()) == first


def test_cli_audits_saved_sets_alone(tmp_path):
    from ddkit.cli import main
    from ddkit.data import load_dataset

    folder = tmp_path / "my-set"
    random_real(load_dataset("digits").train, 2, seed=3).save(folder)
    argv = _args(tmp_path / "out", methods="", sets=str(folder))
    assert main(["audit", "adversarial", *argv]) == 0
    result = json.loads((tmp_path / "out" / "adversarial.json").read_text())
    assert list(result["sets"]) == ["my-set"] and result["sets"]["my-set"]["num_images"] == 20


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epsilons": "-2/255"}, "epsilon must be >= 0, got -0.00784314 (-2/255)"),
        ({"methods": "dm,nope"}, "unknown method 'nope'"),
        ({"ipc": "0"}, "--ipc must be >= 1"),
        ({"epsilons": "a/b"}, "comma-separated numbers"),
        ({"models": "convnet-w9x"}, "unknown variant 'w9x'"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, change, message):
    from ddkit.cli import main

    assert main(["audit", "adversarial", *_args(tmp_path, **change)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "adversarial.json").exists()


def test_cli_refuses_a_folder_that_is_no_set_before_creating_out(tmp_path, capsys):
    """--sets naming a folder that holds no set was refused only after --out was created
    (issue 42)."""
    from ddkit.cli import main

    out, not_a_set = tmp_path / "audit", tmp_path / "not-a-set"
    not_a_set.mkdir()
    argv = ["audit", "adversarial", "--methods", "", "--sets", str(not_a_set), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddkit: error:") and err.count("\n") == 1 and "meta.json" in err
    assert not out.exists()


def test_cli_with_no_methods_audits_the_full_data_alone(tmp_path, capsys):
    """``--methods ''`` is how the trust benchmark audits the full data by itself; it failed with
    'no method given' before the full-data networks could train."""
    from ddkit.cli import main

    argv = [a for a in _args(tmp_path / "full", methods="") if a != "--no-full"]
    assert main(["audit", "adversarial", *argv, "--dataset", "digits"]) == 0
    result = json.loads((tmp_path / "full" / "adversarial.json").read_text())
    assert list(result["sets"]) == ["full"]
    capsys.readouterr()
    nothing = tmp_path / "nothing"
    assert main(["audit", "adversarial", *_args(nothing, methods=""), "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert "nothing to audit" in err and err.count("\n") == 1 and not nothing.exists()
