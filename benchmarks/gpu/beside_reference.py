"""ddkit beside the reference implementations on one GPU, at identical settings (issue 74).

Every row runs twice, each side in its own process, one after the other on the same device:

* ``peer``: the authors' script, unmodified, run as ``__main__`` from the reference tree
  (``benchmarks/gpu/reference/``, fetched beforehand by ``prepare.sh``; never committed), with
  :mod:`shims` standing in for torchvision / kornia / wandb (no internet on the GPU machine) and
  the script's own helpers wrapped (not changed) to clock its iterations and to skip its
  evaluations and image saving: DC and DSA (VICO-UoE/DatasetCondensation ``main.py``), DM
  (``main_DM.py``), MTT's experts and distillation (GeorgeCazenavette/mtt-distillation
  ``buffer.py``, ``distill.py``) and SRe2L's recovery (VILA-Lab/SRe2L ``recover/data_synthesis.py``).
* ``ddkit``: ``create_method(...).start(...)`` then ``step(i)`` with the same settings, as a user
  gets them otherwise (ddkit's defaults for everything the reference has no counterpart for).

An iteration is clocked between two ``torch.cuda.synchronize()``; the first ``--warmup`` are
dropped (compilation, cuDNN autotuning), the median of the next ``--timed`` is the row's
seconds per iteration. Peak memory is ``torch.cuda.max_memory_allocated()`` over the whole
process (data, network and iterations). Every setting that differs between the sides, or from
the reference's own command, is listed in the row's ``differences``.

``--smoke``: every row's code path on the CPU in seconds (tiny generated MNIST, 1 timed
iteration, small sizes); rows whose reference code is absent are skipped with the reason.
``--rows`` picks rows; ``--out`` names the JSON (default ``benchmarks/results/gpu/beside_reference.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REFERENCE = HERE / "reference"
DATA = REFERENCE / "data"  # mnist/*.gz, carried with the reference code
STRATEGY = "color_crop_cutout_scale_rotate"  # DSA's MNIST strategy (no flip), both sides
REPOS = {
    "dc": "DatasetCondensation",
    "mtt": "mtt-distillation",
    "sre2l": "SRe2L",
}
NATURAL = "color_crop_cutout_flip_scale_rotate"  # the MTT scripts' default strategy
CIFAR_NOTE = (
    "data: CIFAR-10-shaped generated images (shims.generated_cifar10: 50,000 train / "
    "10,000 test, 32x32x3 uint8, seed 0, normalised with CIFAR-10's statistics), the "
    "same on both sides; mtt-distillation has no MNIST loader; no ZCA on either side"
)
SMOKE = {"warmup": 1, "timed": 1}
SMOKE_NET = ("--model", "ConvNetW32")  # --smoke: ConvNet-3 width 32 (ddkit: convnet-w32)
SMOKE_TEACHER = "resnet18-w8"  # --smoke: SRe2L's teacher, ResNet-18 at width 8


class Enough(Exception):
    """Raised by the clock once the row has its iterations: ends the reference's loop."""


@dataclass
class Clock:
    """Seconds per iteration: ``tick()`` at the start of each iteration, or ``add(seconds)``."""

    cuda: bool
    warmup: int
    timed: int
    seconds: list[float] = field(default_factory=list)
    last: float | None = None

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if len(self.seconds) >= self.warmup + self.timed:
            raise Enough

    def tick(self) -> None:
        t, last = self.now(), self.last
        self.last = t
        if last is not None:
            self.add(t - last)

    def result(self) -> dict[str, Any]:
        timed = self.seconds[self.warmup :]
        return {"s_per_iteration": statistics.median(timed) if timed else None,
                "timed_seconds": timed, "warmup_seconds": self.seconds[: self.warmup]}  # fmt: skip


# ============================================================================ rows
@dataclass(frozen=True)
class Row:
    name: str
    repo: str  # key of REPOS
    script: str  # path inside the reference tree
    argv: tuple[str, ...]  # the reference's command line (data and output paths added)
    ddkit: dict[str, Any]  # what the ddkit side runs (see _ddkit_side)
    differences: tuple[str, ...] = ()
    iterations: tuple[int, int] | None = None  # (warm-up, timed) instead of the defaults
    smoke_argv: tuple[str, ...] = ()  # replaces matching flags in --smoke
    smoke_ddkit: dict[str, Any] = field(default_factory=dict)


def _dc_row(method: str, ipc: int) -> Row:
    dsa = method == "DSA"
    argv = ("--dataset", "MNIST", "--model", "ConvNet", "--ipc", str(ipc), "--method", method,
            "--Iteration", "1000", "--num_exp", "1", "--num_eval", "1")  # fmt: skip
    argv += ("--init", "real", "--dsa_strategy", STRATEGY) if dsa else ()
    config = dict(model="convnet", iterations=1000, lr_img=0.1, lr_net=0.01, batch_real=256,
                  batch_net=256, init="real" if dsa else "noise",
                  augment=STRATEGY if dsa else "none")  # fmt: skip
    return Row(
        f"{method.lower()}-mnist-ipc{ipc}",
        "dc",
        "main.py",
        argv,
        {"kind": "method", "method": method.lower(), "ipc": ipc, "config": config},
        differences=(
            "an iteration: one outer iteration of main.py (network drawn, outer_loop x "
            "(matching step + inner_loop network epochs))",
            "reference: its DiffAugment seeds from the clock (int(time.time()*1000)); ddkit: "
            "torch.Generator draws",
        ),
        # IPC 10: 10 x (matching + 50 network epochs) per iteration, seconds on a GPU
        iterations=(2, 3) if ipc >= 10 else None,
        smoke_argv=("--batch_real", "4", "--batch_train", "4", *SMOKE_NET),
        smoke_ddkit={
            "batch_real": 4,
            "batch_net": 4,
            "outer_loop": 2,
            "inner_loop": 1,
            "model": "convnet-w32",
        },
    )


def _dm_row(ipc: int) -> Row:
    argv = ("--dataset", "MNIST", "--model", "ConvNet", "--ipc", str(ipc), "--dsa_strategy",
            STRATEGY, "--init", "real", "--lr_img", "1", "--num_exp", "1", "--num_eval", "1",
            "--Iteration", "20000")  # fmt: skip
    config = dict(model="convnet", iterations=20000, lr_img=1.0, batch_real=256, init="real",
                  augment=STRATEGY)  # fmt: skip
    return Row(
        f"dm-mnist-ipc{ipc}",
        "dc",
        "main_DM.py",
        argv,
        {"kind": "method", "method": "dm", "ipc": ipc, "config": config},
        differences=(
            "an iteration: one iteration of main_DM.py (network drawn, every class's "
            "real and synthetic embeddings, one image step)",
        ),  # fmt: skip
        smoke_argv=("--batch_real", "4", *SMOKE_NET),
        smoke_ddkit={"batch_real": 4, "model": "convnet-w32"},
    )


def _mtt_rows() -> list[Row]:
    experts = Row(
        "mtt-experts-cifar10shape", "mtt", "buffer.py",
        ("--dataset", "CIFAR10", "--model", "ConvNet", "--train_epochs", "50", "--num_experts",
         "100", "--dsa", "True", "--dsa_strategy", NATURAL, "--lr_teacher", "0.01",
         "--batch_train", "256"),
        {"kind": "experts", "model": "convnet", "lr": 0.01, "batch_size": 256,
         "augment": NATURAL},
        differences=(
            CIFAR_NOTE,
            "an iteration: one expert's training epoch over the 50,000 images (batch 256, "
            "DSA); the reference's test epoch after it is not clocked",
            "ddkit trains its default number of experts together on a GPU (vmap); its epoch "
            "time is divided by that number; each epoch writes its snapshot files, the "
            "reference keeps them in a list",
            "reference: the training images stay on the CPU (its DataLoader moves each batch); "
            "ddkit: on the device",
        ),
        iterations=(1, 2),  # ddkit's epoch trains 8 experts at once
        smoke_argv=("--batch_train", "32", *SMOKE_NET),
        smoke_ddkit={"batch_size": 32, "model": "convnet-w32"},
    )  # fmt: skip
    distill = Row(
        "mtt-distill-cifar10shape-ipc10", "mtt", "distill.py",
        ("--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", "10", "--syn_steps", "50",
         "--expert_epochs", "2", "--max_start_epoch", "20", "--lr_img", "100", "--lr_lr",
         "1e-05", "--lr_teacher", "0.01", "--pix_init", "real", "--dsa", "True",
         "--dsa_strategy", NATURAL, "--Iteration", "5000", "--eval_it", "100000"),
        {"kind": "method", "method": "mtt", "ipc": 10,
         "config": dict(model="convnet", iterations=5000, syn_steps=50, expert_epochs=2,
                        max_start_epoch=20, lr_img=100.0, lr_lr=1e-5, syn_lr=0.01,
                        batch_syn=0, init="real", augment=NATURAL, zca=False)},
        differences=(
            CIFAR_NOTE,
            "experts: reference -- a buffer of 2 random-walk trajectories from its own "
            "ConvNet's initialisation (22 snapshots; a step costs the same whatever the "
            "values); ddkit -- 1 expert trained 22 epochs on 256 of the images",
            "an iteration: one distillation step (50 student steps unrolled, one image and "
            "learning-rate step)",
        ),
        smoke_argv=("--syn_steps", "2", "--max_start_epoch", "1", "--expert_epochs", "1",
                    *SMOKE_NET),
        smoke_ddkit={"syn_steps": 2, "max_start_epoch": 1, "expert_epochs": 1,
                     "model": "convnet-w32"},
    )  # fmt: skip
    return [experts, distill]


def _sre2l_row() -> Row:
    return Row(
        "sre2l-recover-224", "sre2l", "SRe2L/recover/data_synthesis.py",
        ("--arch-name", "resnet18", "--batch-size", "100", "--lr", "0.25", "--iteration",
         "4000", "--l2-scale", "0", "--tv-l2", "0", "--r-bn", "0.01", "--jitter", "32",
         "--ipc-start", "0", "--ipc-end", "1"),
        {"kind": "sre2l", "classes": 100,
         "config": dict(iterations=4000, lr_img=0.25, r_bn=0.01, first_bn_multiplier=10.0,
                        jitter=32, flip=True, crop="fixed", crop_min=0.08, init="noise",
                        bn_groups="ipc")},
        differences=(
            "teacher on both sides: ddkit's ImageNet-stem ResNet-18 with 1,000 outputs, "
            "randomly initialised (the reference loads torchvision's pretrained weights: no "
            "download on the GPU machine; same network shape, same cost)",
            "generated data: the reference recovers from noise anyway; ddkit's run gets one "
            "generated 224x224 image per class for its data spec (100 classes = the "
            "reference's batch of 100 images, one per class)",
            "reference: torchvision's RandomResizedCrop draws one box per batch (shim, same "
            "draw); ddkit: crop='fixed' draws a box per image (CDA-style), scale (0.08, 1)",
            "reference: its verifier (mobilenet_v2, every 100 iterations, outside the timed "
            "ones) is a tiny stand-in",
        ),
        smoke_argv=("--batch-size", "2"),
        smoke_ddkit={"classes": 2},
    )  # fmt: skip


ROWS = {r.name: r for r in [_dc_row("DC", 1), _dc_row("DC", 10), _dc_row("DSA", 1),
                            _dc_row("DSA", 10), _dm_row(10), _dm_row(50), *_mtt_rows(),
                            _sre2l_row()]}  # fmt: skip


def _with_smoke(argv: tuple[str, ...], smoke: tuple[str, ...]) -> list[str]:
    out = list(argv)
    for flag, value in zip(smoke[::2], smoke[1::2]):
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


# ============================================================================ data
def write_smoke_mnist(root: Path, per_class: int = 60, seed: int = 0) -> None:
    """A tiny MNIST-shaped IDX set (``per_class`` images of each digit, train and test) under
    ``root/mnist``: random strokes, enough for every row's code path."""
    from ddkit.data.readers import idx_bytes

    g = np.random.default_rng(seed)
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    for images, labels in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        y = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        x = (g.random((len(y), 28, 28)) < 0.2).astype(np.uint8) * 255
        for name, arr in ((images, x), (labels, y)):
            with gzip.open(root / "mnist" / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(arr))


# ============================================================================ child: common
def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _teacher_factory(smoke: bool, classes: int = 1000) -> Callable[[], Any]:
    """SRe2L's teacher on both sides: ddkit's ImageNet-stem ResNet-18, seed 0, eval mode,
    frozen."""

    def make() -> Any:
        import torch

        from ddkit.models import create_model

        torch.manual_seed(0)
        name = SMOKE_TEACHER if smoke else "resnet18"
        net = create_model(name, num_classes=classes, in_channels=3, image_size=224)
        net.requires_grad_(False)  # frozen, as SRe2L's main_syn and ddkit's teacher loader do
        return net.to(_device()).eval()

    return make


def _peak() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


# ============================================================================ child: peer
def _run_reference(path: Path, argv: list[str]) -> None:
    """Run a reference script as ``__main__``; on a machine without CUDA (smoke), its literal
    ``.cuda()`` / ``'cuda'`` are read as the CPU (the only change ever made to its text)."""
    source = path.read_text()
    if _device() == "cpu":
        source = source.replace(".cuda()", ".to('cpu')").replace("'cuda'", "'cpu'")
    sys.argv = [str(path), *argv]
    code = compile(source, str(path), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(path)})  # noqa: S102


#: the two fixes a reference needs under today's torch (same values): its DSA functions copy the
#: first draw onto the batch with ``x[:] = x[0]``, refused for a batch of one since torch 1.13
#: (VICO-UoE/DatasetCondensation issue #20), and its networks flatten with ``.view``, refused
#: for the non-contiguous convolution outputs that DSA's crop (a permuted gather) leads to
FIXES = {
    "utils.py": (r"(\w+)\[:\] = \1\[0\](?=\s*$)", r"\1[:] = \1[0].clone()"),
    "networks.py": (r"(\w+)\.view\(\1\.size\(0\), -1\)", r"\1.reshape(\1.size(0), -1)"),
}


def _load_fixed(folder: Path) -> types.ModuleType:
    """The reference's ``networks`` (where there is one) and ``utils`` modules, imported with
    :data:`FIXES` applied; returns ``utils``."""
    for name in ("networks.py", "utils.py"):
        path = folder / name
        if not path.is_file():
            continue
        pattern, repl = FIXES[name]
        module = types.ModuleType(path.stem)
        module.__file__ = str(path)
        sys.modules[path.stem] = module
        source = re.sub(pattern, repl, path.read_text(), flags=re.M)
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102
    return sys.modules["utils"]


def _random_walk_buffer(folder: Path, model: str, snapshots: int, seed: int = 0) -> None:
    """Two trajectories of the reference ConvNet's parameters (a random walk from its
    initialisation) in mtt-distillation's buffer layout, written where distill.py reads them."""
    import torch
    import utils  # the reference's

    torch.manual_seed(seed)
    trajectories = []
    for _ in range(2):
        net = utils.get_network(model, 3, 10, (32, 32), dist=False)
        params = [p.detach().cpu() for p in net.parameters()]
        walk = [params]
        for _ in range(snapshots - 1):
            walk.append([p + 0.01 * torch.randn_like(p) for p in walk[-1]])
        trajectories.append(walk)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(trajectories, folder / "replay_buffer_0.pt")


def peer(row: Row, clock: Clock, work: Path, data: Path, smoke: bool) -> dict[str, Any]:
    import shims

    tree = REFERENCE / REPOS[row.repo]
    script = tree / row.script
    argv = _with_smoke(row.argv, row.smoke_argv) if smoke else list(row.argv)
    shims.install(data, _teacher_factory(smoke), on_log=lambda d: "Progress" in d and clock.tick())
    sys.path.insert(0, str(script.parent))
    utils = _load_fixed(script.parent)  # wrapped in place before the script imports it

    if row.repo in ("dc", "mtt"):
        utils.get_eval_pool = lambda *a, **kw: []  # no evaluation of the synthetic set
        argv += ["--data_path", str(data)]
    if smoke and row.script == "main.py":  # the IPC-10 loops (10 x 50) are minutes on a CPU
        utils.get_loops = lambda ipc: (2, 1)
    if row.script in ("main.py", "main_DM.py"):
        get_network = utils.get_network

        def clocked(*a: Any, **kw: Any) -> Any:  # called once at the start of an iteration
            clock.tick()
            return get_network(*a, **kw)

        utils.get_network = clocked
        argv += ["--save_path", str(work / "result")]
    elif row.script == "buffer.py":
        epoch = utils.epoch

        def timed_epoch(mode: str, *a: Any, **kw: Any) -> Any:
            if mode != "train":
                return epoch(mode, *a, **kw)
            t0 = clock.now()
            out = epoch(mode, *a, **kw)
            clock.add(clock.now() - t0)
            return out

        utils.epoch = timed_epoch
        argv += ["--buffer_path", str(work / "buffers")]
    elif row.script == "distill.py":
        max_start = int(argv[argv.index("--max_start_epoch") + 1])
        expert_epochs = int(argv[argv.index("--expert_epochs") + 1])
        model = argv[argv.index("--model") + 1]
        _random_walk_buffer(
            work / "buffers" / "CIFAR10_NO_ZCA" / model, model, max_start + expert_epochs
        )
        argv += ["--buffer_path", str(work / "buffers")]
    else:  # SRe2L: lr_cosine_policy's schedule is called once per iteration
        policy = utils.lr_cosine_policy

        def clocked_policy(*a: Any) -> Any:
            schedule = policy(*a)

            def step(optimizer: Any, iteration: int, epoch: int) -> Any:
                clock.tick()
                return schedule(optimizer, iteration, epoch)

            return step

        utils.lr_cosine_policy = clocked_policy
        argv += ["--syn-data-path", str(work / "syn")]
    os.chdir(work)
    try:
        _run_reference(script, argv)
    except Enough:
        pass
    return {"argv": argv}


# ============================================================================ child: ddkit
def _generated_224(classes: int) -> Any:
    import torch

    from ddkit.data.dataset import ImageDataset
    from ddkit.data.spec import DatasetSpec

    spec = DatasetSpec("generated224", classes, 3, (224, 224), (0.485, 0.456, 0.406),
                       (0.229, 0.224, 0.225))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    images = torch.randn(classes, 3, 224, 224, generator=g)
    return ImageDataset(images, torch.arange(classes), spec)


def _mnist_train(smoke: bool) -> Any:
    """MNIST's train split as ddkit loads it; in --smoke, the tiny generated IDX files (which
    ddkit's loader refuses as truncated MNIST) normalised with MNIST's statistics."""
    from ddkit.data import load_dataset

    if not smoke:
        return load_dataset("mnist").train
    import torch

    from ddkit.data.dataset import ImageDataset
    from ddkit.data.readers import read_idx
    from ddkit.data.spec import DatasetSpec

    folder = Path(os.environ["DDKIT_DATA"]) / "mnist"
    x = torch.from_numpy(read_idx(folder / "train-images-idx3-ubyte.gz").copy()).float() / 255
    y = torch.from_numpy(read_idx(folder / "train-labels-idx1-ubyte.gz").copy()).long()
    spec = DatasetSpec("mnist-smoke", 10, 1, (28, 28), (0.1307,), (0.3081,))
    return ImageDataset(((x - 0.1307) / 0.3081).unsqueeze(1), y, spec)


def _cifar_train() -> Any:
    """The generated CIFAR-10-shaped train split of the MTT rows (:func:`shims.generated_cifar10`)."""
    import shims
    import torch

    from ddkit.data.dataset import ImageDataset
    from ddkit.data.spec import DatasetSpec

    x, y = shims.generated_cifar10(train=True)
    mean, std = shims.CIFAR10_MEAN, shims.CIFAR10_STD
    images = x.permute(0, 3, 1, 2).float() / 255
    images = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    spec = DatasetSpec("cifar10-generated", 10, 3, (32, 32), mean, std)
    return ImageDataset(images, y, spec)


def _experts_for(train: Any, config: dict[str, Any], work: Path) -> str:
    """One expert trained ``max_start_epoch + expert_epochs`` epochs on 256 images."""
    import torch

    from ddkit.methods.trajectory.experts import ExpertSettings, train_experts

    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:256]
    epochs = config["max_start_epoch"] + config["expert_epochs"]
    train_experts(train.subset(rows), config["model"], 1, epochs, work / "experts",
                  ExpertSettings(augment=config["augment"]), together=1)  # fmt: skip
    return str(work / "experts")


def ddkit_side(row: Row, clock: Clock, work: Path, smoke: bool) -> dict[str, Any]:
    from ddkit.methods import create_method

    spec = {**row.ddkit}
    device = _device()
    if spec["kind"] == "sre2l":
        classes = row.smoke_ddkit["classes"] if smoke else spec["classes"]
        train = _generated_224(classes).to(device)
        m = create_method("sre2l", **spec["config"])
        teacher = _teacher_factory(smoke)()
        m._init_teacher = lambda data: (setattr(m, "teacher_", teacher),  # noqa: SLF001
                                        setattr(m, "teacher_record_", None))  # fmt: skip
        return _steps(m, train, 1, clock)
    train = (_cifar_train() if row.repo == "mtt" else _mnist_train(smoke)).to(device)
    if spec["kind"] == "experts":
        from ddkit.methods.trajectory.experts import (
            TOGETHER_ON_ACCELERATORS,
            ExpertSettings,
            train_experts,
        )

        kw = {k: v for k, v in spec.items() if k != "kind"} | (row.smoke_ddkit if smoke else {})
        n = 1 if device == "cpu" else TOGETHER_ON_ACCELERATORS  # ddkit's default grouping

        def say(msg: str) -> None:
            if msg.startswith("expert 0: epoch"):
                clock.tick()

        clock.tick()
        try:
            train_experts(train, kw.pop("model"), n, clock.warmup + clock.timed + 1,
                          work / "experts", ExpertSettings(**kw), progress=say)  # fmt: skip
        except Enough:
            pass
        clock.seconds = [s / n for s in clock.seconds]
        return {"experts_together": n}
    config = {**spec["config"], **(row.smoke_ddkit if smoke else {})}
    ipc = config.pop("ipc", spec["ipc"])
    if spec["method"] == "mtt":
        config["experts_dir"] = _experts_for(train, config, work)
    m = create_method(spec["method"], **config)
    return _steps(m, train, ipc, clock)


def _steps(m: Any, train: Any, ipc: int, clock: Clock) -> dict[str, Any]:
    total = m.start(train, ipc, seed=0)
    try:
        for i in range(total):
            clock.tick()
            m.step(i)
    except Enough:
        pass
    levers = {k: getattr(m, k, None) for k in ("precision_", "compile_")}
    return {
        "iterations_planned": total,
        "levers": {k: v for k, v in levers.items() if v is not None},
    }


def measure_side(row: Row, side: str, smoke: bool, warmup: int, timed: int) -> dict[str, Any]:
    """One side of a row in this process: its clock, its own lines and its peak memory."""
    import torch

    cuda = torch.cuda.is_available()
    clock = Clock(cuda, warmup, timed)
    work = Path(tempfile.mkdtemp(prefix=f"beside-{row.name}-{side}-"))
    data = Path(os.environ["DDKIT_DATA"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    info = (peer(row, clock, work, data, smoke) if side == "peer"
            else ddkit_side(row, clock, work, smoke))  # fmt: skip
    return {**clock.result(), **info, "peak_gib": _peak(), "process_s": time.perf_counter() - t0}


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    out = measure_side(ROWS[args.child], args.side, args.smoke, args.warmup, args.timed)
    print("RESULT " + json.dumps(out), flush=True)


#: modules a reference row brings in (its own and the stand-ins), removed after an inline side
_REFERENCE_MODULES = ("utils", "networks", "reparam_module", "shims", "torchvision", "kornia",
                      "wandb")  # fmt: skip


def run_inline(row: Row, side: str, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """--smoke --inline: a side in this process (no new interpreter per side), everything the
    reference scripts change (argv, working folder, path, modules, threads) put back after."""
    import torch

    def ours(name: str) -> bool:
        return name.split(".")[0] in _REFERENCE_MODULES

    saved = (sys.argv[:], os.getcwd(), sys.path[:], os.environ.get("DDKIT_DATA"),
             torch.get_num_threads(), {k: v for k, v in sys.modules.items() if ours(k)})  # fmt: skip
    os.environ["DDKIT_DATA"] = str(data)
    torch.set_num_threads(1)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the reference scripts' progress lines
            return measure_side(row, side, True, args.warmup, args.timed)
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- a failing side: one line in its row
        where = traceback.extract_tb(e.__traceback__)[-1]
        return {"error": f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"}
    finally:
        sys.argv[:], cwd, sys.path[:], env, threads, modules = saved
        os.chdir(cwd)
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("DDKIT_DATA", None)
        else:
            os.environ["DDKIT_DATA"] = env
        for name in [k for k in sys.modules if ours(k)]:
            del sys.modules[name]
        sys.modules.update(modules)


# ============================================================================ parent
def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (smoke)"


def _commits() -> dict[str, str | None]:
    """The commit of each reference tree (prepare.sh writes it), None where absent."""
    out = {}
    for repo in REPOS.values():
        f = REFERENCE / repo / "COMMIT"
        out[repo] = f.read_text().strip() if f.is_file() else None
    return out


def _measured_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of an earlier results file whose two sides both have a time."""
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {r["row"]: r for r in rows if r.get("peer_s") and r.get("ddkit_s")}


def run_side(row: Row, side: str, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """One side of a row in its own process; a failure is one line in the row."""
    if side == "peer" and not (REFERENCE / REPOS[row.repo]).is_dir():
        return {"skipped": f"reference code absent: {REFERENCE / REPOS[row.repo]} "
                           "(sh benchmarks/gpu/prepare.sh fetches it)"}  # fmt: skip
    warmup, timed = (args.warmup, args.timed) if args.smoke else (row.iterations or
                                                                  (args.warmup, args.timed))  # fmt: skip
    left = args.deadline - (time.monotonic() - args.started) if args.deadline else None
    if left is not None and left < 20:
        return {"skipped": f"--deadline {args.deadline} s reached before this side started"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", row.name, "--side", side,
           "--warmup", str(warmup), "--timed", str(timed)]  # fmt: skip
    cmd += ["--smoke"] if args.smoke else []
    threads = {"OMP_NUM_THREADS": "1"} if args.smoke else {}  # a loaded CPU: no thread waits
    if args.inline:
        return run_inline(row, side, args, data)
    env = {**os.environ, "DDKIT_DATA": str(data), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]), **threads}  # fmt: skip
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT,
                             timeout=min(args.row_timeout, left or args.row_timeout))  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {args.row_timeout} s (or the deadline)"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {res.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT ") :])


def compare(row: Row, sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    p, d = sides["peer"].get("s_per_iteration"), sides["ddkit"].get("s_per_iteration")
    pm, dm = sides["peer"].get("peak_gib"), sides["ddkit"].get("peak_gib")
    return {
        "row": row.name,
        "peer_s": p,
        "ddkit_s": d,
        "ratio_ddkit_to_peer": d / p if p and d else None,
        "speedup": p / d if p and d else None,
        "peer_peak_gib": pm,
        "ddkit_peak_gib": dm,
        "differences": list(row.differences),
        "sides": sides,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timed", type=int, default=5)
    ap.add_argument("--row-timeout", type=int, default=150, help="seconds per side")
    ap.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds after which no side starts (the rest: skipped, said so)",
    )
    ap.add_argument(
        "--resume",
        default=None,
        help="a results JSON of an earlier call: its measured rows are kept, not rerun",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of every code path")
    ap.add_argument(
        "--inline",
        action="store_true",
        help="with --smoke: every side in this process (faster; no peak memory)",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--side", choices=("peer", "ddkit"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.started = time.monotonic()
    if args.child:
        return child(args)
    sys.path.insert(0, str(ROOT / "src"))
    from ddkit.errors import ConfigError
    from ddkit.io import atomic_write_json

    names = [n for n in args.rows.split(",") if n]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        raise ConfigError(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if args.inline and not args.smoke:
        raise ConfigError("--inline is for --smoke only: a GPU row needs its own process")
    if args.smoke:
        args.warmup, args.timed = SMOKE["warmup"], SMOKE["timed"]
        data = Path(tempfile.mkdtemp(prefix="beside-smoke-data-"))
        write_smoke_mnist(data)
        os.environ["BESIDE_CIFAR_SIZES"] = "600,100"  # the MTT rows' generated data
    else:
        data = DATA
    out = Path(args.out or ROOT / "benchmarks/results/gpu/beside_reference.json")
    result: dict[str, Any] = {"gpu": _gpu_name(), "smoke": args.smoke, "warmup": args.warmup,
                              "timed": args.timed, "reference_commits": _commits(),
                              "fixes_to_reference": {k: list(v) for k, v in FIXES.items()},
                              "rows": []}  # fmt: skip
    kept = _measured_rows(Path(args.resume)) if args.resume else {}
    for name in names:
        row = ROWS[name]
        if name in kept:
            result["rows"].append(kept[name])
            atomic_write_json(out, result)
            continue
        sides = {side: run_side(row, side, args, data) for side in ("peer", "ddkit")}
        result["rows"].append(compare(row, sides))
        r = result["rows"][-1]
        print(f"{name}: peer {r['peer_s']} s, ddkit {r['ddkit_s']} s, peak {r['peer_peak_gib']}"
              f" / {r['ddkit_peak_gib']} GiB " + " ".join(f"[{s}: {v.get('error') or v.get('skipped')}]"
              for s, v in sides.items() if "error" in v or "skipped" in v), flush=True)  # fmt: skip
        atomic_write_json(out, result)


if __name__ == "__main__":
    main()
