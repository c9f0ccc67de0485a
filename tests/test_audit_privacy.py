"""``ddkit audit privacy``: the membership metrics against brute force, LiRA on known
distributions, the null model (AUC ~ 0.5), the detection of an over-fitted model, DP-SGD's
accountant, the members / non-members split, resume, and the CLI's refusals, on the tiny
digits split (8x8 images)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from audit_helpers import QUICK, trained_net, without_timings

from ddkit.audits import privacy
from ddkit.audits.dp_sgd import DPRecipe, train_dp_sgd
from ddkit.audits.membership import (
    _auc_and_tpr,
    attack_metrics,
    lira_online,
    loss_attack,
    membership_signals,
    roc_curve,
)
from ddkit.audits.privacy import (
    MembershipAttack,
    PrivacyAudit,
    PrivacyTraining,
    Source,
    check_members,
    membership_masks,
    pool_rows,
    privacy_audit,
    privacy_sources,
)
from ddkit.errors import ConfigError, DataError, DDKitError
from ddkit.eval.protocol import get_protocol
from ddkit.testing import tiny_digits

#: QUICK's recipe on a three-layer ConvNet, which over-fits a few dozen rows
DEEP = QUICK.with_(models=("convnet-w32",))
#: the over-fitting audit's attack: 4 shadows on a pool of 120 rows
SMALL = MembershipAttack(shadows=4, pool=120, bootstrap=100)


@pytest.fixture(scope="module")
def splits():
    return tiny_digits()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ============================================================================ the metrics
def test_auc_and_tpr_match_brute_force():
    g = _gen(1)
    pos = torch.randn(300, generator=g).round(decimals=1) + 0.5  # ties on purpose
    neg = torch.randn(400, generator=g).round(decimals=1)
    auc, tpr = _auc_and_tpr(pos[None].double(), neg[None].double(), [0.01, 0.1])
    wins = (pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()
    assert float(auc[0]) == pytest.approx(float(wins.mean()))
    for i, level in enumerate([0.01, 0.1]):  # best TPR over thresholds with FPR <= level
        best = max(
            float((pos > t).double().mean())
            for t in torch.cat([neg, pos, torch.tensor([float("inf")])])
            if float((neg > t).double().mean()) <= level
        )
        assert float(tpr[0, i]) == pytest.approx(best)


def test_metrics_of_separated_reversed_and_tied_scores():
    member = torch.tensor([True] * 50 + [False] * 50)
    up = torch.cat([torch.arange(50) + 100.0, torch.arange(50.0)])
    m = attack_metrics(up, member, bootstrap=0, generator=_gen())
    assert m["auc"]["value"] == 1.0 and m["tpr@0.1%"]["value"] == 1.0
    assert m["members"] == m["non_members"] == 50
    assert attack_metrics(-up, member, bootstrap=0, generator=_gen())["auc"]["value"] == 0.0
    flat = attack_metrics(torch.zeros(100), member, bootstrap=0, generator=_gen())
    assert flat["auc"]["value"] == 0.5 and flat["tpr@1%"]["value"] == 0.0


def test_bootstrap_interval_holds_the_value_and_is_seeded():
    g = _gen(2)
    member = torch.rand(600, generator=g) < 0.5
    scores = torch.randn(600, generator=g) + 0.3 * member
    a = attack_metrics(scores, member, bootstrap=100, generator=_gen(5))
    b = attack_metrics(scores, member, bootstrap=100, generator=_gen(5))
    assert a == b
    for key in ("auc", "tpr@0.1%", "tpr@1%"):
        assert a[key]["low"] <= a[key]["value"] <= a[key]["high"]
    assert a["auc"]["high"] - a["auc"]["low"] > 0.01


def test_metrics_refuse_bad_input():
    member = torch.tensor([True, False])
    with pytest.raises(ConfigError, match="FPR"):
        attack_metrics(torch.zeros(2), member, fprs=[0.0], generator=_gen())
    with pytest.raises(DataError, match="non-member"):
        attack_metrics(torch.zeros(2), torch.tensor([True, True]), generator=_gen())
    with pytest.raises(DataError, match="NaN"):
        attack_metrics(torch.tensor([0.0, float("nan")]), member, generator=_gen())
    with pytest.raises(ConfigError, match="bootstrap"):
        attack_metrics(torch.zeros(2), member, bootstrap=-1, generator=_gen())


def test_roc_curve_runs_from_corner_to_corner():
    g = _gen(3)
    member = torch.rand(200, generator=g) < 0.5
    fpr, tpr = roc_curve(torch.randn(200, generator=g).round(decimals=1), member)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert all(b >= a for a, b in zip(fpr, fpr[1:])) and all(b >= a for a, b in zip(tpr, tpr[1:]))


# ============================================================================ the attacks
def test_signals_are_the_logit_confidence_and_the_loss(splits):
    net = trained_net(splits, epochs=5)
    x, y = splits.test.images[:50], splits.test.labels[:50]
    phi, loss = membership_signals(net, x, y, batch_size=16)
    with torch.no_grad():
        p = F.softmax(net(x).double(), 1).gather(1, y[:, None]).squeeze(1)
        ce = F.cross_entropy(net(x), y, reduction="none")
    assert torch.allclose(phi.double(), torch.log(p / (1 - p)), atol=1e-4)
    assert torch.allclose(loss, ce, atol=1e-5)
    assert torch.equal(loss_attack(loss), -loss)


def test_lira_separates_known_gaussians_and_not_a_null_target():
    g = _gen(4)
    n, shadows = 2000, 8
    shift = torch.randn(n, generator=g)  # per-row difficulty, shared by IN and OUT
    shadow_in = membership_masks(torch.arange(n) % 2, shadows, seed=0)[1:]
    shadow_phi = shift + 1.0 * shadow_in + 0.5 * torch.randn(shadows, n, generator=g)
    member = torch.rand(n, generator=g) < 0.5
    target = shift + 1.0 * member + 0.5 * torch.randn(n, generator=g)
    scores = lira_online(target, shadow_phi, shadow_in)
    auc = attack_metrics(scores, member, bootstrap=0, generator=_gen())["auc"]["value"]
    # the per-row means remove the shared difficulty: far better than the raw statistic
    raw = attack_metrics(target, member, bootstrap=0, generator=_gen())["auc"]["value"]
    assert auc > 0.85 and auc > raw + 0.1
    null = shift + 0.5 + 0.5 * torch.randn(n, generator=g)  # the same law for every row
    m = attack_metrics(lira_online(null, shadow_phi, shadow_in), member, generator=_gen())
    assert m["auc"]["low"] < 0.5 < m["auc"]["high"]


def test_lira_needs_in_and_out_shadows():
    with pytest.raises(DataError, match="IN at least one"):
        lira_online(torch.zeros(3), torch.zeros(4, 3), torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(DataError, match="do not match"):
        lira_online(torch.zeros(3), torch.zeros(4, 3), torch.ones(4, 2, dtype=torch.bool))


def test_null_model_is_not_detected(splits):
    """A network that never saw the pool (trained on other rows): AUC ~ 0.5 within its
    interval, for members and non-members drawn from one distribution."""
    from ddkit.audits.base import full_data, train_on_set

    other = train_on_set(full_data(splits.test), splits.test, QUICK.with_(runs=1), seed=0)
    net = other.networks[0]
    rows = pool_rows(splits.train.labels, None, seed=0)
    member = membership_masks(splits.train.labels[rows], 0, seed=0)[0]
    pool = splits.train.subset(rows)
    _, loss = membership_signals(net, pool.images, pool.labels)
    m = attack_metrics(loss_attack(loss), member, bootstrap=200, generator=_gen())
    assert m["auc"]["low"] < 0.5 < m["auc"]["high"]


@pytest.fixture(scope="module")
def overfit(splits, tmp_path_factory):
    """Full-data ConvNet-3s over-fitted on 60 members (a pool of 120 rows), 4 shadows."""
    out = tmp_path_factory.mktemp("privacy-overfit")
    result = privacy_audit(splits, [Source("full")], PrivacyTraining.of(DEEP, full_epochs=300),
                           attack=SMALL, seed=0, out=out)  # fmt: skip
    return result, out


def test_overfitted_model_is_detected(overfit):
    attacks = overfit[0]["sets"]["full"]["attacks"]
    assert attacks["loss"]["auc"]["low"] > 0.7
    assert attacks["lira"]["auc"]["low"] > 0.8  # LiRA's per-row calibration: stronger


def test_resume_reuses_saved_networks_and_refuses_other_settings(splits, overfit, monkeypatch):
    result, out = overfit

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(privacy, "_train", no_training)
    again = privacy_audit(splits, [Source("full")], PrivacyTraining.of(DEEP, full_epochs=300),
                          attack=SMALL, seed=0, out=out)  # fmt: skip
    again.pop("_curves")
    first = {k: v for k, v in result.items() if k != "_curves"}
    assert without_timings(again) == without_timings(first)
    with pytest.raises(ConfigError, match="trained another way"):
        privacy_audit(splits, [Source("full")], PrivacyTraining.of(DEEP, full_epochs=200),
                      attack=MembershipAttack(shadows=4, pool=120), seed=0, out=out)  # fmt: skip


def test_kept_only_attacks_the_finished_sources_and_lists_the_rest(splits, overfit, monkeypatch):
    result, out = overfit

    def no_training(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(privacy, "_train", no_training)
    how = PrivacyTraining.of(DEEP, full_epochs=300)
    sources = [Source("full"), Source("random", "random", 1)]
    table = privacy_audit(splits, sources, how, attack=SMALL, seed=0, out=out, kept_only=True)
    assert list(table["sets"]) == ["full"]
    assert table["incomplete"] == {"random/ipc1": "0 of 5 networks kept"}
    assert table["sets"]["full"] == result["sets"]["full"]
    with pytest.raises(ConfigError, match="no source has all its networks kept"):
        privacy_audit(splits, sources[1:], how, attack=SMALL, seed=0, out=out, kept_only=True)


def test_processes_share_the_networks_of_one_folder(splits, tmp_path, monkeypatch):
    """A network a live process holds is left to it and waited for, and trained here once its
    holder dies; one whose holder is already dead is trained at once; each network is trained
    once, and the result is a single process's."""
    import socket
    import subprocess

    from ddkit.rng import derive_seed

    settings = dict(attack=MembershipAttack(shadows=4, pool=120, bootstrap=20), seed=0)
    how = PrivacyTraining.of(QUICK, full_epochs=5)
    alone = privacy_audit(splits, [Source("full")], how, out=tmp_path / "alone", **settings)
    folder = tmp_path / "shared" / "signals" / "full"
    folder.mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    (folder / "model001.lock").write_text(json.dumps({"pid": live.pid, "host": host}))
    (folder / "model002.lock").write_text(json.dumps({"pid": dead.pid, "host": host}))
    trained, real_train = [], privacy._train

    def counting(source, members, test, how, seed):
        trained.append(seed)
        return real_train(source, members, test, how, seed)

    def holder_dies(seconds):  # while this process waits for network 1
        assert not (folder / "model001.safetensors").exists()
        live.kill()
        live.wait()

    monkeypatch.setattr(privacy, "_train", counting)
    monkeypatch.setattr(privacy.time, "sleep", holder_dies)
    try:
        shared = privacy_audit(splits, [Source("full")], how, out=tmp_path / "shared", **settings)
    finally:
        live.kill()
        live.wait()
    order = [derive_seed(0, "privacy-model", k) for k in (0, 2, 3, 4, 1)]
    assert trained == order
    assert not list(folder.glob("*.lock"))
    assert without_timings({k: v for k, v in shared.items() if k != "_curves"}) == (
        without_timings({k: v for k, v in alone.items() if k != "_curves"})
    )


# ============================================================================ members
def test_pool_and_masks_balance_members_and_non_members(splits):
    rows = pool_rows(splits.train.labels, 200, seed=0)
    labels = splits.train.labels[rows]
    counts = torch.bincount(labels)
    assert (counts % 2 == 0).all() and abs(len(rows) - 200) <= 10
    assert len(set(rows.tolist())) == len(rows)
    masks = membership_masks(labels, 6, seed=0)
    assert masks.shape == (7, len(rows))
    for mask in masks:  # every network: half of every class
        assert torch.equal(torch.bincount(labels[mask], minlength=10) * 2, counts)
    assert (masks[1:].sum(0) == 3).all()  # every row IN exactly half of the shadows
    assert torch.equal(masks, membership_masks(labels, 6, seed=0))
    assert not torch.equal(masks, membership_masks(labels, 6, seed=1))


def test_bad_membership_settings_are_refused(splits):
    labels = splits.train.labels
    for shadows in (2, 3, -2):
        with pytest.raises(ConfigError, match="shadows"):
            membership_masks(labels, shadows, seed=0)
    with pytest.raises(ConfigError, match="raise --pool"):
        check_members(labels[pool_rows(labels, 40, seed=0)], 10, [3])
    with pytest.raises(ConfigError, match="pool"):
        pool_rows(labels, 0, seed=0)
    with pytest.raises(ConfigError, match="nothing to audit"):
        privacy_sources([], [], full=False)
    names = [s.name for s in privacy_sources(["dm", "random"], [1, 5], dp_epsilons=[8])]
    assert names == ["full", "dp/eps8", "random/ipc1", "dm/ipc1", "random/ipc5", "dm/ipc5"]


# ============================================================================ DP-SGD
def test_dp_sgd_spends_the_epsilon_asked_and_is_seeded(splits):
    for accountant in ("prv", "rdp"):
        recipe = DPRecipe(epsilon=2.0, epochs=2, batch_size=64, accountant=accountant)
        a = train_dp_sgd(splits.train, "convnet1-w32", recipe, seed=0)
        assert a.epsilon_spent == pytest.approx(2.0, rel=0.05)
        assert a.noise_multiplier > 0.5 and a.steps > 0
    b = train_dp_sgd(splits.train, "convnet1-w32", recipe, seed=0)
    for p, q in zip(a.network.parameters(), b.network.parameters()):
        assert torch.equal(p, q)
    loose = train_dp_sgd(splits.train, "convnet1-w32", replace(recipe, epsilon=20.0), seed=0)
    assert loose.noise_multiplier < a.noise_multiplier


def test_dp_sgd_refuses_bad_recipes_and_batch_norm(splits):
    for recipe in (DPRecipe(0.0), DPRecipe(1.0, delta=1.5), DPRecipe(1.0, batch_size=10**6)):
        with pytest.raises(ConfigError):
            train_dp_sgd(splits.train, "convnet1-w32", recipe, seed=0)
    with pytest.raises(ConfigError, match="batch norm"):
        train_dp_sgd(
            splits.train, "convnet1-w32-bn", DPRecipe(1.0, epochs=1, batch_size=64), seed=0
        )


def test_missing_opacus_is_one_line_naming_the_extra(splits, monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # what an environment without it imports
    with pytest.raises(ConfigError, match=r"pip install 'ddkit\[privacy\]'"):
        train_dp_sgd(splits.train, "convnet1-w32", DPRecipe(1.0, epochs=1, batch_size=64), seed=0)
    with pytest.raises(ConfigError, match="opacus"):
        privacy_audit(splits, [Source("dp", epsilon=1.0)], PrivacyTraining.of(get_protocol("dc")),
                      attack=MembershipAttack(shadows=0))  # fmt: skip


# ============================================================================ the command
def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    PrivacyAudit.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_writes_results_and_roc_plot(tmp_path, capsys):
    out = tmp_path / "audit"
    args = _cli("--methods", "dm", "--ipc", "2", "--iterations", "3", "--shadows", "4",
                "--epochs", "20", "--full-epochs", "5", "--models", "convnet1-w32",
                "--dp-epsilons", "8", "--dp-batch", "64", "--dp-accountant", "rdp", "--bootstrap", "20", "--pool", "300",
                "--set", "model=convnet1-w32", "--out", str(out), "--quiet")  # fmt: skip
    assert PrivacyAudit.run(args) == 0
    result = json.loads((out / "privacy.json").read_text())
    assert sorted(result["sets"]) == ["dm/ipc2", "dp/eps8", "full", "random/ipc2"]
    assert (out / "privacy.png").stat().st_size > 10_000
    budgets = result["budgets"]
    assert budgets["members"] == budgets["non_members"] == budgets["pool"] // 2
    assert budgets["shadows"] == 4 and result["seed"] == 0
    dp = result["sets"]["dp/eps8"]
    assert all(e == pytest.approx(8.0, rel=0.05) for e in dp["epsilon_spent"])
    for row in result["sets"].values():
        assert row["test_accuracy"]["networks"] == 5
        for attack in ("loss", "lira"):
            m = row["attacks"][attack]
            assert m["auc"]["low"] <= m["auc"]["value"] <= m["auc"]["high"]
    assert result["sets"]["dm/ipc2"]["num_images"] == 20
    assert "dm/ipc2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shadows", "3"], "shadows"),
        (["--ipc", "500"], "lower --ipc"),
        (["--dp-epsilons", "0"], "--dp-epsilons"),
        (["--methods", "no-such-method"], "no-such-method"),
        (["--models", "convnet1-w32,convnet2-w32"], "one --models"),
        (["--pool", "5"], "raise --pool"),
        (["--dp-delta", "2"], "delta"),
        # issue 42: masks for 10**9 shadows grew towards terabytes; the bootstrap count was
        # checked only after every network had been trained
        (["--shadows", str(10**9)], "use fewer --shadows"),
        (["--bootstrap", str(10**12)], "use fewer --bootstrap"),
        (["--bootstrap", "-1"], "bootstrap must be an integer >= 0"),
        (["--iterations", "3,no-such-method=5"], "no-such-method"),
        (["--iterations", "dm=three"], "--iterations takes"),
    ],
)
def test_cli_refuses_bad_input_in_one_line_before_writing(tmp_path, argv, message):
    out = tmp_path / "audit"
    args = _cli("--quiet", "--shadows", "4", "--full-epochs", "1", *argv, "--out", str(out))
    with pytest.raises(DDKitError) as e:
        PrivacyAudit.run(args)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_a_dp_batch_larger_than_a_networks_members_is_refused_before_any_work(tmp_path, capsys):
    """A pool of 200 digits gives each network 96 members: DP-SGD's default batch of 256 was
    refused only after the first networks had trained; now before anything, dry run included,
    naming both options."""
    from ddkit.cli import main

    argv = ["audit", "privacy", "--dataset", "digits", "--methods", "dm", "--ipc", "1",
            "--shadows", "4", "--pool", "200", "--epochs", "1", "--quiet"]  # fmt: skip
    for extra in (["--dry-run"], []):
        assert main([*argv, *extra, "--out", str(tmp_path / "audit")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "DP-SGD batch size 256 exceeds the 96 training rows" in err[0]
        assert "--dp-batch" in err[0] and "--pool" in err[0]
        assert not (tmp_path / "audit").exists()
