"""Cost of one iteration of the performance-matching methods, and of KIP's kernel as the
support set grows.

Part 1: kip (fully connected and convolutional NTK), rfad, frepo, bptt and rtp at their dataset
presets, at each IPC: one warm-up step, then ``--iters`` timed steps of the method's real
``step``. Part 2: one KIP step (after one warm-up step) at support sizes ``--supports`` (total
synthetic images, ``support / K`` per class) for both kernels, with ``--sweep-batch`` real
targets per class, so the kernel's growth with the support is seen apart from the target batch.

Every configuration runs in a fresh child process, so its peak resident memory
(``ddkit.meter.peak_rss_mb``, the process's high-water mark: interpreter, torch, data and the
steps) is its own; the steps' own peak above the resident set at their start
(``ddkit.meter.PeakRSS``) is recorded beside it. Times per step: CPU seconds
(``time.process_time``) and wall seconds, median over the timed steps. Children run with one
torch thread and glibc's mmap threshold at 128 KiB (freed blocks go back to the OS), under an
address-space cap of ``--cap-gib`` GiB above their size at start, so a configuration that would
exhaust the shared machine fails alone with an out-of-memory row instead.

Usage: python benchmarks/campaigns/bench_performance_cost.py [--dataset mnist5k] [--ipcs 1,10] [--iters 3]
       [--supports 10,50,100,200,500] [--sweep-batch 10] [--cap-gib 8] [--no-contended]
Prints Markdown tables and writes benchmarks/results/performance_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ddkit.io import atomic_write_json

#: label -> (method, config overrides on top of the method's dataset preset)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "kip-fc": ("kip", {"architecture": "fc"}),
    "kip-conv": ("kip", {"architecture": "conv", "depth": 3}),
    "rfad": ("rfad", {}),
    "frepo": ("frepo", {}),
    "bptt": ("bptt", {}),
    "rtp": ("rtp", {}),
}
OOM = "out of memory under the address-space cap"


def _cap_address_space(gib: float) -> None:
    """Let this process map at most ``gib`` GiB more than it has mapped now."""
    with open("/proc/self/status") as f:
        size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    limit = size_kb * 1024 + int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _timed_steps(method: Any, warmup: int, iters: int) -> dict[str, Any]:
    """Run ``warmup`` untimed then ``iters`` timed steps; times and memory of the timed ones."""
    from ddkit.meter import PeakRSS

    for it in range(warmup):
        method.step(it)
    wall, cpu, extra = [], [], []
    for it in range(warmup, warmup + iters):
        with PeakRSS(dt=0.005) as meter:
            method.step(it)
        wall.append(meter.seconds)
        cpu.append(meter.cpu_seconds)
        extra.append(meter.extra_mb)
    return {
        "cpu_seconds_per_iteration": statistics.median(cpu),
        "wall_seconds_per_iteration": statistics.median(wall),
        "step_peak_extra_mb": max(extra),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in this (fresh) process."""
    import torch

    torch.set_num_threads(1)
    from ddkit.data import load_dataset
    from ddkit.meter import peak_rss_mb
    from ddkit.methods import create_method

    name, overrides = VARIANTS[args.variant]
    overrides = {**overrides, **json.loads(args.overrides)}
    row: dict[str, Any] = {"variant": args.variant, "method": name, "ipc": args.ipc, **overrides}
    splits = load_dataset(args.dataset)
    row["support"] = args.ipc * splits.spec.num_classes
    _cap_address_space(args.cap_gib)
    m = create_method(name, dataset=args.dataset, ipc=args.ipc, **overrides)
    row["config"] = m.config_dict()
    try:
        m.start(splits.train, args.ipc, seed=0)
        row.update(_timed_steps(m, args.warmup, args.iters))
    except (RuntimeError, MemoryError) as err:
        if "memory" not in str(err).lower():
            raise
        row["error"] = OOM
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def _run_child(
    args: argparse.Namespace, variant: str, ipc: int, iters: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--variant", variant, "--ipc", str(ipc),
           "--iters", str(iters), "--warmup", "1", "--dataset", args.dataset,
           "--cap-gib", str(args.cap_gib), "--overrides", json.dumps(overrides)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "ipc": ipc, **overrides, "error": f"over {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        row = {"variant": variant, "ipc": ipc, **overrides, "error": last}
    else:
        row = json.loads(lines[-1][len("RESULT ") :])
    row["child_wall_seconds"] = time.perf_counter() - t0
    return row


def _cells(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['error']} | | | {row.get('peak_rss_mb', float('nan')):.0f}"
    return (
        f"{row['cpu_seconds_per_iteration']:.3f} | {row['wall_seconds_per_iteration']:.3f} | "
        f"{row['step_peak_extra_mb']:.0f} | {row['peak_rss_mb']:.0f}"
    )


def _print_tables(methods: list[dict[str, Any]], sweep: list[dict[str, Any]]) -> None:
    head = "CPU s / iteration | wall s / iteration | step peak above start (MiB) | peak RSS (MiB) |"
    print(f"\n| method | IPC | {head}\n|---|---|---|---|---|---|")
    for r in methods:
        print(f"| {r['variant']} | {r['ipc']} | {_cells(r)} |")
    print(f"\n| kernel | support | {head}\n|---|---|---|---|---|---|")
    for r in sweep:
        print(f"| {r['variant']} | {r['support']} | {_cells(r)} |")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--supports", default="10,50,100,200,500")
    ap.add_argument("--sweep-batch", type=int, default=10, help="real targets per class (part 2)")
    ap.add_argument("--cap-gib", type=float, default=8.0)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per child")
    ap.add_argument("--contended", action=argparse.BooleanOptionalAction, default=True,
                    help="whether other jobs share the CPU (recorded with the results)")  # fmt: skip
    ap.add_argument("--out", default="benchmarks/results/performance_cost.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--ipc", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return

    from ddkit.meter import machine_info

    info = {**machine_info(), "torch_threads": 1, "contended": args.contended}
    out = Path(args.out)
    results: dict[str, Any] = {"machine": info, "settings": vars(args) | {"child": None}}
    methods: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def save() -> None:
        results.update(methods=methods, kip_support=sweep)
        results["total_seconds"] = time.perf_counter() - t0
        atomic_write_json(out, results)

    for ipc in [int(i) for i in args.ipcs.split(",")]:
        for variant in args.variants.split(","):
            methods.append(_run_child(args, variant, ipc, args.iters, {}))
            print(json.dumps({k: v for k, v in methods[-1].items() if k != "config"}), flush=True)
            save()
    from ddkit.data import load_dataset

    k = load_dataset(args.dataset).spec.num_classes
    for variant in ("kip-fc", "kip-conv"):
        for support in [int(s) for s in args.supports.split(",")]:
            overrides = {"batch_real": args.sweep_batch}
            sweep.append(_run_child(args, variant, support // k, 1, overrides))
            sweep[-1].setdefault("support", support)
            print(json.dumps({k: v for k, v in sweep[-1].items() if k != "config"}), flush=True)
            save()
    _print_tables(methods, sweep)
    print(
        f"\n{info['cpu']}, 1 thread, torch {info['torch']}; total {time.perf_counter() - t0:.0f} s"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
