"""Learned labels for the kernel methods: kip and frepo with fixed and with learned labels.

For each method and IPC, the same seed and budget (the method's dataset preset), once with
fixed one-hot labels and once with ``learn_labels=True``; each set is evaluated under the
cross-entropy protocol ``fast`` (a regression set trains on its argmax there) and under ``mse``
(MSE against the stored vectors, as the kernel papers evaluate). Random real images sit beside
them under both. Final-epoch test accuracy, mean ± std over 3 networks. Nothing is tuned here.

Usage: python benchmarks/studies/bench_label_learning.py [--dataset digits] [--ipcs 1,10] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.eval.protocol import get_protocol
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods import create_method, load_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--methods", default="kip,frepo")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load_all()
    out = Path(args.out or f"benchmarks/results/label_learning_{args.dataset}.json")
    splits = load_dataset(args.dataset)
    protocols = [get_protocol("fast"), get_protocol("mse").with_(runs=3)]
    rows = []
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        variants = [("random", {})] + [
            (m, {"learn_labels": learn}) for m in args.methods.split(",") for learn in (False, True)
        ]
        for method, options in variants:
            t0 = time.perf_counter()
            m = create_method(method, dataset=args.dataset, ipc=ipc, **options)
            syn = m.fit(splits.train, ipc, seed=0)
            row = {"dataset": args.dataset, "ipc": ipc, "method": method, **options,
                   "distill_seconds": time.perf_counter() - t0, "regression": syn.regression}  # fmt: skip
            for p in protocols:
                r = evaluate(syn, splits.test, p, seed=0).results[0]
                row[p.name] = {"accuracies": r.accuracies, "mean": r.mean, "std": r.std}
            print(f"IPC {ipc} {method:<6} {options}: " + ", ".join(
                f"{p.name} {100 * row[p.name]['mean']:.2f} ± {100 * row[p.name]['std']:.2f}"
                for p in protocols), flush=True)  # fmt: skip
            rows.append(row)
            atomic_write_json(out, {"machine": machine_info(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
