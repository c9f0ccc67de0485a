"""What vl-mtt's expert trajectories know (issue 86): each expert's recall at every epoch.

Bi-trajectory matching can only put into a set what the segments of the experts it matches
carry. This script reads the experts ``vl-mtt`` trains (or finds in ``--expert-cache``) under the
options given with ``--set`` (as ``bench_vl_recall.py`` passes them), loads each epoch's
trainable parameters into the dual encoder and reports recall@1/5/10 both ways on a held-out
share of the training pairs (``--val-fraction``; the test split is never read). Towers are
pretrained and frozen, as in the published form.

    python benchmarks/campaigns/vl_expert_recall.py --dataset scenes-mnist5k \\
        --set expert_lr=0.1 --set expert_momentum=0.9 --set expert_weight_decay=5e-4 \\
        --out benchmarks/results/vl_expert_recall_papers.json
"""

from __future__ import annotations

import argparse

import torch
from resume import results_header

from ddkit.data.paired import load_paired_splits
from ddkit.eval.retrieval import encode_split
from ddkit.io import atomic_write_json
from ddkit.methods import create_method
from ddkit.methods.config import parse_options
from ddkit.models.text import TrainableView


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--dataset", default="scenes-mnist5k")
    a.add_argument("--pairs", type=int, default=100, help="the set's size (its experts' run)")
    a.add_argument("--val-fraction", type=float, default=0.2)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE")
    a.add_argument("--image-encoder", default="convnet3-w32")
    a.add_argument("--text-encoder", default="bag")
    a.add_argument("--tower-cache", default="benchmarks/.cache/vl_towers")
    a.add_argument("--expert-cache", default="benchmarks/.cache/vl_experts")
    a.add_argument("--towers-output", choices=("standardized", "raw"), default="standardized")
    a.add_argument("--out", required=True)
    args = a.parse_args(argv)
    torch.set_num_threads(1)
    splits = load_paired_splits(args.dataset, seed=args.seed, val_fraction=args.val_fraction)
    options = {"text_space": "output", "match_epochs": 1, "max_start_epoch": 2,
               "towers": "pretrained", "image_encoder": args.image_encoder,
               "text_encoder": args.text_encoder, "tower_cache": args.tower_cache,
               "expert_cache": args.expert_cache,
               "standardize_towers": args.towers_output == "standardized",
               **parse_options(args.set_items)}  # fmt: skip
    method = create_method("vl-mtt", **options)
    method.fit(splits.train, args.pairs, seed=args.seed, iterations=1, progress=False)
    view = TrainableView(method.model_)
    experts = []
    for trajectory in method.experts_:
        epochs = []
        for theta in trajectory:
            view.load(theta)
            epochs.append(encode_split(method.model_, splits.val))
        experts.append(epochs)
        print([round(100 * e["i2t_r1"], 1) for e in epochs])
    result = results_header(
        "campaigns/vl_expert_recall.py", argv, vars(args) | {"options": options}
    )
    result["val_pairs"] = len(splits.val)
    result["experts"] = experts  # per expert, per epoch (0: initialisation): recall both ways
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
