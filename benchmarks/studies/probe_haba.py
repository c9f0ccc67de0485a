"""Why HaBa's factorisation trails plain pixels at equal bytes (validation split only).

Distils mnist5k's train split less a stratified validation split (``--val-fraction``, seed 0)
with DM through ``haba:H`` at the bytes of ``--ipc`` plain images, then measures, on that set:

* ``spread``: how far each hallucinated image lies from its base, relative to how far the bases
  of a class lie from each other (mean L2 distances; 0 = the hallucinators copy their base);
* validation accuracy (protocol ``fast``) of the whole set, of its bases alone (one image per
  base), and of as many random real images per class as there are bases.

``--weight-scale`` sets the codec's hallucinator weight scale (the factor between the stored numbers
and the weights; smaller = smaller steps for the weights under the same image optimiser).
``--spread-only S1,S2,...`` distils once per scale and records only the spread and the
hallucinators' weight norms (no evaluation): how far each scale lets the hallucinators move.

Usage: python benchmarks/studies/probe_haba.py [--ipc 10] [--hallucinators 5] [--iterations 500]
       [--weight-scale S] [--spread-only 1,0.1,0.01]
"""

from __future__ import annotations

import argparse

import torch

from ddkit.data import load_dataset
from ddkit.data.codecs import make_codec
from ddkit.data.codecs.haba import Factorisation
from ddkit.data.dataset import class_labels
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods import create_method


def _distil(splits, args, scale: float):
    """DM through ``haba:H`` at ``scale``: the set, its bases and the hallucinators' weights."""
    Factorisation.weight_scale = scale
    h = args.hallucinators
    dm = create_method("dm", dataset=args.dataset, ipc=args.ipc, codec=f"haba:{h}")
    syn = dm.fit(splits.train, args.ipc, iterations=args.iterations, seed=0)
    codec = make_codec(f"haba:{h}")
    bases, weights = codec._unpack(codec.restore(splits.train.spec, syn.meta, syn.extras))
    return syn, bases, weights  # bases: (K * B, C, H, W), class-major


def _spread(syn, bases: torch.Tensor, h: int, k: int) -> dict[str, float]:
    """Mean L2 distance of each hallucinated image to its base, between a class's bases, and
    their ratio."""
    per_class = len(bases) // k
    images = syn.images.view(len(bases), h, -1)  # each base's h images together
    to_base = (images - bases.flatten(1)[:, None]).norm(dim=2).mean()
    grouped = bases.flatten(1).view(k, per_class, -1)
    between = torch.cdist(grouped, grouped).sum() / (k * per_class * max(per_class - 1, 1))
    return {"mean_distance_to_base": float(to_base), "mean_distance_between_bases": float(between),
            "spread": float(to_base / between)}  # fmt: skip


def _spread_sweep(splits, args) -> dict:
    rows = []
    for scale in [float(v) for v in args.spread_only.split(",")]:
        syn, bases, weights = _distil(splits, args, scale)
        row = {"weight_scale": scale, **_spread(syn, bases, args.hallucinators, splits.train.spec.num_classes),
               "weight_norms": {key: float(w.norm()) for key, w in weights.items()}}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    return {"rows": rows}


def _accuracy_probe(splits, args, scale: float) -> dict:
    spec, k = splits.train.spec, splits.train.spec.num_classes
    syn, bases, _ = _distil(splits, args, scale)
    per_class = len(bases) // k
    sets = {
        "haba set": syn,
        "its bases alone": SyntheticSet(bases.clone(), class_labels(k, per_class), spec),
        "random real, as many as bases": create_method("random").fit(
            splits.train, per_class, seed=0
        ),
    }
    rows = []
    for name, s in sets.items():
        r = evaluate(s, splits.val, "fast", seed=0).results[0]
        rows.append({"set": name, "images": len(s), "val_mean": r.mean, "val_std": r.std})
        print(rows[-1], flush=True)
    spread = _spread(syn, bases, args.hallucinators, k)
    print(f"spread {spread['spread']:.3f}", flush=True)
    return {"bases_per_class": per_class, **spread, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--hallucinators", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--weight-scale", type=float, default=None, help="codec default if unset")
    ap.add_argument("--spread-only", default="", help="weight scales to sweep, no evaluation")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    scale = Factorisation.weight_scale if args.weight_scale is None else args.weight_scale
    name = f"probe_haba_{args.dataset}_ipc{args.ipc}"
    name += "_spread" if args.spread_only else ("" if scale == 1 else f"_scale{scale:g}")
    out = args.out or f"benchmarks/results/{name}.json"
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    found = (
        _spread_sweep(splits, args) if args.spread_only else _accuracy_probe(splits, args, scale)
    )
    settings = {**vars(args), "weight_scale": None if args.spread_only else scale}
    atomic_write_json(out, {"settings": settings, "machine": machine_info(), **found})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
