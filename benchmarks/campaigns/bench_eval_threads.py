"""Evaluation training on one CPU thread against the default count (issue 70: "tiny sets train
in milliseconds per epoch"): one ConvNet-2 trained under the dsa protocol on the first N digits
(N = 10, 100, 1,000; batches of at most 256), 40 epochs, once with torch's default thread count
and once with one thread, alternating; per-epoch seconds (the first epoch, the set-up, left
out) as min / median / mean, with the machine's load average before each case. Writes
``benchmarks/results/eval_threads.json``; :data:`ddkit.levers.SINGLE_THREAD_MAX_BATCH_VALUES`
is read from it.

    python benchmarks/campaigns/bench_eval_threads.py
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from ddkit.data import load_dataset
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import train_networks
from ddkit.io import atomic_write_json
from ddkit.levers import exact
from ddkit.meter import machine_info

OUT = Path(__file__).resolve().parents[1] / "results" / "eval_threads.json"
ROWS = (10, 100, 1_000)
EPOCHS = 40


def epoch_seconds(images: torch.Tensor, labels: torch.Tensor, spec, threads: int) -> list[float]:  # noqa: ANN001
    torch.set_num_threads(threads)
    p = get_protocol("dsa").with_(epochs=EPOCHS, runs=1, compile=False)
    stamps = [time.perf_counter()]
    train_networks("convnet2", spec, images, labels, p, [1], lr=p.lr, vectorize=False,
                   progress=lambda _k: stamps.append(time.perf_counter()))  # fmt: skip
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def main() -> None:
    d = load_dataset("digits")
    default = torch.get_num_threads()
    rows = []
    with exact(False):
        for n in ROWS:
            x, y = d.train.images[:n], d.train.labels[:n]
            for threads in (default, 1):
                load = os.getloadavg()[0]
                e = epoch_seconds(x, y, d.train.spec, threads)
                rows.append({
                    "images": n, "batch_values": min(n, 256) * x[0].numel(), "threads": threads,
                    "min_s": min(e), "median_s": statistics.median(e), "mean_s": statistics.fmean(e),
                    "load_average_before": load,
                })  # fmt: skip
                print(rows[-1])
    torch.set_num_threads(default)
    atomic_write_json(OUT, {"machine": machine_info(), "epochs": EPOCHS, "rows": rows})


if __name__ == "__main__":
    main()
