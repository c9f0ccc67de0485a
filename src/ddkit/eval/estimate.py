"""What an evaluation will cost on this machine, measured before it runs.

:func:`estimate_evaluation` trains one network of each of the protocol's models for a few
epochs, exactly as the evaluation would train it (same data, targets, augmentation, batch size,
precision and compile decision as the full run), times every epoch, and times one pass over the
test split. The first epoch carries the set-up (building the network, compiling), so the cost
of an epoch is the rate of the epochs after it (timed for a few seconds: a tiny set's epochs
take milliseconds, with rare slow ones), and the evaluation's estimate is, per model,

    set-up + seconds per network-epoch x epochs x runs + seconds per test pass x runs.

``ddkit evaluate --dry-run`` prints it and trains nothing else; ``ddkit evaluate`` under a set's
recorded recipe says it before starting when it is long, with the quicker protocol to use.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.evaluate import run_seeds, test_in_set_space, train_model, training_data
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import TrainRecipe, predicted_classes
from ddkit.progress import clock

#: After its first epoch (the set-up), a warm-up trains epochs for at least this many seconds
#: (and at least :data:`WARMUP_MIN_EPOCHS`): tiny sets' epochs take milliseconds, with rare slow
#: ones, so their cost is a rate over many epochs ...
WARMUP_MIN_SECONDS = 3.0
WARMUP_MIN_EPOCHS = 2
#: ... and at most this many epochs.
WARMUP_MAX_EPOCHS = 1_000
#: ``ddkit evaluate`` under a recorded recipe says the estimate first when it is this long.
LONG_EVALUATION_SECONDS = 600.0


class _WarmedUp(Exception):
    """Ends a warm-up that has timed enough epochs."""


@dataclass(frozen=True)
class ModelCost:
    """One model's measured costs: ``setup_seconds`` (the first epoch's excess over the others:
    building, compiling), ``seconds_per_epoch`` of one network, ``test_seconds`` of one pass
    over the test split, for ``epochs`` x ``runs`` networks-epochs."""

    model: str
    setup_seconds: float
    seconds_per_epoch: float
    test_seconds: float
    epochs: int
    runs: int

    @property
    def total_seconds(self) -> float:
        return (
            self.setup_seconds
            + self.seconds_per_epoch * self.epochs * self.runs
            + self.test_seconds * self.runs
        )


@dataclass(frozen=True)
class EvalEstimate:
    """An evaluation's estimated cost: one :class:`ModelCost` per model of ``protocol``, and
    the command's ``startup_seconds`` (its start and loading of the set and data)."""

    protocol: EvalProtocol
    models: tuple[ModelCost, ...]
    startup_seconds: float = 0.0  # the command's own start and loading, where one is counted

    @property
    def total_seconds(self) -> float:
        return self.startup_seconds + sum(m.total_seconds for m in self.models)

    def line(self) -> str:
        """One line: what would be trained and how long it takes here."""
        parts = [
            f"{m.runs} x {m.model} x {m.epochs:,} epochs at {m.seconds_per_epoch:.3g} s "
            f"+ {m.runs} test passes at {m.test_seconds:.3g} s + {m.setup_seconds:.3g} s set-up"
            for m in self.models
        ]
        if self.startup_seconds:
            parts.append(f"{self.startup_seconds:.3g} s start-up and loading")
        return (
            f"evaluation under protocol {self.protocol.name}: {'; '.join(parts)} = about "
            f"{clock(self.total_seconds)} on this machine (measured by a warm-up)"
        )


def estimate_evaluation(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol,
    *,
    models: Sequence[str] | None = None,
    runs: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    teacher: Any = None,
    device: torch.device | str = "cpu",
    compile_as_run: bool = True,
) -> EvalEstimate:
    """The cost of :func:`~ddkit.eval.evaluate` with these arguments, measured here by a
    warm-up of one network per model (its first epoch the set-up, then epochs for at least
    :data:`WARMUP_MIN_SECONDS`; see the module's docstring). ``compile_as_run=False`` times
    the warm-up eagerly whatever the run would decide (no compilation paid for a mere notice)."""
    p = get_protocol(protocol).with_(
        models=tuple(models) if models else None, runs=runs, epochs=epochs
    )
    lr = syn.lr if (p.use_learned_lr and syn.lr is not None) else p.lr
    data = training_data(syn, p, teacher, device)
    rows = data.images
    values = rows[0].numel() if len(rows) else None
    compiled = TrainRecipe.of_protocol(p, lr, device, len(rows), values).compile
    warm = p.with_(
        epochs=min(WARMUP_MAX_EPOCHS, p.epochs), compile=compiled and compile_as_run, runs=1
    )
    test_rows = test_in_set_space(syn, test).images
    (first_seed,) = run_seeds(seed, 1)
    costs = []
    for name in p.models:
        stamps = [time.perf_counter()]

        def tick(_networks: int, stamps: list[float] = stamps) -> None:
            stamps.append(time.perf_counter())
            timed = len(stamps) - 2  # epochs after the first
            if timed >= WARMUP_MIN_EPOCHS and stamps[-1] - stamps[1] >= WARMUP_MIN_SECONDS:
                raise _WarmedUp

        try:
            result = train_model(
                name, syn, data, warm, [first_seed], lr, device=device, progress=tick
            )
            net = result.models[0]
        except _WarmedUp:
            net = None
        first, timed = stamps[1] - stamps[0], len(stamps) - 2
        per_epoch = (stamps[-1] - stamps[1]) / timed if timed else first
        setup = max(first - per_epoch, 0.0)
        test_seconds = _test_pass_seconds(net, name, syn, test_rows, warm, device)
        costs.append(ModelCost(name, setup, per_epoch, test_seconds, p.epochs, p.runs))
    return EvalEstimate(p, tuple(costs))


def _test_pass_seconds(
    net: torch.nn.Module | None,
    name: str,
    syn: SyntheticSet,
    test_rows: torch.Tensor,
    protocol: EvalProtocol,
    device: torch.device | str,
) -> float:
    """Seconds of one prediction pass over the test split (a fresh network when the warm-up
    ended before returning its own: the pass costs the same untrained)."""
    from ddkit.eval.train import build_networks
    from ddkit.levers import resolve_precision

    if net is None:
        (net,) = build_networks(name, syn.spec, [0], torch.device(device))
        net.eval()
    t0 = time.perf_counter()
    predicted_classes(
        net, test_rows.to(device), precision=resolve_precision(protocol.precision, device)
    )
    return time.perf_counter() - t0


def long_recipe_notice(
    estimate: EvalEstimate,
    quicker: EvalEstimate | None,
    limit: float = LONG_EVALUATION_SECONDS,
) -> str | None:
    """The note ``ddkit evaluate`` gives before a recorded recipe that will take longer than
    ``limit`` seconds here, naming the quicker protocol and its estimate; ``None`` otherwise."""
    if estimate.total_seconds <= limit:
        return None
    text = (
        f"the set's recipe will take about {clock(estimate.total_seconds)} here "
        f"({estimate.protocol.runs} x {estimate.protocol.epochs:,} epochs per model)"
    )
    if quicker is not None:
        q = quicker.protocol
        text += (
            f"; --protocol {q.name} ({q.runs} x {q.epochs:,} epochs) takes about "
            f"{clock(quicker.total_seconds)}"
        )
    return text + "; --dry-run estimates any protocol without training"


def scaled_estimate(estimate: EvalEstimate, protocol: EvalProtocol) -> EvalEstimate | None:
    """``estimate``'s measured costs carried over to ``protocol``'s epochs and runs, where an
    epoch costs the same under both (same models, batch size, augmentation, targets, precision
    and compile setting); ``None`` where it may not."""
    same = ("models", "batch_size", "augment", "targets", "precision", "compile")
    if any(getattr(protocol, k) != getattr(estimate.protocol, k) for k in same):
        return None
    costs = tuple(
        ModelCost(m.model, m.setup_seconds, m.seconds_per_epoch, m.test_seconds,
                  protocol.epochs, protocol.runs)
        for m in estimate.models
    )  # fmt: skip
    return EvalEstimate(protocol, costs)


def network_epochs(protocol: EvalProtocol) -> int:
    """How many network-epochs ``protocol`` trains (every model, every run)."""
    return protocol.epochs * protocol.runs * len(protocol.models)


__all__ = [
    "EvalEstimate",
    "ModelCost",
    "estimate_evaluation",
    "long_recipe_notice",
    "network_epochs",
    "scaled_estimate",
]
