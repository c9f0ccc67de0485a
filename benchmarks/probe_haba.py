"""Why HaBa's factorisation trails plain pixels at equal bytes (validation split only).

Distils mnist5k's train split less a stratified validation split (``--val-fraction``, seed 0)
with DM through ``haba:H`` at the bytes of ``--ipc`` plain images, then measures, on that set:

* ``spread``: how far each hallucinated image lies from its base, relative to how far the bases
  of a class lie from each other (mean L2 distances; 0 = the hallucinators copy their base);
* validation accuracy (protocol ``fast``) of the whole set, of its bases alone (one image per
  base), and of as many random real images per class as there are bases.

``--weight-scale`` sets the codec's hallucinator weight scale (the factor between the stored numbers
and the weights; smaller = smaller steps for the weights under the same image optimiser).

Usage: python benchmarks/probe_haba.py [--ipc 10] [--hallucinators 5] [--iterations 500]
       [--weight-scale S]
"""

from __future__ import annotations

import argparse

import torch

from ddkit.bench.runner import machine_info
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.methods import create_method
from ddkit.methods.codecs import Factorisation, make_codec
from ddkit.methods.common import class_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--hallucinators", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--weight-scale", type=float, default=None, help="codec default if unset")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.weight_scale is not None:
        Factorisation.weight_scale = args.weight_scale
    scale = Factorisation.weight_scale
    name = f"probe_haba_{args.dataset}_ipc{args.ipc}" + ("" if scale == 1 else f"_scale{scale:g}")
    out = args.out or f"benchmarks/results/{name}.json"
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    spec, k, h = splits.train.spec, splits.train.spec.num_classes, args.hallucinators
    dm = create_method("dm", dataset=args.dataset, ipc=args.ipc, codec=f"haba:{h}")
    syn = dm.fit(splits.train, args.ipc, iterations=args.iterations, seed=0)
    codec = make_codec(f"haba:{h}")
    bases = codec.restore(spec, syn.meta, syn.extras)
    bases, _ = codec._unpack(bases)  # (K * B, C, H, W), class-major
    per_class = len(bases) // k
    images = syn.images.view(len(bases), h, -1)  # each base's h images together
    to_base = (images - bases.flatten(1)[:, None]).norm(dim=2).mean()
    grouped = bases.flatten(1).view(k, per_class, -1)
    between = torch.cdist(grouped, grouped).sum() / (k * per_class * max(per_class - 1, 1))
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
    atomic_write_json(out, {
        "settings": {**vars(args), "weight_scale": scale}, "machine": machine_info(),
        "bases_per_class": per_class,
        "mean_distance_to_base": float(to_base), "mean_distance_between_bases": float(between),
        "spread": float(to_base / between), "rows": rows,
    })  # fmt: skip
    print(f"spread {float(to_base / between):.3f}; wrote {out}")


if __name__ == "__main__":
    main()
