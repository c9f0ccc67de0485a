"""What do the distilled series look like? Amplitude and roughness beside the real series.

The time-series benchmark (``benchmarks/campaigns/timeseries.sh``) found sets that train the matching
network but not the other learners. This measures, for every set in the benchmark's run folders,
two properties the z-normalising learners (MiniRocket, k-NN, the 1-D nets of ``ddkit evaluate
--learners``) are sensitive to, beside the real training split:

* amplitude: the median over series (and channels) of each series' standard deviation, in the
  units of the dataset's own (z-normalised) series, where a real series has 1;
* roughness: the median over series (and channels) of the mean squared step
  ``(x[t+1] - x[t])^2`` of the series after z-normalising it as the learners do
  (:func:`ddkit.data.series.znormalize`), i.e. how much of its variance sits in step-to-step
  noise (white noise gives 2, a smooth series far less).

No training, no test split: the sets are read from their run folders. The step-size sweep of
mtt at italypowerdemand IPC 10 (the benchmark's run uses the generic ``lr_img`` 1000) distils
into ``runs/ts-lr`` first, once per value::

    for lr in 0.1 1 10 100; do ddkit distill --dataset italypowerdemand --method mtt --ipc 10 \
      --seed 0 --set lr_img=$lr --out runs/ts-lr/italypowerdemand-mtt-ipc10-lr$lr; done

Usage: python benchmarks/studies/series_shape.py --runs runs/timeseries runs/ts-lr
       [--datasets gunpoint italypowerdemand arrowhead] [--out benchmarks/results/timeseries_shape.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ddkit.data import load_dataset
from ddkit.data.series import znormalize
from ddkit.data.synthetic import SyntheticSet
from ddkit.io import atomic_write_json


def shape_stats(series: torch.Tensor) -> dict[str, float]:
    """Median amplitude and roughness of ``series`` ``(N, D, 1, L)`` (module docstring)."""
    x = series.double()
    std = x.std(dim=-1, unbiased=False).flatten()
    rough = (znormalize(x).diff(dim=-1) ** 2).mean(dim=-1).flatten()
    return {
        "series": len(x),
        "amplitude_median": float(std.median()),
        "amplitude_max": float(std.max()),
        "roughness_median": float(rough.median()),
        "roughness_max": float(rough.max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["runs/timeseries"], help="folders of run folders")
    ap.add_argument("--datasets", nargs="+", default=["gunpoint", "italypowerdemand", "arrowhead"])
    ap.add_argument("--out", default="benchmarks/results/timeseries_shape.json")
    args = ap.parse_args(argv)
    rows = []
    for name in args.datasets:
        real = shape_stats(load_dataset(name).train.images)
        rows.append({"dataset": name, "set": "real train", **real})
        print(f"{name} real train: {real}")
        folders = [f for runs in args.runs for f in sorted(Path(runs).glob(f"{name}-*/synthetic"))]
        for folder in folders:
            syn = SyntheticSet.load(folder)
            stats = shape_stats(syn.images)
            rows.append({"dataset": name, "set": folder.parent.name[len(name) + 1 :], **stats})
            print(f"  {folder.parent.name}: {stats}")
    atomic_write_json(args.out, {"settings": vars(args), "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
