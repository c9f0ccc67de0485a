"""Validation accuracy per iteration and per CPU second: random vs DREAM real batches (issue 40).

For each method (``--methods``) and real-batch choice (``--batches``: ``random``, ``dream`` =
``real_batch=dream`` with ``init=dream``, DREAM's representative batches and start; Liu et al.,
ICCV 2023), one distillation runs on the train split less a stratified validation split
(``--val-fraction``, seed 0; the test split is never read) and is stopped at each of its
milestones (``--milestones METHOD=I1,I2,...``): the set at that iteration is evaluated on the
validation split (protocol ``dsa``, ``--epochs`` epochs, ``--runs`` networks of the method's
model, final-epoch accuracy) and the row records the iteration, the distillation's process CPU
seconds and wall seconds so far (evaluation excluded), the mean loss of the segment and the
machine (``ddkit.meter.machine_info``: a CPU of one model name with other matrix extensions
evaluates the same set to other accuracies, so compare rows of one machine).

Resumable: a run continues from its checkpoint at the last milestone (``--work`` folder; each
segment restarts its ``init``, which for ``dream`` re-clusters the start rows, a second or two);
a milestone already in the cell's file is not run again. The merged rows go to ``--out``, and
the curves (validation accuracy against iterations and against CPU seconds, one row of panels
per method) to a PNG beside it; ``--replot`` redraws the PNG from ``--out`` alone and prints
the curves as a markdown table.

``--batches as-is`` leaves the method's batches as they are: with methods that have no real
batches to choose (kip, frepo) the rows are a plain curve of validation accuracy against the
budget; ``--protocol`` and ``--eval-model`` then name the recipe the sets are evaluated by
(e.g. ``mse`` for kip's learned labels) and ``--device`` where everything runs. ``--suite NAME``
starts each method from the options that bench suite gives it at ``--ipc`` (``--set`` wins), so
a curve measures the suite's own recipe at other budgets.

Usage: python benchmarks/studies/dream_curve.py --dataset mnist5k --ipc 10 --methods dc,dsa,dm \
           --milestones dc=1,2,5,10,20,40 --milestones dm=50,100,200,500,1000 \
           --out benchmarks/results/dream_mnist5k.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ddkit.bench.suites import suite_options
from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json, read_json
from ddkit.meter import machine_info
from ddkit.methods import create_method
from ddkit.methods.base import Callback
from ddkit.methods.config import parse_options

BATCHES = {
    "random": {"real_batch": "random"},
    "dream": {"real_batch": "dream", "init": "dream"},
    # the method's own choice: for methods without a real-batch option (kip, frepo), whose
    # curve is then a plain accuracy-against-budget curve
    "as-is": {},
}


class _Losses(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_step_end(self, method, iteration, metrics):  # noqa: ANN001
        self.values.append(float(metrics.get("loss", float("nan"))))


def _milestones(items: list[str], methods: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in items:
        name, _, text = item.partition("=")
        out[name.strip()] = sorted({int(v) for v in text.split(",") if v.strip()})
    missing = [m for m in methods if not out.get(m)]
    if missing:
        raise SystemExit(
            f"dream_curve: no --milestones for {', '.join(missing)} (METHOD=I1,I2,...)"
        )
    return out


def run_cell(
    args: argparse.Namespace, splits: Any, method: str, batch: str, stops: list[int]
) -> list[dict]:
    """Distil ``method`` with ``batch`` up to each milestone in turn (resuming from the previous
    one's checkpoint), evaluating each milestone's set on the validation split."""
    recipe = "" if args.protocol == "dsa" else f"-{args.protocol}"  # earlier cells: dsa
    work = Path(args.work) / f"{args.dataset}-ipc{args.ipc}-{method}-{batch}{recipe}"
    work.mkdir(parents=True, exist_ok=True)
    cell_file = work / "rows.json"
    rows: list[dict] = read_json(cell_file)["rows"] if cell_file.exists() else []
    options = {
        **suite_options(args.suite, method, args.ipc),
        **parse_options(args.set),
        **BATCHES[batch],
    }
    cpu = rows[-1]["cpu_seconds"] if rows else 0.0
    wall = rows[-1]["wall_seconds"] if rows else 0.0
    for stop in stops:
        if any(r["iteration"] == stop for r in rows):
            continue
        m = create_method(method, dataset=args.dataset, ipc=args.ipc, **options)
        losses = _Losses()
        c0, w0 = time.process_time(), time.perf_counter()
        syn = m.fit(
            splits.train,
            args.ipc,
            iterations=stop,
            seed=args.seed,
            callbacks=[losses],
            checkpoint_dir=work / "checkpoint",
            checkpoint_every=10**9,  # only at the milestone (the run's last iteration)
            resume=True,
        )
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        model = args.eval_model or getattr(m.config, "model", None)
        rep = evaluate(
            syn,
            splits.val,
            args.protocol,
            runs=args.runs,
            epochs=args.epochs,
            seed=0,
            models=[model] if model else None,
            device=args.device,
        )
        row = {
            "method": method,
            "batch": batch,
            "options": options,
            "protocol": args.protocol,
            "iteration": stop,
            "cpu_seconds": round(cpu, 1),
            "wall_seconds": round(wall, 1),
            "segment_loss": sum(losses.values) / max(len(losses.values), 1),
            "val_mean": rep.results[0].mean,
            "val_std": rep.results[0].std,
            "val_accuracies": list(rep.results[0].accuracies),
            # a CPU of the same model name with other matrix extensions gives the same set
            # other accuracies: compare rows of one machine
            "machine": machine_info(),
        }
        rows.append(row)
        atomic_write_json(cell_file, {"rows": rows})
        print(json.dumps(row), flush=True)
    return rows


def plot_curves(rows: list[dict], path: Path) -> Path:
    """Validation accuracy (mean ± std over the networks) against the iteration and against
    the distillation's CPU seconds, random and DREAM batches, one row of panels per method."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from ddkit.plots import new_figure, save_figure

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = new_figure(ncols=2 * len(methods), width=3.6, height=3.2)
    for k, method in enumerate(methods):
        for batch in dict.fromkeys(r["batch"] for r in rows if r["method"] == method):
            cell = sorted((r for r in rows if (r["method"], r["batch"]) == (method, batch)),
                          key=lambda r: r["iteration"])  # fmt: skip
            mean = [100 * r["val_mean"] for r in cell]
            std = [100 * r["val_std"] for r in cell]
            for ax, x in zip(axes[2 * k : 2 * k + 2], ("iteration", "cpu_seconds")):
                ax.errorbar([r[x] for r in cell], mean, yerr=std, marker="o", ms=3,
                            capsize=2, label=batch, ls="--" if batch == "random" else "-")  # fmt: skip
        for ax, label in zip(axes[2 * k : 2 * k + 2], ("iteration", "CPU seconds")):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel("validation accuracy (%)")
            ax.set_title(f"{method}: real batches", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    return save_figure(fig, path)


def markdown_table(rows: list[dict]) -> str:
    """Per method, one line per milestone: each batch choice's validation accuracy (mean ± std,
    %) and the distillation's CPU seconds so far."""
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        batches = list(dict.fromkeys(r["batch"] for r in rows if r["method"] == method))
        cells = {(r["batch"], r["iteration"]): r for r in rows if r["method"] == method}
        head = " | ".join(f"{b}: accuracy (%) | {b}: CPU s" for b in batches)
        lines += [f"| {method} iteration | {head} |", "|---|" + "---|---|" * len(batches)]
        for it in sorted({i for _, i in cells}):
            row = []
            for b in batches:
                r = cells.get((b, it))
                row += ([f"{100 * r['val_mean']:.2f} ± {100 * r['val_std']:.2f}",
                         f"{r['cpu_seconds']:.0f}"] if r else ["–", "–"])  # fmt: skip
            lines.append(f"| {it} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--methods", default="dc,dsa,dm")
    ap.add_argument("--batches", default="random,dream")
    ap.add_argument("--milestones", action="append", default=[], metavar="METHOD=I1,I2,...")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--suite", default=None, help="start from the options this bench suite gives each method"
    )
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--protocol", default="dsa", help="the validation networks' protocol")
    ap.add_argument("--eval-model", default=None, help="default: the method's network")
    ap.add_argument("--device", default="cpu", help="where to distil and train, e.g. cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/dream-curve")
    ap.add_argument("--out", default=None)
    ap.add_argument("--replot", action="store_true", help="redraw --out's PNG and stop")
    args = ap.parse_args()
    if args.replot:
        if not args.out or not Path(args.out).is_file():
            raise SystemExit("dream_curve: --replot needs --out, a results file written before")
        rows = read_json(args.out)["rows"]
        plot_curves(rows, Path(args.out).with_suffix(".png"))
        print(markdown_table(rows))
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    batches = [b.strip() for b in args.batches.split(",") if b.strip()]
    bad = [b for b in batches if b not in BATCHES]
    if bad:
        raise SystemExit(f"dream_curve: unknown batch {bad[0]!r}; valid: {', '.join(BATCHES)}")
    stops = _milestones(args.milestones, methods)
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    splits = replace(splits, train=splits.train.to(args.device))  # once, for every milestone
    rows = []
    for method in methods:
        for batch in batches:
            rows += run_cell(args, splits, method, batch, stops[method])
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k != "out"}
        atomic_write_json(args.out, {"settings": settings, "split": "validation", "rows": rows})
        plot_curves(rows, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    from ddkit.errors import run_script

    run_script(main, "dream_curve")
