"""Class-incremental continual learning with a memory built by any method or selector.

The protocol of the DC/DSA/DM papers' continual-learning experiments (Zhao & Bilen, ICLR 2021,
sec. 4.3; WACV 2023, sec. 5.3), after the memory-replay setting of iCaRL (Rebuffi et al., CVPR
2017): the classes are split into ``steps`` groups in an order drawn from a seed; at each step a
memory of ``memory`` images per class is built from *that step's data only* by the chosen method
(or selector) and added to the memory of earlier steps; a fresh network is then trained from
scratch on the whole memory and tested on the test images of every class seen so far. The
metric is that accuracy after every step (the curve) and after the last one.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ddkit.apps.base import App, finished_rows, kept_row, register_app
from ddkit.commands import COUNT, Limit
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval import evaluate
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.methods import create_method, method_names


@dataclass
class ContinualResult:
    """Accuracy after each step for each class order: ``curves[o][t]`` (fractions)."""

    method: str
    dataset: str
    steps: int
    memory: int
    orders: list[list[int]]
    curves: list[list[float]]
    protocol: str
    iterations: int | None
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_curve(self) -> list[float]:
        return torch.tensor(self.curves).mean(0).tolist()

    @property
    def final(self) -> tuple[float, float]:
        """(mean, std) over class orders of the accuracy after the last step."""
        last = torch.tensor([c[-1] for c in self.curves])
        return float(last.mean()), float(last.std()) if len(last) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_curve": self.mean_curve, "final": self.final}


def class_orders(num_classes: int, count: int, seed: int) -> list[list[int]]:
    """``count`` class orders, the ``o``-th a permutation drawn from seed ``seed + o``."""
    return [
        torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed + o)).tolist()
        for o in range(count)
    ]


def class_subset(data: ImageDataset, classes: list[int]) -> ImageDataset:
    """The rows of ``classes`` as a dataset of ``len(classes)`` classes (labels renumbered in
    the order given; normalisation and dataset name kept, so presets still apply)."""
    lookup = torch.full((data.spec.num_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    rows = torch.nonzero(lookup[data.labels] >= 0).flatten()
    spec = replace(
        data.spec,
        num_classes=len(classes),
        class_names=tuple(data.spec.class_names[c] for c in classes),
    )
    return ImageDataset(data.images[rows], lookup[data.labels[rows]], spec)


def in_full_label_space(syn: SyntheticSet, classes: list[int], spec: Any) -> SyntheticSet:
    """A set distilled on :func:`class_subset` with its labels mapped back to all classes."""
    if syn.zca() is not None:
        raise ConfigError(
            "continual learning joins sets distilled at different steps: sets in a ZCA space "
            "cannot be joined; set zca=false"
        )
    index = torch.tensor(classes)
    if syn.soft:
        labels = torch.zeros(len(syn), spec.num_classes, dtype=syn.labels.dtype)
        labels[:, index] = syn.labels
    else:
        labels = index[syn.labels]
    return SyntheticSet(syn.images, labels, spec, regression=syn.regression)


def join_sets(parts: list[SyntheticSet]) -> SyntheticSet:
    soft = any(p.soft for p in parts)
    k = parts[0].spec.num_classes

    def labels(p: SyntheticSet) -> torch.Tensor:
        if soft and not p.soft:
            return torch.nn.functional.one_hot(p.labels, k).float()
        return p.labels.float() if soft else p.labels

    return SyntheticSet(
        torch.cat([p.images for p in parts]),
        torch.cat([labels(p) for p in parts]),
        parts[0].spec,
        regression=any(p.regression for p in parts),
    )


@dataclass(frozen=True)
class ContinualSettings:
    """The class-incremental protocol's settings (module docstring): the classes split into
    ``steps`` groups (which must divide the classes), a memory of ``memory`` images per class
    built at each step, ``orders`` class orders (seeded), ``runs`` fresh networks averaged at
    every step, and the distillation budget ``iterations`` (``None``: the presets'). Counts
    are checked here, in one line."""

    steps: int = 5
    memory: int = 10
    orders: int = 1
    runs: int = 1
    iterations: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "memory", "orders", "runs"):
            COUNT.check(name, getattr(self, name))
        if self.iterations is not None:
            Limit(0, integer=True).check("iterations", self.iterations)


#: The recipe networks train under by default, resolved once at import.
CONTINUAL_PROTOCOL = get_protocol("fast")


def continual_learning(
    splits: DatasetSplits,
    method: str,
    settings: ContinualSettings = ContinualSettings(),  # noqa: B008  (frozen)
    *,
    protocol: EvalProtocol = CONTINUAL_PROTOCOL,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    log=print,  # noqa: ANN001
) -> ContinualResult:
    """Run the class-incremental protocol (module docstring) as ``settings`` say, with memories
    built by ``method`` (any registered method or selector) and networks trained by
    ``protocol`` (resolved by the caller: the command resolves ``--protocol`` once), and return
    the accuracy curves, one per class order."""
    import time

    steps, memory, orders = settings.steps, settings.memory, settings.orders
    runs, iterations = settings.runs, settings.iterations
    k = splits.train.spec.num_classes
    if not 1 <= steps <= k or k % steps:
        raise ConfigError(f"steps must divide the {k} classes into equal groups, got {steps}")
    t0 = time.perf_counter()
    result = ContinualResult(
        method, splits.train.spec.name, steps, memory, [], [], protocol.name, iterations,
        meta={"seed": seed, "runs": runs, "options": dict(options or {})},
    )  # fmt: skip
    for o, order in enumerate(class_orders(k, orders, seed)):
        parts, curve = [], []
        for t in range(steps):
            classes = order[t * k // steps : (t + 1) * k // steps]
            step_train = class_subset(splits.train, classes)
            m = create_method(method, dataset=step_train.spec.name, ipc=memory, **(options or {}))
            syn = m.fit(step_train, memory, iterations=iterations, seed=seed + 1000 * o + t)
            parts.append(in_full_label_space(syn, classes, splits.train.spec))
            seen = order[: (t + 1) * k // steps]
            test_seen = splits.test.subset(
                torch.nonzero(torch.isin(splits.test.labels, torch.tensor(seen))).flatten()
            )
            report = evaluate(join_sets(parts), test_seen, protocol, runs=runs, seed=seed + t)
            curve.append(report.results[0].mean)
            log(f"  {method} order {o} step {t + 1}/{steps}: {100 * curve[-1]:.2f} %")
        result.orders.append(order)
        result.curves.append(curve)
    result.seconds = time.perf_counter() - t0
    return result


@register_app
class ContinualApp(App):
    """``ddkit app continual``."""

    name = "continual"
    help = "class-incremental learning with a memory built per step by each method"
    limits = {"steps": COUNT, "memory": COUNT, "orders": COUNT, "runs": COUNT,
              "iterations": Limit(0, integer=True)}  # fmt: skip

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        cls.add_shared(parser)
        parser.add_argument("--methods", default="random,herding,dm", help="comma-separated")
        parser.add_argument(
            "--steps", type=int, default=5, help="class groups (must divide the classes)"
        )
        parser.add_argument("--memory", type=int, default=10, help="memory images per class")
        parser.add_argument("--orders", type=int, default=1, help="class orders (seeded)")
        parser.add_argument("--protocol", default="fast")
        parser.add_argument("--runs", type=int, default=1, help="fresh networks per step")
        parser.add_argument("--iterations", type=int, default=None, help="distillation budget")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.claims import hold_output
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.plots import plot_continual

        methods = method_names(args.methods)
        protocol = get_protocol(args.protocol)  # resolved once, here
        counts = ContinualSettings(args.steps, args.memory, args.orders, args.runs,
                                   args.iterations)  # fmt: skip
        splits = load_dataset(args.dataset, root=args.root)
        splits.train.check_ipc(args.memory)
        with hold_output(args, "output folder", "app continual") as out:
            previous = finished_rows(out / "continual.json")
            results = []
            for m in methods:
                settings = {
                    "method": m, "dataset": splits.train.spec.name, "steps": args.steps,
                    "memory": args.memory, "protocol": args.protocol, "iterations": args.iterations,
                    "meta": {"seed": args.seed, "runs": args.runs, "options": {}},
                }  # fmt: skip
                done = [r for r in previous if _matches(r, settings, args.orders)]
                if done:
                    print(f"{m}: kept from {out / 'continual.json'} (same settings)")
                    results.append(kept_row(done[0]))
                    continue
                print(f"{m}: {args.steps} steps, {args.memory} images per class in memory")
                r = continual_learning(splits, m, counts, protocol=protocol, seed=args.seed)
                results.append(kept_row(r.to_dict()))
                atomic_write_json(out / "continual.json", {"results": results})
            plot_continual(results, out / "continual.png")
            print(f"{'method':<10} " + " ".join(f"step {t + 1:>2}" for t in range(args.steps)))
            for r in results:
                print(f"{r['method']:<10} " + " ".join(f"{100 * a:>7.2f}" for a in r["mean_curve"]))
            print(f"wrote {out / 'continual.json'} and {out / 'continual.png'}")
            return 0


def _matches(row: dict, settings: dict, orders: int) -> bool:
    """Whether a finished row was made with exactly these settings (so a rerun can keep it)."""
    return (
        all(row.get(k) == v for k, v in settings.items()) and len(row.get("curves", ())) == orders
    )
