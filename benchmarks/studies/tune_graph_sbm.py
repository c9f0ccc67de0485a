"""Which step sizes for gcond / doscond on the generated SBM graph? Chosen on a validation split.

The authors' learning rates (1e-4 for the node features and the adjacency MLP, the adjacency
trained on 10 of every 50 iterations) against ddkit's sbm preset (1e-2, 4 of every 20), at IPC 5,
each method with its preset's iteration budget. The condensed graph is distilled from sbm's train
nodes less a validation part (20 %, seed 0) and judged by the GCN of the ``graph`` protocol on
those validation nodes (final epoch, 3 seeds), beside random real nodes of the same size; the
test nodes are not read.

Usage: python benchmarks/studies/tune_graph_sbm.py [--out benchmarks/results/tune_graph_sbm_ipc5.json]
"""

from __future__ import annotations

import argparse
import time

from ddkit.data import load_dataset
from ddkit.eval.graph import evaluate_graph
from ddkit.io import atomic_write_json
from ddkit.methods import create_method

PUBLISHED = {"lr_img": 1e-4, "lr_adj": 1e-4, "structure_every": 50, "structure_steps": 10}
CANDIDATES = {"published (1e-4)": PUBLISHED, "preset (1e-2)": {}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/tune_graph_sbm_ipc5.json")
    ap.add_argument("--ipc", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    splits = load_dataset("sbm", val_fraction=0.2, seed=0)
    rows = []
    for method in ("gcond", "doscond"):
        for label, options in CANDIDATES.items():
            t0 = time.perf_counter()
            distiller = create_method(method, dataset="sbm", ipc=args.ipc, **options)
            syn = distiller.fit(splits.train, args.ipc, seed=0)
            seconds = time.perf_counter() - t0
            report = evaluate_graph(syn, splits.val, runs=args.runs, seed=0)
            results = {r.model: {"mean": r.mean, "std": r.std} for r in report.results}
            rows.append(
                {
                    "method": method,
                    "candidate": label,
                    "options": distiller.config_dict(),
                    "distill_seconds": seconds,
                    "validation": results,
                }  # fmt: skip
            )
            print(method, label, {k: f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"
                                  for k, v in results.items()})  # fmt: skip
            atomic_write_json(args.out, {"dataset": "sbm", "ipc": args.ipc, "runs": args.runs,
                                         "split": "validation: 20 % of train nodes, seed 0",
                                         "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
