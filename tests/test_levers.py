"""Fast by default, exact on request (ddkit.levers; issue 41): the validated protocols and dm
resolve their "auto" levers to bf16 and compilation outside exact mode, and exact mode (the
test session's, ``--exact``, ``DDKIT_EXACT``, ``levers.exact()``) gives the float32 eager path."""

from __future__ import annotations

import os

import pytest
import torch

from ddkit import levers
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import TrainRecipe
from ddkit.methods import create_method
from ddkit.testing import tiny_digits


@pytest.fixture
def fast_machine(monkeypatch):
    """Outside exact mode, on a machine with native bf16 and a working compiler."""
    monkeypatch.setattr(levers, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(levers, "compile_available", lambda: True)
    with levers.exact(False):
        yield


def test_the_test_session_runs_in_exact_mode():
    assert levers.exact_mode()
    assert levers.resolve_precision("auto") == "fp32"
    assert levers.resolve_compile("auto") is False


def test_exact_mode_follows_the_environment_and_the_context(monkeypatch):
    monkeypatch.setenv(levers.EXACT_ENV, "0")
    assert not levers.exact_mode()
    monkeypatch.setenv(levers.EXACT_ENV, "yes")
    assert levers.exact_mode()
    with levers.exact(False):
        assert not levers.exact_mode()
        with levers.exact():
            assert levers.exact_mode()
        assert not levers.exact_mode()
    monkeypatch.delenv(levers.EXACT_ENV)
    assert not levers.exact_mode()


def test_auto_levers_resolve_by_hardware_and_run_length(fast_machine, monkeypatch):
    assert levers.resolve_precision("auto") == "bf16"
    assert levers.resolve_compile("auto") is True
    assert levers.resolve_compile("auto", steps=levers.COMPILE_MIN_STEPS) is True
    assert levers.resolve_compile("auto", steps=levers.COMPILE_MIN_STEPS - 1) is False
    # issue 70: ten 8x8 digits trained slower compiled; tiny batches stay eager
    floor = levers.COMPILE_MIN_BATCH_VALUES
    assert levers.resolve_compile("auto", steps=1000, batch_values=floor) is True
    assert levers.resolve_compile("auto", steps=1000, batch_values=floor - 1) is False
    assert levers.resolve_compile(True, steps=1000, batch_values=1) is True
    from ddkit.eval.protocol import get_protocol
    from ddkit.eval.train import TrainRecipe

    dsa = get_protocol("dsa")
    assert TrainRecipe.of_protocol(dsa, 0.01, "cpu", 10, 64).compile is False  # 10 digits
    assert TrainRecipe.of_protocol(dsa, 0.01, "cpu", 100, 784).compile is True  # 100 MNIST
    assert TrainRecipe.of_protocol(dsa, 0.01, "cpu", 1437, 64).compile is True  # all digits
    monkeypatch.setattr(levers, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(levers, "compile_available", lambda: False)
    assert levers.resolve_precision("auto") == "fp32"
    assert levers.resolve_compile("auto") is False


def test_explicit_levers_are_obeyed_in_either_mode():
    for on in (True, False):
        with levers.exact(on):
            assert levers.resolve_precision("bf16") == "bf16"
            assert levers.resolve_precision("fp32") == "fp32"
            assert levers.resolve_compile(True, steps=1) is True
            assert levers.resolve_compile(False) is False


@pytest.mark.parametrize("name", ["dc", "dsa", "dc_aug", "fast"])
def test_validated_protocols_train_with_the_levers_outside_exact_mode(name, fast_machine):
    protocol = get_protocol(name)  # 1000 images: 4 batches, 400+ steps per network
    long = TrainRecipe.of_protocol(protocol, 0.01, "cpu", images=1000)
    assert (long.precision, long.compile, long.channels_last) == ("bf16", True, True)
    with levers.exact():
        exact = TrainRecipe.of_protocol(protocol, 0.01, "cpu", images=100)
    assert (exact.precision, exact.compile, exact.channels_last) == ("fp32", False, False)


def test_short_trainings_are_not_compiled(fast_machine):
    short = get_protocol("fast").with_(epochs=levers.COMPILE_MIN_STEPS - 1)
    recipe = TrainRecipe.of_protocol(short, 0.01, "cpu", images=100)  # one batch per epoch
    assert (recipe.precision, recipe.compile, recipe.channels_last) == ("bf16", False, False)


@pytest.mark.parametrize("name", ["mse", "soft", "tabular", "series", "smoke"])
def test_protocols_not_validated_stay_exact(name, fast_machine):
    recipe = TrainRecipe.of_protocol(get_protocol(name), 0.01, "cpu", images=100)
    assert (recipe.precision, recipe.compile, recipe.channels_last) == ("fp32", False, False)


def test_dm_and_dsa_default_to_the_levers_and_their_families_do_not():
    for name in ("dm", "dsa"):
        cfg = create_method(name).config
        assert (cfg.precision, cfg.compile) == ("auto", "auto"), name
    for name in ("idm", "m3d", "ncfm", "dim", "dc", "idc"):
        cfg = create_method(name).config
        assert (cfg.precision, cfg.compile) == ("fp32", False), name


@pytest.mark.parametrize("name", ["dm", "dsa"])
def test_the_defaults_record_the_levers_they_used(name, fast_machine):
    # a short run: bf16, not compiled (so the test compiles nothing)
    opts = {"model": "convnet-w8", "batch_real": 8, "iterations": 2}
    if name == "dsa":
        opts.update(model="convnet2-w8", outer_loop=2, inner_loop=1)
    fast = create_method(name, **opts).fit(tiny_digits().train, 2, seed=0)
    assert fast.meta["precision"] == "bf16" and fast.meta["compile"] is False
    with levers.exact():
        exact = create_method(name, **opts).fit(tiny_digits().train, 2, seed=0)
    reference = create_method(name, **opts, precision="fp32", compile=False)
    assert torch.equal(exact.images, reference.fit(tiny_digits().train, 2, seed=0).images)
    assert exact.meta["precision"] == "fp32"
    assert not torch.equal(fast.images, exact.images)  # autocast really ran


def test_dm_compiles_by_the_run_length_not_the_configured_budget(fast_machine):
    # the configured budget (20,000) would repay a compilation; a fit of 2 iterations does not
    dm = create_method("dm", model="convnet-w8", batch_real=8)
    assert dm.config.iterations >= levers.COMPILE_MIN_STEPS
    assert dm.fit(tiny_digits().train, 2, seed=0, iterations=2).meta["compile"] is False


def test_the_exact_flag_puts_exact_mode_in_the_environment(monkeypatch, capsys):
    from ddkit.cli import main

    monkeypatch.setenv(levers.EXACT_ENV, "0")
    assert main(["list"]) == 0
    assert os.environ[levers.EXACT_ENV] == "0"
    assert main(["--exact", "list"]) == 0
    assert os.environ[levers.EXACT_ENV] == "1"


def test_the_command_in_exact_mode_turns_tf32_off_on_cuda(monkeypatch):
    from ddkit.cli import main

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        monkeypatch.setenv(levers.EXACT_ENV, "0")
        assert main(["list"]) == 0
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert main(["--exact", "list"]) == 0
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bench_units_run_in_exact_mode(monkeypatch, tmp_path):
    from ddkit.bench import cells

    seen = []
    monkeypatch.setattr(cells, "_run_unit", lambda *a: seen.append(levers.exact_mode()))
    with levers.exact(False):
        cells.run_unit(None, "distill", None, 0, tmp_path)
    assert seen == [True]


def test_distill_and_evaluate_say_how_they_computed(tmp_path, capsys):
    from ddkit.cli import main

    out = tmp_path / "run"
    args = ["--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "1"]
    assert main(["distill", *args, "--set", "model=convnet-w8", "--quiet", "--out", str(out)]) == 0
    assert "bytes of distilled content; fp32)" in capsys.readouterr().out  # exact mode
    assert main(["evaluate", str(out), "--protocol", "smoke", "--quiet"]) == 0
    assert "lr 0.01, fp32), final-epoch test accuracy" in capsys.readouterr().out


def test_a_settled_protocol_is_what_the_process_computes(fast_machine):
    """Audit checkpoints are keyed by the settled protocol: in exact mode, that of the days before
    "auto" (so their units resume); outside it, bf16 (so fast and exact units never mix)."""
    dsa = get_protocol("dsa")
    before_auto = dsa.with_(precision="fp32", compile=False, channels_last=False)
    with levers.exact():
        assert dsa.settled() == before_auto
    fast = dsa.settled()
    assert fast.precision == "bf16" and fast != before_auto
    assert (fast.compile, fast.channels_last) == ("auto", "auto")  # left to each run's length
    assert get_protocol("smoke").settled() == get_protocol("smoke")  # nothing auto to settle


def test_privacy_units_kept_before_auto_are_resumed_in_exact_mode(fast_machine):
    from ddkit.audits.privacy import PrivacyTraining, Source

    pool, dsa = torch.arange(6), get_protocol("dsa")
    before_auto = dsa.with_(precision="fp32", compile=False, channels_last=False)

    def key(protocol):
        how = PrivacyTraining(protocol=protocol, model="convnet", full_epochs=3)
        return how.fingerprint(Source(kind="full"), "d", pool, 0)

    with levers.exact():
        assert key(dsa) == key(before_auto)
        exact_key = key(dsa)
    assert key(dsa) != exact_key  # fast (bf16) networks never resume exact ones


def test_torch_threads_are_kept_whatever_a_library_changes_inside():
    before = torch.get_num_threads()
    with levers.torch_threads_kept():
        torch.set_num_threads(before + 1)  # as numba's OpenMP layer does on its first run
    assert torch.get_num_threads() == before
