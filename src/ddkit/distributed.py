"""Scale-out on ``torch.distributed``: the launch, the rank's device, sharding, merging, failures.

``torchrun --nproc-per-node N -m ddkit <command> ...`` starts ``N`` processes whose environment
names their place (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); :func:`session` opens the process
group from it (gloo on CPU, nccl when CUDA is there) and closes it at the end. Inside a session
the parts of ddkit that know how to split their work do so (issue 38):

* independent stages shard by an index that belongs to the work, never to the rank: the
  evaluation's runs (:func:`ddkit.eval.evaluate`), the experts of a trajectory folder
  (:func:`ddkit.methods.trajectory.experts.train_experts`), DM's classes; their randomness is
  keyed by that index, so the result is bit-identical to one process;
* coupled stages (DC / DSA: one network update over all classes) compute their own classes'
  contribution to the synthetic images' gradient and sum it over the ranks
  (:func:`sum_across_ranks`), so every rank holds the same images after every step;
* data-parallel training (the teacher: :func:`ddkit.eval.train.sgd_train` with
  ``data_parallel=True``) gives every rank its share of the rows of every batch, sums the
  ranks' parameter gradients (:func:`sum_gradients`) and computes BatchNorm's batch statistics
  over the whole batch (:func:`synced_batchnorm`), so every rank takes the one-process step.

Only rank 0 writes run folders and results (:func:`main_only`); those writes stay atomic
(:mod:`ddkit.io`). A rank that fails tells the others through the group's store before it
leaves the group, and each of them stops with one line naming that rank and its error
(:class:`RankFailed`).

Outside a session (no ``WORLD_SIZE`` above 1 in the environment, the usual single process) every
helper here is a no-op that costs one check: :func:`active` is ``None``, :func:`local_indices`
is ``None`` and the callers keep today's code path.

Objects cross between ranks as JSON bytes (:func:`all_gather_json`), never pickled.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

from ddkit import context
from ddkit.errors import ConfigError, DDKitError

__all__ = [
    "Launch",
    "RankFailed",
    "active",
    "agree",
    "check_device",
    "code_digest",
    "all_gather_json",
    "all_gather_shards",
    "barrier",
    "device",
    "from_env",
    "is_main",
    "local_indices",
    "main_only",
    "merge_shards",
    "named_device",
    "session",
    "shard",
    "sum_across_ranks",
    "sum_gradients",
    "summed",
    "synced_batchnorm",
]

T = TypeVar("T")

#: how long the ranks wait for each other to join: a rank that never starts fails the others
#: after this, not after the (long) timeout of their collectives
JOIN_SECONDS = 60.0
#: how long a failing rank waits for the others to read its failure before it leaves
FAREWELL_SECONDS = 10.0
#: how long a rank whose collective broke waits for the failing rank's message
WORD_SECONDS = 10.0  # a loaded machine can take seconds to deliver it
_FAILED = "ddkit/failed/"
_HEARD = "ddkit/heard"


class RankFailed(DDKitError):
    """Another rank of the group failed (its message is in this one) and this rank stopped."""


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch that ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` describe (what torchrun
    sets), or ``None`` for a single process (no ``WORLD_SIZE``, or 1). Values that are not
    integers of a valid launch are a one-line :class:`ConfigError`."""
    env = context.launch_environment() if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    if env["WORLD_SIZE"].strip() == "1":
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "-1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (launch with torchrun); got "
            f"RANK={env.get('RANK')!r} WORLD_SIZE={env.get('WORLD_SIZE')!r}"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(
            f"a launch needs 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got RANK={rank} "
            f"WORLD_SIZE={world} LOCAL_RANK={local}; launch with torchrun"
        )
    return None if world == 1 else Launch(rank, world, local)


_ACTIVE: Launch | None = None
_BACKEND: str = "gloo"
_GROUP: Any = None  # the group the work's collectives run in (None: the default group)


def active() -> Launch | None:
    """The launch of the running :func:`session` (``None`` outside one: a single process)."""
    return _ACTIVE


def is_main() -> bool:
    """Whether this process writes results: rank 0, or the single process."""
    return _ACTIVE is None or _ACTIVE.main


def device() -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` in an nccl session, else the CPU."""
    if _ACTIVE is not None and _BACKEND == "nccl":
        return torch.device("cuda", _ACTIVE.local_rank)
    return torch.device("cpu")


def check_device(value: Any) -> bool:
    """``True`` for ``"auto"`` or a torch device that exists here; else a one-line
    :class:`ConfigError` naming the device and why."""
    if value == "auto":
        return True
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {value!r} is not a torch device (e.g. 'cpu', 'cuda:0')"
        ) from None
    if device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: nothing ddkit computes on
        raise ConfigError(
            f"device {value!r} is not one ddkit computes on: use cpu, cuda[:N] or mps"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {value!r} is not available: this torch has no usable CUDA")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {value!r} is not available: this machine has {torch.cuda.device_count()} "
            "CUDA device(s), numbered from 0"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {value!r} is not available on this machine")
    return True


def named_device(name: Any) -> torch.device:
    """The ``torch.device`` that ``name`` names (checked: one line if it is not available
    here), else (``None``, empty) the session's: the CPU, or each rank's GPU under torchrun with
    nccl."""
    if not name:
        return device()
    check_device(name)
    return torch.device(name)


@contextmanager
def session(
    launch: Launch | None = None,
    *,
    init_method: str = "env://",
    backend: str | None = None,
    timeout_s: float = 1800.0,
) -> Iterator[Launch | None]:
    """Run a block as one rank of a process group (``launch``: default :func:`from_env`).

    Without a launch (a single process) the block runs as it always did and ``None`` is
    yielded. Otherwise the group is opened with ``init_method`` (torchrun's ``env://``; a
    ``file://PATH`` rendezvous needs no network port, as the tests use) and ``backend``
    (default: nccl when CUDA is available, else gloo), and closed after the block. An error in
    the block is announced to the other ranks (:class:`RankFailed` there) and raised here; an
    error caused by another rank's failure becomes one :class:`RankFailed` line.
    """
    global _ACTIVE, _BACKEND, _GROUP
    launch = from_env() if launch is None else launch
    if launch is None or launch.world_size == 1:
        yield None
        return
    if _ACTIVE is not None:
        raise ConfigError("a ddkit distributed session is already running in this process")
    import torch.distributed as dist

    _BACKEND = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if _BACKEND == "nccl":
        torch.cuda.set_device(launch.local_rank)
    adopted = dist.is_initialized()  # a group the caller opened stays theirs to close
    if not adopted:
        _join(launch, init_method, min(JOIN_SECONDS, timeout_s))
        # the work's collectives get the long timeout in a group of their own
        _GROUP = dist.new_group(timeout=timedelta(seconds=timeout_s))
    _ACTIVE = launch
    try:
        if not adopted:
            # every rank has finished joining (_join's barrier) before any runs the block: a
            # rank that fails at once (a refused option) and leaves the group would otherwise
            # break a slower peer's connection set-up, an error no rank could explain
            agree("the command line", sys.argv[1:], "start every rank with the same arguments")
            agree("ddkit's code", code_digest(), "install the same ddkit and torch on every node")
        yield launch
    except Exception as e:
        if _broken_collective(e):  # another rank left: say which and why
            peer = _failure_of_peer()
            _acknowledge()
            raise RankFailed(f"stopped because {peer}") from e
        _announce(e)
        raise
    finally:
        _ACTIVE, _GROUP = None, None
        if not adopted and dist.is_initialized():
            dist.destroy_process_group()


def _join(launch: Launch, init_method: str, seconds: float) -> None:
    """Open the default group, waiting at most ``seconds`` for every rank; a rank that never
    comes is one :class:`ConfigError` line on the ranks that did."""
    import torch.distributed as dist

    try:
        dist.init_process_group(
            _BACKEND,
            init_method=init_method,
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=timedelta(seconds=seconds),
        )
        dist.barrier()
    except (RuntimeError, dist.DistError) as e:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise ConfigError(
            f"rank {launch.rank}: not all {launch.world_size} ranks joined within {seconds:.0f} s "
            f"({_one_line(e)[:100]}); start every rank with the same rendezvous "
            "(torchrun --nproc-per-node / --nnodes)"
        ) from None


# ---------------------------------------------------------------------------- failures
def _store() -> Any:
    import torch.distributed as dist

    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _broken_collective(e: BaseException) -> bool:
    """Whether ``e`` came out of a collective whose peer went away (gloo and nccl errors)."""
    import torch.distributed as dist

    text = str(e)
    return isinstance(e, dist.DistError) or any(
        word in text for word in ("gloo", "Connection closed by peer", "NCCL", "Connection reset")
    )


def _announce(e: BaseException) -> None:
    """Tell the other ranks that this one failed with ``e`` (the group's store), then leave
    the group so that their collectives stop waiting; wait briefly until they have heard."""
    import torch.distributed as dist

    store, launch = _store(), _ACTIVE
    if store is None or launch is None:
        return
    message = f"rank {launch.rank} failed: {type(e).__name__}: {_one_line(e)}"
    if isinstance(e, DDKitError):
        message = f"rank {launch.rank} failed: {_one_line(e)}"
    try:
        store.set(f"{_FAILED}{launch.rank}", message)
        heard = store.add(_HEARD, 1)  # every rank counts once: failed itself, or heard of it
    except (RuntimeError, ValueError):
        return
    dist.destroy_process_group()
    deadline = time.monotonic() + FAREWELL_SECONDS
    while heard < launch.world_size and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            heard = store.add(_HEARD, 0)
        except (RuntimeError, ValueError):
            return


def _failure_of_peer() -> str:
    """The message of the lowest-numbered other rank that announced a failure, given
    :data:`WORD_SECONDS` to arrive; else a line saying that a rank left without a word."""
    silent = "another rank left the group without a word"
    store, launch = _store(), _ACTIVE
    if store is None or launch is None:
        return silent
    deadline = time.monotonic() + WORD_SECONDS
    while time.monotonic() < deadline:
        for r in range(launch.world_size):
            try:
                if r != launch.rank and store.check([f"{_FAILED}{r}"]):
                    return store.get(f"{_FAILED}{r}").decode(errors="replace")
            except (RuntimeError, ValueError):
                return silent
        time.sleep(0.05)
    return silent


def _acknowledge() -> None:
    store = _store()
    try:
        if store is not None:
            store.add(_HEARD, 1)
    except (RuntimeError, ValueError):
        pass


# ---------------------------------------------------------------------------- sharding
def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``WORLD_SIZE``-th item from position ``RANK``
    (all of them in a single process). :func:`merge_shards` puts the shares back in order."""
    if _ACTIVE is None:
        return list(items)
    return list(items)[_ACTIVE.rank :: _ACTIVE.world_size]


def local_indices(n: int) -> list[int] | None:
    """The indices of ``range(n)`` this rank works on, or ``None`` in a single process (the
    caller then keeps its one-process code path unchanged)."""
    return None if _ACTIVE is None else shard(range(n))


def merge_shards(shares: Sequence[Sequence[T]]) -> list[T]:
    """The items in their original order from every rank's :func:`shard` (``shares[r]`` is
    rank ``r``'s); the inverse of sharding over ``len(shares)`` ranks."""
    world = len(shares)
    total = sum(len(s) for s in shares)
    return [shares[i % world][i // world] for i in range(total)]


# ---------------------------------------------------------------------------- collectives
def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if _ACTIVE is not None:
        import torch.distributed as dist

        dist.barrier(group=_GROUP)


def main_only(write: Callable[[], T]) -> T | None:
    """Run ``write`` on rank 0 only (run-folder and results writes) and let every rank wait
    until it is done; returns its value on rank 0, ``None`` elsewhere. In a single process it
    is ``write()``."""
    if _ACTIVE is None:
        return write()
    out = write() if _ACTIVE.main else None
    barrier()
    return out


def all_gather_json(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (JSON-serialisable), indexed by rank, on every rank; ``[obj]`` in
    a single process. Sent as UTF-8 JSON bytes (no pickle)."""
    if _ACTIVE is None:
        return [obj]
    import torch.distributed as dist

    dev = device()
    data = torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8, device=dev)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(_ACTIVE.world_size)]
    dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64, device=dev), group=_GROUP)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=dev)
    padded[: len(data)] = data
    parts = [torch.empty(longest, dtype=torch.uint8, device=dev) for _ in sizes]
    dist.all_gather(parts, padded, group=_GROUP)
    return [
        json.loads(bytes(p[: int(s.item())].cpu().tolist()).decode()) for p, s in zip(parts, sizes)
    ]


def agree(what: str, value: Any, fix: str) -> None:
    """Check that every rank holds the same ``value`` (JSON-serialisable) before the work that
    needs it; else every rank raises the same one-line :class:`ConfigError` naming ``what``,
    the ranks that differ and ``fix``. Nothing in a single process. Ranks started with other
    seeds or settings would otherwise blend two runs into one set, or wait forever at a step
    their peers never take."""
    if _ACTIVE is None:
        return
    values = all_gather_json(value)
    odd = [r for r, v in enumerate(values) if v != values[0]]
    if odd:
        theirs, ours = values[odd[0]], values[0]
        if isinstance(theirs, dict) and isinstance(ours, dict):  # only the entries that differ
            keys = [k for k in {**ours, **theirs} if ours.get(k) != theirs.get(k)]
            theirs, ours = ({k: d.get(k) for k in keys} for d in (theirs, ours))
        raise ConfigError(
            f"ranks disagree on {what}: rank {odd[0]} has {json.dumps(theirs)[:160]}, rank 0 "
            f"has {json.dumps(ours)[:160]}; {fix}"
        )


def code_digest() -> str:
    """The SHA-256 (16 hex digits) of this ddkit's Python sources and torch version: ranks
    that run different code must not form one group."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).parent
    h = hashlib.sha256(torch.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def all_gather_shards(local: torch.Tensor) -> torch.Tensor:
    """Every rank's rows for its :func:`shard` of the items, merged in the items' order on
    every rank (``local`` itself in a single process). ``local`` holds one row per item of
    this rank's share (any trailing shape, the same on every rank)."""
    if _ACTIVE is None:
        return local
    import torch.distributed as dist

    dev, world = device(), _ACTIVE.world_size
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(local)], dtype=torch.int64, device=dev), group=_GROUP)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: len(local)] = local.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=_GROUP)
    # item i is row i // world of rank i % world: interleave, the padding falls past the end
    merged = torch.stack(parts, 1).flatten(0, 1)[: sum(counts)]
    return merged.to(local.device)


def sum_across_ranks(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its sum over the ranks, in place, in one collective (no-op in a
    single process). Where only one rank holds a non-zero value, the sum is that value
    exactly, so contributions of disjoint classes combine without rounding. The tensors may
    live on any device (and be of one floating dtype)."""
    if _ACTIVE is None or not tensors:
        return
    import torch.distributed as dist

    # nccl reduces CUDA tensors only: a CPU computation's values travel through the rank's GPU
    flat = torch.cat([t.detach().reshape(-1) for t in tensors]).to(device())
    dist.all_reduce(flat, group=_GROUP)
    offset = 0
    for t in tensors:
        n = t.numel()
        with torch.no_grad():
            t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def sum_gradients(params: Sequence[torch.Tensor], *extra: torch.Tensor) -> None:
    """Sum the ``.grad`` of ``params`` (and the tensors ``extra``, e.g. a detached loss) over
    the ranks, in place, in one collective (no-op in a single process). A parameter without a
    gradient on this rank (an empty share of a batch) counts as zeros, so every rank sends the
    same layout."""
    if _ACTIVE is None:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    sum_across_ranks([*grads, *extra])


@contextmanager
def synced_batchnorm(net: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, ``net``'s BatchNorm layers in training mode normalise by the
    statistics of the whole batch, summed over the ranks that each hold some of its rows (and
    update their running statistics with them), as one process holding the whole batch
    would; gradients flow through the sums to every rank's rows. Outside a session, or for a
    network without BatchNorm, nothing changes. The layers are the same modules (parameters,
    buffers and ``state_dict`` untouched); only their ``forward`` is replaced for the block.

    ``torch.nn.SyncBatchNorm`` does the same on GPUs only; this one runs on any backend. Mean
    and variance are two-pass (sum, then the sum of squared deviations), as a single process
    computes them, so the difference is the rounding of the rank-wise sums."""
    from torch.nn.modules.batchnorm import _BatchNorm

    layers = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    if _ACTIVE is None or not layers:
        yield net
        return
    for m in layers:
        m.forward = _synced_forward.__get__(m)
    try:
        yield net
    finally:
        for m in layers:
            del m.forward


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks, differentiable: every rank's loss depends on every
    rank's copy of the sum, so the gradient of each copy is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        total = x.clone()
        sum_across_ranks([total])
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        total = grad.clone()
        sum_across_ranks([total])
        return total


def summed(x: torch.Tensor) -> torch.Tensor:
    """``x``'s sum over the ranks, differentiable: the gradient of each rank's ``x`` is the sum
    of the ranks' gradients of the result (``x`` itself in a single process). Where every rank
    computes the same loss from the result, back-propagating ``loss / WORLD_SIZE`` on each rank
    and summing the leaves' gradients over the ranks gives the one-process gradient (the
    trajectory students, :mod:`ddkit.methods.trajectory.student`)."""
    return x if _ACTIVE is None else _SumOverRanks.apply(x)


def _synced_forward(bn: Any, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm's forward with the batch statistics of every rank's rows (see
    :func:`synced_batchnorm`); in eval mode with running statistics, the layer's own forward."""
    import torch.distributed as dist
    import torch.nn.functional as F

    if not bn.training and bn.running_mean is not None:
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
        )
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.tensor([x.numel() // max(x.shape[1], 1)], dtype=x.dtype, device=x.device)
    dist.all_reduce(count, group=_GROUP)
    n = float(count.item())
    mean = _SumOverRanks.apply(x.sum(dims)) / n
    centred = x - mean.view(shape)
    var = _SumOverRanks.apply((centred * centred).sum(dims)) / n
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = bn.momentum
            m = 1.0 / float(bn.num_batches_tracked) if m is None else m
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            unbiased = var.detach() * (n / max(n - 1, 1.0))
            bn.running_var.mul_(1 - m).add_(unbiased, alpha=m)
    return y
