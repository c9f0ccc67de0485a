"""Seconds per outer iteration and peak memory: vectorised vs class-loop matching methods.

For each method, two instances are built with the same seed and configuration except the
implementation of the per-class step (``vectorize=True``: ``torch.func``; ``False``: the plain
class-by-class loop). Their outer iterations are run alternately (vectorised, loop, vectorised,
...), so both see the same machine load; after every iteration the two sets of synthetic images
are compared (max abs difference: the implementations are equal up to float rounding).

Peak memory: a sampling thread reads the process's resident set size (``/proc/self/statm``)
every millisecond during a step; reported is the peak minus the RSS just before the step
(``tracemalloc`` does not see PyTorch's allocations). Before each step freed heap memory is handed
back to the OS (glibc ``malloc_trim``), so one implementation's freed-but-kept memory does not
hide the other's allocations. ``ru_maxrss`` of the whole run is also recorded.

Agreement: the matching loss of DC/DSA is ill-conditioned (``1 - cos`` of gradient rows with
tiny norms), so float32 rounding differences between any two implementations grow from one
iteration to the next. The check is therefore per iteration from identical states: if the
vectorised step function has a ``sync`` attribute, it is called after each comparison to copy the
loop's state into the vectorised instance (both use the same random draws throughout). Inside an
iteration the network's inner-loop training amplifies differences too (identical code in both
paths; even in float64 a 5e-13 image difference became a 7e-4 weight difference after 50 epochs
on 8x8 digits), so the tight agreement check is ``--outer-loop 1`` (one matching step per
iteration); exact equality of the two paths is tested in float64 in
``tests/test_gradient_matching.py``.

Adding a method: put ``name -> factory`` in :data:`METHODS`, where
``factory(train, ipc, seed, overrides) -> (vectorised_step, loop_step)`` and each step is a
zero-argument callable that runs one outer iteration and returns the current synthetic images
(optionally with a ``sync()`` attribute on the vectorised one, see above).

Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/campaigns/bench_matching_speed.py \
        --dataset mnist5k --ipc 10 --iters 3 --methods dc,dsa --outer-loop 1
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ddkit.data import load_dataset
from ddkit.data.dataset import ImageDataset
from ddkit.io import atomic_write_json
from ddkit.meter import PeakRSS, peak_rss_mb
from ddkit.methods import create_method

StepFn = Callable[[], torch.Tensor]
PairFactory = Callable[[ImageDataset, int, int, dict[str, Any]], tuple[StepFn, StepFn]]


def distiller_pair(
    name: str, train: ImageDataset, ipc: int, seed: int, overrides: dict[str, Any]
) -> tuple[StepFn, StepFn]:
    """(vectorised, loop) step functions of a Distiller with a ``vectorize`` config field."""

    def make(vectorize: bool) -> StepFn:
        m = create_method(name, dataset=train.spec.name, ipc=ipc, vectorize=vectorize, **overrides)
        m.start(train, ipc, seed=seed)  # the initial state; steps are timed below
        counter = itertools.count()

        def step() -> torch.Tensor:
            m.step(next(counter))
            return m.state_["images"].detach()

        step.method = m  # type: ignore[attr-defined]
        return step

    vec, loop = make(True), make(False)

    def sync() -> None:
        """Copy the loop instance's images and optimiser state into the vectorised one."""
        a, b = vec.method.state_, loop.method.state_  # type: ignore[attr-defined]
        with torch.no_grad():
            a["images"].copy_(b["images"])
        a["opt_img"].load_state_dict(copy.deepcopy(b["opt_img"].state_dict()))  # own buffers

    vec.sync = sync  # type: ignore[attr-defined]
    return vec, loop


#: method -> factory of (vectorised_step_fn, loop_step_fn)
METHODS: dict[str, PairFactory] = {
    "dc": partial(distiller_pair, "dc"),
    "dsa": partial(distiller_pair, "dsa"),
}


def bench(
    name: str, train: ImageDataset, ipc: int, iters: int, seed: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    vec_step, loop_step = METHODS[name](train, ipc, seed, overrides)
    rows: dict[str, dict[str, list[float]]] = {
        "vectorised": {"seconds": [], "peak_mb": []},
        "loop": {"seconds": [], "peak_mb": []},
    }
    diffs, updates = [], []
    # images before each iteration, to put the differences in scale
    prev = (
        loop_step.method.state_["images"].detach().clone() if hasattr(loop_step, "method") else None
    )
    for it in range(iters):
        out = {}
        for label, fn in (("vectorised", vec_step), ("loop", loop_step)):
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                out[label] = fn().clone()
                dt = time.perf_counter() - t0
            rows[label]["seconds"].append(dt)
            rows[label]["peak_mb"].append(mem.extra_mb)
            print(
                f"  {name} iteration {it} {label:<10} {dt:8.2f} s  peak +{mem.extra_mb:8.1f} MB",
                flush=True,
            )
        diffs.append(float((out["vectorised"] - out["loop"]).abs().max()))
        if prev is not None:
            updates.append(float((out["loop"] - prev).abs().max()))
        prev = out["loop"]
        if hasattr(vec_step, "sync"):
            vec_step.sync()
    meth = getattr(vec_step, "method", None)
    sched = {}
    if meth is not None:
        sched = {
            "outer_loop": meth.outer_loop_,
            "inner_loop": meth.inner_loop_,
            "real_batch": meth.real_batch_,
            "model": meth.config.model,
        }
    # the first iteration includes one-off costs (allocator warm-up): report the rest when possible
    use = slice(1, None) if iters > 1 else slice(None)
    res = {
        "method": name,
        "iterations": iters,
        "schedule": sched,
        "overrides": overrides,
        "max_abs_diff": diffs,
        "max_abs_update_per_iteration": updates,
    }
    for label, r in rows.items():
        secs = r["seconds"][use]
        res[label] = {
            "seconds": r["seconds"],
            "peak_mb": r["peak_mb"],
            "mean_seconds": sum(secs) / len(secs),
            "max_peak_mb": max(r["peak_mb"]),
        }
    res["speedup"] = res["loop"]["mean_seconds"] / res["vectorised"]["mean_seconds"]
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument(
        "--model", default="convnet", help="network (the issue's setting: ConvNet-3, width 128)"
    )
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--iters", type=int, default=3, help="outer iterations per implementation")
    ap.add_argument("--methods", default="dc,dsa")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-real", type=int, default=256)
    ap.add_argument("--outer-loop", type=int, default=None, help="override the preset outer loop")
    ap.add_argument("--inner-loop", type=int, default=None, help="override the preset inner loop")
    ap.add_argument(
        "--class-chunk", type=int, default=None, help="classes per vmap call (vectorised memory)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results"))
    ap.add_argument("--suffix", default="", help="appended to the result file names")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train = load_dataset(args.dataset).train
    overrides: dict[str, Any] = {"batch_real": args.batch_real, "model": args.model}
    if args.outer_loop is not None:
        overrides["outer_loop"] = args.outer_loop
    if args.inner_loop is not None:
        overrides["inner_loop"] = args.inner_loop
    if args.class_chunk is not None:
        overrides["class_chunk"] = args.class_chunk
    env = {
        "dataset": args.dataset,
        "ipc": args.ipc,
        "seed": args.seed,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
    }
    results = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        print(
            f"{name}: {args.dataset} IPC {args.ipc}, {args.iters} iterations per implementation",
            flush=True,
        )
        r = bench(name, train, args.ipc, args.iters, args.seed, overrides)
        r["command"] = "benchmarks/campaigns/bench_matching_speed.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        r["env"] = {
            **env,
            "load_avg_end": os.getloadavg(),
            "ru_maxrss_mb": peak_rss_mb(),
        }
        results.append(r)
        atomic_write_json(Path(args.out) / f"matching_speed_{name}{args.suffix}.json", r)
    print()
    print(
        "| method | schedule (outer, inner) | real batch | s/iter vectorised | s/iter loop | speed-up | "
        "peak MB vectorised | peak MB loop | max abs diff (max abs update) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["schedule"]
        print(
            f"| {r['method']} | ({s.get('outer_loop')}, {s.get('inner_loop')}) | {s.get('real_batch')} | "
            f"{r['vectorised']['mean_seconds']:.2f} | {r['loop']['mean_seconds']:.2f} | {r['speedup']:.2f}x | "
            f"{r['vectorised']['max_peak_mb']:.0f} | {r['loop']['max_peak_mb']:.0f} | {max(r['max_abs_diff']):.1e} "
            f"({max(r['max_abs_update_per_iteration'] or [float('nan')]):.2g}) |"
        )
    print(
        f"\n{args.dataset} IPC {args.ipc}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        "speed-up = loop / vectorised (mean over iterations after the first)"
    )


if __name__ == "__main__":
    main()
