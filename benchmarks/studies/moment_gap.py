"""How far is each set from held-out real rows in the statistics the matching methods match?

DM matches the mean of random networks' embeddings per class; M3D the whole distribution
through a Gaussian-kernel MMD (AAAI 2024); NCFM through the characteristic function
(CVPR 2025). If m3d's or ncfm's sets tie dm's in accuracy, either dm's set already matches the
higher statistics too (then the new loss has nothing to fix), or the new sets match them
better and accuracy does not follow (then they are not what limits accuracy). This study
measures which: every set is embedded, per class, by ``--nets`` freshly initialised networks
(``--model``, seeds 0..N-1, as DM draws them), beside the **validation rows** of the class
(the stratified ``--val-fraction`` split of the train split, seed 0, which the sets were not
distilled from: distil them with ``tune_val.py`` on the same split); the test split is never
read. Per set, mean over classes and networks (± std over networks):

- ``mean_gap``: squared distance between the class means (DM's statistic);
- ``mmd``: squared MMD under a median-width Gaussian kernel (M3D's);
- ``cf``: NCFM's characteristic-function discrepancy of the L2-normalised embeddings at
  ``--freqs`` standard-normal frequencies (its sampler off).

Usage: python benchmarks/studies/moment_gap.py --dataset mnist5k \\
           --set dm=runs/tune_val/X/lr_img=1.0/synthetic --set m3d=... [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.evaluate import test_in_set_space
from ddkit.io import atomic_write_json
from ddkit.methods.matching.mmd import gaussian_mmd
from ddkit.methods.matching.ncfm import cf_loss
from ddkit.models.helpers import build_network


def class_rows(images: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``(K, n, ...)``: the first ``n`` rows of each of the ``k`` classes, ``n`` the smallest
    class's count."""
    per = [images[labels == c] for c in range(k)]
    n = min(len(p) for p in per)
    return torch.stack([p[:n] for p in per])


def gaps(real: torch.Tensor, syn: torch.Tensor, freqs: torch.Tensor) -> dict[str, float]:
    """Class-averaged statistics between embeddings ``real`` ``(K, n, F)`` and ``syn``."""
    mean_gap = ((real.mean(1) - syn.mean(1)) ** 2).sum(1)
    mmd = gaussian_mmd(real, syn)
    cf = cf_loss(F.normalize(real, dim=-1), F.normalize(syn, dim=-1), freqs)
    return {k: float(v.mean()) for k, v in (("mean_gap", mean_gap), ("mmd", mmd), ("cf", cf))}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=SET_FOLDER")
    ap.add_argument("--model", default="convnet-w32")
    ap.add_argument("--nets", type=int, default=10)
    ap.add_argument("--freqs", type=int, default=1024)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not args.set:
        raise SystemExit("moment_gap: give at least one --set NAME=SET_FOLDER")
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    spec, k = splits.val.spec, splits.val.spec.num_classes
    sets = {}  # name -> (validation rows in the set's space, the set's rows), each (K, n, ...)
    for item in args.set:
        name, _, path = item.partition("=")
        syn = SyntheticSet.load(path)
        val = test_in_set_space(syn, splits.val)
        hard = syn.labels if syn.labels.ndim == 1 else syn.labels.argmax(1)
        sets[name] = (class_rows(val.images, val.labels, k), class_rows(syn.images, hard, k))
    per_set: dict[str, dict[str, list[float]]] = {n: {} for n in sets}

    def embed(net: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
        return net.embed(rows.flatten(0, 1)).unflatten(0, rows.shape[:2])

    for seed in range(args.nets):
        net = build_network(args.model, spec, seed).eval()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, (val, rows) in sets.items():
                real, emb = embed(net, val), embed(net, rows)
                freqs = torch.randn((k, args.freqs, real.shape[-1]), generator=g.clone_state())
                for key, value in gaps(real, emb, freqs).items():
                    per_set[name].setdefault(key, []).append(value)
    result = {
        name: {key: [statistics.fmean(v), statistics.pstdev(v)] for key, v in stats.items()}
        for name, stats in per_set.items()
    }
    for name, stats in result.items():
        print(
            name,
            json.dumps(
                {k: f"{m:.4g} ± {s:.2g}" for k, (m, s) in stats.items()}, ensure_ascii=False
            ),
        )
    if args.out:
        atomic_write_json(args.out, {"settings": vars(args), "sets": result})


if __name__ == "__main__":
    from ddkit.errors import run_script

    run_script(main, "moment_gap")
