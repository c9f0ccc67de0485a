"""Accuracy of MTT / TESLA / DATM next to random real images and DM, under one protocol.

Uses the ddkit benchmark harness (``ddkit.bench.run_suite``: one child process per cell, the
method's per-dataset preset, final-epoch test accuracy of ``runs`` fresh ConvNet-3 networks, nothing
selected on the test split) with a suite defined here: protocol ``fast`` (100 epochs, DSA,
SGD 0.01 momentum 0.9 -- or the set's learned lr), 3 runs, ``--iterations`` distillation iterations
for the trajectory methods (200, as the ``quick`` suite), 500 for DM. Expert buffers are trained on
first use into runs/experts/ (their time is part of the first cell's distill seconds).

Usage: python benchmarks/bench_trajectory_accuracy.py [--datasets digits] [--ipcs 1,10,50]
       [--methods random,dm,mtt,tesla,datm] [--iterations 200]
Writes benchmarks/results/trajectory_accuracy.json and .md (re-running skips finished cells).
"""

from __future__ import annotations

import argparse

from ddkit.bench import run_suite
from ddkit.bench.suites import SUITES, Suite


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="digits")
    ap.add_argument("--ipcs", default="1,10,50")
    ap.add_argument("--methods", default="random,dm,mtt,tesla,datm")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--protocol", default="fast")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="trajectory_accuracy")
    args = ap.parse_args()
    its = args.iterations
    suite = Suite(
        name=args.name,
        datasets=tuple(args.datasets.split(",")),
        ipcs=tuple(int(i) for i in args.ipcs.split(",")),
        protocol=args.protocol,
        runs=args.runs,
        methods=tuple(args.methods.split(",")),
        iterations={"mtt": its, "tesla": its, "datm": its, "dm": 500},
        full_data=False,
    )
    if args.name not in SUITES.names():
        SUITES.add(
            args.name,
            suite,
            help="trajectory-matching accuracy (benchmarks/bench_trajectory_accuracy.py)",
        )
    run_suite(
        args.name, results_dir="benchmarks/results", markdown=f"benchmarks/results/{args.name}.md"
    )


if __name__ == "__main__":
    main()
