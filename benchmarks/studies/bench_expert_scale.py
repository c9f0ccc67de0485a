"""Trajectory experts at full-MNIST size: what an epoch costs, and whether a killed run resumes.

For each dataset (``mnist5k``, 4,000 training images, and full ``mnist``, 60,000), one expert
of the ``paper`` suite's MTT recipe (ConvNet-3 width 32, SGD lr 0.01, batch 256, DSA) trains
``--epochs`` epochs into a fresh folder, timed per epoch, with its snapshot size and the peak
resident memory. On the larger dataset the run is then repeated in a child process that is
killed (SIGKILL) as soon as its first epoch's snapshot lands, and resumed here
(``resume=True``); the resumed expert's final parameters are compared with the uninterrupted
one's (they must be equal to the bit). 1 torch thread.

Usage: python benchmarks/studies/bench_expert_scale.py [--datasets mnist5k,mnist] [--epochs 2]
       [--out benchmarks/results/expert_scale.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ddkit.data import load_dataset
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods.trajectory.experts import ExpertSettings, load_experts, train_experts

RECIPE = {"model": "convnet-w32", "lr": 0.01, "batch_size": 256, "augment": "dsa", "seed": 0}


def _train(dataset: str, folder: str, epochs: int, resume: bool = False) -> tuple[list[float], int]:
    """Train one expert: the seconds of each epoch (read off the progress lines' clock) and the
    number of training images."""
    torch.set_num_threads(1)
    train = load_dataset(dataset).train
    marks = [time.perf_counter()]

    def tick(message: str) -> None:
        if "epoch" in message and "resuming" not in message:
            marks.append(time.perf_counter())

    settings = ExpertSettings(**{k: v for k, v in RECIPE.items() if k != "model"})
    train_experts(train, RECIPE["model"], 1, epochs, folder, settings, resume=resume, progress=tick)
    return [b - a for a, b in zip(marks, marks[1:])], len(train)


def _final(folder: Path, epochs: int) -> torch.Tensor:
    return load_experts(folder).params(0, epochs)


def _kill_after_first_epoch(dataset: str, folder: Path, epochs: int) -> float:
    """Run the expert in a child, SIGKILL it once epoch 1's snapshot exists; seconds it ran."""
    child = mp.get_context("spawn").Process(target=_train, args=(dataset, str(folder), epochs))
    t0 = time.perf_counter()
    child.start()
    snapshot = folder / "expert_000" / "epoch_001.safetensors"
    while child.is_alive() and not snapshot.exists():
        time.sleep(0.5)
    child.kill()
    child.join()
    return time.perf_counter() - t0


def _cell(dataset: str, epochs: int, work: Path, check_resume: bool) -> dict:
    folder = work / f"{dataset}-whole"
    seconds, train_images = _train(dataset, str(folder), epochs)
    snapshot_bytes = (folder / "expert_000" / "epoch_001.safetensors").stat().st_size
    row = {"dataset": dataset, "train_images": train_images,
           "epochs": epochs, "epoch_seconds": seconds, "snapshot_bytes": snapshot_bytes}  # fmt: skip
    if check_resume:
        broken = work / f"{dataset}-killed"
        row["killed_after_seconds"] = _kill_after_first_epoch(dataset, broken, epochs)
        t0 = time.perf_counter()
        _train(dataset, str(broken), epochs, resume=True)
        row["resume_seconds"] = time.perf_counter() - t0
        row["resumed_equals_uninterrupted"] = bool(
            torch.equal(_final(broken, epochs), _final(folder, epochs))
        )
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist5k,mnist")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/expert_scale.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    datasets = args.datasets.split(",")
    work = Path(tempfile.mkdtemp(prefix="ddkit-expert-scale-"))
    try:
        rows = [_cell(d, args.epochs, work, check_resume=d == datasets[-1]) for d in datasets]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    atomic_write_json(Path(args.out), {"settings": {**vars(args), **RECIPE},
                                       "machine": machine_info(), "peak_rss_mb": peak_mb,
                                       "rows": rows})  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
