"""Choose the demo's method and budget on a validation split of digits (never the test split).

Each candidate (method, iterations) distils digits' train split less a stratified 20 %
validation split (seed 0) at IPC 10 and is scored by protocol ``fast`` (3 fresh networks) on
the validation split, beside random real images; distillation CPU seconds are recorded, since
the demo has to finish its compute in under 3 minutes on 2 cores.

Usage: python benchmarks/studies/choose_demo.py [--out benchmarks/results/demo_choice.json]
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
    args = ap.parse_args()
    splits = load_dataset("digits", val_fraction=0.2, seed=0)
    rows = []
    for method, iterations in CANDIDATES:
        m = create_method(method, dataset="digits", ipc=10)
        wall, cpu = time.perf_counter(), time.process_time()
        syn = m.fit(splits.train, 10, iterations=iterations, seed=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        r = evaluate(syn, splits.val, "fast", seed=0).results[0]
        rows.append(
            {
                "method": method,
                "iterations": iterations,
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
            "ipc": 10,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
