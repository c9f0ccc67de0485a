"""Evaluation training in float32 and in bf16 autocast: speed, memory and accuracy.

For each (model, set size) cell: random real mnist5k images (10 classes), the two precisions
timed interleaved (``--rounds`` rounds of ``--epochs`` epochs each, DSA augmentation, batch 256,
``--threads`` torch threads) in CPU seconds per epoch and images per second, with the peak
resident memory of a child process per precision; then accuracy on a validation split (20 % of
mnist5k's train split, seed 0; protocol ``fast``: 3 networks, 100 epochs), never the test split.

Usage: python benchmarks/bench_precision.py [--threads 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import train_networks
from ddkit.io import atomic_write_json
from ddkit.meter import PeakRSS
from ddkit.methods import create_method

CELLS = [("convnet", 100), ("convnet", 500), ("convnet-w32", 100), ("convnet-w32", 500)]
ACCURACY_CELLS = [("convnet", 100), ("convnet-w32", 100), ("convnet-w32", 500)]


def _set(n: int, splits):  # noqa: ANN001, ANN202
    return create_method("random").fit(splits.train, n // 10, seed=0)


def _peak(model: str, n: int, precision: str, epochs: int, threads: int) -> float:
    """Peak resident memory (MB) above the level before training, in a child process that
    trains one network (sampled by :class:`ddkit.meter.PeakRSS`)."""
    torch.set_num_threads(threads)
    splits = load_dataset("mnist5k", val_fraction=0.2, seed=0)
    syn = _set(n, splits)
    p = get_protocol("fast").with_(epochs=epochs, runs=1, precision=precision)
    with PeakRSS() as meter:
        train_networks(model, syn.spec, syn.images, syn.labels, p, [0], lr=p.lr)
    return meter.extra_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/precision_eval.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("mnist5k", val_fraction=0.2, seed=0)
    rows = []
    for model, n in CELLS:
        syn = _set(n, splits)
        cpu = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for precision in ("fp32", "bf16"):
                p = get_protocol("fast").with_(epochs=args.epochs, runs=1, precision=precision)
                t0 = time.process_time()
                train_networks(model, syn.spec, syn.images, syn.labels, p, [0], lr=p.lr)
                cpu[precision].append((time.process_time() - t0) / args.epochs)
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            peaks = {
                pr: pool.apply(_peak, (model, n, pr, args.epochs, args.threads))
                for pr in ("fp32", "bf16")
            }
        med = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
        row = {"model": model, "images": n, "cpu_s_per_epoch": med, "all_cpu_s": cpu,
               "images_per_s": {k: n / v for k, v in med.items()},
               "speedup": med["fp32"] / med["bf16"], "peak_mb": peaks}  # fmt: skip
        rows.append(row)
        print(f"{model:<12} {n:>4} images: fp32 {med['fp32']:.3f} s/epoch, bf16 {med['bf16']:.3f}"
              f" -> {row['speedup']:.2f}x; peak {peaks['fp32']:.0f} / {peaks['bf16']:.0f} MB",
              flush=True)  # fmt: skip
    accuracy = []
    for model, n in ACCURACY_CELLS:
        syn = _set(n, splits)
        res = {}
        for precision in ("fp32", "bf16"):
            p = get_protocol("fast").with_(precision=precision, models=(model,))
            r = evaluate(syn, splits.val, p, seed=0).results[0]
            res[precision] = {"accuracies": r.accuracies, "mean": r.mean, "std": r.std}
        accuracy.append({"model": model, "images": n, **res})
        print(f"{model:<12} {n:>4} images, validation: fp32 {100 * res['fp32']['mean']:.2f} ± "
              f"{100 * res['fp32']['std']:.2f}, bf16 {100 * res['bf16']['mean']:.2f} ± "
              f"{100 * res['bf16']['std']:.2f}", flush=True)  # fmt: skip
    atomic_write_json(args.out, {"threads": args.threads, "epochs": args.epochs, "speed": rows,
                                 "accuracy": accuracy})  # fmt: skip


if __name__ == "__main__":
    main()
