"""How much a set's score depends on the evaluation recipe: stored vs hard targets, short vs long.

Distils each method once (dataset, IPC, iterations, seed given) and evaluates the same set under
each protocol twice: trained on the labels it stores (``targets="stored"``: soft or learned
labels as they are) and on their argmax (``targets="hard"``); random real images of the same IPC
are evaluated under the same protocols. Final-epoch test accuracy, mean ± std over the
protocol's runs. Rows already in the output file are kept (the run resumes). Nothing is tuned.

Usage: python benchmarks/campaigns/bench_protocol_targets.py [--dataset digits] [--ipc 1]
       [--methods rtp] [--iterations 200] [--protocols fast,dsa] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--methods", default="rtp")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--protocols", default="fast,dsa")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load_all()
    out = Path(args.out or f"benchmarks/results/protocol_targets_{args.dataset}.json")
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    splits = load_dataset(args.dataset)
    for method in ["random", *args.methods.split(",")]:
        done = {(r["protocol"], r["targets"]) for r in rows
                if (r["method"], r["ipc"], r["iterations"]) == (method, args.ipc, args.iterations)}  # fmt: skip
        todo = [(p, t) for p in args.protocols.split(",") for t in ("stored", "hard")
                if (p, t) not in done]  # fmt: skip
        if not todo:
            continue
        t0 = time.perf_counter()
        iterations = None if method == "random" else args.iterations
        syn = create_method(method, dataset=args.dataset, ipc=args.ipc).fit(
            splits.train, args.ipc, iterations=iterations, seed=args.seed
        )
        distill = time.perf_counter() - t0
        for name, targets in todo:
            protocol = dataclasses.replace(get_protocol(name), targets=targets)
            r = evaluate(syn, splits.test, protocol, seed=args.seed).results[0]
            rows.append({
                "dataset": args.dataset, "ipc": args.ipc, "method": method,
                "iterations": args.iterations, "images": len(syn), "protocol": name,
                "epochs": protocol.epochs, "targets": targets, "accuracies": r.accuracies,
                "mean": r.mean, "std": r.std, "train_accuracies": r.train_accuracies,
                "distill_seconds": distill, "seed": args.seed,
            })  # fmt: skip
            print(
                f"{method} {name} {targets}: {100 * r.mean:.2f} ± {100 * r.std:.2f} %", flush=True
            )
            atomic_write_json(out, {"machine": machine_info(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
