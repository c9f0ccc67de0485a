"""What the ranks of tests/test_distributed.py run: each function is one rank of a gloo group on
the CPU, started by ``torch.multiprocessing.spawn`` with a file rendezvous (no network port).
Every path is tiny (``ddkit.testing.tiny_digits``); the parent test runs the same calls in one
process and compares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: the settings of every path, shared by the ranks and the one-process reference
EXPERTS = {"model": "convnet2-w8", "num_experts": 3, "epochs": 2, "batch_size": 64, "seed": 3}
EVAL = {"protocol": "fast", "models": ["convnet2-w8"], "runs": 3, "epochs": 2, "seed": 5}
DISTILL = {"ipc": 2, "iterations": 3, "seed": 7}
TRAJECTORY_BASE = {
    "model": "convnet2-w8", "num_experts": 2, "expert_train_epochs": 3, "expert_batch": 32,
    "syn_steps": 4, "expert_epochs": 1, "max_start_epoch": 2, "lr_img": 10.0, "batch_syn": 7,
}  # fmt: skip
DISTILL_OPTIONS = {
    "dm": {"batch_real": 8, "model": "convnet2-w8"},
    "dsa": {"batch_real": 8, "model": "convnet2-w8", "outer_loop": 2, "inner_loop": 1,
            "batch_net": 64},
    # a queue of 2 networks trained every step, the class-aware term weighted from the 3rd step,
    # each stored image decoded into 2 x 2 images
    "idm": {"batch_real": 8, "model": "convnet2-w8", "net_num": 2, "net_init_num": 1,
            "net_generate_interval": 1, "model_train_steps": 1, "batch_net": 16,
            "ce_weight": 0.5, "factor": 2},
    "m3d": {"batch_real": 8, "model": "convnet2-w8"},
    # the conformance suite's cached experts (trained once by the one-process run)
    "ncfm": {"batch_real": 8, "model": "convnet2-w8", "num_freqs": 16, "num_experts": 2,
             "expert_train_epochs": 3, "expert_batch": 32},
    # the conformance suite's cached BatchNorm teachers; soft labels split by image too
    "sre2l": {"teacher_model": "convnet3-bn-w16", "teacher_epochs": 3, "labels": "soft"},
    "cda": {"teacher_model": "convnet3-bn-w16", "teacher_epochs": 3, "labels": "hard"},
    "edc": {"teacher_model": "convnet3-bn-w16", "teacher_epochs": 3, "labels": "hard",
            "extra_teachers": ("convnet2-bn-w8",), "class_stats": False},
    # one student on the conformance suite's cached experts; mini-batches of 7 of the 20 images
    # (shares of 4 and 3; the third of each permutation has 6), DSA drawn per image
    # the candidates' crops scored by image index (24 per class, 2 crops each); 2 x 2 patches
    "rded": {"teacher_model": "convnet3-bn-w16", "teacher_epochs": 3, "labels": "soft",
             "num_crops": 2, "candidates": 0, "factor": 2},
    "mtt": {**TRAJECTORY_BASE, "backward": "unroll"},
    "tesla": {**TRAJECTORY_BASE, "label_confidence": 0.9},  # soft labels, constant memory
    "datm": {**TRAJECTORY_BASE, "loss_threshold": 0.0},  # learned label logits, summed too
}  # fmt: skip
#: the methods split by class: bit-identical to one process
CLASS_SPLIT = ("dm", "idm", "m3d", "ncfm")
#: the methods split by image index: bit-identical to one process
IMAGE_SPLIT = ("sre2l", "cda", "edc")
#: the one-student methods, each rank its rows of every mini-batch: within :data:`COUPLED_ATOL`
TRAJECTORY = ("mtt", "tesla", "datm")
#: the data-parallel teacher: a BatchNorm network, crop augmentation, batches of 45 (odd: the
#: ranks' shares differ by a row) over the 240 images (the last batch has 15)
TEACHER = {"model": "convnet2-w8-bn", "epochs": 2, "batch_size": 45, "lr": 0.05, "seed": 4}
#: the data-parallel teacher's tolerance against one process (absolute, on every weight and
#: BatchNorm statistic after 2 epochs; measured 8e-8): the ranks' partial sums round differently
TEACHER_ATOL = 1e-6
#: the all-reduced method's tolerance against one process (absolute, on normalised pixels):
#: the ranks' gradient shares are disjoint, so the sum is exact; kept for other backends
COUPLED_ATOL = 1e-6
#: the one-student methods' tolerance against one process (absolute, on the images, labels and
#: learned step size after 3 iterations; measured 3.6e-7 for mtt and tesla, 1.2e-7 for datm):
#: every student step sums the ranks' gradient shares, which rounds differently from one sum
TRAJECTORY_ATOL = 1e-5


def evaluation_set() -> Any:
    """The set both evaluations train on: 2 random real images per class."""
    from ddkit.methods import create_method
    from ddkit.testing import tiny_digits

    return create_method("random").fit(tiny_digits().train, 2, seed=1)


def run_experts(out: Path) -> None:
    from ddkit.methods.trajectory.experts import ExpertSettings, train_experts
    from ddkit.testing import tiny_digits

    cfg = dict(EXPERTS)
    train_experts(
        tiny_digits().train, cfg.pop("model"), cfg.pop("num_experts"), cfg.pop("epochs"), out,
        ExpertSettings(**cfg),
    )  # fmt: skip


def run_evaluation() -> dict[str, Any]:
    from ddkit.eval import evaluate
    from ddkit.testing import tiny_digits

    cfg = dict(EVAL)
    report = evaluate(evaluation_set(), tiny_digits().test, cfg.pop("protocol"), **cfg)
    return report.to_dict()["results"][0]


def run_teacher_kd(teacher: Path) -> dict[str, Any]:
    """Evaluation under protocol teacher-kd: every augmented batch labelled by ``teacher``."""
    from ddkit.eval import evaluate
    from ddkit.testing import tiny_digits

    cfg = dict(EVAL, epochs=1)
    cfg.pop("protocol")
    report = evaluate(evaluation_set(), tiny_digits().test, "teacher-kd", teacher=teacher, **cfg)
    return report.to_dict()["results"][0]


def run_relabel(teacher: Path) -> dict[str, torch.Tensor]:
    """Soft labels of the evaluation set from ``teacher``: per image, and per FKD view (3)."""
    from ddkit.eval.relabel import relabel
    from ddkit.eval.teacher import load_teacher

    net, syn = load_teacher(teacher)[0], evaluation_set()
    per_view = relabel(syn, net, 4.0, views=3, generator=torch.Generator().manual_seed(2))
    return {"image": relabel(syn, net, 4.0).labels, "view": per_view.extras["view_values"]}


def run_teacher(out: Path) -> None:
    """Train the :data:`TEACHER` into ``out`` (resuming a checkpoint there, if any)."""
    from ddkit.eval.teacher import TeacherRecipe, train_teacher
    from ddkit.testing import tiny_digits

    train_teacher(tiny_digits().train, TeacherRecipe(**TEACHER), out_dir=out)


def cache_options(name: str) -> dict[str, str]:
    """Where method ``name`` finds the test suite's cached experts or teachers."""
    from ddkit.methods.decoupled.methods import _TEST_CACHE
    from ddkit.methods.trajectory.methods import TEST_EXPERTS_CACHE

    if name == "ncfm" or name in TRAJECTORY:
        return {"experts_cache": TEST_EXPERTS_CACHE}
    return {"teacher_cache": _TEST_CACHE} if name in (*IMAGE_SPLIT, "rded") else {}


def run_distill(name: str) -> torch.Tensor:
    return distill_tensors(name)[name]


def distill_tensors(name: str) -> dict[str, torch.Tensor]:
    """Method ``name``'s set: its images under ``name``; for a trajectory method also its
    labels (``name.labels``) and learned step size (``name.lr``)."""
    from ddkit.methods import create_method
    from ddkit.testing import tiny_digits

    m = create_method(name, **DISTILL_OPTIONS[name], **cache_options(name))
    cfg = dict(DISTILL)
    syn = m.fit(tiny_digits().train, cfg.pop("ipc"), **cfg)
    out = {name: syn.images.contiguous()}
    if name in (*TRAJECTORY, "rded"):
        out[f"{name}.labels"] = syn.labels.contiguous()
    if name in TRAJECTORY:
        out[f"{name}.lr"] = torch.tensor([float(syn.lr)])
    return out


def run_folder(out: Path, iterations: int, resume: bool = False) -> torch.Tensor:
    """``ddkit distill``'s API: dm into run folder ``out``, a checkpoint every iteration."""
    from ddkit.runs import DistillRequest, distill_run
    from ddkit.testing import tiny_digits

    cfg = dict(DISTILL, iterations=iterations)
    request = DistillRequest("tiny-digits", "dm", options=DISTILL_OPTIONS["dm"], **cfg)
    syn = distill_run(request, out, splits=tiny_digits(), checkpoint_every=1, resume=resume)
    return syn.images


def _session(rank: int, world: int, rendezvous: str):  # noqa: ANN202 - a context manager
    from ddkit import distributed

    torch.set_num_threads(1)
    launch = distributed.Launch(rank, world, rank)
    # a short timeout: a collective that one rank never reaches fails the test, not hangs it
    return distributed.session(
        launch, init_method=f"file://{rendezvous}", backend="gloo", timeout_s=60
    )


def every_path(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Rank ``rank``: experts, evaluation, teacher-KD evaluation, relabeling, data-parallel
    teacher training (fresh and resumed), dm and dsa; each rank writes what it got."""
    from safetensors.torch import save_file

    folder = Path(out)
    with _session(rank, world, rendezvous):
        run_experts(folder / "experts")
        result = run_evaluation()
        kd = run_teacher_kd(folder / "teacher")
        labels = run_relabel(folder / "teacher")
        run_teacher(folder / "dp-teacher")
        run_teacher(folder / "resumed-teacher")  # one process's checkpoint after epoch 1
        images = {k: v for name in DISTILL_OPTIONS for k, v in distill_tensors(name).items()}
        run_folder(folder / "run", iterations=2)  # one step short: resumed by the test
    (folder / f"eval-{rank}.json").write_text(json.dumps(result))
    (folder / f"kd-{rank}.json").write_text(json.dumps(kd))
    save_file(images, str(folder / f"images-{rank}.safetensors"))
    save_file(labels, str(folder / f"labels-{rank}.safetensors"))


def one_rank_fails(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Rank 1 fails before its first collective while rank 0 waits in one; each rank writes
    the one line it would print."""
    from ddkit.errors import ConfigError

    line = "finished"
    try:
        with _session(rank, world, rendezvous):
            if rank == 1:
                raise ConfigError("IPC 99 is larger than class '3'")
            run_distill("dm")
    except Exception as e:  # the line the CLI prints
        line = f"{type(e).__name__}: {e}"
    Path(out, f"line-{rank}.txt").write_text(line)


#: options that do not split by class, each refused in one line on every rank
UNSPLITTABLE = {
    "dm": {"model": "convnet2-w8-bn"},  # BatchNorm in training mode mixes the classes
    "ncfm": {**DISTILL_OPTIONS["ncfm"], "sampler": True},  # one sampler for every class
    "edc": {**DISTILL_OPTIONS["edc"], "class_stats": True},  # a class's images pooled
}


def refused_options(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Both ranks distil with the options of ``UNSPLITTABLE[<name of out's folder>]``."""
    name = Path(out).name.split("-")[0]
    try:
        with _session(rank, world, rendezvous):
            from ddkit.methods import create_method
            from ddkit.testing import tiny_digits

            m = create_method(name, **UNSPLITTABLE[name], **cache_options(name))
            m.fit(tiny_digits().train, 1, iterations=1)
        line = "finished"
    except Exception as e:
        line = f"{type(e).__name__}: {e}"
    Path(out, f"line-{rank}.txt").write_text(line)


def refused_method(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Both ranks ask for a method that does not split its run (pad)."""
    from ddkit.runs import DistillRequest, distill_run
    from ddkit.testing import tiny_digits

    try:
        with _session(rank, world, rendezvous):
            request = DistillRequest("tiny-digits", "pad", 1, iterations=1)
            distill_run(request, Path(out, "run"), splits=tiny_digits())
        line = "finished"
    except Exception as e:
        line = f"{type(e).__name__}: {e}"
    Path(out, f"line-{rank}.txt").write_text(line)


def ranks_disagree(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Rank 1 distils with another seed, then from other data: each time every rank refuses
    in one line before any step (issue 75: a set blended from two seeds was recorded as one)."""
    from ddkit.data.dataset import ImageDataset
    from ddkit.methods import create_method
    from ddkit.testing import tiny_digits

    for case in ("seed", "data"):
        train, seed = tiny_digits().train, 0
        if rank == 1 and case == "seed":
            seed = 1
        if rank == 1 and case == "data":
            train = ImageDataset(train.images + 1, train.labels, train.spec)
        try:
            with _session(rank, world, f"{rendezvous}-{case}"):
                create_method("dm", **DISTILL_OPTIONS["dm"]).fit(train, 1, seed=seed)
            line = "finished"
        except Exception as e:
            line = f"{type(e).__name__}: {e}"
        Path(out, f"{case}-{rank}.txt").write_text(line)


def lonely_rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Rank 0 of a group of two whose rank 1 never starts: it fails within the join time."""
    import time

    from ddkit import distributed

    distributed.JOIN_SECONDS = 3.0
    start = time.monotonic()
    try:
        with _session(0, 2, rendezvous):
            pass
        line = "finished"
    except Exception as e:
        line = f"{type(e).__name__}: {e}"
    Path(out, "lonely.txt").write_text(f"{time.monotonic() - start:.1f}\n{line}")
