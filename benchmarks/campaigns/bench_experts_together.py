"""Expert trajectories trained together (one vmap-ed network, ``train_experts(together=K)``)
against one after another (``together=1``): seconds per expert-epoch, and how far apart the
two buffers end (they differ by rounding only).

Usage: python benchmarks/campaigns/bench_experts_together.py [--datasets digits,mnist5k] [--experts 4]
       [--epochs 1] [--model convnet] [--device cpu] [--out FILE]
Prints one JSON line per dataset and a Markdown table; writes
benchmarks/results/experts_together_<device>.json unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ddkit.data import load_dataset
from ddkit.errors import run_script
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods.trajectory.experts import ExpertSettings, train_experts


def _measure(train, args: argparse.Namespace, together: int, folder: Path) -> tuple[float, Any]:
    if train.images.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    buf = train_experts(train, args.model, args.experts, args.epochs, folder,
                        ExpertSettings(seed=args.seed), together=together)  # fmt: skip
    if train.images.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, buf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="digits,mnist5k")
    ap.add_argument("--experts", type=int, default=4, help="experts, all trained together")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or f"benchmarks/results/experts_together_{torch.device(args.device).type}.json"
    rows = []
    for name in args.datasets.split(","):
        train = load_dataset(name).train.to(args.device)
        row: dict[str, Any] = {"dataset": name, "images": len(train), "experts": args.experts,
                               "epochs": args.epochs, "model": args.model}  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            seconds = {}
            buffers = {}
            for mode, together in (("one_by_one", 1), ("together", args.experts)):
                seconds[mode], buffers[mode] = _measure(train, args, together, Path(tmp) / mode)
                row[f"{mode}_s_per_expert_epoch"] = seconds[mode] / (args.experts * args.epochs)
            row["speedup"] = seconds["one_by_one"] / seconds["together"]
            row["max_abs_param_difference"] = max(
                float((buffers["one_by_one"].params(e, args.epochs)
                       - buffers["together"].params(e, args.epochs)).abs().max())
                for e in range(args.experts)
            )  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = machine_info()
    atomic_write_json(out, {"machine": info, "device": args.device, "rows": rows})
    print(f"\nMachine: {info['cpu']}, torch {info['torch']} ({info['torch_threads']} threads), "
          f"device {args.device}\n")  # fmt: skip
    print("| dataset | images | experts x epochs | one by one s / expert-epoch | together s / "
          "expert-epoch | speed-up | max abs parameter difference |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['images']} | {r['experts']} x {r['epochs']} | "
              f"{r['one_by_one_s_per_expert_epoch']:.2f} | {r['together_s_per_expert_epoch']:.2f} "
              f"| {r['speedup']:.2f}x | {r['max_abs_param_difference']:.1e} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_script(main, "bench_experts_together")
