"""Tune one hyper-parameter of any method on a validation split (never the test split).

Carves a stratified validation split out of the dataset's train split (``--val-fraction``, seed 0),
distils on the rest with each value of ``--param`` (distillation seed ``--seed``, default 0), and
reports the mean distillation loss of the first and last 10 % of iterations, the final learned step
size (trajectory methods), the number of training images the result holds, and final-epoch
validation accuracy (protocol ``dsa``, or ``--protocol`` e.g. ``tabular`` for tables, ``--epochs``
300, ``--runs`` fresh networks of the preset's model, or of each of ``--eval-model``'s
comma-separated networks).
``--baseline`` adds a row for random real images of the same IPC under the identical recipe.
``--suite NAME`` starts every value from the options that bench suite passes the method at this
IPC (e.g. ``paper``: its network, experts and step sizes), so a study tunes the suite's own
recipe; ``--set`` wins over them.

Resumable: each value distils into its own run folder under ``--work`` (checkpointed, as
``ddkit distill``) and keeps each finished validation network there, and a value whose row
``--out`` already holds, measured with the same settings, is not run again; so an interrupted
study continues where it stopped.

Usage: python benchmarks/studies/tune_val.py --method mtt --dataset mnist5k --ipc 1 \
           --param lr_lr --values 1e-6,1e-5,1e-4 [--iterations 500] [--set KEY=VALUE] [--out FILE.json]

``--iterations 0`` evaluates the method's initialisation (e.g. IDM's multi-formation encoding).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ddkit.bench.suites import suite_options
from ddkit.data import load_dataset
from ddkit.errors import ConfigError
from ddkit.eval import evaluate
from ddkit.eval.evaluate import RunPlan
from ddkit.io import atomic_write_json, read_json
from ddkit.methods import create_method
from ddkit.methods.config import parse_options
from ddkit.plots import read_log
from ddkit.runs import DistillRequest, distill_run

BASELINE = "random real"
# the settings a row depends on besides its value: rows measured under other ones are not reused
_ROW_SETTINGS = ("method", "protocol", "dataset", "ipc", "param", "set", "suite", "iterations",
                 "val_fraction", "runs", "eval_model", "epochs", "seed", "augment")  # fmt: skip
# what a results file written before a setting existed was measured with
_EARLIER_DEFAULTS = {"epochs": 300, "seed": 0, "suite": None, "augment": None}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _method_model(method) -> list[str] | None:  # noqa: ANN001
    """The network the method distils with, where it has one (else the protocol's)."""
    return [method.config.model] if hasattr(method.config, "model") else None


def _models(args: argparse.Namespace, method: Any) -> list[str] | None:
    """The evaluation networks: ``--eval-model``'s list, else the method's own network."""
    if args.eval_model:
        return [m for m in args.eval_model.split(",") if m]
    return _method_model(method)


def _reusable_rows(out: str | None, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows an earlier run of this study left in ``out`` (none without one); a file measured
    under other settings is refused rather than overwritten."""
    if not out or not Path(out).exists():
        return []
    old = read_json(out)
    if not isinstance(old, dict) or not isinstance(old.get("rows"), list):
        raise ConfigError(f"{out!r} is not a tune_val results file; choose another --out")
    before = old.get("settings", {})
    diff = [k for k in _ROW_SETTINGS if before.get(k, _EARLIER_DEFAULTS.get(k)) != settings[k]]
    if diff:
        raise ConfigError(
            f"{out!r} holds a study with other settings ({', '.join(diff)}); choose another --out"
        )
    return old["rows"]


def _accuracies(per_model: dict[str, list[float]]) -> dict[str, Any]:
    """``val_mean``/``val_std`` (population std, as :class:`ddkit.eval.ModelResult` has it) of the
    first network, and every network's under ``val_by_model``."""
    by_model = {m: [statistics.fmean(a), statistics.pstdev(a)] for m, a in per_model.items()}
    first = next(iter(by_model.values()))
    return {"val_mean": first[0], "val_std": first[1], "val_by_model": by_model}


def _validate(
    syn: Any, val: Any, args: argparse.Namespace, models: list[str] | None, folder: Path
) -> dict[str, list[float]]:
    """Each evaluation network's validation accuracy, per network kind, trained one at a time
    from the seed it has in the whole evaluation (``run_indices``: the figures of one
    ``evaluate`` call). Each finished network is kept in ``folder/val_networks.json`` with the
    settings it was trained under, so a stopped study trains only the networks it had not
    finished (a long evaluation, 1,000 epochs say, no longer restarts from its first network)."""
    settings = {"protocol": args.protocol, "epochs": args.epochs, "runs": args.runs,
                "augment": args.augment,
                "models": models, "val_fraction": args.val_fraction}  # fmt: skip
    path = folder / "val_networks.json"
    kept = read_json(path) if path.exists() else {}
    done: dict[str, dict[str, float]] = (
        kept.get("networks", {}) if kept.get("settings") == settings else {}
    )
    for k in range(args.runs):
        if str(k) in done:
            continue
        augment = {} if args.augment is None else {"augment": args.augment}
        report = evaluate(syn, val, args.protocol, runs=args.runs, epochs=args.epochs, seed=0,
                          **augment,
                          models=models, plan=RunPlan(run_indices=[k]),
                          device=args.device)  # fmt: skip
        done[str(k)] = {r.model: r.accuracies[0] for r in report.results}
        atomic_write_json(path, {"settings": settings, "networks": done})
    per_model: dict[str, list[float]] = {}
    for k in range(args.runs):
        for model, accuracy in done[str(k)].items():
            per_model.setdefault(model, []).append(accuracy)
    return per_model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--method", default="mtt")
    ap.add_argument("--protocol", default="dsa", help="the validation protocol")
    ap.add_argument(
        "--epochs", type=int, default=300, help="epochs of the validation networks (default 300)"
    )
    ap.add_argument(
        "--augment",
        default=None,
        help="the validation protocol's augmentation instead of its own (e.g. patches:2, "
        "RDED's views of stitched images)",
    )
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--param", required=True)
    ap.add_argument(
        "--values",
        required=True,
        help="comma-separated; each parsed as JSON when possible, as `ddkit distill --set` does "
        "('' with --baseline: only random real images, e.g. another draw with --seed)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed overrides applied to every variant (repeatable)",
    )
    ap.add_argument(
        "--suite",
        default=None,
        help="start from the options this bench suite gives the method at --ipc (--set wins)",
    )
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the distillation seed (default 0); the validation split and the networks keep seed 0",
    )
    ap.add_argument(
        "--eval-model",
        default=None,
        help="evaluation network(s), comma-separated (default: the method's model)",
    )
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="also evaluate random real images of the same IPC under the identical recipe",
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="where to distil and train the validation networks, e.g. cuda (not a row setting: "
        "another device changes rounding only)",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--work",
        default=None,
        help="run folders of the values (default: runs/tune_val/<--out's stem>, or none)",
    )
    args = ap.parse_args()
    settings = vars(args)
    rows = _reusable_rows(args.out, settings)
    done = {json.dumps(r["value"]) for r in rows}
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    fixed = {**suite_options(args.suite, args.method, args.ipc), **parse_options(args.set)}
    models = _models(args, create_method(args.method, dataset=args.dataset, ipc=args.ipc, **fixed))
    if not args.values and not args.baseline:
        raise SystemExit("tune_val: give --values, or --values '' with --baseline (random only)")
    variants = [
        (parse_options([f"{args.param}={t}"])[args.param], t)
        for t in (args.values.split(",") if args.values else [])
    ]
    if args.baseline:
        variants.append((BASELINE, BASELINE))
    with contextlib.ExitStack() as stack:
        work = Path(args.work) if args.work else (
            Path("runs/tune_val") / Path(args.out).stem if args.out
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )  # fmt: skip
        for value, text in variants:
            if json.dumps(value) in done:
                continue
            baseline = value == BASELINE
            folder = work / re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{args.param}={text}")
            resumed = (folder / "config.json").exists()
            t0 = time.perf_counter()
            request = DistillRequest(
                args.dataset,
                "random" if baseline else args.method,
                args.ipc,
                iterations=None if baseline else args.iterations,
                seed=args.seed,
                options={} if baseline else {**fixed, args.param: value},
                device=args.device,
            )
            syn = distill_run(request, folder, splits=splits, resume=resumed)
            seconds = time.perf_counter() - t0
            per_model = _validate(syn, splits.val, args, models, folder)
            losses = [r["loss"] for r in read_log(folder / "log.jsonl") if "loss" in r]
            k = max(len(losses) // 10, 1)
            row = {
                "fixed": {} if baseline else fixed,
                "param": args.param,
                "value": value,
                "iterations": 0 if baseline else args.iterations,
                "seconds": round(seconds, 1),
                "resumed": resumed,
                "loss_first": _mean(losses[:k]),
                "loss_last": _mean(losses[-k:]),
                "lr": syn.lr,
                "images": len(syn.images),
                **_accuracies(per_model),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:  # after every value: a stopped run keeps the values it measured
                atomic_write_json(args.out, {"settings": settings, "rows": rows})


if __name__ == "__main__":
    from ddkit.errors import run_script

    run_script(main, "tune_val")
