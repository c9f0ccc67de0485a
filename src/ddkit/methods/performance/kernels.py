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

Everything is differentiable in both inputs (the cosine is clamped just inside [-1, 1], where
``arccos`` has infinite slope), so the synthetic images of kernel methods learn through it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["KERNELS", "krr_predict", "relu_conv_kernel", "relu_fc_kernel", "solve_labels"]

KERNELS = ("ntk", "nngp")
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
