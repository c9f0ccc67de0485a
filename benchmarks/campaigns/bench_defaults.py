"""Fast by default (issue 41): today's default path against commit 11ad2e8 and exact mode.

Three versions of ddkit run side by side, each in its own long-lived worker process with one
torch thread: ``11ad2e8`` (a checkout of that commit, ``--old``), ``default`` (this checkout,
exact mode off: the levers that default to ``auto`` resolve as a user gets them) and ``exact``
(this checkout, ``DDKIT_EXACT=1``). The parent interleaves them: every round each worker runs
the same work in turn (the order rotates every round), so all three see the same machine load.
Times are the workers' CPU seconds (``time.thread_time``: robust to other processes on a shared
machine) per DM step or per training epoch; the ratio per round is variant / 11ad2e8 of the same
round, reported as the median over rounds.

* ``dm``: one step of ``create_method("dm", dataset="mnist5k", ipc=10)`` (its preset: ConvNet-3
  width 32, batch_real 256, DSA), started from seed 0; ``--dm-steps`` steps per round.
* ``eval``: one fresh network of protocol ``dsa``'s recipe (ConvNet-3 width 128, SGD, batch
  256, DSA) trained for ``--epochs`` epochs on a random real mnist5k set of IPC 10 and 50
  (100 / 500 images), a new seed every round. ``default`` trains with the levers the whole
  ``dsa`` evaluation of that set resolves to (1000 epochs: bf16 where the CPU has it, compiled
  and channels-last where inductor works), so its epochs cost what they cost there.

The first round of every worker is a warm-up and not timed: ``default`` compiles there, in an
empty inductor cache (``compile_s``: the warm-up's wall time minus a timed round's, scaled to
the same work), so ``whole_run_ratio`` charges that cold compilation to one full run (20
steps x the preset's budget for dm; 5 networks x 1000 epochs for eval, one compilation).

``--accuracy`` also compares default and exact on a validation split (20 % of mnist5k's train
split, seed 0; never the test split): a random real IPC 10 set and a dm run of ``--dm-iterations``
iterations, each evaluated by protocol ``dsa`` shortened to 300 epochs (long enough to be
compiled by default) with 3 networks of ConvNet-3 width 32, in the same mode as the run;
mean ± std.

Writes ``benchmarks/results/defaults_speed.json`` and prints a Markdown table. Example::

    git worktree add --detach /tmp/ddkit-11ad2e8 11ad2e8
    .venv/bin/python benchmarks/campaigns/bench_defaults.py --old /tmp/ddkit-11ad2e8 --rounds 5 --accuracy
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SRC = HERE.parents[2] / "src"
VARIANTS = ("11ad2e8", "default", "exact")
EVAL_IPCS = (10, 50)
FULL_EVAL = {"networks": 5, "epochs": 1000}  # protocol dsa's whole evaluation
LEVERS = ("precision", "compile")


# ============================================================================ worker side
def worker() -> None:
    """Answer the parent's commands on stdin (one JSON line each) with JSON lines."""
    import torch

    torch.set_num_threads(1)
    from ddkit.data import load_dataset
    from ddkit.eval.protocol import get_protocol
    from ddkit.eval.train import train_networks
    from ddkit.methods import create_method

    train = load_dataset("mnist5k").train
    sets = {ipc: create_method("random").fit(train, ipc, seed=0) for ipc in EVAL_IPCS}
    dm = create_method("dm", dataset="mnist5k", ipc=10)
    if hasattr(dm, "start"):
        dm.start(train, 10, seed=0)
    else:  # the API of 11ad2e8: fit's start, without its loop
        g = torch.Generator().manual_seed(0)
        dm.state_, dm.train_, dm.ipc_, dm.seed_ = {}, train, 10, 0
        dm.init(train, 10, g)
        dm.state_.setdefault("generator", g)
    step = 0

    def protocol(ipc: int, epochs: int):  # noqa: ANN202
        full = get_protocol("dsa")
        try:
            from ddkit.eval.train import TrainRecipe

            r = TrainRecipe.of_protocol(full, full.lr, "cpu", images=len(sets[ipc].images))
            levers = {"precision": r.precision, "compile": r.compile,
                      "channels_last": r.channels_last}  # fmt: skip
        except (ImportError, TypeError):  # 11ad2e8: no levers
            levers = {}
        return full.with_(epochs=epochs, **levers), levers

    for line in sys.stdin:
        cmd = json.loads(line)
        c0, w0 = time.thread_time(), time.perf_counter()
        info: dict[str, Any] = {}
        if cmd["part"] == "dm":
            for _ in range(cmd["steps"]):
                dm.step(step)
                step += 1
            info["levers"] = {k: getattr(dm, k, None) for k in ("precision_", "compile_")}
        else:
            syn = sets[cmd["ipc"]]
            p, info["levers"] = protocol(cmd["ipc"], cmd["epochs"])
            train_networks(p.models[0], syn.spec, syn.images, syn.hard_labels, p,
                           [cmd["seed"]], lr=p.lr)  # fmt: skip
        out = {"cpu_s": time.thread_time() - c0, "wall_s": time.perf_counter() - w0, **info}
        print(json.dumps(out), flush=True)


def accuracy_worker(dm_iterations: int) -> None:
    """Validation accuracy of a random real set and a dm run in this process's mode."""
    import torch

    torch.set_num_threads(1)
    from ddkit.data import load_dataset
    from ddkit.eval import evaluate
    from ddkit.eval.protocol import get_protocol
    from ddkit.methods import create_method

    splits = load_dataset("mnist5k", val_fraction=0.2, seed=0)
    out = {}
    for name in ("random", "dm"):
        c0 = time.thread_time()
        kw = {"dataset": "mnist5k", "ipc": 10} if name == "dm" else {}
        m = create_method(name, **kw)
        its = {"iterations": dm_iterations} if name == "dm" else {}
        syn = m.fit(splits.train, 10, seed=0, **its)
        fit_s = time.thread_time() - c0
        p = get_protocol("dsa").with_(epochs=300, runs=3, models=("convnet-w32",))
        report = evaluate(syn, splits.val, p, seed=0)
        r = report.results[0]
        out[name] = {"accuracies": r.accuracies, "mean": r.mean, "std": r.std,
                     "fit_cpu_s": fit_s, "set_levers": {k: syn.meta.get(k) for k in LEVERS},
                     "eval_levers": {k: report.meta.get(k) for k in LEVERS},
                     "eval_cpu_s": time.thread_time() - c0 - fit_s}  # fmt: skip
    print(json.dumps(out), flush=True)


# ============================================================================ parent side
def _env(variant: str, old: Path, cache: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(old / "src" if variant ==
           "11ad2e8" else SRC), "TORCHINDUCTOR_CACHE_DIR": cache}  # fmt: skip
    env.pop("DDKIT_EXACT", None)
    if variant == "exact":
        env["DDKIT_EXACT"] = "1"
    return env


class Worker:
    def __init__(self, variant: str, old: Path, cache: str) -> None:
        self.variant = variant
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=_env(variant, old, cache), cwd=SRC.parent,
        )  # fmt: skip

    def run(self, **cmd: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.variant} died")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _rotated(xs: list[Any], r: int) -> list[Any]:
    return xs[r % len(xs) :] + xs[: r % len(xs)]


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    caches = {v: tempfile.mkdtemp(prefix=f"inductor-{v}-") for v in VARIANTS}  # cold caches
    workers = {v: Worker(v, Path(args.old), caches[v]) for v in VARIANTS}
    cells = [{"part": "dm", "steps": args.dm_steps}] + [
        {"part": "eval", "ipc": ipc, "epochs": args.epochs} for ipc in EVAL_IPCS
    ]
    rows = []
    try:
        for cell in cells:
            per = cell.get("steps") or cell["epochs"]
            warm = {v: w.run(**cell, seed=100) for v, w in workers.items()}
            rounds: dict[str, list[float]] = {v: [] for v in VARIANTS}
            wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for r in range(args.rounds):
                for v in _rotated(list(VARIANTS), r):
                    got = workers[v].run(**cell, seed=r)
                    rounds[v].append(got["cpu_s"] / per)
                    wall[v].append(got["wall_s"] / per)
            row: dict[str, Any] = {**cell, "rounds": args.rounds, "variants": {}}
            for v in VARIANTS:
                ratios = [a / b for a, b in zip(rounds[v], rounds["11ad2e8"])]
                compile_s = max(0.0, warm[v]["wall_s"] - statistics.median(wall[v]) * per)
                row["variants"][v] = {
                    "cpu_s_per_unit": statistics.median(rounds[v]),
                    "all_cpu_s_per_unit": rounds[v],
                    "ratio_to_11ad2e8": statistics.median(ratios),
                    "warmup_extra_wall_s": compile_s,
                    "levers": warm[v].get("levers"),
                }
            rows.append(row)
            print(
                json.dumps(
                    {k: row[k] for k in cell}
                    | {v: round(row["variants"][v]["ratio_to_11ad2e8"], 3) for v in VARIANTS}
                ),
                flush=True,
            )
    finally:
        for w in workers.values():
            w.close()
    return rows


def whole_run(rows: list[dict[str, Any]], dm_budget: int) -> None:
    """Charge each variant's warm-up extra (compilation) to one whole run."""
    for row in rows:
        units = dm_budget if row["part"] == "dm" else FULL_EVAL["networks"] * FULL_EVAL["epochs"]
        row["whole_run_units"] = units
        base = row["variants"]["11ad2e8"]["cpu_s_per_unit"] * units
        for v in row["variants"].values():
            v["whole_run_ratio"] = (v["cpu_s_per_unit"] * units + v["warmup_extra_wall_s"]) / base


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for v in ("default", "exact"):
        env = _env(v, Path(args.old), tempfile.mkdtemp(prefix="inductor-acc-"))
        cmd = [sys.executable, str(HERE), "--accuracy-worker", str(args.dm_iterations)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=SRC.parent)
        if res.returncode:
            raise SystemExit(f"accuracy worker {v} failed: {res.stderr[-2000:]}")
        out[v] = json.loads(res.stdout.strip().splitlines()[-1])
        print(v, {k: f"{100 * x['mean']:.2f} ± {100 * x['std']:.2f}" for k, x in out[v].items()},
              flush=True)  # fmt: skip
    return {"split": "mnist5k val (20 % of train, seed 0)",
            "protocol": "dsa, 300 epochs, 3 x convnet-w32",
            "dm_iterations": args.dm_iterations, **out}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| work | 11ad2e8 (CPU s) | default (CPU s) | exact (CPU s) | default / 11ad2e8 | "
             "exact / 11ad2e8 | default's compile (s) | whole run: default / 11ad2e8 |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        v = row["variants"]
        what = ("DM step (mnist5k IPC 10)" if row["part"] == "dm"
                else f"eval epoch (dsa, IPC {row['ipc']})")  # fmt: skip
        lines.append(
            f"| {what} | {v['11ad2e8']['cpu_s_per_unit']:.3f} | {v['default']['cpu_s_per_unit']:.3f}"
            f" | {v['exact']['cpu_s_per_unit']:.3f} | {v['default']['ratio_to_11ad2e8']:.2f}x"
            f" | {v['exact']['ratio_to_11ad2e8']:.2f}x | {v['default']['warmup_extra_wall_s']:.0f}"
            f" | {v['default']['whole_run_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--old", default="/tmp/ddkit-11ad2e8", help="a checkout of commit 11ad2e8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dm-steps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs per eval round")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--dm-iterations", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/defaults_speed.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--accuracy-worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker()
    if args.accuracy_worker is not None:
        return accuracy_worker(args.accuracy_worker)
    if not (Path(args.old) / "src" / "ddkit").is_dir():
        raise SystemExit(f"--old {args.old} is not a checkout of ddkit (git worktree add ...)")
    sys.path.insert(0, str(SRC))
    from ddkit.io import atomic_write_json
    from ddkit.meter import machine_info
    from ddkit.methods import create_method

    load0 = os.getloadavg()
    rows = measure(args)
    whole_run(rows, create_method("dm", dataset="mnist5k", ipc=10).config.iterations)
    result = {"machine": machine_info(), "load_average_start": load0,
              "load_average_end": os.getloadavg(), "rows": rows,
              "accuracy": accuracy(args) if args.accuracy else None}  # fmt: skip
    atomic_write_json(args.out, result)
    print(table(rows))


if __name__ == "__main__":
    main()
