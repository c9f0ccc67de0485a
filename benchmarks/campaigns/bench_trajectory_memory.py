"""Peak memory and time of one trajectory-matching iteration as a function of the unroll N.

MTT back-propagates through all N student steps (autograd keeps N steps of activations);
TESLA computes the same gradient step by step (ddkit.methods.trajectory.student.tesla_step), keeping
only ceil(sqrt(N)) parameter vectors and one step's graph.

Each (method, N) runs in a fresh child process. Memory is the resident-set high-water mark of
the iteration minus the resident set just before it (Linux: the high-water mark is reset through
/proc/self/clear_refs before every iteration), so data, model and expert files loaded before the
iteration are not counted. The iteration is the method's real ``step`` (expert lookup, DSA, the
backward, optimiser updates). Each child runs ``--iters`` iterations; the memory figure is the
largest over all iterations, the times (wall, and user CPU: the machine may be shared) the median
over all but the first (warm-up).
Children run with glibc's mmap threshold fixed at 128 KiB so freed blocks go back to the OS and
each iteration's high-water mark is its own.

Usage: python benchmarks/campaigns/bench_trajectory_memory.py [--dataset mnist5k] [--ipc 10] [--model ...]
       [--steps 10,20,40,80] [--methods mtt,tesla] [--iters 3] [--threads 1]
Prints a Markdown table and writes benchmarks/results/trajectory_memory.json.
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

from ddkit.io import atomic_write_json


def child(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from ddkit.data import load_dataset
    from ddkit.meter import high_water_mb, reset_high_water, rss_bytes
    from ddkit.methods import create_method
    from ddkit.methods.trajectory import ExpertSettings, train_experts

    splits = load_dataset(args.dataset)
    probe = create_method(args.method, dataset=args.dataset, ipc=args.ipc)
    model = args.model or probe.config.model
    # one expert of 3 epochs is all one iteration needs (start epoch 0, target epoch 2)
    experts = Path(args.experts) / f"{args.dataset}-{model}"
    settings = ExpertSettings(batch_size=probe.config.expert_batch)
    train_experts(splits.train, model, 1, 3, experts, settings, resume=True)
    m = create_method(
        args.method,
        dataset=args.dataset,
        ipc=args.ipc,
        model=model,
        experts_dir=str(experts),
        syn_steps=args.n,
        expert_epochs=2,
        min_start_epoch=0,
        max_start_epoch=1,
    )
    m.start(splits.train, args.ipc, seed=0)  # the initial state; steps are timed below
    peaks, times, cpu = [], [], []
    for it in range(args.iters):
        reset_high_water()
        before = rss_bytes() / 2**20
        t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
        m.step(it)
        times.append(time.perf_counter() - t0)
        cpu.append(resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0)
        peaks.append(high_water_mb() - before)
    c = m.config
    return {
        "method": args.method,
        "syn_steps": args.n,
        "dataset": args.dataset,
        "ipc": args.ipc,
        "model": model,
        "num_params": m.fm_.num_params,
        "batch_syn": c.batch_syn or args.ipc * splits.spec.num_classes,
        "backward": c.backward,
        "peak_step_mb": max(peaks),
        "peaks_mb": peaks,
        "seconds_per_iteration": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "cpu_seconds_per_iteration": statistics.median(cpu[1:]) if len(cpu) > 1 else cpu[0],
        "times": times,
        "cpu_times": cpu,
        "threads": args.threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--model", default=None, help="default: the method's preset for the dataset")
    ap.add_argument("--steps", default="10,20,40,80")
    ap.add_argument("--methods", default="mtt,tesla")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--experts", default="runs/experts/bench")
    ap.add_argument("--out", default="benchmarks/results/trajectory_memory.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return

    rows = []
    for method in args.methods.split(","):
        for n in [int(s) for s in args.steps.split(",")]:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--method",
                method,
                "--n",
                str(n),
                "--dataset",
                args.dataset,
                "--ipc",
                str(args.ipc),
                "--iters",
                str(args.iters),
                "--threads",
                str(args.threads),
                "--experts",
                args.experts,
            ] + (["--model", args.model] if args.model else [])
            # large blocks via mmap, returned to the OS on free: the resident set then tracks live
            # memory and every iteration's high-water mark is its own (not glibc's retained heap)
            env = {
                **os.environ,
                "OMP_NUM_THREADS": str(args.threads),
                "MALLOC_MMAP_THRESHOLD_": "131072",
                "MALLOC_TRIM_THRESHOLD_": "131072",
            }
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                row = {
                    "method": method,
                    "syn_steps": n,
                    "error": (proc.stderr.strip().splitlines() or ["?"])[-1],
                }
            else:
                row = json.loads(lines[-1][len("RESULT ") :])
            rows.append(row)
            print(json.dumps(row), flush=True)

    from ddkit.meter import machine_info

    info = machine_info()
    info["torch_threads"] = args.threads
    first = next((r for r in rows if "error" not in r), {})
    print(
        f"\n{args.dataset}, IPC {args.ipc}, model {first.get('model')} ({first.get('num_params')} parameters), "
        f"student batch {first.get('batch_syn')}; {info['cpu']}, {args.threads} thread(s), torch {info['torch']}\n"
    )
    print(
        "| method | N | peak memory of one iteration (MB) | seconds / iteration (wall) | user CPU seconds / iteration |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['syn_steps']} | failed: {r['error']} | | |")
        else:
            print(
                f"| {r['method']} | {r['syn_steps']} | {r['peak_step_mb']:.0f} | {r['seconds_per_iteration']:.2f} | "
                f"{r['cpu_seconds_per_iteration']:.2f} |"
            )
    ratios = {}
    for method in args.methods.split(","):
        ok = [r for r in rows if r.get("method") == method and "error" not in r]
        if len(ok) >= 2:
            lo, hi = min(ok, key=lambda r: r["syn_steps"]), max(ok, key=lambda r: r["syn_steps"])
            ratios[method] = hi["peak_step_mb"] / lo["peak_step_mb"]
            print(
                f"\n{method}: peak memory N={hi['syn_steps']} / N={lo['syn_steps']} = {ratios[method]:.2f}x",
                end="",
            )
    print()
    out = Path(args.out)
    atomic_write_json(
        out,
        {
            "machine": info,
            "settings": vars(args) | {"child": None},
            "rows": rows,
            "ratio_max_over_min_n": ratios,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
