"""Architecture search with a small proxy training set (DC, Zhao et al. ICLR 2021, sec. 4.3;
DC-BENCH, Cui et al. NeurIPS 2022).

Every architecture of a space of ConvNet variants is trained from scratch on each proxy set
(a distilled set, random real images, a coreset) and on the full training set, each scored on a
validation split carved out of train. A proxy is good when it ranks the architectures as the
full data does: Spearman's and Kendall's rank correlations between the two validation scores,
the test accuracy (after full-data training) of the proxy's top pick, and the time saved. The
test split is only ever reported, never used to rank or pick.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ddkit.apps.base import App, register_app
from ddkit.commands import COUNT, FRACTION, Limit
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import accuracy, train_networks
from ddkit.methods import method_names


def architecture_space(
    depths: Sequence[int] = (1, 2),
    widths: Sequence[int] = (16, 32),
    norms: Sequence[str] = ("in", "bn", "none"),
    activations: Sequence[str] = ("relu", "sigmoid"),
    pools: Sequence[str] = ("avg", "max"),
) -> list[str]:
    """Registry names of ConvNet variants, one per combination (the default: 48 networks small
    enough for 8x8 and 28x28 images on a CPU)."""
    return [
        f"convnet{d}-w{w}-{n}-{a}-{p}"
        for d, w, n, a, p in itertools.product(depths, widths, norms, activations, pools)
    ]


@dataclass
class Scores:
    """Validation accuracy per architecture after training on one training set."""

    name: str
    num_images: int
    val: dict[str, float]
    seconds: float
    test: dict[str, float] = field(default_factory=dict)


def score_architectures(
    train: ImageDataset | SyntheticSet,
    splits: DatasetSplits,
    architectures: Sequence[str],
    protocol: EvalProtocol,
    *,
    name: str,
    seed: int = 0,
    with_test: bool = False,
) -> Scores:
    """Train each architecture once (seeded) on ``train`` under ``protocol``; score it on the
    validation split (and, with ``with_test``, on the test split, for reporting)."""
    if isinstance(train, SyntheticSet):
        if train.zca() is not None:
            raise ConfigError(f"proxy {name!r} lives in a ZCA space; distil with zca=false")
        images, labels = train.images, train.labels
    else:
        images, labels = train.images, train.labels
    out = Scores(name, len(images), {}, 0.0)
    for arch in architectures:
        res = train_networks(
            arch, splits.train.spec, images, labels, protocol, [seed], lr=protocol.lr
        )
        out.seconds += res.seconds
        net = res.models[0]
        out.val[arch] = accuracy(net, splits.val.images, splits.val.labels)
        if with_test:
            out.test[arch] = accuracy(net, splits.test.images, splits.test.labels)
    return out


def rank_agreement(proxy: Mapping[str, float], full: Mapping[str, float]) -> dict[str, float]:
    """Spearman's rho and Kendall's tau between two scorings of the same architectures."""
    from scipy.stats import kendalltau, spearmanr

    archs = sorted(full)
    a = [proxy[k] for k in archs]
    b = [full[k] for k in archs]
    rho, tau = spearmanr(a, b).statistic, kendalltau(a, b).statistic
    return {"spearman": float(rho), "kendall": float(tau)}


#: The recipe architectures train under by default, resolved once at import (its epochs and
#: runs set by :func:`architecture_search`).
NAS_PROTOCOL = get_protocol("dc")


def architecture_search(
    splits: DatasetSplits,
    proxies: Mapping[str, SyntheticSet],
    *,
    architectures: Sequence[str] | None = None,
    proxy_epochs: int = 300,
    full_epochs: int = 30,
    protocol: EvalProtocol = NAS_PROTOCOL,
    seed: int = 0,
    log=print,  # noqa: ANN001
) -> dict[str, Any]:
    """Rank ``architectures`` by each proxy and by the full training split (module docstring);
    ``splits`` must have a validation split. Returns a JSON-ready dict."""
    if splits.val is None or len(splits.val) == 0:
        raise ConfigError("architecture search scores on a validation split: load the dataset "
                          "with val_fraction > 0")  # fmt: skip
    archs = list(architectures or architecture_space())
    base = protocol.with_(runs=1)
    log(f"full training set: {len(archs)} architectures x {full_epochs} epochs")
    full = score_architectures(
        splits.train, splits, archs, base.with_(epochs=full_epochs), name="full", seed=seed,
        with_test=True,
    )  # fmt: skip
    best_by_val = max(archs, key=lambda k: full.val[k])
    rows = []
    for name, syn in proxies.items():
        log(f"proxy {name}: {len(syn)} images, {len(archs)} architectures x {proxy_epochs} epochs")
        scores = score_architectures(
            syn, splits, archs, base.with_(epochs=proxy_epochs), name=name, seed=seed
        )
        pick = max(archs, key=lambda k: scores.val[k])
        rows.append(
            {
                "proxy": name,
                "num_images": scores.num_images,
                **rank_agreement(scores.val, full.val),
                "top_pick": pick,
                "top_pick_test": full.test[pick],
                "seconds": scores.seconds,
                "time_saved": full.seconds / max(scores.seconds, 1e-9),
                "val": scores.val,
            }
        )
        log(f"  spearman {rows[-1]['spearman']:.3f}, kendall {rows[-1]['kendall']:.3f}, "
            f"top pick {pick} ({100 * full.test[pick]:.2f} % test after full training)")  # fmt: skip
    return {
        "architectures": archs,
        "protocol": base.to_dict(),
        "proxy_epochs": proxy_epochs,
        "full_epochs": full_epochs,
        "full": {"val": full.val, "test": full.test, "seconds": full.seconds},
        "full_pick": best_by_val,
        "full_pick_test": full.test[best_by_val],
        "proxies": rows,
        "seed": seed,
    }


def proxy_sets(
    splits: DatasetSplits,
    methods: Sequence[str],
    ipc: int,
    *,
    iterations: int | None = None,
    seed: int = 0,
) -> dict[str, SyntheticSet]:
    """One proxy set per method or selector, built from the training split at ``ipc``."""
    from ddkit.methods import create_method

    out = {}
    for m in methods:
        method = create_method(m, dataset=splits.train.spec.name, ipc=ipc)
        out[m] = method.fit(splits.train, ipc, iterations=iterations, seed=seed)
    return out


@register_app
class NasApp(App):
    """``ddkit app nas``."""

    name = "nas"
    help = "architecture search: does training on a proxy set rank networks as full data?"
    limits = {"ipc": COUNT, "iterations": Limit(0, integer=True), "proxy_epochs": COUNT,
              "full_epochs": COUNT, "val_fraction": FRACTION}  # fmt: skip

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        cls.add_shared(parser)
        parser.add_argument(
            "--proxies", default="random,herding,kmeans,dm", help="methods/selectors"
        )
        parser.add_argument("--ipc", type=int, default=10)
        parser.add_argument("--iterations", type=int, default=None, help="distillation budget")
        parser.add_argument("--proxy-epochs", type=int, default=300)
        parser.add_argument("--full-epochs", type=int, default=30)
        parser.add_argument("--space", choices=["default", "tiny"], default="default",
                         help="default: 48 ConvNet variants; tiny: 4 (for a quick look)")  # fmt: skip
        parser.add_argument("--val-fraction", type=float, default=0.2)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.claims import hold_output
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.plots import plot_proxy_ranking

        methods = method_names(args.proxies)
        splits = load_dataset(
            args.dataset, root=args.root, val_fraction=args.val_fraction, seed=args.seed
        )
        splits.train.check_ipc(args.ipc)
        with hold_output(args, "output folder", "app nas") as out:
            space = (
                architecture_space()
                if args.space == "default"
                else architecture_space(
                    depths=(1, 2),
                    widths=(16,),
                    norms=("in", "none"),
                    pools=("avg",),
                    activations=("relu",),
                )  # fmt: skip
            )
            proxies = proxy_sets(
                splits, methods, args.ipc, iterations=args.iterations, seed=args.seed
            )
            result = architecture_search(
                splits,
                proxies,
                architectures=space,
                proxy_epochs=args.proxy_epochs,
                full_epochs=args.full_epochs,
                seed=args.seed,
            )
            result.update({"dataset": args.dataset, "ipc": args.ipc, "iterations": args.iterations})
            atomic_write_json(out / "nas.json", result)
            plot_proxy_ranking(result, out / "nas.png")
            print(
                f"{'proxy':<10} {'images':>6} {'spearman':>9} {'kendall':>8} {'top pick test %':>16}"
            )
            for r in result["proxies"]:
                print(f"{r['proxy']:<10} {r['num_images']:>6} {r['spearman']:>9.3f} {r['kendall']:>8.3f} "
                      f"{100 * r['top_pick_test']:>16.2f}")  # fmt: skip
            print(
                f"full data's own pick (by validation): {100 * result['full_pick_test']:.2f} % test"
            )
            print(f"wrote {out / 'nas.json'} and {out / 'nas.png'}")
            return 0
