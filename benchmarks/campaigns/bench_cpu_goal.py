"""The CPU goal of issue 74, at realistic length: the default DM step at most 0.4x and
evaluation training at most 0.65x the CPU time of commit 11ad2e8.

The same workers as ``bench_defaults.py`` (one long-lived process per version, one torch
thread, CPU seconds of the worker thread), two versions only -- ``11ad2e8`` (``--old``) and
``default`` (``--new``: a checkout, by default this one; a ``git archive`` snapshot keeps other
sessions' unfinished edits out) -- alternating every round (the order flips each round), so both
see the same machine load. Longer units than bench_defaults' 3 steps / 5 epochs:

* ``dm``: ``--dm-steps`` consecutive steps of one ``dm`` run (mnist5k IPC 10, its preset:
  ConvNet-3 width 32, batch_real 256, DSA; its budget of 2,000 iterations decides compilation);
* ``eval``: ``--epochs`` epochs (IPC 10) and ``--epochs-50`` epochs (IPC 50) of one network of
  protocol ``dsa`` (ConvNet-3 width 128, batch 256, DSA), with the levers a whole ``dsa``
  evaluation of that set resolves to (1,000 epochs: compiled, bf16 where the CPU has it).

The warm-up round (not timed) holds the compilation; ``whole_run_ratio`` charges it to one
full run, as bench_defaults does. The load average at the start and end is recorded.

    git archive 11ad2e8 src | tar -x -C /tmp/ddkit-11ad2e8
    .venv/bin/python benchmarks/campaigns/bench_cpu_goal.py --old /tmp/ddkit-11ad2e8 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("11ad2e8", "default")
GOAL = {"dm": 0.4, "eval": 0.65}


def _bench_defaults(new: Path) -> Any:
    """bench_defaults.py as a module, its ``default`` variant pointed at ``new``'s sources."""
    spec = importlib.util.spec_from_file_location("bench_defaults", HERE / "bench_defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SRC = new / "src"
    return module


def measure(args: argparse.Namespace, bd: Any) -> list[dict[str, Any]]:
    caches = {v: tempfile.mkdtemp(prefix=f"inductor-goal-{v}-") for v in VARIANTS}
    workers = {v: bd.Worker(v, Path(args.old), caches[v]) for v in VARIANTS}
    cells = [
        {"part": "dm", "steps": args.dm_steps},
        {"part": "eval", "ipc": 10, "epochs": args.epochs},
        {"part": "eval", "ipc": 50, "epochs": args.epochs_50},
    ]
    rows = []
    try:
        for cell in cells:
            per = cell.get("steps") or cell["epochs"]
            warm = {v: w.run(**cell, seed=100) for v, w in workers.items()}
            cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
            wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
            loads = []
            for r in range(args.rounds):
                for v in VARIANTS[:: 1 if r % 2 == 0 else -1]:
                    got = workers[v].run(**cell, seed=r)
                    cpu[v].append(got["cpu_s"] / per)
                    wall[v].append(got["wall_s"] / per)
                loads.append(os.getloadavg()[0])
            ratios = [a / b for a, b in zip(cpu["default"], cpu["11ad2e8"])]
            row: dict[str, Any] = {**cell, "rounds": args.rounds, "ratios": ratios,
                                   "ratio": statistics.median(ratios),
                                   "goal": GOAL[cell["part"]], "load_1min": loads,
                                   "variants": {}}  # fmt: skip
            for v in VARIANTS:
                row["variants"][v] = {
                    "cpu_s_per_unit": statistics.median(cpu[v]),
                    "all_cpu_s_per_unit": cpu[v],
                    "wall_s_per_unit": statistics.median(wall[v]),
                    "warmup_extra_wall_s": max(0.0, warm[v]["wall_s"] - statistics.median(wall[v]) * per),
                    "levers": warm[v].get("levers"),
                }  # fmt: skip
            row["met"] = row["ratio"] <= row["goal"]
            rows.append(row)
            print(json.dumps({k: row[k] for k in (*cell, "ratio", "goal", "met")}), flush=True)
    finally:
        for w in workers.values():
            w.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="/tmp/ddkit-11ad2e8", help="a checkout of commit 11ad2e8")
    ap.add_argument("--new", default=str(HERE.parents[1]), help="the checkout measured as default")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dm-steps", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=60, help="epochs per round at IPC 10")
    ap.add_argument("--epochs-50", type=int, default=12, help="epochs per round at IPC 50")
    ap.add_argument("--out", default="benchmarks/results/cpu_goal.json")
    args = ap.parse_args()
    for what, path in (("--old", args.old), ("--new", args.new)):
        if not (Path(path) / "src" / "ddkit").is_dir():
            raise SystemExit(f"{what} {path} is not a checkout of ddkit")
    bd = _bench_defaults(Path(args.new))
    sys.path.insert(0, str(Path(args.new) / "src"))
    from ddkit.io import atomic_write_json
    from ddkit.meter import machine_info
    from ddkit.methods import create_method

    load0, t0 = os.getloadavg(), time.time()
    rows = measure(args, bd)
    bd.whole_run(rows, create_method("dm", dataset="mnist5k", ipc=10).config.iterations)
    result = {"machine": machine_info(), "new": args.new, "load_average_start": load0,
              "load_average_end": os.getloadavg(), "minutes": (time.time() - t0) / 60,
              "rows": rows}  # fmt: skip
    atomic_write_json(args.out, result)
    for row in rows:
        what = "DM step" if row["part"] == "dm" else f"eval epoch IPC {row['ipc']}"
        v = row["variants"]
        print(f"{what}: 11ad2e8 {v['11ad2e8']['cpu_s_per_unit']:.3f} s, default "
              f"{v['default']['cpu_s_per_unit']:.3f} s, ratio {row['ratio']:.2f}x "
              f"(goal {row['goal']}x, whole run {v['default']['whole_run_ratio']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
