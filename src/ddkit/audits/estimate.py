"""What an audit will do and cost, said before it starts (issue 70): ``ddkit audit NAME
--dry-run`` prints the estimate and writes nothing; every audit prints its plan as its first
line; ``--quick`` is the documented small setting.

An audit's work is networks trained on sets of known sizes (:class:`NetworkJob`) and sets
distilled (:class:`DistillJob`). The estimate times them here, as :func:`ddkit.runs.
estimate_distill` times a distillation:

* a network's cost is measured on networks of the audit's architecture trained by the
  audit's protocol on real rows: after an untimed one (the process's one-time start-up), one
  for 1 and one for 3 epochs on two batches differ by two epochs of ``ceil(rows / batch)``
  batches: the cost of one batch; what the 1-epoch one costs beyond its batches is a
  network's set-up (building it, its compile decision, its test pass). A set smaller than two
  batches may train another way (eager below the compile floor): one network of one epoch on
  a set of each such size the audit trains on gives its own set-up. A job of ``n`` networks of
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

from ddkit.audits.base import QUICK
from ddkit.progress import clock

if TYPE_CHECKING:
    from ddkit.data.dataset import DatasetSplits
    from ddkit.eval.protocol import EvalProtocol


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
    """Measured seconds per training batch of ``batch`` rows and a network's set-up: on a set
    of at least two batches, ``setup_seconds``; on smaller sets, which may train another way
    (eager below the compile floor), ``small_setups`` ``((images, seconds), ...)``."""

    setup_seconds: float
    batch_seconds: float
    batch: int
    small_setups: tuple[tuple[int, float], ...] = ()

    def setup(self, images: int) -> float:
        """The set-up of a network on ``images`` images: that of the nearest set probed."""
        sizes = [(abs(n - images), t) for n, t in self.small_setups]
        if images < 2 * self.batch and sizes:
            return min(sizes)[1]
        return self.setup_seconds

    def seconds(self, job: NetworkJob) -> float:
        batches = math.ceil(job.images / self.batch) * job.epochs
        return job.networks * (self.setup(job.images) + self.batch_seconds * batches)


def _timed_network(syn: Any, splits: DatasetSplits, protocol: EvalProtocol, epochs: int,
                   **kw: Any) -> float:  # fmt: skip
    from ddkit.audits.base import train_on_set

    t0 = time.perf_counter()
    train_on_set(syn, splits.test, protocol, runs=1, epochs=epochs, **kw)
    return time.perf_counter() - t0


def probe_network(
    splits: DatasetSplits,
    protocol: EvalProtocol,
    model: str,
    *,
    sizes: tuple[int, ...] = (),
    seed: int = 0,
    device: str = "cpu",
) -> NetworkCost:
    """Time ``model`` networks trained by ``protocol`` on real rows (module docstring): after
    an untimed one (the process's one-time start-up), two on two batches for 1 and 3 epochs
    give the rate of batches and the set-up; one epoch on a set of each of ``sizes`` smaller
    than two batches gives that size's set-up."""
    from ddkit.audits.base import random_real

    train, batch, k = splits.train, protocol.batch_size, splits.spec.num_classes
    most = min(train.class_counts)
    kw = dict(models=[model], seed=seed, device=device)
    syn = random_real(train, max(1, min(math.ceil(2 * batch / k), most)), seed=seed)
    _timed_network(syn, splits, protocol, 1, **kw)
    one, three = (_timed_network(syn, splits, protocol, e, **kw) for e in (1, 3))
    per_batch = max(three - one, 0.0) / 2 / math.ceil(len(syn) / batch)
    small = []
    for n in sorted({n for n in sizes if n < len(syn)}):
        probe = random_real(train, max(1, min(math.ceil(n / k), most)), seed=seed)
        seconds = _timed_network(probe, splits, protocol, 1, **kw)
        small.append((n, max(seconds - per_batch * math.ceil(len(probe) / batch), 0.0)))
    setup = max(one - per_batch * math.ceil(len(syn) / batch), 0.0)
    return NetworkCost(setup, per_batch, batch, tuple(small))


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

    sizes = tuple(j.images for j in plan.networks)
    cost = probe_network(splits, protocol, model, sizes=sizes, seed=seed, device=device)
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
