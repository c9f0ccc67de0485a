"""A pool of networks of one architecture stored as flat tensors in a method's ``state_``.

Methods that keep many partially trained networks -- IDM's model queue (Zhao et al., "Improved
Distribution Matching for Dataset Condensation", CVPR 2023), FRePo's model pool (Zhou, Nezhadarya
& Ba, "Dataset Distillation using Neural Feature Regression", NeurIPS 2022) -- hold, per network,
its parameters as one flat vector, optimiser slots of the same size (SGD momentum, or Adam's
moments), its buffers
(BatchNorm running statistics) and one scalar (e.g. its training accuracy). :class:`ModelPool`
keeps those in the state dict it is given, as lists of tensors and JSON scalars, so
:func:`ddkit.methods.base.flatten_state` checkpoints them and a resumed run continues exactly.

Entry ``j`` runs either functionally (:meth:`ModelPool.call`: ``torch.func.functional_call`` of
one template module on views into the flat vector; each call's autograd graph holds its own
views, so several entries can be in one graph) or loaded into the template
(:meth:`ModelPool.load` / :meth:`ModelPool.store`, for training the entry with autograd on the
template's parameters). No module is copied per use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["ModelPool"]


class _Method(nn.Module):
    """Calls ``getattr(net, method)(*args)``: lets ``functional_call`` run any method of ``net``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, method: str, *args: Any) -> Any:
        return getattr(self.net, method)(*args)


class ModelPool:
    """A first-in-first-out pool of at most ``capacity`` networks shaped like ``template``.

    The entries live in ``state`` (a method's ``state_``) under these keys: ``<prefix>_params``
    (flat parameter vectors, in ``template.parameters()`` order), ``<prefix>_<slot>`` for each
    optimiser slot in ``slots`` (flat vectors of the same size, zero at push: SGD's momentum by
    default, Adam's two moments), ``<prefix>_buffers`` (every entry's buffers, one
    after the other, in ``template.buffers()`` order) and ``<prefix>_<score>`` (one float per
    entry). The pool reads ``state`` on every access, so restoring a checkpoint into ``state``
    (which replaces the lists) needs no further step. ``template`` is the module the pool runs
    and loads entries into; it is owned by the pool.
    """

    def __init__(
        self,
        state: dict[str, Any],
        template: nn.Module,
        capacity: int,
        *,
        prefix: str = "pool",
        score: str = "score",
        slots: tuple[str, ...] = ("momentum",),
    ) -> None:
        if capacity < 1:
            raise ValueError(f"pool capacity must be >= 1, got {capacity}")
        self.state, self.template, self.capacity = state, template, int(capacity)
        self.slots = slots
        self.keys = {
            "params": f"{prefix}_params",
            **{slot: f"{prefix}_{slot}" for slot in slots},
            "buffers": f"{prefix}_buffers",
            "score": f"{prefix}_{score}",
        }
        for key in self.keys.values():
            state.setdefault(key, [])
        named = list(template.named_parameters())
        self.param_names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.buffer_names = [n for n, _ in template.named_buffers()]
        self._caller = _Method(template)

    # ------------------------------------------------------------------ storage
    def _list(self, what: str) -> list[Any]:
        return self.state[self.keys[what]]

    def __len__(self) -> int:
        return len(self._list("params"))

    def push(self, net: nn.Module, score: float = 0.0) -> None:
        """Append ``net``'s parameters (copied), zeroed optimiser slots, its buffers and ``score``;
        drop the oldest entry first when the pool is full."""
        if len(self) >= self.capacity:
            self.drop(0)
        flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        self._list("params").append(flat)
        for slot in self.slots:
            self._list(slot).append(torch.zeros_like(flat))
        self._list("buffers").extend(b.detach().clone() for b in net.buffers())
        self._list("score").append(float(score))

    def drop(self, j: int) -> None:
        """Remove entry ``j`` (later entries move down by one)."""
        nb = len(self.buffer_names)
        for what in ("params", *self.slots, "score"):
            self._list(what).pop(j)
        del self._list("buffers")[j * nb : (j + 1) * nb]

    def params(self, j: int) -> torch.Tensor:
        """Entry ``j``'s flat parameter vector (the stored tensor: writes go into the pool)."""
        return self._list("params")[j]

    def momentum(self, j: int) -> torch.Tensor:
        """Entry ``j``'s flat momentum vector (the stored tensor)."""
        return self.slot(j, "momentum")

    def slot(self, j: int, name: str) -> torch.Tensor:
        """Entry ``j``'s flat optimiser slot ``name`` (one of ``slots``; the stored tensor)."""
        return self._list(name)[j]

    def buffers(self, j: int) -> list[torch.Tensor]:
        """Entry ``j``'s buffers (the stored tensors), in ``template.buffers()`` order."""
        nb = len(self.buffer_names)
        return self._list("buffers")[j * nb : (j + 1) * nb]

    def score(self, j: int) -> float:
        return float(self._list("score")[j])

    def set_score(self, j: int, value: float) -> None:
        self._list("score")[j] = float(value)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat vector shaped like the template's parameters (in their order)."""
        return [v.view(s) for v, s in zip(torch.split(flat, self.numels), self.shapes)]

    # ------------------------------------------------------------------ running an entry
    def tensors(self, j: int) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` of entry ``j`` for ``torch.func.functional_call(template, ...)``:
        views into its flat parameter vector and its stored buffers."""
        out = dict(zip(self.param_names, self.split(self.params(j))))
        out.update(zip(self.buffer_names, self.buffers(j)))
        return out

    def call(self, j: int, method: str, *args: Any) -> Any:
        """``template.<method>(*args)`` computed with entry ``j``'s parameters and buffers
        (``functional_call``; the template's own values are not used or changed). The template's
        train/eval mode applies; in train mode BatchNorm updates entry ``j``'s stored buffers."""
        named = {f"net.{k}": v for k, v in self.tensors(j).items()}
        return functional_call(self._caller, named, (method, *args))

    def load(self, j: int) -> nn.Module:
        """Copy entry ``j`` into the template and return it (e.g. to train it with autograd;
        write it back with :meth:`store`)."""
        with torch.no_grad():
            for p, src in zip(self.template.parameters(), self.split(self.params(j))):
                p.copy_(src)
            for b, src in zip(self.template.buffers(), self.buffers(j)):
                b.copy_(src)
        return self.template

    def store(self, j: int) -> None:
        """Copy the template's parameters and buffers into entry ``j``."""
        with torch.no_grad():
            self.params(j).copy_(
                torch.cat([p.detach().reshape(-1) for p in self.template.parameters()])
            )
            for dst, b in zip(self.buffers(j), self.template.buffers()):
                dst.copy_(b)
