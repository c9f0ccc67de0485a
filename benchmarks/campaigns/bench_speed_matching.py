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

``--variants fp32,compile,bf16+compile --dataset digits --ipc 10 --cells dc`` times other lever
settings (the first is the baseline) on another cell, e.g. DC on digits at IPC 10, where the
network's training between matching steps (the ``compile`` lever) is most of a step.

Usage: python benchmarks/campaigns/bench_speed_matching.py [--rounds 6] [--steps 3] [--cells dc,dsa,mtt,tesla]
[--model NAME] [--variants fp32,bf16] [--dataset mnist5k] [--ipc N] [--merge]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import Any

import torch
from bench_speed import _median, _rotated, paired_speedup

from ddkit.data import load_dataset
from ddkit.io import atomic_write_json
from ddkit.levers import cpu_has_bf16
from ddkit.meter import machine_info
from ddkit.methods import create_method

CELLS = {"dc": 1, "dsa": 1, "mtt": 10, "tesla": 10}  # method -> IPC (mnist5k presets)
PRECISIONS = ("fp32", "bf16")
#: Lever settings a cell can be timed under (``--variants``; the first is the baseline).
#: ``compile`` exists on dc / dsa / idc only (their network training between matching steps).
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
    "bf16+compile": {"precision": "bf16", "compile": True},
}


def _steps(m, it: int, steps: int) -> tuple[float, float]:  # noqa: ANN001
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        m.step(it + i)
    return time.process_time() - c0, time.perf_counter() - w0


def time_cell(train, name: str, ipc: int, rounds: int, steps: int, model: str | None = None,  # noqa: ANN001, ANN201
              variants: tuple[str, ...] = PRECISIONS, dataset: str = "mnist5k"):  # fmt: skip
    methods = {}
    for v in variants:
        extra = {"model": model} if model else {}
        m = create_method(name, dataset=dataset, ipc=ipc, **VARIANTS[v], **extra)
        m.start(train, ipc, seed=0, iterations=1000)
        methods[v] = m
    for m in methods.values():
        _steps(m, 0, 1)  # warm-up (and compilation)
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in _rotated(list(variants), r):
            c, w = _steps(methods[v], 1 + r * steps, steps)
            cpu[v].append(c / steps)
            wall[v].append(w / steps)
    base = variants[0]
    ref = methods[base].state_["images"].detach()
    cfg = methods[base].config
    out = {
        "method": name,
        "dataset": dataset,
        "ipc": ipc,
        "model": cfg.model,
        "settings": {k: getattr(cfg, k) for k in ("batch_real", "syn_steps", "batch_syn",
                                                   "backward", "augment", "outer_loop",
                                                   "inner_loop") if hasattr(cfg, k)},
        "rounds": rounds,
        "steps_per_round": steps,
        "baseline": base,
        "variants": {
            v: {"levers": VARIANTS[v], "cpu_s_per_step": _median(cpu[v]),
                "wall_s_per_step": _median(wall[v]),
                "speedup_cpu": paired_speedup(cpu[base], cpu[v]),
                "rel_diff_images": float((methods[v].state_["images"].detach() - ref).norm()
                                         / ref.norm()),
                "all_cpu_s": cpu[v], "all_wall_s": wall[v]}
            for v in variants
        },
    }  # fmt: skip
    if variants == PRECISIONS:  # the first round's summary keys
        out["speedup_cpu"] = out["variants"]["bf16"]["speedup_cpu"]
        out["rel_diff_images"] = out["variants"]["bf16"]["rel_diff_images"]
    print(f"{name:<6} {dataset} IPC {ipc:>2}: " + "  ".join(
        f"{v} {x['cpu_s_per_step']:.3f} CPU s/step {x['speedup_cpu']:.2f}x "
        f"(diff {x['rel_diff_images']:.1e})" for v, x in out["variants"].items()), flush=True)  # fmt: skip
    return out


def _names(cells: list[dict[str, Any]]) -> list[str]:
    return [
        f"{c['method']} {c.get('dataset', 'mnist5k')} ipc {c['ipc']} {c['model']}" for c in cells
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--model", default=None, help="instead of the presets' network")
    ap.add_argument("--variants", default="fp32,bf16", help=f"from {', '.join(VARIANTS)}")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=None, help="instead of each cell's IPC")
    ap.add_argument("--out", default="benchmarks/results/speed_matching_trajectory.json")
    ap.add_argument("--merge", action="store_true", help="add the cells to an existing --out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # preset notes
    train = load_dataset(args.dataset).train
    variants = tuple(args.variants.split(","))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    cells = [time_cell(train, n, args.ipc or CELLS[n], args.rounds, args.steps, args.model,
                       variants, args.dataset)
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
        "speedup": "median over rounds of the baseline's / the variant's CPU seconds of the "
        "same round (the baseline: the first variant)",
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
