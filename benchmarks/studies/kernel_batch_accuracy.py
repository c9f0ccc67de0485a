"""How well does a kernel method's set predict real images under its own predictor? (issue 40)

kip, rfad and frepo fit their set to kernel ridge regression: each step predicts a fresh batch of
real training images from the set (kip: the network's NTK; rfad: random features; frepo: the
features of one of its online networks) and logs the fraction predicted right
(``batch_accuracy``) before the step learns from that batch. Averaged over a run's last steps,
that is the accuracy of the set's own predictor on real images it has not been stepped on (a
step's batch may repeat an image an earlier step drew: at most ``steps x batch`` of the train
split's images), measured during the distillation at no cost. Set beside the networks trained on
the same sets (the ``paper`` suite's row and, where measured, the method's own evaluation
recipe), it splits a gap to a published figure into the set itself and its transfer to a
finite network. No training, no test split: the logs are the bench cells' ``log.jsonl.gz``.

Usage: python benchmarks/studies/kernel_batch_accuracy.py [--cells benchmarks/results/paper-cells]
       [--methods kip,rfad,frepo] [--dataset mnist] [--ipc 1] [--last 50] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path
from typing import Any

from ddkit.io import atomic_write_json


def seed_logs(cell: Path) -> list[Path]:
    """The distillation logs of a bench cell's seeds, the first seed's first."""
    seeds = sorted(cell.glob("seed*/distill/log.jsonl.gz"))
    first = cell / "distill" / "log.jsonl.gz"
    return ([first] if first.exists() else []) + seeds


def last_steps(log: Path, last: int) -> tuple[list[float], int]:
    """The ``batch_accuracy`` of a log's last ``last`` steps, and how many steps it holds."""
    with gzip.open(log, "rt") as f:
        steps = [json.loads(line) for line in f if line.strip()]
    values = [float(s["batch_accuracy"]) for s in steps if "batch_accuracy" in s]
    return values[-last:], len(values)


def cell_summary(cell: Path, last: int, batch: int) -> dict[str, Any] | None:
    """Per seed and over all seeds: the mean ``batch_accuracy`` of the last ``last`` steps
    (each of ``batch`` real images), ``None`` when the cell logged none."""
    seeds = []
    for log in seed_logs(cell):
        values, steps = last_steps(log, last)
        if values:
            seeds.append({"log": log.as_posix(), "steps": steps, "last_steps": len(values),
                          "images": len(values) * batch, "mean": statistics.fmean(values)})  # fmt: skip
    if not seeds:
        return None
    return {
        "seeds": seeds,
        "mean": statistics.fmean(s["mean"] for s in seeds),
        "std": statistics.pstdev(s["mean"] for s in seeds) if len(seeds) > 1 else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="benchmarks/results/paper-cells")
    ap.add_argument("--methods", default="kip,rfad,frepo")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--last", type=int, default=50, help="steps averaged at the end of a run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    cells = Path(args.cells)
    rows = []
    for method in args.methods.split(","):
        cell = cells / f"{args.dataset}-{method}-ipc{args.ipc}"
        config, meta = (
            cell / "distill" / "config.json",
            cell / "distill" / "synthetic" / "meta.json",
        )
        if not (config.exists() and meta.exists()):
            continue
        per_class = json.loads(config.read_text())["method_config"]["batch_real"]  # real images
        batch = per_class * json.loads(meta.read_text())["spec"]["num_classes"]  # a step's batch
        summary = cell_summary(cell, args.last, batch)
        if summary is None:
            continue
        rows.append({"method": method, "cell": cell.as_posix(), "batch_images": batch, **summary})
        print(f"{method}: own predictor {100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} "
              f"% over the last {args.last} steps of {len(summary['seeds'])} seeds")  # fmt: skip
    if args.out:
        atomic_write_json(
            Path(args.out),
            {"settings": vars(args), "measure": "batch_accuracy, last steps", "rows": rows},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
