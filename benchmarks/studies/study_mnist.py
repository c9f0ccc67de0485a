"""Why a paper-suite MNIST cell lands where it does (issue 15), on a validation split.

First written for dc and dsa at IPC 1, whose ``paper`` cells (BENCHMARKS.md) land below their
published figures. Each cell differs from its paper in a few named ways: the
distillation budget (200 outer iterations, not 1,000), the network it distils with (ConvNet-3
width 32, not 128) and, for DC only, the evaluation recipe (DC's paper trained its evaluation
networks for 300 epochs with its own MNIST augmentation: one of crop / scale / rotate per image;
the suite evaluates every method with the DSA recipe, 1,000 epochs with DSA augmentation).

This study holds out a stratified validation split of MNIST's training set (``--val-fraction``,
seed 0; the test split is never read), then

* ``--phase distil``: distils each method at ``--ipc`` with the suite's options and budget on the
  rest (``--set KEY=VALUE`` changes an option; ``--tag`` names such a variant's sets), and saves
  the set at iterations 0 (the random real start), 50, 100 and the end (``--out-dir``);
* ``--phase eval``: evaluates the saved sets on the validation split. ``--recipes all``: every
  saved set under protocol ``dsa`` (width 128, as the suite), and the final sets and their random
  real start also under ``dc_aug`` (DC's recipe), ``dc`` (the same without augmentation) and
  ``dsa`` with the network of the distillation width (``convnet-w32``). ``--recipes width``:
  the final sets and the start under ``dsa`` with both widths only.

A rising curve from 100 to the end says the budget is short; a gain under ``dc_aug`` says the
recipe accounts for part of the gap; a gain at width 32 says the set does not transfer to the
suite's width. Writes ``benchmarks/results/study_mnist_ipc<IPC>.json`` by default.

Usage: python benchmarks/studies/study_mnist.py --phase distil|eval [--ipc 1] [--methods dc,dsa]
       [--set KEY=VALUE ...] [--tag NAME] [--recipes all|width]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ddkit.bench.suites import SUITES
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import DDKitError
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.methods import create_method
from ddkit.methods.base import Callback
from ddkit.methods.config import parse_options

SNAPSHOTS = (0, 50, 100)


class _Snapshots(Callback):
    """Saves the set after the iterations in ``SNAPSHOTS`` (0: the start)."""

    def __init__(self, out: Path, method: str) -> None:
        self.out, self.method = out, method

    def _save(self, method, iteration: int) -> None:  # noqa: ANN001
        method.result().save(self.out / f"{self.method}_it{iteration}.ddset")

    def on_start(self, method, total, start) -> None:  # noqa: ANN001
        if start == 0:
            self._save(method, 0)

    def on_step_end(self, method, iteration, metrics) -> None:  # noqa: ANN001
        if iteration + 1 in SNAPSHOTS:
            self._save(method, iteration + 1)


def distil(
    methods: list[str], out: Path, val_fraction: float, ipc: int, changes: dict[str, Any], tag: str
) -> None:
    suite = SUITES.get("paper")
    splits = load_dataset("mnist", val_fraction=val_fraction, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    for method in methods:
        name = method + tag
        options = suite.options.get(method, {}) | changes
        m = create_method(method, dataset="mnist", ipc=ipc, **options)
        iterations = suite.budget(method, ipc, m.config.iterations, "mnist")
        t0 = time.perf_counter()
        syn = m.fit(splits.train, ipc, iterations=iterations, seed=0,
                    callbacks=[_Snapshots(out, name)])  # fmt: skip
        syn.save(out / f"{name}_it{iterations}.ddset")
        print(f"{name}: {iterations} iterations in {time.perf_counter() - t0:.0f} s", flush=True)


def _evaluate(path: Path, val, protocol: str, model: str) -> dict[str, Any]:  # noqa: ANN001
    syn = SyntheticSet.load(path)
    t0 = time.perf_counter()
    r = evaluate(syn, val, protocol, runs=3, seed=0, models=[model]).results[0]
    row = {"set": path.name, "protocol": protocol, "model": model, "accuracies": r.accuracies,
           "mean": r.mean, "std": r.std, "seconds": time.perf_counter() - t0}  # fmt: skip
    print(f"{path.name} {protocol} {model}: {100 * r.mean:.2f} ± {100 * r.std:.2f}", flush=True)
    return row


def evaluate_sets(
    methods: list[str], out: Path, val_fraction: float, result: Path, recipes: str
) -> None:
    splits = load_dataset("mnist", val_fraction=val_fraction, seed=0)
    data = json.loads(result.read_text()) if result.exists() else {"rows": []}
    done = {(r["set"], r["protocol"], r["model"]) for r in data["rows"]}
    sets = {
        name: sorted(out.glob(f"{name}_it*.ddset"), key=lambda p: int(p.stem.split("_it")[1]))
        for name in methods
    }
    sets = {name: found for name, found in sets.items() if found}
    if not sets:
        raise SystemExit(f"no sets of {', '.join(methods)} under {out}: run --phase distil first")
    # every method starts from the same random real images (same seed): one start is evaluated
    start = next(iter(sets.values()))[0]
    # most telling first: the final sets as the suite evaluates them
    jobs = [(found[-1], "dsa", "convnet") for found in sets.values()]
    if recipes == "width":
        jobs += [(found[-1], "dsa", "convnet-w32") for found in sets.values()]
        jobs += [(start, "dsa", "convnet"), (start, "dsa", "convnet-w32")]
    else:
        jobs += _all_recipes(sets, start)
    for path, protocol, model in jobs:
        if (path.name, protocol, model) in done:
            continue
        data["rows"].append(_evaluate(path, splits.val, protocol, model))
        data["val_fraction"] = val_fraction
        atomic_write_json(result, data)


def _all_recipes(sets: dict[str, list[Path]], start: Path) -> list[tuple[Path, str, str]]:
    """Jobs after the final sets under the suite's recipe, most telling first: DC's own recipe on
    the final sets and their random start, then the budget curve, then the other recipes."""
    jobs = [(found[-1], "dc_aug", "convnet") for found in sets.values()]
    jobs += [(start, "dc_aug", "convnet")]  # the random-real baseline under the same recipe
    jobs += [(p, "dsa", "convnet") for found in sets.values() for p in found[1:-1][::-1]]
    jobs += [(start, "dsa", "convnet")]
    for found in sets.values():
        jobs += [(found[-1], "dc", "convnet"), (found[-1], "dsa", "convnet-w32")]
    jobs += [(start, "dc", "convnet"), (start, "dsa", "convnet-w32")]
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--phase", choices=("distil", "eval"), required=True)
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--methods", default="dc,dsa")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a method option changed from the suite's (distil phase; JSON values)")  # fmt: skip
    ap.add_argument("--tag", default="", help="appended to the method's name in its sets' files")
    ap.add_argument("--recipes", choices=("all", "width"), default="all")
    ap.add_argument("--val-fraction", type=float, default=1 / 6)
    ap.add_argument("--out-dir", default=None, help="default: runs/study_mnist_ipc<IPC>")
    ap.add_argument(
        "--out", default=None, help="default: benchmarks/results/study_mnist_ipc<IPC>.json"
    )
    a = ap.parse_args()
    out_dir = Path(a.out_dir or f"runs/study_mnist_ipc{a.ipc}")
    out = Path(a.out or f"benchmarks/results/study_mnist_ipc{a.ipc}.json")
    methods = [m for m in a.methods.split(",") if m]
    if a.phase == "distil":
        try:
            distil(methods, out_dir, a.val_fraction, a.ipc, parse_options(a.set), a.tag)
        except DDKitError as e:  # a bad option or method name: its one-line message
            raise SystemExit(f"error: {e}") from None
    else:
        names = [m + a.tag for m in methods]
        evaluate_sets(names, out_dir, a.val_fraction, out, a.recipes)


if __name__ == "__main__":
    main()
