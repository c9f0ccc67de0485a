"""What trajectory matching holds, checked before the work (issue 73): refusals in one line
naming the option to change, instead of the kernel's out-of-memory kill or a full disk.

* **Expert snapshots** are files, not memory (:mod:`ddkit.methods.trajectory.experts`): ``E``
  experts x ``(epochs + 1)`` snapshots x the network's parameters (twice with a momentum
  buffer) x 4 bytes, checked against the free space of the folder they go to (less what the
  folder already holds: a resumed run writes only the rest).
* **Training experts** holds, per expert trained at once (``together``), the activations that
  one batch keeps for its backward pass and four parameter vectors (parameters, gradient,
  momentum, the snapshot being written).
* **The student's unroll** (MTT's ``backward="unroll"``) keeps the autograd graph of all
  ``syn_steps`` steps: per step, its mini-batch's activations -- the forward's outputs and
  about half as much again for the gradient's own graph -- and two parameter vectors (the
  step's parameters and gradient). TESLA's gradient holds one step's graph, its parameter
  checkpoints (about ``sqrt(N)``) and the states recomputed between two of them.

The activations come from :func:`ddkit.models.footprint.module_footprint` (the network run on
the meta device: nothing is allocated). Memory is checked for runs on the CPU only: a GPU's
memory is not the machine's (as the matching steps do).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError
from ddkit.meter import check_memory
from ddkit.models.footprint import HEADROOM, module_footprint

FLOAT = 4  # bytes of a float32 value


def _meta_network(model: str, spec: DatasetSpec) -> nn.Module:
    """``model`` for ``spec``'s rows (refused as :func:`~ddkit.models.build_network` refuses
    it), built on the meta device: nothing is allocated."""
    from ddkit.models import build_network

    with torch.device("meta"):
        return build_network(model, spec, 0)


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def snapshot_bytes(params: int, num_experts: int, epochs: int, momentum: float) -> int:
    """Bytes of the snapshots of ``num_experts`` experts of ``epochs`` epochs (epoch 0, the
    initialisation, included)."""
    return FLOAT * params * (2 if momentum > 0 else 1) * (epochs + 1) * num_experts


def unroll_bytes(net: nn.Module, spec: DatasetSpec, syn_steps: int, batch: int) -> int:
    """Bytes the student's unrolled graph of ``syn_steps`` steps on mini-batches of ``batch``
    images holds (module docstring)."""
    kept = module_footprint(net, spec.shape).training // HEADROOM  # the forward's outputs
    return syn_steps * (batch * kept * 3 // 2 + 2 * FLOAT * _params(net))


def tesla_bytes(
    net: nn.Module, spec: DatasetSpec, syn_steps: int, batch: int, checkpoint_every: int = 0
) -> int:
    """Bytes TESLA's gradient holds: one step's graph (:func:`unroll_bytes` of one step), its
    parameter checkpoints (every ``checkpoint_every``-th of ``syn_steps``; 0: every
    ``ceil(sqrt(N))``-th) and the states recomputed between two of them."""
    k = checkpoint_every if checkpoint_every > 0 else max(1, math.isqrt(syn_steps - 1) + 1)
    vectors = math.ceil(syn_steps / k) + k
    return unroll_bytes(net, spec, 1, batch) + FLOAT * _params(net) * vectors


def _free_bytes(folder: Path) -> int:
    where = folder
    while not where.exists() and where != where.parent:
        where = where.parent
    return shutil.disk_usage(where).free


def _held_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors") if p.is_file())


def check_experts(
    train_spec: DatasetSpec,
    model: str,
    *,
    num_experts: int,
    epochs: int,
    momentum: float,
    batch_size: int,
    together: int,
    out_dir: str | os.PathLike,
    device: torch.device,
) -> None:
    """Refuse, in one line before any expert is trained, snapshots that the disk under
    ``out_dir`` cannot hold, or ``together`` experts whose training does not fit the memory
    budget (on the CPU)."""
    net = _meta_network(model, train_spec)
    params = _params(net)
    need = snapshot_bytes(params, num_experts, epochs, momentum) - _held_bytes(Path(out_dir))
    free = _free_bytes(Path(out_dir))
    if need > free:
        raise ConfigError(
            f"the snapshots of {num_experts:,} experts x {epochs + 1:,} epochs of {model!r} "
            f"({params:,} parameters) would take {need / 2**30:,.1f} GiB more on disk, more than "
            f"the {free / 2**30:,.1f} GiB free under {str(out_dir)!r}; use fewer num_experts or "
            "expert_train_epochs, or another folder"
        )
    if device.type != "cpu":
        return
    kept = module_footprint(net, train_spec.shape).training
    check_memory(
        f"training {together:,} expert(s) at once ({batch_size:,} images per batch through "
        f"{model!r})",
        together * (batch_size * kept + 4 * FLOAT * params),
        "use a smaller together or expert batch",
    )


def check_unroll(
    net: nn.Module,
    spec: DatasetSpec,
    syn_steps: int,
    batch: int,
    model: str,
    *,
    backward: str = "unroll",
    checkpoint_every: int = 0,
) -> None:
    """Refuse, in one line before any step, a student whose ``backward`` (MTT's unrolled
    graph, or TESLA's checkpoints and one step) does not fit the memory budget (networks on
    the CPU only)."""
    if next(net.parameters()).device.type != "cpu":
        return
    if backward == "tesla":
        check_memory(
            f"tesla's student ({syn_steps:,} steps of {batch:,} images through {model!r})",
            tesla_bytes(net, spec, syn_steps, batch, checkpoint_every),
            "use a smaller --set batch_syn or --set syn_steps, or a narrower --model",
        )
        return
    check_memory(
        f"the student's unroll ({syn_steps:,} steps of {batch:,} images through {model!r})",
        unroll_bytes(net, spec, syn_steps, batch),
        "use a smaller --set syn_steps or --set batch_syn, or --set backward=tesla (constant "
        "memory)",
    )
