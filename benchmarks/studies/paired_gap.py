"""Can a split of this size tell two sets apart? The gap between two sets' accuracy, with its
sampling error over the split's images.

Trains ``--runs`` fresh networks on each of two sets as the bench's evaluation units train them
(the same protocol, epochs, models and seeds, one network at a time, so on the same machine each
network's accuracy is the cell's or ``tune_val.py``'s to the bit),
predicts every image of the test split (or, with ``--val-fraction``, of the validation split
``tune_val.py`` carves out of the train split), and reports each set's accuracy per network,
the gap between the two sets' mean accuracies, and how far that gap could move on another draw
of the same number of images: a paired bootstrap over the split's images (every network's
prediction on a drawn image kept, so the two sets are compared on the same images) and the
normal approximation from the per-image differences. The spread over networks, which the
benchmark tables print, does not contain this error: every network there is tested on the same
images.

SET_A and SET_B may each name several sets (comma-separated, e.g. one per distillation seed):
the networks of all of a side's sets are pooled, and each i-th pair is also compared alone.
``--seeds`` gives each i-th pair's network seed (a bench cell of distillation seed S evaluates
with seed S; ``tune_val.py`` always with 0).

Usage: python benchmarks/studies/paired_gap.py SET_A[,SET_A2] SET_B[,SET_B2] [--dataset mnist5k]
           [--runs 3] [--protocol dsa] [--epochs 300] [--models convnet-w32]
           [--val-fraction 0.2] [--seeds 0[,1]] [--bootstrap 2000] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path
from ddkit.eval.evaluate import RunPlan, train_fresh_networks
from ddkit.eval.train import predicted_classes
from ddkit.io import atomic_write_json


def _load(path: str) -> SyntheticSet:
    return SyntheticSet.load(resolve_synthetic_path(path))


def correct_per_image(
    syn: SyntheticSet, split: Any, args: argparse.Namespace, seed: int
) -> tuple[str, torch.Tensor]:
    """Whether each of the ``runs`` networks trained on ``syn`` classifies each image of
    ``split`` correctly: ``(runs, images)`` booleans, for the protocol's only model. Each
    network is trained alone from the seed it has among ``runs``, as the bench's evaluation
    units train them."""
    models = args.models.split(",") if args.models else None
    rows, names = [], set()
    for k in range(args.runs):
        fresh = train_fresh_networks(
            syn, split, args.protocol, models=models, runs=args.runs, epochs=args.epochs,
            seed=seed, plan=RunPlan(run_indices=[k]),
        )  # fmt: skip
        names.update(fresh.results)
        for result in fresh.results.values():
            rows += [predicted_classes(net, fresh.test.images) == fresh.test.labels.cpu()
                     for net in result.models]  # fmt: skip
    if len(names) != 1:
        raise SystemExit(f"give one model (--models), not {sorted(names)}")
    return names.pop(), torch.stack(rows)


def _accuracies(correct: torch.Tensor) -> list[float]:
    """Each network's accuracy, counted as ``fraction_correct`` counts it."""
    return [int(row.sum()) / row.numel() for row in correct]


def paired_gap(a: torch.Tensor, b: torch.Tensor, draws: int, seed: int) -> dict[str, Any]:
    """The gap between the mean accuracies of networks ``a`` and ``b`` ((runs, images) booleans
    on the same images), with a 95 % interval from a paired bootstrap over the images and the
    normal approximation's standard error from the per-image differences."""
    per_image = a.float().mean(0) - b.float().mean(0)  # each image: set A's share right minus B's
    n = per_image.numel()
    g = torch.Generator().manual_seed(seed)
    drawn = per_image[torch.randint(n, (draws, n), generator=g)].mean(1)
    low, high = torch.quantile(drawn, torch.tensor([0.025, 0.975])).tolist()
    return {
        "gap": per_image.mean().item(),
        "bootstrap_95": [low, high],
        "standard_error": per_image.std().item() / math.sqrt(n),
        "images": n,
        "images_differing": int((per_image != 0).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_a", help="run or synthetic-set folders, comma-separated")
    ap.add_argument("set_b", help="as many run or synthetic-set folders, comma-separated")
    ap.add_argument("--dataset", default=None, help="default: set A's dataset")
    ap.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="test on the validation split tune_val.py carves (seed 0)",
    )
    ap.add_argument("--protocol", default="dsa")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", default="convnet-w32")
    ap.add_argument(
        "--seeds",
        default="0",
        help="each pair's network seed, as evaluate --seed (one: every pair)",
    )
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()  # fmt: skip

    paths_a, paths_b = args.set_a.split(","), args.set_b.split(",")
    if len(paths_a) != len(paths_b):
        raise SystemExit(f"give as many sets on each side, got {len(paths_a)} and {len(paths_b)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    seeds = seeds * len(paths_a) if len(seeds) == 1 else seeds
    if len(seeds) != len(paths_a):
        raise SystemExit(f"give one seed or one per pair ({len(paths_a)}), got {args.seeds}")
    dataset = args.dataset or _load(paths_a[0]).meta.get("dataset")
    if args.val_fraction is None:
        split, name = load_dataset(dataset).test, "test"
    else:
        split, name = load_dataset(dataset, val_fraction=args.val_fraction, seed=0).val, "val"
    t0 = time.perf_counter()
    pairs, side_a, side_b = [], [], []
    for path_a, path_b, seed in zip(paths_a, paths_b, seeds, strict=True):
        model, a = correct_per_image(_load(path_a), split, args, seed)
        _, b = correct_per_image(_load(path_b), split, args, seed)
        side_a.append(a)
        side_b.append(b)
        pairs.append({"a": path_a, "b": path_b, "seed": seed,
                      "accuracies": {"a": _accuracies(a), "b": _accuracies(b)},
                      **paired_gap(a, b, args.bootstrap, seed)})  # fmt: skip
    correct_a, correct_b = torch.cat(side_a), torch.cat(side_b)
    gap = paired_gap(correct_a, correct_b, args.bootstrap, seeds[0])
    report = {
        "settings": {**vars(args), "dataset": dataset, "split": name, "model": model},
        "pairs": pairs,
        **gap,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for p in pairs:
        low, high = p["bootstrap_95"]
        print(f"seed {p['seed']}: gap {100 * p['gap']:+.2f} points, 95 % over the images "
              f"[{100 * low:+.2f}, {100 * high:+.2f}]")  # fmt: skip
    low, high = gap["bootstrap_95"]
    print(
        f"{name} split, {gap['images']} images: A {100 * correct_a.float().mean():.2f} %, "
        f"B {100 * correct_b.float().mean():.2f} % ({len(correct_a)} networks each); gap "
        f"{100 * gap['gap']:+.2f} points, 95 % over the images [{100 * low:+.2f}, "
        f"{100 * high:+.2f}] (standard error {100 * gap['standard_error']:.2f}; the sets' "
        f"networks differ on {gap['images_differing']} images)"
    )
    if args.out:
        atomic_write_json(Path(args.out), report)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    from ddkit.errors import run_script

    run_script(main, "paired_gap")
