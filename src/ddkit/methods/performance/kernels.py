"""Closed-form kernels of infinitely wide fully connected ReLU networks, in torch.

For a network with ``depth`` hidden ReLU layers in the NTK parameterisation (weights ``N(0, 1)``
scaled by ``sqrt(weight_var / fan_in)``, biases ``N(0, 1)`` scaled by ``sqrt(bias_var)``), the
output's covariance over random initialisations (the NNGP kernel, Lee et al., ICLR 2018,
arXiv:1711.00165) and its neural tangent kernel (Jacot et al., NeurIPS 2018, arXiv:1806.07572)
follow the arc-cosine recursion of Cho & Saul (NeurIPS 2009). With ``K`` the pre-activation
covariance of a layer and ``theta = arccos(K(x, x') / sqrt(K(x, x) K(x', x')))``:

* ``K_next(x, x') = weight_var / (2 pi) * sqrt(K(x, x) K(x', x')) * (sin theta + (pi - theta) cos theta)
  + bias_var``
* ``Kdot(x, x') = weight_var / (2 pi) * (pi - theta)`` (the derivative kernel)
* ``NTK_next = K_next + NTK * Kdot``, starting from ``K = NTK = weight_var x.x' / d + bias_var``.

Convolutional networks (:func:`relu_conv_kernel`, :func:`relu_convnet_kernel`) apply the same
recursion position by position (Novak et al., ICLR 2019; Arora et al., NeurIPS 2019).

Everything is differentiable in both inputs (the cosine is clamped just inside [-1, 1], where
``arccos`` has infinite slope), so the synthetic images of kernel methods learn through it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = [
    "KERNELS",
    "READOUTS",
    "krr_predict",
    "relu_conv_kernel",
    "relu_convnet_kernel",
    "relu_fc_kernel",
    "solve_labels",
]

KERNELS = ("ntk", "nngp")
READOUTS = ("flatten", "gap")
_EDGE = 1e-6


def _relu_expectations(
    k12: torch.Tensor, k11: torch.Tensor, k22: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[relu(u) relu(v)]`` and ``E[relu'(u) relu'(v)]`` for centred Gaussians with
    covariance ``k12`` and variances ``k11``, ``k22`` (broadcast elementwise)."""
    norm = torch.sqrt(k11 * k22)
    cos = (k12 / norm).clamp(-1 + _EDGE, 1 - _EDGE)
    theta = torch.arccos(cos)
    value = norm * (torch.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
    return value, (math.pi - theta) / (2 * math.pi)


def relu_fc_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor,
    *,
    depth: int = 1,
    weight_var: float = 2.0,
    bias_var: float = 0.01,
    kind: Literal["ntk", "nngp"] = "ntk",
) -> torch.Tensor:
    """The ``(n1, n2)`` NTK or NNGP kernel between the rows of ``x1`` and ``x2`` (flattened
    inputs) of an infinitely wide ReLU network with ``depth`` hidden layers."""
    a, b = x1.flatten(1), x2.flatten(1)
    d = a.shape[1]
    k12 = weight_var * (a @ b.T) / d + bias_var
    k11 = weight_var * (a * a).sum(1) / d + bias_var
    k22 = weight_var * (b * b).sum(1) / d + bias_var
    ntk = k12
    for _ in range(depth):
        value, slope = _relu_expectations(k12, k11[:, None], k22[None, :])
        k12 = weight_var * value + bias_var
        ntk = k12 + ntk * (weight_var * slope)
        k11 = weight_var / 2 * k11 + bias_var  # theta = 0 on the diagonal
        k22 = weight_var / 2 * k22 + bias_var
    return ntk if kind == "ntk" else k12


def krr_predict(
    k_target_support: torch.Tensor,
    k_support: torch.Tensor,
    y_support: torch.Tensor,
    reg: float = 1e-6,
) -> torch.Tensor:
    """Kernel ridge regression: ``K_ts (K_ss + lambda I)^-1 y_s`` with ``lambda = reg *
    trace(K_ss) / n`` (the ridge scaled to the kernel, as in KIP), by a Cholesky solve."""
    n = k_support.shape[0]
    ridge = reg * torch.diagonal(k_support).mean()
    eye = torch.eye(n, dtype=k_support.dtype, device=k_support.device)
    chol = torch.linalg.cholesky(k_support + ridge * eye)
    return k_target_support @ torch.cholesky_solve(y_support, chol)


def solve_labels(
    k_target_support: torch.Tensor,
    k_support: torch.Tensor,
    y_target: torch.Tensor,
    reg: float = 1e-6,
) -> torch.Tensor:
    """KIP's label solve (Nguyen et al., ICLR 2021): the support labels ``y_s`` whose kernel
    ridge predictions fit ``y_target`` best, ``argmin ||K_ts (K_ss + lambda I)^-1 y_s - y_t||``,
    i.e. ``y_s = (K_ss + lambda I) (K_ts)^+ y_t`` (least squares in float64, the ridge as in
    :func:`krr_predict`)."""
    n = k_support.shape[0]
    kss, kts = k_support.double(), k_target_support.double()
    ridge = reg * torch.diagonal(kss).mean()
    regularised = kss + ridge * torch.eye(n, dtype=kss.dtype, device=kss.device)
    # K_ts (K_ss + lambda I)^-1 y_s = y_t  <=>  K_ts z = y_t with y_s = (K_ss + lambda I) z
    z = torch.linalg.lstsq(kts, y_target.double(), driver="gelsd").solution
    return (regularised @ z).to(y_target.dtype)


def relu_conv_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor,
    *,
    depth: int = 3,
    kernel_size: int = 3,
    weight_var: float = 2.0,
    bias_var: float = 0.01,
    kind: Literal["ntk", "nngp"] = "ntk",
) -> torch.Tensor:
    """The ``(n1, n2)`` NTK or NNGP kernel between images ``x1`` ``(n1, C, H, W)`` and ``x2`` of
    an infinitely wide ReLU CNN: ``depth`` ``kernel_size`` convolutions ('same' zero padding,
    stride 1), each followed by ReLU, then a dense readout of the flattened features (no
    pooling). Novak et al., ICLR 2019 (arXiv:1810.05148, CNN-GP); Arora et al., NeurIPS 2019
    (arXiv:1904.11955, CNTK).

    Without pooling only same-position covariances are needed, so each pair of images carries
    an ``(H, W)`` map: a convolution averages the map over its window, a ReLU applies the
    arc-cosine expectations position by position, and the readout averages over positions.
    """

    c, h, w = x1.shape[1:]

    def window_mean(m: torch.Tensor) -> torch.Tensor:  # (..., H, W) -> (..., H, W)
        lead = m.shape[:-2]
        out = F.avg_pool2d(
            m.reshape(-1, 1, h, w),
            kernel_size,
            stride=1,
            padding=kernel_size // 2,
            count_include_pad=True,
        )
        return out.reshape(*lead, h, w)

    # first convolution on the inputs: per-position channel means of the products
    k12 = weight_var * window_mean(torch.einsum("achw,bchw->abhw", x1, x2) / c) + bias_var
    k11 = weight_var * window_mean((x1 * x1).mean(1)) + bias_var
    k22 = weight_var * window_mean((x2 * x2).mean(1)) + bias_var
    ntk = k12
    for layer in range(depth):
        value, slope = _relu_expectations(k12, k11[:, None], k22[None, :])
        last = layer == depth - 1
        spread = (lambda m: m.mean((-2, -1))) if last else window_mean  # readout or conv
        k12 = weight_var * spread(value) + bias_var
        ntk = k12 + weight_var * spread(ntk * slope)
        if not last:
            k11 = weight_var * window_mean(k11 / 2) + bias_var
            k22 = weight_var * window_mean(k22 / 2) + bias_var
    return ntk if kind == "ntk" else k12


# ------------------------------------------------------------------ ConvNet with pooling
#
# With pooling, a position's activation mixes several positions of the layer below, so the
# kernel needs the covariance of every pair of positions: a map (H, W, H, W) per pair of images.
# Convolutions and pooling act on both position axes at once (linear, exact); a ReLU acts entry by
# entry with the variances from the diagonal of each image's own map.


def _conv_map(m: torch.Tensor, k: int) -> torch.Tensor:
    """A ``k x k`` 'same' convolution (zero padding) on position-pair maps ``(P, H, W, H, W)``:
    the mean over window offsets ``d`` of ``m(p + d, p' + d)``, one axis pair at a time."""
    r, (h, w) = k // 2, m.shape[1:3]
    padded = F.pad(m, (0, 0, r, r, 0, 0, r, r))  # rows of both positions
    m = sum(padded[:, i : i + h, :, i : i + h] for i in range(k)) / k
    padded = F.pad(m, (r, r, 0, 0, r, r))  # columns of both positions
    return sum(padded[:, :, i : i + w, :, i : i + w] for i in range(k)) / k


def _pool_map(m: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling (stride 2, an odd last row or column dropped) at both positions."""
    p, h, w = m.shape[0], m.shape[1] // 2, m.shape[2] // 2
    m = m[:, : 2 * h, : 2 * w, : 2 * h, : 2 * w]
    return m.reshape(p, h, 2, w, 2, h, 2, w, 2).mean((2, 4, 6, 8))


def _diagonal(m: torch.Tensor) -> torch.Tensor:
    """The same-position entries ``m(p, p)`` of maps ``(P, H, W, H, W)``: ``(P, H, W)``."""
    p, h, w = m.shape[:3]
    return m.reshape(p, h * w, h * w).diagonal(dim1=1, dim2=2).reshape(p, h, w)


def _product_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Channel means of the products of every pair of positions, for the pairs ``(a_i, b_i)``:
    ``(P, H, W, H, W)``."""
    return torch.einsum("pchw,pcyz->phwyz", a, b) / a.shape[1]


def _convnet_maps(
    m: torch.Tensor,
    variances: list[tuple[torch.Tensor, torch.Tensor]] | None,
    depth: int,
    k: int,
    wv: float,
    bv: float,
    readout: str,
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """Propagate input product maps ``m`` through KIP's ConvNet (a stem convolution, then
    ``depth`` blocks of convolution, ReLU and 2x2 average pooling; see
    :func:`relu_convnet_kernel`). ``variances``: per ReLU, the left and right images' variance
    maps ``(P, H, W)``; ``None`` for self pairs ``(x, x)``, whose own diagonals are the
    variances (those are returned, and the NTK is skipped). Returns ``(nngp, ntk, variances)``
    of the readout, ``(P,)`` each."""
    own = variances is None
    seen: list[torch.Tensor] = []
    nngp = wv * _conv_map(m, k) + bv
    ntk = None if own else nngp
    for layer in range(depth + 1):
        if own:
            seen.append(_diagonal(nngp))
            v1 = v2 = seen[-1]
        else:
            v1, v2 = variances[layer]
        value, slope = _relu_expectations(nngp, v1[:, :, :, None, None], v2[:, None, None, :, :])
        nngp, ntk = value, (None if own else ntk * slope)
        if layer > 0:  # the blocks pool after their ReLU; the stem does not
            nngp, ntk = _pool_map(nngp), (None if own else _pool_map(ntk))
        if layer < depth:
            nngp = wv * _conv_map(nngp, k) + bv
            ntk = None if own else nngp + wv * _conv_map(ntk, k)
    read = _diagonal if readout == "flatten" else (lambda t: t)
    out = wv * read(nngp).flatten(1).mean(1) + bv
    return out, (None if own else out + wv * read(ntk).flatten(1).mean(1)), seen


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _maybe_checkpoint(fn, *args: torch.Tensor):
    """``fn(*args)``, recomputed in the backward pass instead of kept when a gradient flows
    (a block's maps are large; only its small outputs are kept)."""
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def relu_convnet_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor,
    *,
    depth: int = 3,
    kernel_size: int = 3,
    weight_var: float = 2.0,
    bias_var: float = 0.01,
    kind: Literal["ntk", "nngp"] = "ntk",
    readout: Literal["flatten", "gap"] = "flatten",
    chunk: int = 8,
) -> torch.Tensor:
    """The ``(n1, n2)`` NTK or NNGP kernel between images ``x1`` ``(n1, C, H, W)`` and ``x2`` of
    the infinitely wide ConvNet of KIP's convolutional paper (Nguyen, Novak, Xiao and Lee,
    "Dataset Distillation with Infinitely Wide Convolutional Networks", NeurIPS 2021,
    arXiv:2107.13034; neural-tangents' ``stax``): a ``kernel_size`` 'same' convolution and ReLU,
    then ``depth`` blocks of convolution, ReLU and 2x2 average pooling (stride 2), then a dense
    readout of the flattened features (``readout="flatten"``) or of their global average
    (``"gap"``). NTK parameterisation as in :func:`relu_fc_kernel`.

    Cost: every pair of images carries an ``(H, W, H, W)`` map, so time and memory grow with the
    square of the image area (28x28: 614,656 entries per pair at the first two layers). Pairs are
    computed ``chunk`` x ``chunk`` at a time, each block recomputed in the backward pass
    (gradient checkpointing), so memory stays at one block's maps.
    """
    c = dict(depth=depth, k=kernel_size, wv=weight_var, bv=bias_var, readout=readout)

    def own_variances(x: torch.Tensor) -> list[torch.Tensor]:
        def block(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(_convnet_maps(_product_map(t, t), None, **c)[2])

        parts = [_maybe_checkpoint(block, x[s]) for s in _blocks(len(x), chunk)]
        return [torch.cat(layer) for layer in zip(*parts, strict=True)]

    v1 = own_variances(x1)
    v2 = v1 if x2 is x1 else own_variances(x2)
    n_layers = len(v1)

    def pairs(a: torch.Tensor, b: torch.Tensor, *vs: torch.Tensor) -> torch.Tensor:
        na, nb = len(a), len(b)
        left = a.repeat_interleave(nb, 0)
        right = b.repeat(na, 1, 1, 1)
        variances = [
            (va.repeat_interleave(nb, 0), vb.repeat(na, 1, 1))
            for va, vb in zip(vs[:n_layers], vs[n_layers:], strict=True)
        ]
        nngp, ntk, _ = _convnet_maps(_product_map(left, right), variances, **c)
        return (ntk if kind == "ntk" else nngp).reshape(na, nb)

    same = x2 is x1  # symmetric: the blocks above the diagonal, mirrored below it
    rows_, cols_ = _blocks(len(x1), chunk), _blocks(len(x2), chunk)
    blocks: dict[tuple[int, int], torch.Tensor] = {}
    for i, si in enumerate(rows_):
        for j, sj in enumerate(cols_):
            if same and j < i:
                blocks[i, j] = blocks[j, i].T
                continue
            args = (x1[si], x2[sj], *(v[si] for v in v1), *(v[sj] for v in v2))
            blocks[i, j] = _maybe_checkpoint(pairs, *args)
    return torch.cat(
        [torch.cat([blocks[i, j] for j in range(len(cols_))], 1) for i in range(len(rows_))]
    )
