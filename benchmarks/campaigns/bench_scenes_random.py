"""How weak random pairs are on the compositional scenes (issue 86): recall of random real pairs
beside the full data.

``bench_vl_recall.py`` with one cell, ``vl-random`` (as many real pairs drawn with the seed, one
caption each), on ``scenes-mnist-fashion`` (:mod:`ddkit.data.scenes`): the first size also
trains the evaluator's ``random pairs`` row (drawn per run) and the ``full data`` row, under the
same recipe and towers as the vision-language table (a ConvNet-3 of width 32 and the built-in
text tower). Every flag of ``bench_vl_recall.py`` applies; the dataset and the output default to
the scenes'. Run one size per process to use two cores (the second with ``--no-baselines``):

    nice python benchmarks/campaigns/bench_scenes_random.py --sizes 100 --runs 1
    nice python benchmarks/campaigns/bench_scenes_random.py --sizes 500 --runs 1 --no-baselines \\
        --out benchmarks/results/vl_scenes_random_500.json
"""

from __future__ import annotations

import sys

import bench_vl_recall as vl

DEFAULTS = ["--dataset", "scenes-mnist-fashion",
            "--out", "benchmarks/results/vl_scenes_random.json"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    vl.CELLS = (("vl-random", "vl-random", {}),)
    return vl.main([*DEFAULTS, *(argv or [])])  # a flag given later wins


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
