"""The bf16 lever (issue 14) in gradient and trajectory matching: fp32 against bf16 autocast.

One method instance per (cell, precision), started from the same seed; after one untimed warm-up
step each, ``--rounds`` rounds of ``--steps`` steps, the two precisions interleaved (the order
alternates every round) in one process with one torch thread. Cells (the mnist5k presets):

* ``dc`` and ``dsa``, mnist5k IPC 1: ConvNet-3 width 32, batch_real 256 (one matching step per
  outer iteration at IPC 1);
* ``mtt`` and ``tesla``, mnist5k IPC 10: ConvNet-3 width 32, 10 student steps on the whole
  synthetic set, the auto-trained expert cache (``runs/experts``; trained on first use).

Reported per cell and precision: median CPU seconds per step (``time.process_time``), median wall
seconds, and ``speedup_cpu``, the median over rounds of fp32 / bf16 CPU seconds of the same round
(:func:`bench_speed.paired_speedup`); ``rel_diff_images`` is ‖bf16 images − fp32 images‖ /
‖fp32 images‖ after all steps. The machine is shared, so the load average is recorded and
``contended`` set when it is above 1.5 (2 cores). Writes
``benchmarks/results/speed_matching_trajectory.json`` (atomically).

``--model convnet --merge`` adds cells with ConvNet-3 width 128 (gradient matching only: the
trajectory methods would need width-128 experts) to the same file; ``runs`` then lists every
run's cells and load average.

Usage: python benchmarks/bench_speed_matching.py [--rounds 6] [--steps 3] [--cells dc,dsa,mtt,tesla]
[--model NAME] [--merge]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import Any

import torch
from bench_speed import _median, paired_speedup

from ddkit.bench.runner import machine_info
from ddkit.data import load_dataset
from ddkit.eval.train import cpu_has_bf16
from ddkit.io import atomic_write_json
from ddkit.methods import create_method

CELLS = {"dc": 1, "dsa": 1, "mtt": 10, "tesla": 10}  # method -> IPC (mnist5k presets)
PRECISIONS = ("fp32", "bf16")


def _steps(m, it: int, steps: int) -> tuple[float, float]:  # noqa: ANN001
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        m.step(it + i)
    return time.process_time() - c0, time.perf_counter() - w0


def time_cell(train, name: str, ipc: int, rounds: int, steps: int, model: str | None = None):  # noqa: ANN001, ANN201
    methods = {}
    for p in PRECISIONS:
        extra = {"model": model} if model else {}
        m = create_method(name, dataset="mnist5k", ipc=ipc, precision=p, **extra)
        m.start(train, ipc, seed=0, iterations=1000)
        methods[p] = m
    for m in methods.values():
        _steps(m, 0, 1)  # warm-up
    cpu: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    wall: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(rounds):
        for p in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
            c, w = _steps(methods[p], 1 + r * steps, steps)
            cpu[p].append(c / steps)
            wall[p].append(w / steps)
    ref = methods["fp32"].state_["images"].detach()
    got = methods["bf16"].state_["images"].detach()
    cfg = methods["fp32"].config
    out = {
        "method": name,
        "dataset": "mnist5k",
        "ipc": ipc,
        "model": cfg.model,
        "settings": {k: getattr(cfg, k) for k in ("batch_real", "syn_steps", "batch_syn",
                                                   "backward", "augment") if hasattr(cfg, k)},
        "rounds": rounds,
        "steps_per_round": steps,
        "rel_diff_images": float((got - ref).norm() / ref.norm()),
        "speedup_cpu": paired_speedup(cpu["fp32"], cpu["bf16"]),
        "variants": {
            p: {"cpu_s_per_step": _median(cpu[p]), "wall_s_per_step": _median(wall[p]),
                "all_cpu_s": cpu[p], "all_wall_s": wall[p]}
            for p in PRECISIONS
        },
    }  # fmt: skip
    v = out["variants"]
    print(f"{name:<6} IPC {ipc:>2}: fp32 {v['fp32']['cpu_s_per_step']:.3f}  bf16 "
          f"{v['bf16']['cpu_s_per_step']:.3f} CPU s/step  {out['speedup_cpu']:.2f}x  "
          f"rel diff {out['rel_diff_images']:.1e}", flush=True)  # fmt: skip
    return out


def _names(cells: list[dict[str, Any]]) -> list[str]:
    return [f"{c['method']} ipc {c['ipc']} {c['model']}" for c in cells]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--model", default=None, help="instead of the presets' network")
    ap.add_argument("--out", default="benchmarks/results/speed_matching_trajectory.json")
    ap.add_argument("--merge", action="store_true", help="add the cells to an existing --out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # preset notes
    train = load_dataset("mnist5k").train
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    cells = [time_cell(train, n, CELLS[n], args.rounds, args.steps, args.model)
             for n in args.cells.split(",")]  # fmt: skip
    load1 = os.getloadavg()
    results = {
        "machine": machine_info(),
        "cpu_has_bf16": cpu_has_bf16(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load0,
        "load_average_end": load1,
        "contended": max(load0[0], load1[0]) > 1.5,  # 2 cores; this benchmark is one process
        "wall_s": time.perf_counter() - t0,
        "speedup": "median over rounds of fp32 / bf16 CPU seconds of the same round",
        "cells": cells,
    }
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        keys = ("load_average_start", "load_average_end", "contended", "wall_s")
        runs = old.get("runs") or [{k: old[k] for k in keys} | {"cells": _names(old["cells"])}]
        runs.append({k: results[k] for k in keys} | {"cells": _names(cells)})
        results = {**old, "runs": runs, "cells": old["cells"] + cells,
                   "contended": old["contended"] or results["contended"]}  # fmt: skip
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
