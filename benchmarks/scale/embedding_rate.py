"""The real-image embedding of a matching step against this CPU's bf16 matrix-multiply rate, in
the same process (issue 82: goal 35 %).

For each network (``--models``) at ``--size`` px, a batch of ``--batch`` images goes through
the network's ``embed`` the way dm embeds a step's real batch: no autograd, bf16 autocast where
the CPU computes bf16, and (``--compile``) through ``torch.compile`` as dm does for runs of 200
iterations or more; ``channels_last`` both ways. The arithmetic is counted from the layers'
shapes (a multiply-add is 2 FLOPs; convolutions and linear layers, nothing else), the rate is
GFLOP per wall second over ``--reps`` timed batches after two warm-up ones. The reference is a
square bf16 matrix product of ``--matmul`` rows, timed the same way. Appends a row to
``benchmarks/results/scale/embedding_rate.json``.

    python benchmarks/scale/embedding_rate.py --models convnet-w32,convnet --compile
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from record import append_row
from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.levers import CompiledForward, precision_context, resolve_precision, to_channels_last
from ddkit.models.helpers import build_network


def forward_flops(net: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of ``net.embed(x)``: 2 per multiply-add of every convolution and linear layer."""
    total = 0.0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += 2.0 * output.numel() * k / module.groups
        elif isinstance(module, nn.Linear):
            total += 2.0 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    with torch.no_grad():
        net.embed(x)
    for h in hooks:
        h.remove()
    return total


def rate(fn, flops: float, reps: int) -> float:  # noqa: ANN001
    """GFLOP per wall second of ``fn()`` over ``reps`` calls after two warm-up calls."""
    fn(), fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return flops * reps / (time.perf_counter() - start) / 1e9


def matmul_rate(n: int, reps: int) -> float:
    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    return rate(lambda: a @ b, 2.0 * n**3, reps)


def embedding_rate(model: str, size: int, batch: int, reps: int, compile_: bool) -> dict:
    spec = DatasetSpec("rate", 10, 3, (size, size), (0.5,) * 3, (0.25,) * 3)
    net = build_network(model, spec, 0).eval().requires_grad_(False)
    x = to_channels_last(torch.randn(batch, 3, size, size))
    flops = forward_flops(net, x)
    embed = CompiledForward(net.embed) if compile_ else net.embed
    precision = resolve_precision("auto", torch.device("cpu"))

    def run() -> torch.Tensor:
        with torch.no_grad(), precision_context(precision, torch.device("cpu")):
            return embed(x)

    gflops = rate(run, flops, reps)
    return {"model": model, "size": size, "batch": batch, "precision": precision,
            "compiled": compile_, "gflop_per_batch": round(flops / 1e9, 2),
            "gflops": round(gflops, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="convnet-w32,convnet")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--matmul", type=int, default=4096)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    load = os.getloadavg()[0]
    peak = matmul_rate(a.matmul, a.reps)
    cells = [embedding_rate(m, a.size, a.batch, a.reps, a.compile) for m in a.models.split(",")]
    for cell in cells:
        cell["share_of_matmul"] = round(cell["gflops"] / peak, 3)
    append_row("embedding_rate.json", {"bf16_matmul_gflops": round(peak, 1), "cells": cells,
                                        "threads": torch.get_num_threads(),
                                        "load_average_before": round(load, 2)})  # fmt: skip


if __name__ == "__main__":
    main()
