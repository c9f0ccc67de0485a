"""Seconds per iteration and peak memory of DM / IDM: vectorised over classes vs the class loop.

For every method, instances are built with the same seed and configuration except the matching
implementation: ``vectorised`` (all classes' real images in one forward, all synthetic images in
another; ``vectorize=True``), ``vectorised+chunk`` (the same with the real forward split into
pieces of ``--chunk`` images, bounding memory) and ``class-loop`` (the plain class-by-class
step, ``vectorize=False``). Their iterations run alternately (vectorised, chunked, loop,
vectorised, ...) so they see the same machine load; the reported time per iteration is the
median over iterations after the first (warm-up). All variants consume the same random draws,
so their synthetic images must agree up to float rounding: the max abs difference to the loop
after the last iteration is reported.

Peak memory: on CPU a sampling thread reads the resident set size (``/proc/self/statm``) every
millisecond during a step; reported is the peak minus the RSS just before the step (the extra
memory one iteration needs). On CUDA: ``torch.cuda.max_memory_allocated`` per step.

Writes a Markdown table to stdout and JSON to ``benchmarks/results/dm_speed.json``. Example::

    .venv/bin/python benchmarks/campaigns/bench_dm_speed.py --dataset mnist5k --ipc 10 --iters 5 --methods dm,idm
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ddkit.data import load_dataset
from ddkit.io import atomic_write_json
from ddkit.meter import PeakRSS, rss_bytes
from ddkit.methods import create_method


def machine() -> dict[str, Any]:
    try:
        from ddkit.meter import machine_info

        return machine_info()
    except Exception:  # noqa: BLE001 - informational only
        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    # CPU seconds are robust to other processes on a shared machine: with one torch thread all
    # compute runs on this thread (the RSS sampler is another thread and is not counted)
    cpu_clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
    device = torch.device(args.device)
    splits = load_dataset(args.dataset)
    train = splits.train
    variants: dict[str, dict[str, Any]] = {"vectorised": {"vectorize": True}}
    if args.chunk > 0:
        variants[f"vectorised+chunk{args.chunk}"] = {"vectorize": True, "embed_chunk": args.chunk}
    variants["class-loop"] = {"vectorize": False}
    rows = []
    for name in args.methods.split(","):
        common = {"batch_real": args.batch_real, "model": args.model, "device": args.device}
        if args.dsa_strategy:
            common["augment"] = args.dsa_strategy
        methods = {}
        for v, over in variants.items():
            m = create_method(name, dataset=train.spec.name, ipc=args.ipc, **common, **over)
            m.start(train, args.ipc, seed=args.seed)  # the initial state; steps are timed below
            methods[v] = m
        cfg = next(iter(methods.values())).config
        times: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        mem: dict[str, list[float]] = {v: [] for v in variants}
        for it in range(args.iters):
            for v, m in methods.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                with PeakRSS() as rss:
                    t0, c0 = time.perf_counter(), cpu_clock()
                    m.step(it)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times[v].append(time.perf_counter() - t0)
                    cpu[v].append(cpu_clock() - c0)
                extra = (
                    (torch.cuda.max_memory_allocated() - base) / 2**20
                    if device.type == "cuda"
                    else rss.extra_mb
                )
                mem[v].append(extra)
            print(
                f"[{name}] iteration {it + 1}/{args.iters}: "
                + ", ".join(
                    f"{v} {times[v][-1]:.2f}s wall / {cpu[v][-1]:.2f}s cpu" for v in variants
                ),
                flush=True,
            )
        ref_images = methods["class-loop"].result().images

        def median(xs: list[float]) -> float:
            return statistics.median(xs[1:] or xs)  # the first iteration is warm-up

        for v, m in methods.items():
            med, cmed = median(times[v]), median(cpu[v])
            rows.append(
                {
                    "method": name,
                    "variant": v,
                    "seconds_per_iteration": med,
                    "cpu_seconds_per_iteration": cmed,
                    "min_seconds": min(times[v][1:] or times[v]),
                    "all_seconds": times[v],
                    "all_cpu_seconds": cpu[v],
                    "speedup_vs_loop": median(times["class-loop"]) / med,
                    "cpu_speedup_vs_loop": median(cpu["class-loop"]) / cmed,
                    "peak_extra_mb": max(mem[v]),
                    "max_abs_diff_vs_loop": float((m.result().images - ref_images).abs().max()),
                    "config": m.config_dict(),
                }
            )
        del methods
        print(f"[{name}] done ({cfg.model}, real batch {cfg.batch_real}/class)", flush=True)
    return {
        "benchmark": "dm_speed",
        "dataset": args.dataset,
        "ipc": args.ipc,
        "iterations_timed": args.iters,
        "warmup_excluded": 1 if args.iters > 1 else 0,
        "seed": args.seed,
        "device": str(device),
        "batch_real": args.batch_real,
        "model": args.model,
        "machine": machine(),
        "rss_at_end_mb": rss_bytes() / 2**20,
        "rows": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    mem_kind = "GPU" if res["device"].startswith("cuda") else "RSS"
    lines = [
        f"DM/IDM speed: {res['dataset']}, IPC {res['ipc']}, {res['model']}, real batch {res['batch_real']} "
        f"per class, {res['device']}, {res['machine'].get('torch_threads', '?')} torch threads; median of "
        f"{res['iterations_timed'] - res['warmup_excluded']} iterations after {res['warmup_excluded']} warm-up",
        "",
        f"| method | variant | wall s / it | speed-up (wall) | CPU s / it | speed-up (CPU) "
        f"| peak extra {mem_kind} (MB) | max abs diff vs loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['variant']} | {r['seconds_per_iteration']:.3f} | "
            f"{r['speedup_vs_loop']:.2f}x | {r['cpu_seconds_per_iteration']:.3f} | "
            f"{r['cpu_speedup_vs_loop']:.2f}x | {r['peak_extra_mb']:.0f} | {r['max_abs_diff_vs_loop']:.2e} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument(
        "--iters", type=int, default=5, help="iterations per variant (the first is warm-up)"
    )
    p.add_argument("--methods", default="dm,idm")
    p.add_argument(
        "--batch-real", type=int, default=256, help="real images per class per iteration"
    )
    p.add_argument("--model", default="convnet")
    p.add_argument(
        "--chunk",
        type=int,
        default=512,
        help="also time the real forward in pieces of this many images (0: skip)",
    )
    p.add_argument(
        "--dsa-strategy", default=None, help="override the DSA strategy (default: by dataset)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/dm_speed.json")
    args = p.parse_args()
    res = run(args)
    print()
    print(markdown(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, res)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
