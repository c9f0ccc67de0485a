"""`evaluate`: the one honest evaluation protocol for every synthetic set.

R fresh networks per model are trained on the set and tested once, at the final epoch, on the
real test split. The report holds every run's accuracy and seed, mean and standard deviation.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import TargetsFn, accuracy, train_networks


@dataclass
class ModelResult:
    model: str
    accuracies: list[float]
    seeds: list[int]
    train_seconds: float
    images_per_second: float
    vectorized: bool

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "accuracies": self.accuracies,
            "seeds": self.seeds,
            "mean": self.mean,
            "std": self.std,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second,
            "vectorized": self.vectorized,
        }


@dataclass
class EvalReport:
    protocol: EvalProtocol
    lr: float
    num_train_images: int
    results: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def result(self, model: str) -> ModelResult:
        for r in self.results:
            if r.model == model:
                return r
        raise KeyError(model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.to_dict(),
            "lr": self.lr,
            "num_train_images": self.num_train_images,
            "seconds": self.seconds,
            "results": [r.to_dict() for r in self.results],
            "meta": self.meta,
        }

    def table(self) -> str:
        lines = [f"{'model':<16} {'accuracy (%)':>16}  runs", "-" * 40]
        for r in self.results:
            lines.append(
                f"{r.model:<16} {100 * r.mean:>8.2f} ± {100 * r.std:<5.2f}  {len(r.accuracies)}"
            )
        return "\n".join(lines)


def run_seeds(seed: int, runs: int) -> list[int]:
    """Per-run seeds derived from one evaluation seed (recorded in the report)."""
    g = torch.Generator().manual_seed(int(seed))
    return [int(s) for s in torch.randint(0, 2**31 - 1, (runs,), generator=g)]


def evaluate(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol = "dsa",
    *,
    models: Sequence[str] | None = None,
    runs: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    vectorize: bool | None = None,
    targets_fn: TargetsFn | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> EvalReport:
    """Train fresh networks on ``syn`` and report final-epoch accuracy on the real ``test`` split.

    ``models``/``runs``/``epochs`` override the protocol's. The same seed gives the same report.
    """
    p = get_protocol(protocol).with_(
        models=tuple(models) if models else None, runs=runs, epochs=epochs
    )
    if syn.spec.shape != test.spec.shape or syn.spec.num_classes != test.spec.num_classes:
        raise DataError(
            f"synthetic set ({syn.spec.name}, {syn.spec.shape}, {syn.spec.num_classes} classes) does not "
            f"match the test data ({test.spec.name}, {test.spec.shape}, {test.spec.num_classes} classes)"
        )
    lr = syn.lr if (p.use_learned_lr and syn.lr is not None) else p.lr
    if p.label_mode == "teacher-kd" and targets_fn is None:
        raise ConfigError(f"protocol {p.name!r} needs a teacher (targets_fn) for teacher-kd labels")
    targets = syn.hard_labels if p.label_mode == "hard" else syn.labels
    seeds = run_seeds(seed, p.runs)
    report = EvalReport(protocol=p, lr=lr, num_train_images=len(syn), meta={"seed": seed})
    t0 = time.perf_counter()
    for name in p.models:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=p.epochs, desc=f"eval {name}", leave=False)
        res = train_networks(
            name,
            syn.spec,
            syn.images,
            targets,
            p,
            seeds,
            lr=lr,
            vectorize=vectorize,
            targets_fn=targets_fn,
            device=device,
            progress=(lambda _epoch, b=bar: b.update(1)) if bar else None,
        )
        if bar:
            bar.close()
        accs = [accuracy(net, test.images, test.labels) for net in res.models]
        report.results.append(
            ModelResult(
                name,
                accs,
                seeds,
                res.seconds,
                res.images_seen / max(res.seconds, 1e-9),
                res.vectorized,
            )
        )
    report.seconds = time.perf_counter() - t0
    return report
