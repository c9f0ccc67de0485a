"""Choose the demo's method and budget on a validation split of digits (never the test split).

Each candidate (method, iterations) distils digits' train split less a stratified 20 %
validation split (seed 0) at IPC 10 (``--ipc``) and is scored by protocol ``fast`` (3 fresh
networks) on the validation split, beside random real images (``--draws`` random draws, each
scored by 3 networks); distillation CPU seconds are recorded, since the demo has to finish its
compute in under 3 minutes on 2 cores.

Usage: python benchmarks/studies/choose_demo.py [--ipc 10] [--draws 1]
       [--candidates dm:200,dsa:4] [--out benchmarks/results/demo_choice.json]
"""

from __future__ import annotations

import argparse
import time

from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.methods import create_method

CANDIDATES = [("random", 0), ("dm", 200), ("dm", 400), ("dsa", 4), ("dc", 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="benchmarks/results/demo_choice.json")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--draws", type=int, default=1, help="random draws (seeds 0..draws-1)")
    ap.add_argument("--candidates", default=None, help="METHOD:ITERATIONS,... (default: the list)")
    args = ap.parse_args()
    candidates = CANDIDATES
    if args.candidates:
        candidates = [(m, int(i)) for m, i in (c.split(":") for c in args.candidates.split(","))]
    candidates = [c for c in candidates if c[0] != "random"]
    candidates = [("random", 0, seed) for seed in range(args.draws)] + [(*c, 0) for c in candidates]
    splits = load_dataset("digits", val_fraction=0.2, seed=0)
    rows = []
    for method, iterations, seed in candidates:
        m = create_method(method, dataset="digits", ipc=args.ipc)
        wall, cpu = time.perf_counter(), time.process_time()
        syn = m.fit(splits.train, args.ipc, iterations=iterations, seed=seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        r = evaluate(syn, splits.val, "fast", seed=0).results[0]
        rows.append(
            {
                "method": method,
                "iterations": iterations,
                "seed": seed,
                "accuracies": r.accuracies,
                "mean": r.mean,
                "std": r.std,
                "distill_wall_s": wall,
                "distill_cpu_s": cpu,
            }
        )
        print(
            f"{method:<7} {iterations:>5} its  val {100 * r.mean:.2f} ± {100 * r.std:.2f}  "
            f"distill {wall:.0f}s wall, {cpu:.0f}s CPU",
            flush=True,
        )
    atomic_write_json(
        args.out,
        {
            "split": "digits train less 20 % validation (seed 0)",
            "protocol": "fast",
            "ipc": args.ipc,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
