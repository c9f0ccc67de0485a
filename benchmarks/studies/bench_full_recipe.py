"""Is a cheap full-data recipe as good as the long one? Chosen on a validation split.

Trains fresh networks on a dataset's whole training split (less a stratified validation split,
seed 0) under the long reference recipe (protocol ``dsa``: batch 256, DSA, 300 epochs) and under
cheaper candidates, and reports final-epoch **validation** accuracy and the cost in image-steps
(images x epochs x runs: what the CPU time is proportional to). The cheapest candidate whose mean
lies within the long recipe's standard deviation plus its own is then run once on the test split,
beside the long recipe, so that BENCHMARKS.md can show both. Nothing is chosen on the test split.

Usage: python benchmarks/studies/bench_full_recipe.py [--dataset digits] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import time

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.eval.protocol import get_protocol
from ddkit.io import atomic_write_json

CANDIDATES = [  # (name, protocol, overrides)
    ("long: dsa 300 epochs", "dsa", {"epochs": 300}),
    ("batch 32, 20 epochs", "dc", {"batch_size": 32, "epochs": 20}),
    ("batch 32, 10 epochs", "dc", {"batch_size": 32, "epochs": 10}),
    ("batch 64, 20 epochs", "dc", {"batch_size": 64, "epochs": 20}),
    ("batch 32, 20 epochs, DSA", "dc", {"batch_size": 32, "epochs": 20, "augment": "dsa"}),
]


def _run(train: SyntheticSet, test, protocol: str, overrides: dict, runs: int) -> dict:
    p = get_protocol(protocol).with_(**overrides, runs=runs)
    t0 = time.perf_counter()
    r = evaluate(train, test, p, seed=0).results[0]
    return {
        "protocol": p.to_dict(),
        "accuracies": r.accuracies,
        "mean": r.mean,
        "std": r.std,
        "image_steps": len(train) * p.epochs * p.runs,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    splits = load_dataset(args.dataset, val_fraction=0.2, seed=0)
    train = SyntheticSet.from_real(splits.train)
    rows = []
    for name, protocol, overrides in CANDIDATES:
        row = {"name": name, **_run(train, splits.val, protocol, overrides, args.runs)}
        rows.append(row)
        print(
            f"val  {name:<34} {100 * row['mean']:.2f} ± {100 * row['std']:.2f}  "
            f"{row['image_steps']:>9} image-steps  {row['seconds']:.0f}s",
            flush=True,
        )
    long = rows[0]
    fit = [r for r in rows[1:] if long["mean"] - r["mean"] <= long["std"] + r["std"]]
    chosen = min(fit, key=lambda r: r["image_steps"]) if fit else long
    print(f"chosen on validation: {chosen['name']}")
    full = SyntheticSet.from_real(load_dataset(args.dataset).train)
    test = load_dataset(args.dataset).test
    tests = []
    for name, protocol, overrides in CANDIDATES:
        if name in (long["name"], chosen["name"]):
            row = {"name": name, **_run(full, test, protocol, overrides, args.runs)}
            tests.append(row)
            print(
                f"test {name:<34} {100 * row['mean']:.2f} ± {100 * row['std']:.2f}  "
                f"{row['image_steps']:>9} image-steps  {row['seconds']:.0f}s",
                flush=True,
            )
    out = args.out or f"benchmarks/results/full_recipe_{args.dataset}.json"
    atomic_write_json(
        out, {"dataset": args.dataset, "validation": rows, "chosen": chosen["name"], "test": tests}
    )


if __name__ == "__main__":
    main()
