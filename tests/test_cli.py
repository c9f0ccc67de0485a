"""The command line: clear one-line errors, run folders, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ddkit.cli import main
from ddkit.data.synthetic import SyntheticSet


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["distill", "--dataset", "nope", "--method", "random", "--ipc", "1"],
            "unknown dataset 'nope'; valid:",
        ),
        (
            ["distill", "--dataset", "digits", "--method", "nope", "--ipc", "1"],
            "unknown method 'nope'; valid:",
        ),
        (
            ["distill", "--dataset", "digits", "--method", "random", "--ipc", "0"],
            "IPC must be a positive",
        ),
        (
            ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1000"],
            "larger than class",
        ),
        (
            [
                "distill",
                "--dataset",
                "digits",
                "--method",
                "random",
                "--ipc",
                "1",
                "--set",
                "bogus=1",
            ],
            "unknown option 'bogus'",
        ),
        (
            [
                "distill",
                "--dataset",
                "digits",
                "--method",
                "random",
                "--ipc",
                "1",
                "--out",
                "/proc/nope/x",
            ],
            "cannot write to output folder",
        ),
        (["evaluate", "/definitely/missing"], "no synthetic set"),
        (["distill", "--dataset", "kmnist", "--method", "random", "--ipc", "1"], "pass root=PATH"),
    ],
)
def test_errors_are_one_line(args, message, capsys, tmp_path):
    if "--out" not in args and args[0] == "distill":
        args = args + ["--out", str(tmp_path / "run")]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_protocol_and_model(capsys, tmp_path):
    assert (
        run_cli(
            [
                "distill",
                "--dataset",
                "digits",
                "--method",
                "random",
                "--ipc",
                "2",
                "--out",
                str(tmp_path / "r"),
            ],
            capsys,
        )[0]
        == 0
    )
    code, _, err = run_cli(["evaluate", str(tmp_path / "r"), "--protocol", "nope"], capsys)
    assert code == 2 and "unknown protocol 'nope'" in err
    code, _, err = run_cli(
        ["evaluate", str(tmp_path / "r"), "--protocol", "smoke", "--models", "resnet99"], capsys
    )
    assert code == 2 and "unknown model 'resnet99'" in err


def test_tampered_set_on_the_command_line(capsys, tmp_path):
    run_cli(
        [
            "distill",
            "--dataset",
            "digits",
            "--method",
            "random",
            "--ipc",
            "1",
            "--out",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    f = tmp_path / "r" / "synthetic" / "data.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    code, _, err = run_cli(["evaluate", str(tmp_path / "r"), "--protocol", "smoke"], capsys)
    assert code == 2 and "checksum" in err


def test_distill_and_evaluate_write_the_run_folder(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        [
            "distill",
            "--dataset",
            "digits",
            "--method",
            "random",
            "--ipc",
            "3",
            "--seed",
            "4",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    for name in (
        "synthetic/data.safetensors",
        "synthetic/meta.json",
        "config.json",
        "grid.png",
        "log.jsonl",
    ):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "random" and cfg["ipc"] == 3 and cfg["seed"] == 4
    code, stdout, _ = run_cli(["evaluate", str(out), "--protocol", "smoke", "--runs", "2"], capsys)
    assert code == 0 and "±" in stdout
    rep = json.loads((out / "eval.json").read_text())
    assert len(rep["results"][0]["accuracies"]) == 2 and len(rep["results"][0]["seeds"]) == 2
    assert rep["protocol"]["precision"] == "fp32"
    # the run context, as distill saves it in config.json: the environment, device, processes
    assert rep["context"]["device"] == "cpu" and rep["context"]["processes"] == 1
    assert rep["context"]["variables"].keys() == cfg["context"]["variables"].keys()
    code, _, _ = run_cli(
        ["evaluate", str(out), "--protocol", "smoke", "--precision", "bf16"], capsys
    )
    assert code == 0
    assert json.loads((out / "eval.json").read_text())["protocol"]["precision"] == "bf16"


def test_list_shows_registries(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for word in ("digits", "mnist5k", "convnet", "resnet18", "random", "herding", "dsa", "fast"):
        assert word in out
    # every other name a user can pass, one line each (issue 41)
    for title in ("codecs (", "augmentations (", "series augmentations (", "audits (",
                  "applications (", "learners ("):  # fmt: skip
        assert f"\n{title}" in out, title
    for word in ("formation", "fred", "haba", "latent", "cutout", "warp"):
        assert f"\n  {word} " in out, word


DM_ARGS = [
    "distill",
    "--dataset",
    "digits",
    "--method",
    "dm",
    "--ipc",
    "2",
    "--iterations",
    "30",
    "--seed",
    "5",
    "--checkpoint-every",
    "3",
    "--quiet",
    "--set",
    "batch_real=16",
]


def _cli(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ddkit.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path):
    """Kill a distillation with SIGKILL mid-run; --resume finishes with the same set."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = _cli(DM_ARGS + ["--out", str(full)])
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    p = _cli(DM_ARGS + ["--out", str(killed)])
    log = killed / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (killed / "synthetic").exists(), "run finished before it could be killed"
    assert (killed / "checkpoint" / "state.json").exists()
    p = _cli(DM_ARGS + ["--out", str(killed), "--resume"])
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    a, b = SyntheticSet.load(full / "synthetic"), SyntheticSet.load(killed / "synthetic")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    la = [json.loads(x) for x in (full / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == 30


# ------------------------------------------------------------------ one CLI vocabulary
def _subparsers():
    import argparse

    from ddkit.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize(
    "command, flags",
    [
        ("distill", ("seed", "root", "quiet", "resume", "out")),
        ("evaluate", ("seed", "root", "quiet", "out")),
        ("experts", ("seed", "root", "quiet", "resume", "out")),
        ("teacher", ("seed", "root", "out")),
        ("demo", ("seed", "out")),
        ("bench", ("seed",)),
    ],
)
def test_shared_flags_are_defined_once(command, flags):
    from ddkit.commands import COMMON_FLAGS

    actions = {a.dest: a for a in _subparsers()[command]._actions}
    for flag in flags:
        assert flag in actions, f"{command} lacks --{flag}"
        if flag in COMMON_FLAGS:
            assert actions[flag].help == COMMON_FLAGS[flag]["help"], (command, flag)
            assert actions[flag].default == COMMON_FLAGS[flag].get("default", False)


def test_the_demo_says_the_ipc_it_runs():
    """Issue 70: ``ddkit demo --help`` and the Makefile said IPC 10 for a demo that runs IPC 1."""
    from pathlib import Path

    from ddkit.cli.demo import DEMO_IPC

    top = subprocess.run(
        [sys.executable, "-m", "ddkit", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert f"distil digits at IPC {DEMO_IPC} " in top
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f"(digits, IPC {DEMO_IPC})" in makefile


def test_the_demo_finds_the_recorded_full_row_from_any_folder(tmp_path, monkeypatch):
    """Issue 70: run outside the clone, ``ddkit demo`` missed the recorded full-data row (a path
    relative to the working folder) and trained it for minutes."""
    from pathlib import Path

    from ddkit.cli.demo import DEMO_FULL_RESULTS, _recorded_full_row

    if not (Path(__file__).parents[1] / DEMO_FULL_RESULTS).is_file():
        pytest.skip("not a clone with the recorded results")
    monkeypatch.chdir(tmp_path)
    assert _recorded_full_row("digits")["num_images"] == 1437


def test_cli_defaults_are_read_from_the_api():
    from ddkit.commands import defaults_of
    from ddkit.eval.teacher import TeacherRecipe
    from ddkit.methods.trajectory.experts import ExpertSettings

    experts = {a.dest: a.default for a in _subparsers()["experts"]._actions}
    want = defaults_of(ExpertSettings)
    assert (experts["lr"], experts["momentum"], experts["batch_size"]) == (
        want["lr"],
        want["momentum"],
        want["batch_size"],
    )
    teacher = {a.dest: a.default for a in _subparsers()["teacher"]._actions}
    want = defaults_of(TeacherRecipe)
    assert (teacher["epochs"], teacher["lr"]) == (want["epochs"], want["lr"])
    from ddkit.eval.evaluate import evaluate
    from ddkit.runs import distill_run

    distill = {a.dest: a.default for a in _subparsers()["distill"]._actions}
    assert distill["checkpoint_every"] == defaults_of(distill_run)["checkpoint_every"]
    evaluate_cmd = {a.dest: a.default for a in _subparsers()["evaluate"]._actions}
    assert evaluate_cmd["protocol"] == defaults_of(evaluate)["protocol"]


def test_list_presets_prints_each_preset_with_its_source(capsys):
    code, out, _ = run_cli(["list", "--presets", "idm"], capsys)
    assert code == 0
    assert "dataset cifar10, IPC 1: batch_real=5000" in out
    assert "source: IDM authors' command.txt" in out
    assert "ce_weight = 0.5" in out  # the defaults come first
    code, _, err = run_cli(["list", "--presets", "nope"], capsys)
    assert code == 2 and "unknown method 'nope'" in err


def test_parse_options_reads_json_values_and_refuses_a_missing_equals_sign():
    from ddkit.errors import ConfigError
    from ddkit.methods.config import parse_options

    assert parse_options(["a=1", "b=0.5", "c=true", "d=[1,2]", "e=text", "f=x=y"]) == {
        "a": 1,
        "b": 0.5,
        "c": True,
        "d": [1, 2],
        "e": "text",
        "f": "x=y",
    }
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_options(["lr_img"])


def test_a_bad_option_value_is_one_line(capsys):
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1"]
    code, _, err = run_cli([*args, "--set", "batch_real=1.5"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "batch_real must be an integer, got 1.5" in err


def test_memory_meter_measures_a_block():
    from ddkit.meter import PeakRSS, peak_rss_mb, rss_bytes

    assert rss_bytes() > 0 and peak_rss_mb() > 0
    with PeakRSS() as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB
        block += 1
    assert meter.extra_mb > 32 and meter.seconds > 0 and meter.cpu_seconds >= 0
    del block


def test_machine_info_names_the_cpu_extensions_from_cpuinfo(monkeypatch, tmp_path):
    from ddkit import meter

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx512f amx_tile avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Some Xeon\nflags\t\t: fpu\n"
    )
    real_path = meter.Path
    monkeypatch.setattr(meter, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    here = meter.machine_info()
    assert here["cpu"] == "Some Xeon" and here["cpu_extensions"] == ["amx_tile", "avx512_bf16"]


# ------------------------------------------------------------------ one line, never a traceback
def _broken_set(tmp_path, key, value):
    d = load_dataset_digits()
    syn = SyntheticSet.from_real(d.train, torch.arange(10))
    syn.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    meta[key] = value
    (tmp_path / "s" / "meta.json").write_text(json.dumps(meta))
    return str(tmp_path / "s")


def load_dataset_digits():
    from ddkit.data import load_dataset

    return load_dataset("digits")


DM = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "1"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([*DM, "--set", "lr_img=abc"], "lr_img must be a number"),
        ([*DM, "--set", "batch_real=1.5"], "batch_real must be an integer"),
        ([*DM, "--set", "device=cuda"], "is not available"),
        ([*DM, "--set", "augment=twist"], "unknown DSA operation"),
        ([*DM, "--set", "augment=warp"], "needs series; dataset 'digits' holds image rows"),
        ([*DM, "--set", "lr_img"], "must look like key=value"),
        ([*DM, "--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
        (["bench", "--ipcs", "x"], "--ipcs must be comma-separated numbers"),
        (["bench", "--ipcs", "0"], "--ipcs must be >= 1"),
        (["bench", "--ipcs", ","], "--ipcs needs at least one value"),
        (["bench", "--keeps", "10,half"], "--keeps must be comma-separated numbers"),
        (["bench", "--suite", "quick", "--methods", "nosuch"], "has no method 'nosuch'"),
        (["evaluate", "META:format_version=abc"], "format_version must be int"),
        (["evaluate", "META:provenance=[1]"], "provenance must be dict"),
        (["evaluate", "META:spec={}"], "malformed spec"),
        (["evaluate", "/nonexistent/run"], "no synthetic set"),
        (["list", "--presets", "nope"], "unknown method 'nope'"),
    ],
)
def test_bad_invocations_fail_in_one_line(tmp_path, capsys, args, message):
    args = list(args)
    if args[0] == "evaluate" and args[1].startswith("META:"):
        key, value = args[1][5:].split("=", 1)
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        args[1] = _broken_set(tmp_path, key, value)
    if args[0] == "distill":
        args += ["--out", str(tmp_path / "run"), "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err


def test_evaluate_reuses_the_runs_data_root_and_names_unknown_datasets(capsys, tmp_path):
    import numpy as np

    from ddkit.data import from_arrays

    rng = np.random.default_rng(0)
    npz = tmp_path / "mine.npz"
    np.savez(
        npz,
        x_train=rng.random((40, 8, 8), dtype=np.float32),
        y_train=np.arange(40) % 2,
        x_test=rng.random((10, 8, 8), dtype=np.float32),
        y_test=np.arange(10) % 2,
    )
    out = tmp_path / "run"
    args = ["distill", "--dataset", "npz", "--root", str(npz), "--method", "random", "--ipc", "2"]
    assert run_cli([*args, "--out", str(out), "--quiet"], capsys)[0] == 0
    code, stdout, err = run_cli(["evaluate", str(out), "--protocol", "smoke", "--quiet"], capsys)
    assert code == 0 and "±" in stdout, err

    splits = from_arrays(rng.random((20, 8, 8), dtype=np.float32), np.arange(20) % 2, name="mine")
    SyntheticSet.from_real(splits.train).save(tmp_path / "own")
    code, _, err = run_cli(["evaluate", str(tmp_path / "own"), "--protocol", "smoke"], capsys)
    assert code == 2 and "'mine', which ddkit does not know by name" in err
    assert "--dataset npz --root" in err and err.count("\n") == 1


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import ddkit.cli

    def broken(*args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("ddkit.methods.load_all", broken)  # the first thing `ddkit list` does
    assert ddkit.cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: boom" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="boom"):
        ddkit.cli.main(["--debug", "list"])


def test_a_script_ends_a_ddkit_error_in_one_line_and_exits_with_what_main_returns():
    from ddkit.errors import ConfigError, run_script

    def refused() -> None:
        raise ConfigError("IPC 0 is not allowed; give IPC >= 1")

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(SystemExit) as ended:
        run_script(refused, "tune_val")
    assert ended.value.code == "tune_val: IPC 0 is not allowed; give IPC >= 1"
    for returned in (None, 0, 3):
        with pytest.raises(SystemExit) as ended:
            run_script(lambda returned=returned: returned, "bench_decoupled")
        assert ended.value.code == returned
    with pytest.raises(RuntimeError, match="boom"):  # not a user error: its traceback stays
        run_script(broken, "tune_val")


@pytest.mark.parametrize("seed", [str(2**64), str(2**63), "-1"])
def test_a_seed_out_of_range_is_refused_in_one_line(tmp_path, capsys, seed):
    from ddkit.errors import ConfigError
    from ddkit.methods import create_method
    from ddkit.testing import tiny_digits

    out = tmp_path / "run"
    argv = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1"]
    assert main([*argv, "--seed", seed, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed must be" in err and not out.exists()
    with pytest.raises(ConfigError, match="seed must be"):
        create_method("random").fit(tiny_digits().train, 1, seed=int(seed))


@pytest.fixture(scope="module")
def random_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learners", "knn", "--groups"], "--groups is for evaluation by networks"),
        (["--learners", "knn", "--protocol", "smoke"], "--protocol is for evaluation by networks"),
        (["--learners", "knn", "--models", "mlp"], "name networks in --learners"),
        (["--learners", "logreg", "--runs", "0"], "runs must be >= 1, got 0"),
        (["--protocol", "smoke", "--runs", str(10**9)], "evaluation runs would take .* --runs"),
    ],
)
def test_evaluate_refuses_flags_it_would_ignore_and_huge_run_counts(
    random_set, capsys, flags, message
):
    """--learners ignored --groups, --protocol and --models and read --runs 0 as 5; --runs 10**9
    drew 10**9 seeds (8 GB) before training (issue 42)."""
    import re

    (random_set / "eval.json").unlink(missing_ok=True)
    code, _, err = run_cli(["evaluate", str(random_set), *flags, "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err
    assert not (random_set / "eval.json").exists()
