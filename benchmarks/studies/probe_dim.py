"""Why dim's generator trails plain pixels at mnist5k IPC-10 bytes (validation split only).

dim ships a small decoder (``latent_dim`` 16, ``width`` 16: the same bytes whatever the IPC) and
one Gaussian per class in its latent space. This probe trains that autoencoder on mnist5k's
train split less a stratified validation split (20 %, seed 0) and scores on the validation
split, protocol ``fast``, three sets of ``--per-class`` images per class:

* ``real``: random real images;
* ``decoded real``: the same images through the autoencoder (the decoder's ceiling: what the best
  possible codes would give);
* ``class Gaussians``: fresh samples from one Gaussian per class fitted to the real codes (dim's
  starting generator, before any distillation).

Usage: python benchmarks/studies/probe_dim.py [--per-class 10] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

from ddkit.data import load_dataset
from ddkit.data.dataset import class_labels
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods import create_method
from ddkit.methods.generative.dim import (
    DiMConfig,
    _autoencoder,
    _decode,
    class_gaussians,
    generator_bytes,
)
from ddkit.methods.trajectory.student import FlatModel


def _sets(train, per_class: int, cfg: DiMConfig) -> dict[str, SyntheticSet]:
    spec, k = train.spec, train.spec.num_classes
    autoencoder = _autoencoder(cfg.latent_dim, cfg.width, cfg.autoencoder_steps)
    autoencoder.fit(train)
    real = create_method("random").fit(train, per_class, seed=0)  # class-major
    fm = FlatModel(autoencoder.decoder_)
    with torch.no_grad():
        decoded = autoencoder.decoder_(autoencoder.encoder_(real.images))
        codes = autoencoder.encoder_(train.images.float())
        means, log_scales = class_gaussians(codes, train.labels, k)
        weights = fm.flatten(autoencoder.decoder_)
        sampled = _decode(
            fm, weights, means, log_scales, per_class, torch.Generator().manual_seed(0)
        )
    labels = class_labels(k, per_class)
    return {
        "real": real,
        "decoded real": SyntheticSet(decoded, real.labels.clone(), spec),
        "class Gaussians": SyntheticSet(sampled, labels, spec),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/probe_dim_mnist5k.json")
    args = ap.parse_args()
    splits = load_dataset("mnist5k", val_fraction=0.2, seed=0)
    cfg = DiMConfig()
    rows = []
    for name, s in _sets(splits.train, args.per_class, cfg).items():
        r = evaluate(s, splits.val, "fast", seed=0).results[0]
        rows.append({"set": name, "images": len(s), "val_mean": r.mean, "val_std": r.std})
        print(rows[-1], flush=True)
    settings = {**vars(args), "latent_dim": cfg.latent_dim, "width": cfg.width,
                "autoencoder_steps": cfg.autoencoder_steps,
                "generator_bytes": generator_bytes(cfg.latent_dim, cfg.width, splits.train.spec)}  # fmt: skip
    atomic_write_json(args.out, {"settings": settings, "machine": machine_info(), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
