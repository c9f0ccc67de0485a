"""``ddkit prune``: keep the rows a pruning score picks and save them as a set."""

from __future__ import annotations

import argparse

from ddkit.commands import Command, add_common, register_command


def add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    from ddkit.methods.coreset.scores import SCORES

    parser.add_argument("--dataset", required=True, help="registered dataset name")
    parser.add_argument("--score", required=True, help=f"one of: {', '.join(sorted(SCORES))}")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--keep", type=float, help="fraction of the train split to keep, in (0, 1]")
    size.add_argument("--ipc", type=int, help="rows to keep per class instead of a fraction")
    parser.add_argument("--out", required=True, help="folder of the kept set")
    parser.add_argument(
        "--easy", action="store_true", help="keep the easiest rows, not the hardest"
    )
    parser.add_argument(
        "--ccs-beta",
        type=float,
        default=None,
        help="coverage-centric selection: prune this hardest fraction first",
    )
    parser.add_argument(
        "--ccs-bins",
        type=int,
        default=None,
        help="coverage-centric selection: score bins to sample evenly (default 50)",
    )
    parser.add_argument("--model", default=None, help="proxy network (default: the score's)")
    parser.add_argument("--epochs", type=int, default=None, help="proxy training epochs")
    parser.add_argument("--seeds", type=int, default=None, help="proxy runs averaged over")
    parser.add_argument("--window", type=int, default=None, help="dyn-unc window in epochs")
    parser.add_argument("--cache", default=None, help="score cache folder (default runs/scores)")
    add_common(parser, "seed", "root")


def _options(args: argparse.Namespace) -> dict[str, object]:
    given = {
        "model": args.model,
        "epochs_net": args.epochs,
        "seeds": args.seeds,
        "window": args.window,
        "score_cache": args.cache,
        "ccs_beta": args.ccs_beta,
        "ccs_bins": args.ccs_bins,
    }
    options = {k: v for k, v in given.items() if v is not None}
    options["ccs"] = args.ccs_beta is not None or args.ccs_bins is not None
    options["prefer"] = "easy" if args.easy else "hard"
    return options


def run_prune(args: argparse.Namespace) -> int:
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet, check_set_destination
    from ddkit.methods.coreset.ccs import kept_count
    from ddkit.methods.coreset.pruning import prune, score_config

    options = _options(args)
    check_set_destination(args.out)  # a folder of other files is refused, not replaced
    score_config(args.score, **options)  # every option checked before the data is loaded
    if args.keep is not None:
        kept_count(args.keep, 1)
    train = load_dataset(args.dataset, root=args.root).train
    index = prune(train, args.score, keep=args.keep, ipc=args.ipc, seed=args.seed, **options)
    meta = {
        "method": f"prune-{args.score}",
        "score": args.score,
        "keep": args.keep,
        "ipc": args.ipc,
        "seed": args.seed,
        "options": options,
        "indices": index.tolist(),
    }
    SyntheticSet.from_real(train, index, meta=meta).save(args.out)  # atomic folder swap
    counts = train.labels[index].bincount(minlength=train.spec.num_classes).tolist()
    how = f"CCS beta={options.get('ccs_beta', 0.0)}" if options["ccs"] else options["prefer"]
    print(
        f"kept {len(index)} of {len(train)} rows of {args.dataset} by {args.score} ({how}); "
        f"per class {counts}; wrote {args.out}"
    )
    return 0


register_command(
    Command(
        "prune",
        "keep the rows a pruning score picks (el2n, grand, margin, dyn-unc, forgetting) as a set",
        add_prune_arguments,
        run_prune,
    )
)
