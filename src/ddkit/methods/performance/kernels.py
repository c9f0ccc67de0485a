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
    "check_kernel_matrices",
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


def check_kernel_matrices(
    method: str, n_real: int, n_support: int, fix: str, *, matrices: int = 2
) -> None:
    """Refuse (one line, before any step) kernel regression whose matrices do not fit the
    memory budget: a step holds the real x support and support x support kernels, each as
    ``matrices`` float32 copies (its value and its gradient; more for a kernel built layer by
    layer), and the solve's factor of the support kernel."""
    from ddkit.meter import check_memory

    pairs = n_real * n_support + 2 * n_support * n_support
    check_memory(
        f"{method}'s kernel matrices ({n_real:,} real x {n_support:,} support images)",
        4 * matrices * pairs,
        fix,
    )


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
# kernel needs covariances between different positions. Pair maps are kept banded: ``B[a, b, h,
# w]`` is the covariance of position ``p = (h, w)`` in the first image with ``p + (a - R, b - R)``
# in the second (zero where that lies outside the image), for offsets up to the radius ``R``
# the layers above still read (a flatten readout reads offset 0, a 2x2 pooling reads radius
# ``2 R + 1`` below it). A convolution is then a window mean over positions, offset by offset;
# a ReLU acts entry by entry with the variances of the two positions; pooling gathers.


def _radii(side: int, depth: int, readout: str) -> list[int]:
    """The offset radius the maps need at each resolution (``depth + 1`` of them, the input's
    first) for images of side ``side``: 0 at a flatten readout (every offset of the last grid
    for ``gap``), ``2 R + 1`` below a 2x2 pooling that must deliver radius ``R``."""
    for _ in range(depth):
        side //= 2
    radius = 0 if readout == "flatten" else side - 1
    out = [radius]
    for _ in range(depth):
        radius = 2 * radius + 1
        out.append(radius)
    return out[::-1]


def _shifted(t: torch.Tensor, r: int, fill: float = 0.0) -> torch.Tensor:
    """``t[..., h + a - r, w + b - r]`` as ``(P, C, A, A, H, W)`` for maps ``t`` ``(P, C, H, W)``
    (``fill`` outside)."""
    p, c, h, w = t.shape
    a = 2 * r + 1
    padded = F.pad(t, (r, r, r, r), value=fill)
    cols = F.unfold(padded.reshape(p * c, 1, h + 2 * r, w + 2 * r), a)  # (P C, A A, H W)
    return cols.reshape(p, c, a, a, h, w)


def _valid(h: int, w: int, r: int, like: torch.Tensor) -> torch.Tensor:
    """``(A, A, H, W)``: 1 where ``p + offset`` lies inside an ``h x w`` image."""
    ones = torch.ones(1, 1, h, w, dtype=like.dtype, device=like.device)
    return _shifted(ones, r)[0, 0]


def _conv_band(m: torch.Tensor, k: int, valid: torch.Tensor) -> torch.Tensor:
    """A ``k x k`` 'same' convolution (zero padding) on banded maps ``(P, A, A, H, W)``: the
    mean over window offsets ``d`` of ``m(p + d, p + d + offset)``."""
    p, a, _, h, w = m.shape
    out = F.avg_pool2d(m.reshape(p, a * a, h, w), k, 1, k // 2, count_include_pad=True)
    return out.reshape(m.shape) * valid


def _pool_band(m: torch.Tensor, r_out: int) -> torch.Tensor:
    """2x2 average pooling (stride 2) at both positions of banded maps of radius ``r_in >= 2
    r_out + 1``: offset ``o`` of pooled position ``q`` averages offsets ``2 o + e' - e`` of the
    input positions ``2 q + e`` (``e, e'`` in ``{0, 1}^2``)."""
    r_in, h, w = (m.shape[1] - 1) // 2, m.shape[3] // 2, m.shape[4] // 2
    a_out, out = 2 * r_out + 1, 0
    for eh, fh, ew, fw in torch.cartesian_prod(*[torch.arange(2)] * 4).tolist():
        start_h, start_w = r_in - 2 * r_out + fh - eh, r_in - 2 * r_out + fw - ew
        out = (
            out
            + m[
                :,
                start_h : start_h + 2 * a_out - 1 : 2,
                start_w : start_w + 2 * a_out - 1 : 2,
                eh : 2 * h : 2,
                ew : 2 * w : 2,
            ]
        )
    return out / 16


def _convnet_maps(
    x1: torch.Tensor,
    x2: torch.Tensor,
    variances: list[tuple[torch.Tensor, torch.Tensor]] | None,
    depth: int,
    k: int,
    wv: float,
    bv: float,
    readout: str,
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """Propagate the pairs ``(x1[i], x2[i])`` through KIP's ConvNet (see
    :func:`relu_convnet_kernel`). ``variances``: per ReLU, the left and right images' variance
    maps ``(P, H, W)``; ``None`` for self pairs, whose own same-position entries are the
    variances (those are returned, and the NTK is skipped). Returns ``(nngp, ntk, variances)``
    of the readout, ``(P,)`` each."""
    own = variances is None
    radii = _radii(x1.shape[-1], depth, readout)
    r, (h, w) = radii[0], x1.shape[-2:]
    valid = _valid(h, w, r, x1)
    product = torch.einsum("pchw,pcabhw->pabhw", x1, _shifted(x2, r)) / x1.shape[1]
    nngp = (wv * _conv_band(product, k, valid) + bv) * valid
    ntk = None if own else nngp
    seen: list[torch.Tensor] = []
    for layer in range(depth + 1):
        if own:
            seen.append(nngp[:, r, r])
            v1 = v2 = seen[-1]
        else:
            v1, v2 = variances[layer]
        k22 = _shifted(v2[:, None], r, fill=1.0)[:, 0]
        value, slope = _relu_expectations(nngp, v1[:, None, None], k22)
        nngp, ntk = value * valid, (None if own else ntk * slope)
        if layer > 0:  # the blocks pool after their ReLU; the stem does not
            r, h, w = radii[layer], h // 2, w // 2
            valid = _valid(h, w, r, nngp)
            nngp = _pool_band(nngp, r) * valid
            ntk = None if own else _pool_band(ntk, r) * valid
        if layer < depth:
            nngp = (wv * _conv_band(nngp, k, valid) + bv) * valid
            ntk = None if own else nngp + wv * _conv_band(ntk, k, valid)
    p = len(nngp)
    if readout == "flatten":
        read = lambda t: t[:, r, r].reshape(p, -1).mean(1)  # noqa: E731
    else:
        read = lambda t: t.reshape(p, -1).sum(1) / (h * w) ** 2  # noqa: E731
    out = wv * read(nngp) + bv
    return out, (None if own else out + wv * read(ntk)), seen


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _maybe_checkpoint(fn, *args: torch.Tensor):
    """``fn(*args)``, recomputed in the backward pass instead of kept when a gradient flows
    (a block's maps are large; only its small outputs are kept)."""
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


#: the maps alive at once while one block of pairs is computed and differentiated, in units of
#: one block's first-layer map ``(P, A, A, H, W)`` (measured: about 33 with gradients)
_BLOCK_MAPS = 34


def convnet_kernel_block_bytes(
    shape: tuple[int, ...], *, depth: int = 3, readout: str = "flatten", chunk: int = 8
) -> int:
    """The bytes one ``chunk`` x ``chunk`` block of :func:`relu_convnet_kernel` takes between
    images of ``shape`` ``(C, H, W)`` (forward and backward; float32), checked before a run."""
    c, h, w = shape[-3:]
    a = 2 * _radii(w, depth, readout)[0] + 1
    return 4 * chunk**2 * a * a * h * w * (_BLOCK_MAPS + c)


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

    Cost: every pair of images carries the covariances of each position with the positions the
    layers above read (offsets up to 7 for 28x28 with 3 blocks and a flatten readout: 225 per
    position, 176,400 per pair at the first two layers; ``gap`` reads every pair of positions and
    costs several times more). Pairs are computed ``chunk`` x ``chunk`` at a time, each block
    recomputed in the backward pass (gradient checkpointing), so memory stays at one block's
    maps.
    """
    c = dict(depth=depth, k=kernel_size, wv=weight_var, bv=bias_var, readout=readout)

    def own_variances(x: torch.Tensor) -> list[torch.Tensor]:
        def block(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(_convnet_maps(t, t, None, **c)[2])

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
        nngp, ntk, _ = _convnet_maps(left, right, variances, **c)
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
