"""Scale-out on torch.distributed (issue 38): two gloo ranks on the CPU, joined by a file
rendezvous (no network port), give what one process gives -- the same expert files, evaluation
runs, soft labels and class-split sets (dm, idm, m3d, ncfm) bit for bit, DSA's all-reduced set
within :data:`COUPLED_ATOL`, the one-student sets (mtt, tesla, datm) within
:data:`TRAJECTORY_ATOL`, the data-parallel teacher within :data:`TEACHER_ATOL` -- a rank's
failure stops the other with one line, and ``torchrun -m ddkit`` runs a sub-command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from distributed_helpers import (
    CLASS_SPLIT,
    COUPLED_ATOL,
    DISTILL_OPTIONS,
    IMAGE_SPLIT,
    TEACHER_ATOL,
    TRAJECTORY,
    TRAJECTORY_ATOL,
    cache_options,
    distill_tensors,
    every_path,
    lonely_rank,
    one_rank_fails,
    ranks_disagree,
    refused_method,
    refused_options,
    run_evaluation,
    run_experts,
    run_folder,
    run_relabel,
    run_teacher,
    run_teacher_kd,
)

from ddkit import distributed
from ddkit.errors import ConfigError
from ddkit.eval import teacher as teachers
from ddkit.eval.teacher import TeacherRecipe, train_teacher
from ddkit.io import load_tensors

pytestmark = pytest.mark.timeout(180)


def spawn(fn, folder: Path, world: int = 2) -> Path:
    """Run ``fn(rank, world, rendezvous, folder)`` as ``world`` processes (forked where the
    system can, so that they start with this process's imports; else spawned)."""
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    args = (world, str(folder / "rendezvous"), str(folder))
    mp.start_processes(fn, args=args, nprocs=world, start_method=method)
    return folder


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """Import here what every rank imports (methods, data, torch's optimiser machinery): the
    forked ranks inherit it instead of each paying for it."""
    from ddkit.methods import load_all
    from ddkit.testing import tiny_digits

    load_all()
    tiny_digits()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    """Every path run in this process (which also warms the imports the ranks inherit)."""
    from ddkit.testing import tiny_digits

    folder = tmp_path_factory.mktemp("one-process")
    run_experts(folder / "experts")
    train_teacher(
        tiny_digits().train, TeacherRecipe("convnet2-w8", epochs=1), out_dir=folder / "teacher"
    )
    out = {"experts": folder / "experts", "eval": run_evaluation(), "teacher": folder / "teacher"}
    out["kd"] = run_teacher_kd(out["teacher"])
    out["labels"] = run_relabel(out["teacher"])
    run_teacher(folder / "dp-teacher")
    out["dp-teacher"] = folder / "dp-teacher"
    out["interrupted-teacher"] = interrupted_teacher(folder / "interrupted-teacher")
    for name in DISTILL_OPTIONS:
        out.update(distill_tensors(name))
        out[f"{name}-start"] = run_distill_start(name)
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, one_process) -> Path:
    folder = tmp_path_factory.mktemp("two-ranks")
    shutil.copytree(one_process["teacher"], folder / "teacher")
    shutil.copytree(one_process["interrupted-teacher"], folder / "resumed-teacher")
    return spawn(every_path, folder)


class _Stop(Exception):
    """The interruption of a teacher's training after its first epoch."""


def interrupted_teacher(out: Path) -> Path:
    """``out`` as one process leaves it when stopped after the teacher's first epoch: the
    checkpoint of epoch 1 and nothing else."""
    write = teachers._Checkpoint.write

    def write_then_stop(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        write(self, *args, **kwargs)
        raise _Stop

    teachers._Checkpoint.write = write_then_stop
    try:
        run_teacher(out)
    except _Stop:
        pass
    finally:
        teachers._Checkpoint.write = write
    assert sorted(p.name for p in out.iterdir()) == [teachers.CHECKPOINT_DIR]
    return out


def run_distill_start(name: str) -> torch.Tensor:
    from ddkit.methods import create_method
    from ddkit.testing import tiny_digits

    m = create_method(name, **DISTILL_OPTIONS[name], **cache_options(name))
    return m.initial_set(tiny_digits().train, 2, seed=7, iterations=3).images


def snapshots(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.relative_to(root)): load_tensors(p) for p in sorted(root.rglob("*.safetensors"))}


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_expert_trajectories_are_those_of_one_process(two_ranks, one_process):
    mine, reference = snapshots(two_ranks / "experts"), snapshots(one_process["experts"])
    assert len(reference) == 3 * 3  # 3 experts (rank 0 trains two), epochs 0..2
    assert mine.keys() == reference.keys()
    assert all(same_tensors(mine[k], reference[k]) for k in reference)
    meta = json.loads((two_ranks / "experts" / "experts.json").read_text())
    assert meta == json.loads((one_process["experts"] / "experts.json").read_text())


def test_evaluation_runs_are_those_of_one_process(two_ranks, one_process):
    reference = one_process["eval"]
    for rank in (0, 1):  # every rank gets the whole merged report
        got = json.loads((two_ranks / f"eval-{rank}.json").read_text())
        for key in ("accuracies", "seeds", "train_accuracies", "mean", "std"):
            assert got[key] == reference[key], key
        assert len(got["accuracies"]) == 3  # 3 runs over 2 ranks


def test_teacher_kd_evaluation_runs_are_those_of_one_process(two_ranks, one_process):
    for rank in (0, 1):
        got = json.loads((two_ranks / f"kd-{rank}.json").read_text())
        assert got["accuracies"] == one_process["kd"]["accuracies"]
        assert got["seeds"] == one_process["kd"]["seeds"]


def test_relabeling_gives_the_soft_labels_of_one_process(two_ranks, one_process):
    reference = one_process["labels"]
    assert reference["image"].shape == (20, 10) and reference["view"].shape == (20, 3, 10)
    for rank in (0, 1):  # each rank asked the teacher about half the images; all have all
        got = load_tensors(two_ranks / f"labels-{rank}.safetensors")
        assert same_tensors(got, reference)


def teacher_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_tensors(folder / teachers.WEIGHTS_FILE)


def test_data_parallel_teacher_is_that_of_one_process_within_tolerance(two_ranks, one_process):
    """Each rank trained on its rows of every batch (23 / 22 of 45; 8 / 7 of the last 15),
    gradients summed, BatchNorm over the whole batch: the one-process teacher within
    :data:`TEACHER_ATOL`; rank 0 alone wrote the folder (the checkpoint gone with it)."""
    reference = teacher_tensors(one_process["dp-teacher"])
    got = teacher_tensors(two_ranks / "dp-teacher")
    assert got.keys() == reference.keys()
    assert any("running_var" in k for k in got)  # the BatchNorm statistics are compared too
    for key in reference:
        torch.testing.assert_close(got[key], reference[key], atol=TEACHER_ATOL, rtol=0)
    assert sorted(p.name for p in (two_ranks / "dp-teacher").iterdir()) == sorted(
        p.name for p in one_process["dp-teacher"].iterdir()
    )  # teacher.json and the weights, no checkpoint, nothing per rank
    meta = json.loads((two_ranks / "dp-teacher" / teachers.META_FILE).read_text())
    assert meta["train_accuracy"] > 0.2


def test_two_ranks_resume_the_teacher_one_process_left(two_ranks, one_process):
    reference = teacher_tensors(one_process["dp-teacher"])
    epoch_1 = load_tensors(
        one_process["interrupted-teacher"] / teachers.CHECKPOINT_DIR / teachers.CHECKPOINT_STATE
    )
    got = teacher_tensors(two_ranks / "resumed-teacher")
    for key in reference:
        torch.testing.assert_close(got[key], reference[key], atol=TEACHER_ATOL, rtol=0)
    moved = max((reference[k] - epoch_1[f"net.{k}"]).abs().max() for k in reference)
    assert moved > 100 * TEACHER_ATOL  # the second epoch was trained, not skipped
    meta = json.loads((two_ranks / "resumed-teacher" / teachers.META_FILE).read_text())
    assert meta["resumed_after_epoch"] == 1


@pytest.mark.parametrize("name", CLASS_SPLIT)
def test_class_split_set_is_bit_identical_to_one_process(two_ranks, one_process, name):
    """dm, idm (its queue replayed on every rank), m3d, ncfm: each rank matched 5 classes."""
    for rank in (0, 1):
        got = load_tensors(two_ranks / f"images-{rank}.safetensors")[name]
        assert torch.equal(got, one_process[name])
    assert not torch.equal(one_process[name], one_process[f"{name}-start"])  # the steps moved them


@pytest.mark.parametrize("name", IMAGE_SPLIT)
def test_image_split_set_is_bit_identical_to_one_process(two_ranks, one_process, name):
    """sre2l, cda (its crops drawn for every image), edc without class statistics: each rank
    recovered one image index of every class."""
    for rank in (0, 1):
        got = load_tensors(two_ranks / f"images-{rank}.safetensors")[name]
        assert torch.equal(got, one_process[name])
    assert not torch.equal(one_process[name], one_process[f"{name}-start"])


def test_rded_selection_is_bit_identical_to_one_process(two_ranks, one_process):
    """Each rank scored the crops of every other candidate image; both got every score and
    selected, stitched and soft-labelled the one-process set."""
    for rank in (0, 1):
        got = load_tensors(two_ranks / f"images-{rank}.safetensors")
        assert torch.equal(got["rded"], one_process["rded"])
        assert torch.equal(got["rded.labels"], one_process["rded.labels"])


def test_dsa_set_is_that_of_one_process_within_tolerance(two_ranks, one_process):
    reference = one_process["dsa"]
    for rank in (0, 1):
        got = load_tensors(two_ranks / f"images-{rank}.safetensors")["dsa"]
        torch.testing.assert_close(got, reference, atol=COUPLED_ATOL, rtol=0)
    assert (reference - one_process["dsa-start"]).abs().max() > 100 * COUPLED_ATOL


@pytest.mark.parametrize("name", TRAJECTORY)
def test_one_student_set_is_that_of_one_process_within_tolerance(two_ranks, one_process, name):
    """mtt (autograd through the unrolled steps, each step's gradient summed differentiably),
    tesla (the constant-memory walk, Hessian-vector products summed) and datm (its label
    logits' gradient summed too): each rank computed its rows of every student mini-batch."""
    for rank in (0, 1):
        got = load_tensors(two_ranks / f"images-{rank}.safetensors")
        for key in (name, f"{name}.labels", f"{name}.lr"):
            torch.testing.assert_close(got[key], one_process[key], atol=TRAJECTORY_ATOL, rtol=0)
    assert (one_process[name] - one_process[f"{name}-start"]).abs().max() > 100 * TRAJECTORY_ATOL


def test_a_student_share_holds_rows_and_a_too_small_batch_is_refused():
    from ddkit.augment import DSA
    from ddkit.methods.trajectory.student import make_plan

    g = torch.Generator().manual_seed(0)
    plan = make_plan(20, 3, 7, g, DSA("color_crop_cutout_flip_scale_rotate"), (8, 8))
    shares = [plan.share(r, 2) for r in (0, 1)]
    for i, batch in enumerate(plan.batches):  # rows and their DSA draws interleave back
        assert distributed.merge_shards([s.batches[i].tolist() for s in shares]) == batch.tolist()
        assert shares[1].total(i) == len(batch) and plan.total(i) is None
        for key, v in plan.augs[i].values.items():
            merged = distributed.merge_shards([s.augs[i].values[key].tolist() for s in shares])
            assert merged == v.tolist()
    with pytest.raises(ConfigError, match="leaves a process without a row"):
        make_plan(21, 3, 10, g, None, (8, 8)).share(0, 2)  # the third batch holds 1 image


def test_rank_0_writes_the_run_folder_and_one_process_resumes_it(two_ranks, one_process):
    run = two_ranks / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint", "config.json", "grid.png", "log.jsonl", "synthetic"
    ]  # fmt: skip
    assert len((run / "log.jsonl").read_text().splitlines()) == 2  # written once, not per rank
    assert torch.equal(run_folder(run, iterations=3, resume=True), one_process["dm"])


def test_a_failing_rank_stops_the_other_with_one_line(tmp_path):
    spawn(one_rank_fails, tmp_path)
    failed = (tmp_path / "line-1.txt").read_text()
    stopped = (tmp_path / "line-0.txt").read_text()
    assert failed == "ConfigError: IPC 99 is larger than class '3'"
    assert stopped == "RankFailed: stopped because rank 1 failed: IPC 99 is larger than class '3'"
    assert "\n" not in stopped


def test_a_rank_that_never_starts_fails_the_others_within_seconds(tmp_path):
    """Issue 75: a missing rank left the others waiting for the group timeout (30 minutes);
    they now fail after the join time (3 s here) with one line."""
    spawn(lonely_rank, tmp_path, world=1)
    seconds, line = (tmp_path / "lonely.txt").read_text().split("\n", 1)
    assert float(seconds) < 30
    assert line.startswith("ConfigError: rank 0: not all 2 ranks joined within 3 s"), line
    assert "\n" not in line


def test_ranks_with_other_seeds_or_data_refuse_in_one_line(tmp_path):
    spawn(ranks_disagree, tmp_path)
    for case, what in (("seed", "the run"), ("data", "the training data")):
        for rank in (0, 1):
            line = (tmp_path / f"{case}-{rank}.txt").read_text()
            assert line.startswith(f"ConfigError: ranks disagree on {what}: rank 1 has "), line
            assert "\n" not in line
    assert '"seed": 1' in (tmp_path / "seed-0.txt").read_text()


def test_a_method_that_does_not_split_is_refused_before_any_write(tmp_path):
    spawn(refused_method, tmp_path)
    for rank in (0, 1):
        line = (tmp_path / f"line-{rank}.txt").read_text()
        assert line.startswith("ConfigError: method 'pad' does not run on several processes")
        assert "dm" in line.split("yet")[1] and "dsa" in line.split("yet")[1]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "why"),
    [("dm", "its BatchNorm normalises"), ("ncfm", "adversarial sampler"), ("edc", "class_stats")],
)
def test_options_that_couple_the_classes_are_refused_on_every_rank(tmp_path, name, why):
    folder = tmp_path / f"{name}-refused"
    folder.mkdir()
    spawn(refused_options, folder)
    for rank in (0, 1):
        line = (folder / f"line-{rank}.txt").read_text()
        assert line.startswith("ConfigError: ") and why in line and "\n" not in line


def test_the_command_line_refuses_a_command_that_does_not_split(capsys):
    from ddkit.cli import _run_as_rank, build_parser

    args = build_parser().parse_args(["list"])
    with pytest.raises(ConfigError, match="ddkit list does not run on several processes"):
        _run_as_rank(args, distributed.Launch(1, 2, 1))
    args = build_parser().parse_args(["list"])
    args.command = "evaluate"  # a command that splits: rank 1 runs it and prints nothing
    assert _run_as_rank(args, distributed.Launch(1, 2, 1)) == 0
    assert capsys.readouterr().out == ""


def test_one_process_is_untouched_and_shards_merge_back():
    assert distributed.from_env({}) is None and distributed.from_env({"WORLD_SIZE": "1"}) is None
    assert distributed.active() is None and distributed.is_main()
    assert distributed.local_indices(10) is None and distributed.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.all_gather_json({"a": 1}) == [{"a": 1}]
    t = torch.ones(3)
    distributed.sum_across_ranks([t])
    assert torch.equal(t, torch.ones(3))
    shares = [list(range(10))[r::3] for r in range(3)]
    assert distributed.merge_shards(shares) == list(range(10))
    launch = distributed.from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert launch == distributed.Launch(1, 4, 1) and not launch.main


@pytest.mark.parametrize(
    "env",
    [{"WORLD_SIZE": "two", "RANK": "0"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "2"}],
)
def test_a_bad_launch_environment_is_one_line(env):
    with pytest.raises(ConfigError, match="RANK") as err:
        distributed.from_env(env)
    assert "\n" not in str(err.value)


def test_torchrun_trains_experts_on_two_processes(tmp_path):
    """``torchrun --standalone --nproc-per-node 2 -m ddkit experts``: the folder one process
    writes, and one summary printed (rank 1 prints nothing)."""
    from ddkit.data import load_dataset
    from ddkit.methods.trajectory.experts import ExpertSettings, train_experts

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    out = tmp_path / "experts"
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "ddkit", "experts",
           "--dataset", "digits", "--model", "convnet2-w8", "--num-experts", "2", "--epochs",
           "1", "--no-augment", "--quiet", "--out", str(out)]  # fmt: skip
    env = {"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("2 complete expert(s) of 1 epochs") == 1
    reference = tmp_path / "one"
    train_experts(
        load_dataset("digits"), "convnet2-w8", 2, 1, reference, ExpertSettings(augment=None)
    )
    mine, theirs = snapshots(out), snapshots(reference)
    assert len(mine) == 4 and mine.keys() == theirs.keys()
    assert all(same_tensors(mine[k], theirs[k]) for k in theirs)
