"""Tune one hyper-parameter of any method on a validation split (never the test split).

Carves a stratified validation split out of the dataset's train split (``--val-fraction``, seed 0),
distils on the rest with each value of ``--param``, and reports the mean distillation loss of the
first and last 10 % of iterations, the final learned step size (trajectory methods), the number of
training images the result holds, and final-epoch validation accuracy
(protocol ``dsa``, or ``--protocol`` e.g. ``tabular`` for tables, 300 epochs, ``--runs`` fresh
networks of the preset's model, or ``--eval-model``).

Usage: python benchmarks/studies/tune_val.py --method mtt --dataset mnist5k --ipc 1 \
           --param lr_lr --values 1e-6,1e-5,1e-4 [--iterations 500] [--set KEY=VALUE] [--out FILE.json]

``--iterations 0`` evaluates the method's initialisation (e.g. IDM's multi-formation encoding).
"""

from __future__ import annotations

import argparse
import json
import time

from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.methods import create_method
from ddkit.methods.base import Callback
from ddkit.methods.config import parse_options


class _Record(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, method, iteration, metrics):  # noqa: D401, ANN001
        self.losses.append(float(metrics.get("loss", float("nan"))))


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)


def _method_model(method) -> list[str] | None:  # noqa: ANN001
    """The network the method distils with, where it has one (else the protocol's)."""
    return [method.config.model] if hasattr(method.config, "model") else None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--method", default="mtt")
    ap.add_argument("--protocol", default="dsa", help="the validation protocol (300 epochs)")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--param", required=True)
    ap.add_argument(
        "--values",
        required=True,
        help="comma-separated; each parsed as JSON when possible, as `ddkit distill --set` does",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed overrides applied to every variant (repeatable)",
    )
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--eval-model", default=None, help="evaluation network (default: the method's model)"
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    rows = []
    fixed = parse_options(args.set)
    for text in args.values.split(","):
        value = parse_options([f"{args.param}={text}"])[args.param]
        m = create_method(
            args.method, dataset=args.dataset, ipc=args.ipc, **{**fixed, args.param: value}
        )
        rec = _Record()
        t0 = time.perf_counter()
        syn = m.fit(splits.train, args.ipc, iterations=args.iterations, seed=0, callbacks=[rec])
        seconds = time.perf_counter() - t0
        rep = evaluate(
            syn,
            splits.val,
            args.protocol,
            runs=args.runs,
            epochs=300,
            seed=0,
            models=[args.eval_model] if args.eval_model else _method_model(m),
        )
        k = max(len(rec.losses) // 10, 1)
        row = {
            "fixed": fixed,
            "param": args.param,
            "value": value,
            "iterations": args.iterations,
            "seconds": round(seconds, 1),
            "loss_first": _mean(rec.losses[:k]),
            "loss_last": _mean(rec.losses[-k:]),
            "lr": syn.lr,
            "images": len(syn.images),
            "val_mean": rep.results[0].mean,
            "val_std": rep.results[0].std,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # after every value: a stopped run keeps the values it measured
            atomic_write_json(args.out, {"settings": vars(args), "rows": rows})


if __name__ == "__main__":
    from ddkit.errors import DDKitError

    try:
        main()
    except DDKitError as exc:  # one line, no traceback
        raise SystemExit(f"tune_val: {exc}") from None
