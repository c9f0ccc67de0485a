"""Audits that can be tried (issue 70): ``--dry-run`` prints what an audit would train and an
estimate measured by a short probe, and writes nothing; ``--quick`` is a small setting, said in
the output and the results; every audit's first line is its plan, before any work."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from ddkit.audits.estimate import QUICK, AuditPlan, NetworkCost, NetworkJob, apply_quick
from ddkit.cli import main

ADVERSARIAL = ["audit", "adversarial", "--dataset", "digits", "--methods", "random", "--ipc", "1",
               "--no-full", "--protocol", "dc", "--models", "convnet1-w8", "--epsilons", "0",
               "--steps", "1", "--max-test", "10", "--quiet"]  # fmt: skip


def test_a_dry_run_prints_the_plan_and_an_estimate_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "audit"
    assert main([*ADVERSARIAL, "--runs", "2", "--epochs", "3", "--dry-run", "--out", str(out)]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said[0] == (
        "adversarial audit: 2 networks to train (random/ipc1: 2 x 3 epochs on 10 images)"
    )
    assert said[1].startswith("about ") and said[1].endswith(f"nothing written to {out}")
    assert not out.exists()


def test_a_job_costs_its_networks_set_up_and_batches():
    cost = NetworkCost(setup_seconds=0.5, batch_seconds=0.01, batch=256)
    job = NetworkJob("full", networks=3, epochs=7, images=600)
    assert cost.seconds(job) == pytest.approx(3 * (0.5 + 0.01 * math.ceil(600 / 256) * 7))
    small = NetworkCost(0.5, 0.01, 256, small_setups=((10, 0.05), (100, 0.2)))
    assert small.seconds(NetworkJob("ipc1", 2, 4, 12)) == pytest.approx(2 * (0.05 + 0.01 * 4))
    assert small.setup(90) == 0.2 and small.setup(600) == 0.5  # the nearest size probed
    plan = AuditPlan("x", (job, NetworkJob("r", 2, 1, 10)))
    assert plan.network_count == 5 and "5 networks to train" in plan.line()


def test_quick_caps_the_counts_and_the_audit_says_so_first(tmp_path, capsys):
    out = tmp_path / "audit"
    argv = [*ADVERSARIAL, "--runs", "3", "--epochs", "100", "--quick", "--out", str(out)]
    argv.remove("--quiet")
    assert main(argv) == 0
    said = capsys.readouterr().out.splitlines()
    runs, epochs = QUICK["runs"], QUICK["epochs"]
    assert said[0].startswith(f"adversarial audit: {runs} networks to train")
    assert f"{runs} x {epochs} epochs" in said[0] and "quick setting (--quick)" in said[0]
    result = json.loads((out / "adversarial.json").read_text())
    assert result["quick"]["runs"] == runs and result["quick"]["epochs"] == epochs
    assert result["runs"] == runs and result["protocol"]["epochs"] == epochs


def test_quick_keeps_smaller_values_and_fills_missing_ones():
    from ddkit.audits.privacy import PrivacyAudit

    parser = argparse.ArgumentParser()
    PrivacyAudit.add_arguments(parser)
    args = parser.parse_args(["--quick", "--epochs", "5", "--shadows", "16"])
    changed = apply_quick(args)
    assert args.epochs == 5 and "epochs" not in changed  # smaller than the cap: kept
    assert args.shadows == QUICK["shadows"] and args.pool == QUICK["pool"]
    assert args.iterations == str(QUICK["iterations"]) and changed["shadows"] == QUICK["shadows"]
    plain = parser.parse_args(["--shadows", "16"])
    assert apply_quick(plain) == {} and plain.shadows == 16
