"""How far evaluation training can speed up on this CPU: the convolutions' arithmetic (issue 14).

Issue 14 asks evaluation training to run 2.5x faster than the pinned baseline. This script
measures the bound that the convolutions put on any lever that keeps the arithmetic:

* **FLOPs** of one optimiser step of ConvNet-3 (forward, weight gradients, and input gradients
  of every layer but the first, whose input needs none), counted from the layers' shapes
  (hooks on ``Conv2d`` / ``Linear``; a multiply-add is 2 FLOPs).
* **The convolutions alone**: every convolution of the step run by itself (``F.conv2d``
  forward and backward at the step's shapes, one torch thread), in float32 and under bf16
  autocast (the ``bf16`` lever): CPU seconds per step and GFLOP/s.
* **A whole step** (``bench_speed.EvalRunner``: protocol ``fast``'s recipe, SGD, batch 256,
  DSA) for the baseline (fp32, eager, activations not in place) and the best lever set
  (``inplace+bf16+compile``), interleaved.
* **Peak matrix products**: a ``(4096, 1152) @ (1152, 128)`` product (a width-128 layer's
  im2col shape) in float32 and bfloat16.

``bound`` = baseline step / bf16 convolutions: the speed-up if everything but the convolutions
cost nothing and every convolution ran as fast as oneDNN's bf16 kernels do here. Timings are CPU
seconds (``time.process_time``) with one torch thread; the load average is recorded. Writes
``benchmarks/results/conv_ceiling.json``.

Usage: python benchmarks/studies/bench_conv_ceiling.py [--rounds 3] [--cells convnet:100,convnet:500,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.io import atomic_write_json
from ddkit.meter import machine_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "campaigns"))  # bench_speed.py
from bench_speed import (  # noqa: E402
    EVAL_VARIANTS,
    EvalRunner,
    _rotated,
    _splits,
    eval_epochs,
    paired_speedup,
)

BEST = "inplace+bf16+compile"


def layer_shapes(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Size, bool]]:
    """``(layer, input shape, first)`` for every convolution and linear layer, in order."""
    seen: list[tuple[nn.Module, torch.Size, bool]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape, not seen)))
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return seen


def step_flops(layers: list[tuple[nn.Module, torch.Size, bool]]) -> dict[str, float]:
    """FLOPs of one training step: forward, weight gradient, input gradient (not the first)."""
    conv = linear = 0.0
    for m, shape, first in layers:
        if isinstance(m, nn.Conv2d):
            out = F.conv2d(torch.empty(shape, device="meta"), m.weight.to("meta"), None,
                           m.stride, m.padding)  # fmt: skip
            macs = out.numel() * m.weight[0].numel()
            conv += 2 * macs * (2 if first else 3)
        else:
            macs = shape[0] * m.weight.numel()
            linear += 2 * macs * 3
    return {"conv": conv, "linear": linear}


def time_convolutions(
    layers: list[tuple[nn.Module, torch.Size, bool]], bf16: bool, reps: int
) -> float:
    """CPU seconds of one step's convolutions alone (forward + backward), median of ``reps``."""
    gen = torch.Generator().manual_seed(0)
    work = []
    for m, shape, first in layers:
        if isinstance(m, nn.Conv2d):
            x = torch.randn(shape, generator=gen).requires_grad_(not first)
            w = m.weight.detach().clone().requires_grad_(True)
            b = m.bias.detach().clone().requires_grad_(True) if m.bias is not None else None
            work.append((x, w, b, m))

    def once() -> None:
        for x, w, b, m in work:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = F.conv2d(x, w, b, m.stride, m.padding)
            y.backward(torch.ones_like(y))
            x.grad = w.grad = None
            if b is not None:
                b.grad = None

    once()  # warm-up
    times = []
    for _ in range(reps):
        c0 = time.process_time()
        once()
        times.append(time.process_time() - c0)
    return statistics.median(times)


def peak_matmul(dtype: torch.dtype, reps: int = 20) -> float:
    """GFLOP/s of a (4096, 1152) @ (1152, 128) product in ``dtype``."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4096, 1152, generator=gen).to(dtype)
    b = torch.randn(1152, 128, generator=gen).to(dtype)
    a @ b
    c0 = time.process_time()
    for _ in range(reps):
        a @ b
    return 2 * 4096 * 1152 * 128 * reps / (time.process_time() - c0) / 1e9


def ceiling_cell(splits, model: str, n: int, rounds: int) -> dict[str, Any]:  # noqa: ANN001
    names = ["baseline", BEST]
    runners = {name: EvalRunner(splits, model, n, EVAL_VARIANTS[name]) for name in names}
    base = runners["baseline"]
    batch = base.images[: base.protocol.batch_size]
    layers = layer_shapes(base.net, batch)
    epochs = eval_epochs(n)
    steps = epochs * base.steps_per_epoch
    # the shapes are a full batch's; a step's mean batch is n / steps per epoch
    scale = n / base.steps_per_epoch / len(batch)
    flops = {k: v * scale for k, v in step_flops(layers).items()}
    for r in runners.values():
        r.train(epochs)  # warm-up (compiles)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in _rotated(names, r):
            cpu[name].append(runners[name].train(epochs)[0] / steps)
    conv_fp32 = scale * time_convolutions(layers, bf16=False, reps=max(3, rounds))
    conv_bf16 = scale * time_convolutions(layers, bf16=True, reps=max(3, rounds))
    step = {name: statistics.median(v) for name, v in cpu.items()}
    row = {
        "model": model,
        "images": n,
        "gflop_per_step": {k: v / 1e9 for k, v in flops.items()},
        "baseline_cpu_s_per_step": step["baseline"],
        "best_cpu_s_per_step": step[BEST],
        "best_speedup": paired_speedup(cpu["baseline"], cpu[BEST]),
        "conv_fp32_cpu_s": conv_fp32,
        "conv_bf16_cpu_s": conv_bf16,
        "conv_fp32_gflops": flops["conv"] / conv_fp32 / 1e9,
        "conv_bf16_gflops": flops["conv"] / conv_bf16 / 1e9,
        "conv_share_of_baseline": conv_fp32 / step["baseline"],
        "bound": step["baseline"] / conv_bf16,
        "all_cpu_s_per_step": cpu,
    }
    print(f"{model:<12} {n:>4}: step {step['baseline']:.3f} -> {step[BEST]:.3f} CPU s "
          f"({row['best_speedup']:.2f}x); convs fp32 {conv_fp32:.3f} s "
          f"({row['conv_fp32_gflops']:.0f} GFLOP/s), bf16 {conv_bf16:.3f} s "
          f"({row['conv_bf16_gflops']:.0f} GFLOP/s); bound {row['bound']:.2f}x", flush=True)  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cells", default="convnet:100,convnet:500,convnet-w32:100,convnet-w32:500")
    ap.add_argument("--out", default="benchmarks/results/conv_ceiling.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    splits = _splits()
    load0 = os.getloadavg()
    peaks = {"fp32": peak_matmul(torch.float32), "bf16": peak_matmul(torch.bfloat16)}
    print(f"matmul GFLOP/s: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f}", flush=True)
    cells = []
    for cell in args.cells.split(","):
        model, n = cell.split(":")
        cells.append(ceiling_cell(splits, model, int(n), args.rounds))
    load1 = os.getloadavg()
    atomic_write_json(args.out, {
        "machine": machine_info(), "threads": 1, "rounds": args.rounds,
        "load_average_start": load0[0], "load_average_end": load1[0],
        "contended": max(load0[0], load1[0]) > 1.5,
        "matmul_gflops": peaks, "cells": cells,
    })  # fmt: skip


if __name__ == "__main__":
    main()
