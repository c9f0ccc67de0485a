"""Did a trajectory-matching run (mtt, tesla, datm, pad) stay stable? Read from its files only.

For each ``--log NAME=PATH`` (a run's ``log.jsonl``, or ``.jsonl.gz``): the mean normalised
matching loss of the first and last ``--window`` iterations, its mean per start epoch and over
start epochs ``>= --late``, how many updates DATM's loss threshold skipped (``applied`` 0), and
the most iterations with a loss above 1 in any window of the divergence warning
(``DivergenceWatch.window``, 50).
For each ``--experts NAME=DIR`` (an expert folder): the L2 norm of each epoch's parameter step,
``||theta[e+1] - theta[e]||``, averaged over the experts, i.e. the scale of the targets the
matching loss is normalised by. Nothing is trained and no split is read, so a test cell's log can
be read without selecting anything on the test split.

Usage: python benchmarks/studies/trajectory_stability.py --log test=RUN/log.jsonl \
           --log val=OTHER/log.jsonl --experts test=runs/experts/NAME --out FILE.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ddkit.errors import ConfigError
from ddkit.io import atomic_write_json
from ddkit.methods.trajectory.experts import load_experts
from ddkit.methods.trajectory.methods import DivergenceWatch
from ddkit.plots import read_log


def _named(pairs: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{flag} takes NAME=PATH, got {pair!r}")
        if not Path(path).exists():
            raise ConfigError(f"{flag} {name}: {path!r} does not exist")
        out[name] = Path(path)
    return out


def _records(path: Path) -> list[dict[str, float]]:
    return [r for r in read_log(path) if "loss" in r and "start_epoch" in r]


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def log_summary(path: Path, window: int, late: int) -> dict[str, Any]:
    """The loss of a run's first and last ``window`` iterations, per start epoch and over start
    epochs ``>= late``, and the number of updates the loss threshold skipped."""
    rows, watch = _records(path), DivergenceWatch.window
    if not rows:
        raise ConfigError(f"{str(path)!r} holds no trajectory-matching records (loss, start_epoch)")
    by_epoch: dict[int, list[float]] = {}
    for r in rows:
        by_epoch.setdefault(int(r["start_epoch"]), []).append(r["loss"])
    return {
        "iterations": len(rows),
        "loss_first": _mean([r["loss"] for r in rows[:window]]),
        "loss_last": _mean([r["loss"] for r in rows[-window:]]),
        "loss_late_epochs": _mean([r["loss"] for r in rows if r["start_epoch"] >= late]),
        "loss_by_start_epoch": {e: _mean(v) for e, v in sorted(by_epoch.items())},
        "skipped": sum(1 for r in rows if r.get("applied", 1.0) == 0),
        # what DivergenceWatch counts: iterations whose loss exceeds 1, most in any of its windows
        f"most_above_one_in_{watch}": max(
            sum(r["loss"] > 1.0 for r in rows[i : i + watch])
            for i in range(max(1, len(rows) - watch + 1))
        ),
        "lr_last": rows[-1].get("lr"),
    }


def expert_steps(folder: Path) -> list[float]:
    """The norm of each epoch's parameter step, averaged over the folder's complete experts."""
    buf = load_experts(folder)
    steps = []
    for e in range(len(buf)):
        theta = [buf.params(e, j) for j in range(buf.epochs + 1)]
        steps.append(torch.stack([(b - a).norm() for a, b in zip(theta, theta[1:])]))
    return [round(float(x), 4) for x in torch.stack(steps).mean(0)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--log", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--experts", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--window", type=int, default=30, help="iterations averaged at each end")
    ap.add_argument("--late", type=int, default=3, help="first start epoch counted as late")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.window < 1 or args.late < 0:
        raise ConfigError("--window must be >= 1 and --late >= 0")
    logs = _named(args.log, "--log")
    experts = _named(args.experts, "--experts")
    if not logs and not experts:
        raise ConfigError("give at least one --log or --experts")
    result = {
        "settings": {
            "window": args.window,
            "late": args.late,
            "logs": {k: str(v) for k, v in logs.items()},
            "experts": {k: str(v) for k, v in experts.items()},
        },  # fmt: skip
        "logs": {name: log_summary(path, args.window, args.late) for name, path in logs.items()},
        "expert_steps": {name: expert_steps(path) for name, path in experts.items()},
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    from ddkit.errors import run_script

    run_script(main, "trajectory_stability")
