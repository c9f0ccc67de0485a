"""How much weight kernel-density re-weighting gives the bias-conflicting rows of Colored MNIST
(issue 36; docs/benchmarks/bias-and-pruning.md, "Biased data"), in the feature space dm matches in (fresh random
networks) and in the one idm matches in (queue networks trained for some SGD steps on real rows).

For each ratio and each number of training steps, over ``--draws`` draws of (network seed, real
batch): a ConvNet-3 width 32 initialised under the draw's seed takes ``steps`` SGD steps on
random real training rows (idm's queue recipe: lr 0.01, momentum 0.9, weight decay 5e-4, batch
256, no augmentation); then every class's real batch of ``--batch`` rows (dm's and idm's
``batch_real``) is embedded and weighted by :func:`ddkit.methods.matching.reweight.kde_weights`
at the default bandwidth and temperature. Reported: the conflicting rows' share of the total
weight (a plain mean gives them their share of the rows), and their mean weight as a multiple
of the plain mean's ``1/B``, both as mean ± std over draws. The matching methods embed the
batch after DSA augmentation; this diagnostic embeds it as it is.

Writes ``benchmarks/results/biased-mnist5k/kde_weight_share.json`` and prints a Markdown table::

    python benchmarks/studies/kde_weight_share.py --ratios 0.5 2 --steps 0 25 75 --draws 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ddkit.data import load_dataset
from ddkit.data.dataset import ImageDataset
from ddkit.io import atomic_write_json
from ddkit.methods.matching.reweight import kde_weights
from ddkit.models.helpers import build_network

MODEL = "convnet-w32"


def train_steps(net: torch.nn.Module, train: ImageDataset, steps: int, seed: int) -> None:
    """``steps`` SGD steps of idm's queue recipe on random real rows of ``train``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(train.labels), (256,), generator=g)
        loss = F.cross_entropy(net(train.images[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def one_draw(train: ImageDataset, steps: int, batch: int, seed: int) -> tuple[float, float, float]:
    """(conflicting rows' share of the weight, their share of the rows, their mean weight x B)."""
    net = build_network(MODEL, train.spec, seed)
    train_steps(net, train, steps, seed)
    idx = train.sample_per_class(batch, torch.Generator().manual_seed(10_000 + seed))  # (K, B)
    with torch.no_grad():
        emb = net.embed(train.images[idx.flatten()]).view(*idx.shape, -1)
    weights = kde_weights(emb)  # (K, B), rows sum to 1
    conflicting = train.bias[idx] != train.labels[idx]
    share = float(weights[conflicting].sum() / weights.sum())
    rows = float(conflicting.float().mean())
    multiple = float(weights[conflicting].mean() * batch) if conflicting.any() else float("nan")
    return share, rows, multiple


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratios", nargs="+", default=["0.5", "2"])
    ap.add_argument("--steps", nargs="+", type=int, default=[0, 25, 75])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results/biased-mnist5k/kde_weight_share.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    start = time.perf_counter()
    for ratio in args.ratios:
        train = load_dataset(f"colored-mnist5k-c{ratio}").train
        for steps in args.steps:
            draws = [one_draw(train, steps, args.batch, seed) for seed in range(args.draws)]
            share, rows_share, multiple = (list(x) for x in zip(*draws, strict=True))
            rows.append({"ratio_percent": float(ratio), "train_steps": steps,
                         "weight_share": summary(share), "row_share": summary(rows_share),
                         "weight_multiple": summary(multiple)})  # fmt: skip
            print(f"c{ratio} steps {steps}: done", flush=True)
    atomic_write_json(args.out, {
        "model": MODEL, "batch": args.batch, "draws": args.draws, "bandwidth": 0.4,
        "temperature": 1.0, "augmentation": None, "seconds": time.perf_counter() - start,
        "rows": rows,
    })  # fmt: skip
    print("| conflicting % | network | rows' share (%) | weight share (%) | weight x B |")
    print("|---|---|---|---|---|")
    for r in rows:
        net = "random (dm)" if r["train_steps"] == 0 else f"{r['train_steps']} SGD steps"
        ws, rs, m = r["weight_share"], r["row_share"], r["weight_multiple"]
        print(f"| {r['ratio_percent']:g} | {net} | {100 * rs['mean']:.2f} | "
              f"{100 * ws['mean']:.2f} ± {100 * ws['std']:.2f} | "
              f"{m['mean']:.2f} ± {m['std']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
