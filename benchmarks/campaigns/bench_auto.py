"""``--method auto`` within a time budget, judged as the tables it is compared with judge (issue 87).

For every cell ``DATASET:IPC:BUDGET`` (default: mnist5k at IPC 1, 10 and 50 with 30 minutes each;
letter and gunpoint at IPC 1 and 10): ``ddkit distill --method auto`` from a cold start, its wall
clock timed here (the command's start to its end, data loading included), then ``ddkit
evaluate`` of the set by the recipe of the table it is compared with: mnist5k by the
``standard`` suite's (protocol ``dsa``, ConvNet-3 width 32, 300 epochs, 3 networks), letter by
``tabular.sh``'s learners and gunpoint by ``timeseries.sh``'s (5 seeds where a learner is
random, exact mode as those campaigns ran). Nothing is chosen on the test split: the tournament
scores its candidates on a validation split carved from the training split, and the test split
is read only by the evaluation.

Per cell, ``benchmarks/results/auto/DATASET-ipcK.json`` keeps the budget, the wall seconds, the
decision record (every candidate, its cost, validation accuracy and why it stopped), the winner's
iterations and the evaluation report (also ``DATASET-auto-ipcK.json``, as ``ddkit evaluate``
writes it). Resumable: a cell whose set exists is not distilled again, an evaluation that
exists is not run again; run folders and logs are kept under ``--runs``.

    python benchmarks/campaigns/bench_auto.py                       # every cell
    python benchmarks/campaigns/bench_auto.py --cells gunpoint:1:5m  # one
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from ddkit.io import atomic_write_json
from ddkit.progress import parse_duration

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "auto"
DDKIT = ROOT / ".venv" / "bin" / "ddkit"
CELLS = (
    "mnist5k:1:30m",
    "mnist5k:10:30m",
    "mnist5k:50:30m",
    "gunpoint:1:5m",
    "gunpoint:10:5m",
    "letter:1:5m",
    "letter:10:5m",
)
#: the evaluation of each dataset's set: the recipe of the table it is compared with
EVALUATION = {
    "mnist5k": ["--protocol", "dsa", "--models", "convnet-w32", "--epochs", "300", "--runs", "3"],
    "letter": ["--learners", "logreg,knn,rf,gb,mlp", "--runs", "5"],
    "gunpoint": ["--learners", "rocket,conv1d,resnet1d,knn", "--runs", "5"],
}
#: the datasets whose tables were measured in exact mode (float32, eager)
EXACT = ("letter", "gunpoint")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--cells", nargs="+", default=list(CELLS), help="DATASET:IPC:BUDGET")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--runs", default="runs/auto", help="run folders and logs")
    return a.parse_args(argv)


def run_cell(cell: str, seed: int, runs: Path) -> dict:
    dataset, ipc, budget = cell.split(":")
    name = f"{dataset}-auto-ipc{ipc}-s{seed}"
    folder, log = runs / name, runs / f"{name}.log"
    env = dict(os.environ) | ({"DDKIT_EXACT": "1"} if dataset in EXACT else {})
    if not (folder / "synthetic" / "meta.json").exists():
        distill = [str(DDKIT), "distill", "--dataset", dataset, "--method", "auto", "--ipc", ipc,
                   "--budget", budget, "--seed", str(seed), "--out", str(folder)]  # fmt: skip
        t0 = time.perf_counter()
        with open(log, "w") as out:
            subprocess.run(distill, stdout=out, stderr=subprocess.STDOUT, env=env, check=True)
        atomic_write_json(runs / f"{name}.wall.json", {"seconds": time.perf_counter() - t0})
    report = RESULTS / f"{dataset}-auto-ipc{ipc}.json"
    if not report.exists():
        evaluate = [str(DDKIT), "evaluate", str(folder), *EVALUATION[dataset], "--seed", "0",
                    "--quiet", "--out", str(report)]  # fmt: skip
        subprocess.run(evaluate, env=env, check=True)
    meta = json.loads((folder / "synthetic" / "meta.json").read_text())["provenance"]
    return {
        "dataset": dataset,
        "ipc": int(ipc),
        "seed": seed,
        "budget_seconds": parse_duration(budget),
        "wall_seconds": wall_seconds(runs, name),
        "auto": meta["auto"],
        "winner_iterations": meta.get("iterations", 0),
        "winner_fit_seconds": meta.get("fit_seconds"),
        "evaluation_file": report.name,
        "evaluation": json.loads(report.read_text()),
    }


def wall_seconds(runs: Path, name: str) -> float:
    """The distillation's wall seconds, as timed here (``NAME.wall.json``; for a run started by
    hand, write it from its log: the log's creation is the command's start, its last write the
    command's last line)."""
    return float(json.loads((runs / f"{name}.wall.json").read_text())["seconds"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for cell in args.cells:
        row = run_cell(cell, args.seed, runs)
        atomic_write_json(RESULTS / f"{row['dataset']}-ipc{row['ipc']}.json", row)
        print(
            f"{cell}: {row['auto']['winner']} chosen, wall {row['wall_seconds']:.0f} s of "
            f"{row['budget_seconds']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
