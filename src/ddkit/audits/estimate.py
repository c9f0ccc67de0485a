"""What an audit will do and cost, said before it starts (issue 70): ``ddkit audit NAME
--dry-run`` prints the estimate and writes nothing; every audit prints its plan as its first
line; ``--quick`` is the documented small setting.

An audit's work is networks trained on sets of known sizes (:class:`NetworkJob`) and sets
distilled (:class:`DistillJob`). The estimate times them here, as :func:`ddkit.runs.
estimate_distill` times a distillation:

* a network's cost is measured on networks of the audit's architecture trained by the
  audit's protocol on two batches of real rows: a first one for 1 epoch, then one for 1 and
  one for 3 epochs. The last two differ by two epochs of ``ceil(rows / batch)`` batches: the
  cost of one batch; what the first costs beyond its epoch is a network's set-up (building
  it, its compile decision, its test pass), which every network of an audit pays afresh. A job of ``n`` networks of
  ``e`` epochs on ``m`` images costs ``n * (set-up + batch * ceil(m / batch) * e)``;
* a distillation's cost is :func:`ddkit.runs.estimate_distill` (its set-up and two warm-up
  iterations), once per method and IPC, times the distillations of that kind.

Not timed: the attacks themselves (PGD's steps, LiRA's fits, DOORPING's trigger updates), the
per-example gradients of DP-SGD (its networks are timed as plainly trained ones); the line
says so.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddkit.progress import clock

if TYPE_CHECKING:
    from ddkit.data.dataset import DatasetSplits
    from ddkit.eval.protocol import EvalProtocol

#: ``--quick``: ceilings on an audit's counts (a smaller value given stays; ``None`` takes it).
QUICK = {"runs": 1, "epochs": 30, "full_epochs": 30, "iterations": 50, "shadows": 4,
         "pool": 1000, "bootstrap": 50, "max_test": 500, "steps": 5}  # fmt: skip


def add_estimate_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dry-run`` and ``--quick``, shared by the audits."""
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print what the audit would train and its estimated time (measured here by a "
        "short probe), then stop; nothing is written",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="a small audit to try first: at most "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())
        + " (where the audit has the option); said in its output and results",
    )  # fmt: skip


def apply_quick(args: argparse.Namespace) -> dict[str, Any]:
    """With ``args.quick``, cap the options of :data:`QUICK` that ``args`` has (``--iterations``
    given as budgets stays as given); returns what changed (``{}`` without ``--quick``)."""
    changed: dict[str, Any] = {}
    if not getattr(args, "quick", False):
        return changed
    for key, cap in QUICK.items():
        if not hasattr(args, key):
            continue
        value = getattr(args, key)
        if key == "iterations":
            new = str(cap) if value is None else value
        else:
            new = cap if value is None else min(int(value), cap)
        if new != value:
            setattr(args, key, new)
            changed[key] = new
    return changed


@dataclass(frozen=True)
class NetworkJob:
    """``networks`` networks of ``epochs`` epochs each on sets of ``images`` images."""

    label: str
    networks: int
    epochs: int
    images: int


@dataclass(frozen=True)
class DistillJob:
    """``count`` distillations by ``method`` at ``ipc`` (``iterations``: ``None`` the
    preset's)."""

    method: str
    ipc: int
    iterations: int | None
    count: int = 1


@dataclass(frozen=True)
class AuditPlan:
    """What an audit will do: its networks and distillations, and whether ``--quick`` set it."""

    audit: str
    networks: tuple[NetworkJob, ...]
    distillations: tuple[DistillJob, ...] = ()
    quick: dict[str, Any] | None = None

    @property
    def network_count(self) -> int:
        return sum(j.networks for j in self.networks)

    def line(self) -> str:
        """The plan in one line: networks, epochs and images per kind, distillations."""
        nets = "; ".join(f"{j.label}: {j.networks} x {j.epochs} epochs on {j.images:,} images"
                         for j in self.networks)  # fmt: skip
        text = f"{self.audit} audit: {self.network_count:,} networks to train ({nets})"
        if self.distillations:
            text += ", " + ", ".join(
                f"{d.count} x {d.method} at IPC {d.ipc}"
                + (f" ({d.iterations:,} iterations)" if d.iterations is not None else "")
                for d in self.distillations
            ) + " to distil"  # fmt: skip
        if self.quick:
            text += "; quick setting (--quick): " + ", ".join(
                f"{k.replace('_', '-')} {v}" for k, v in self.quick.items()
            )
        return text


@dataclass(frozen=True)
class NetworkCost:
    """A network's measured set-up seconds and seconds per training batch of ``batch`` rows."""

    setup_seconds: float
    batch_seconds: float
    batch: int

    def seconds(self, job: NetworkJob) -> float:
        batches = math.ceil(job.images / self.batch) * job.epochs
        return job.networks * (self.setup_seconds + self.batch_seconds * batches)


def probe_network(
    splits: DatasetSplits,
    protocol: EvalProtocol,
    model: str,
    *,
    seed: int = 0,
    device: str = "cpu",
) -> NetworkCost:
    """Time ``model`` networks trained by ``protocol`` on two batches of real rows: the first
    one's set-up, and the rate of batches from two more of 1 and 3 epochs (module docstring)."""
    from ddkit.audits.base import random_real, train_on_set

    train = splits.train
    batch = protocol.batch_size
    ipc = max(1, min(math.ceil(2 * batch / train.spec.num_classes), min(train.class_counts)))
    syn = random_real(train, ipc, seed=seed)
    seconds = []
    for epochs in (1, 1, 3):  # the set-up of the first; the rate of the warm ones
        t0 = time.perf_counter()
        train_on_set(syn, splits.test, protocol, runs=1, epochs=epochs, models=[model], seed=seed,
                     device=device)  # fmt: skip
        seconds.append(time.perf_counter() - t0)
    cold, one, three = seconds
    per_epoch = max(three - one, 0.0) / 2
    batches = math.ceil(len(syn) / batch)
    # every network of an audit is built afresh (its compile decision, its first epoch's costs):
    # the first network's set-up stands for each one's
    return NetworkCost(max(cold - per_epoch, 0.0), per_epoch / batches, batch)


def estimate_plan(
    plan: AuditPlan,
    splits: DatasetSplits,
    protocol: EvalProtocol,
    model: str,
    *,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
) -> float:
    """The seconds ``plan`` will take on this machine (module docstring)."""
    from ddkit.runs import estimate_distill

    cost = probe_network(splits, protocol, model, seed=seed, device=device)
    total = sum(cost.seconds(j) for j in plan.networks)
    for d in plan.distillations:
        one = estimate_distill(dataset=splits.spec.name, method=d.method, ipc=d.ipc,
                               iterations=d.iterations, seed=seed, options=options,
                               splits=splits, warmup=2, device=device)  # fmt: skip
        total += d.count * one.total_seconds
    return total


def dry_run(
    plan: AuditPlan,
    splits: DatasetSplits,
    protocol: EvalProtocol,
    model: str,
    out: str,
    **kw: Any,
) -> int:
    """``--dry-run``: print the plan and its estimated time; nothing is written."""
    print(plan.line())
    seconds = estimate_plan(plan, splits, protocol, model, **kw)
    print(
        f"about {clock(seconds)} on this machine (networks and distillations timed by a short "
        f"probe; the attacks and DP-SGD's per-example gradients are not); nothing written to "
        f"{out}"
    )
    return 0


def sets_plan(
    audit: str,
    sets: list[tuple[str, int]],
    protocol: EvalProtocol,
    distillations: list[DistillJob],
    quick: dict[str, Any] | None = None,
) -> AuditPlan:
    """The plan of an audit that trains ``protocol``'s networks (its runs per model) on each of
    ``sets`` (``(name, images)``) after ``distillations``."""
    nets = protocol.runs * len(protocol.models)
    jobs = tuple(NetworkJob(name, nets, protocol.epochs, images) for name, images in sets)
    return AuditPlan(audit, jobs, tuple(distillations), quick or None)
