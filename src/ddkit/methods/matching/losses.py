"""Gradient matching: the layer-wise gradient distance of DC and per-class network gradients.

References:
    B. Zhao, K. R. Mopuri, H. Bilen, "Dataset Condensation with Gradient Matching", ICLR 2021
    (arXiv:2006.05929), Sec. 2.3 "Gradient matching loss" and the authors' ``match_loss`` /
    ``distance_wb``.
    B. Zhao, H. Bilen, "Dataset Condensation with Differentiable Siamese Augmentation",
    ICML 2021 (arXiv:2102.08259).

Per-class gradients (the hot path of DC/DSA). DC needs, for every class ``c``, the gradient of
the cross-entropy on a real batch of class ``c`` and on the synthetic images of class ``c`` with
respect to the same network weights. :func:`class_gradients` computes all classes at once with
``torch.func``: ``vmap`` over the class dimension of ``grad`` of a ``functional_call`` of the
network -- no network is rebuilt or re-run per class. :func:`class_gradients_loop` is the plain
class-by-class reference (the shape of the authors' code). Both give the same numbers up to
floating-point rounding (tested in float64).

The vectorised path treats every class as an independent batch, which is exact whenever the
network's forward is per sample: instance / group / layer norm, no norm, or BatchNorm in *eval*
mode (running statistics). BatchNorm in training mode mixes the samples of a batch, so there the
two paths differ exactly as batching differs; the DC method therefore freezes BatchNorm
statistics before matching (the reference's "BN trick"), which makes the forward per sample.

Precision (a speed lever, issue 14): ``precision="bf16"`` runs the network's forward passes
under bf16 autocast (:func:`ddkit.eval.train.precision_context`); the cross-entropy is taken of
float32 logits, and the gradients are with respect to the float32 weights, so they and the
layer-wise distance stay float32. ``"fp32"`` (the default) is the plain float32 path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ddkit.errors import ConfigError, DataError
from ddkit.levers import precision_context

__all__ = [
    "METRICS",
    "class_gradients",
    "class_gradients_loop",
    "class_loss",
    "gradient_distance",
    "gradient_matching_loss",
    "layer_distance",
    "matched_parameter_names",
]

#: Distances understood by :func:`gradient_distance`.
METRICS: tuple[str, ...] = ("ours", "mse", "cos", "l1-conv")

Grads = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def _as_list(g: Grads) -> list[torch.Tensor]:
    return list(g.values()) if isinstance(g, Mapping) else list(g)


def layer_distance(
    g_real: torch.Tensor, g_syn: torch.Tensor, batch_dims: int = 0, eps: float = 1e-6
) -> torch.Tensor:
    """DC's distance between two gradients of one parameter tensor (``distance_wb``).

    The parameter's own shape ``(out, ...)`` is reshaped to ``(out, -1)`` (a conv weight
    ``(out, in, kh, kw)`` to ``(out, in*kh*kw)``, a linear weight stays ``(out, in)``) and the
    distance is ``sum_out (1 - cos(g_real[out], g_syn[out]))`` with ``cos(a, b) = a.b /
    (|a| |b| + eps)``. One-dimensional parameters (biases, norm scales) give 0: the reference
    ignores them ("do nothing"). The first ``batch_dims`` dimensions are batch dimensions
    (e.g. classes); the result has their shape.
    """
    shape = g_real.shape[batch_dims:]
    lead = g_real.shape[:batch_dims]
    if len(shape) <= 1:
        return g_real.new_zeros(lead)
    a = g_real.reshape(*lead, shape[0], -1)
    b = g_syn.reshape(*lead, shape[0], -1)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)
    return (1.0 - cos).sum(-1)


def gradient_distance(
    g_real: Grads, g_syn: Grads, metric: str = "ours", *, batch_dims: int = 0, eps: float = 1e-6
) -> torch.Tensor:
    """Distance between two lists of parameter gradients (DC's ``match_loss``).

    Args:
        g_real, g_syn: gradients of the same parameters, in the same order (sequences or
            mappings; mappings are read in their order).
        metric: ``"ours"`` -- DC's layer-wise distance, the sum over parameter tensors of
            :func:`layer_distance` (one-dimensional parameters ignored); ``"mse"`` -- the sum of
            squared differences over all parameters; ``"cos"`` -- ``1 - cos`` of the two
            gradients flattened and concatenated over all parameters; ``"l1-conv"`` -- IDC's
            distance (Kim et al., ICML 2022): the summed absolute difference of the gradients
            of convolution weights (parameters of three or more dimensions; biases, norms and
            linear layers ignored).
        batch_dims: number of leading batch dimensions shared by every tensor (``1`` for
            per-class gradients ``(K, *param_shape)``); the result has their shape.
        eps: added to the product of norms in the cosine, as in the reference (``1e-6``).
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown gradient distance {metric!r}; valid: {', '.join(METRICS)}")
    gr, gs = _as_list(g_real), _as_list(g_syn)
    if len(gr) != len(gs) or not gr:
        raise DataError(f"gradient lists differ in length or are empty ({len(gr)} vs {len(gs)})")
    for a, b in zip(gr, gs):
        if a.shape != b.shape:
            raise DataError(f"gradient shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    lead = gr[0].shape[:batch_dims]
    if metric == "l1-conv":
        pairs = [(a, b) for a, b in zip(gr, gs) if a.ndim - batch_dims >= 3]
        if not pairs:
            raise DataError("metric 'l1-conv' needs a network with convolutions")
        return sum((a - b).abs().reshape(*lead, -1).sum(-1) for a, b in pairs)
    if metric == "ours":
        out = layer_distance(gr[0], gs[0], batch_dims, eps)
        for a, b in zip(gr[1:], gs[1:]):
            out = out + layer_distance(a, b, batch_dims, eps)
        return out
    vr = torch.cat([a.reshape(*lead, -1) for a in gr], -1)
    vs = torch.cat([b.reshape(*lead, -1) for b in gs], -1)
    if metric == "mse":
        return ((vs - vr) ** 2).sum(-1)
    return 1.0 - (vr * vs).sum(-1) / (vr.norm(dim=-1) * vs.norm(dim=-1) + eps)


def matched_parameter_names(net: nn.Module, metric: str = "ours") -> list[str]:
    """Names of the parameters whose gradients ``metric`` uses: for ``"ours"`` only those with
    two or more dimensions (1-D gradients contribute nothing), for ``"l1-conv"`` those with
    three or more (convolution weights), else all of them."""
    least = {"ours": 2, "l1-conv": 3}.get(metric, 0)
    return [n for n, p in net.named_parameters() if p.ndim >= least]


def class_gradients(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Sequence[str] | None = None,
    chunk_size: int | None = None,
    precision: str = "fp32",
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-class gradients of the mean cross-entropy, all classes in one vectorised call.

    ``x`` is ``(K, n, C, H, W)`` (class-major batches), ``y`` ``(K, n)`` labels. Returns
    ``{name: (K, *param.shape)}`` for the parameters in ``names`` (default: all), the gradient
    of ``mean_i CE(net(x[k, i]), y[k, i])`` for every ``k``. Differentiable with respect to ``x``
    (the synthetic images) through ordinary autograd; call under ``torch.no_grad()`` for real
    images. ``chunk_size`` bounds how many classes are evaluated at once (memory). ``precision``
    (resolved: ``"fp32"`` or ``"bf16"``) is the autocast of the forward pass (module notes).
    ``weights`` ``(K, n)`` (each row summing to 1) replace the mean by a weighted sum
    (:func:`class_loss`).

    The network's forward must be per sample (see the module notes on BatchNorm).
    """
    if x.ndim != 5 or y.shape != x.shape[:2]:
        raise DataError(
            f"expected x (K, n, C, H, W) and y (K, n), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    all_params = dict(net.named_parameters())
    names = list(all_params) if names is None else list(names)
    wrt = {n: all_params[n].detach() for n in names}
    const = {n: p.detach() for n, p in all_params.items() if n not in wrt}
    const.update(dict(net.named_buffers()))

    def loss(
        w: dict[str, torch.Tensor],
        xb: torch.Tensor,
        yb: torch.Tensor,
        wb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        with precision_context(precision, xb.device):
            logits = functional_call(net, {**w, **const}, (xb,), strict=True)
        return class_loss(logits.to(xb.dtype), yb, wb)

    if weights is None:
        return vmap(grad(loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(wrt, x, y)
    return vmap(grad(loss), in_dims=(None, 0, 0, 0), chunk_size=chunk_size)(wrt, x, y, weights)


def class_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """A class batch's cross-entropy: the mean over its rows, or with ``weights`` (summing to
    1, e.g. :func:`ddkit.methods.matching.reweight.kde_weights`) the weighted sum."""
    if weights is None:
        return F.cross_entropy(logits, labels)
    return (F.cross_entropy(logits, labels, reduction="none") * weights.to(logits.dtype)).sum()


def class_gradients_loop(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Sequence[str] | None = None,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Reference for :func:`class_gradients`: one forward and ``torch.autograd.grad`` per class
    (the authors' loop). ``create_graph=True`` keeps the result differentiable in ``x``."""
    all_params = dict(net.named_parameters())
    names = list(all_params) if names is None else list(names)
    params = [all_params[n] for n in names]
    per_class: list[tuple[torch.Tensor, ...]] = []
    for k in range(x.shape[0]):
        loss = F.cross_entropy(net(x[k]), y[k])
        g = torch.autograd.grad(loss, params, create_graph=create_graph)
        per_class.append(g if create_graph else tuple(t.detach() for t in g))
    return {n: torch.stack([g[i] for g in per_class]) for i, n in enumerate(names)}


def gradient_matching_loss(
    net: nn.Module,
    real: torch.Tensor,
    syn: torch.Tensor,
    *,
    metric: str = "ours",
    vectorize: bool = True,
    precision: str = "fp32",
    real_forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    classes: Sequence[int] | None = None,
    real_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-class gradient-matching distances ``(K,)`` between real and synthetic batches.

    ``real`` is ``(K, B, C, H, W)``, ``syn`` ``(K, S, C, H, W)``; row ``k`` of both holds
    images of class ``k`` (already augmented, for DSA). The loss is differentiable with respect
    to ``syn`` (and whatever produced it) but not to the network weights or the real images.
    ``vectorize=False`` runs the plain class-by-class loop instead (same value). ``precision``
    (resolved: ``"fp32"`` or ``"bf16"``) is the autocast of every forward pass; the distance
    is computed in the gradients' (the weights') dtype (module notes). ``real_forward`` (class
    loop only) computes the real batches' logits in place of ``net``: the same function of the
    same weights, e.g. ``net`` through ``torch.compile`` -- the real gradients are first order,
    so a compiled graph can take them; the synthetic ones are differentiated again and stay
    eager. ``classes``: the class of each row when the rows are not classes ``0..K-1`` (a
    rank's share of the classes in a :mod:`ddkit.distributed` session, or one chunk of them:
    memory is bounded by calling once per chunk of classes). ``real_weights``
    ``(K, B)``: each real row's weight in its class's cross-entropy (rows summing to 1; the
    plain mean when ``None``), e.g. the debiasing weights of ``reweight="kde"``.
    """
    k = real.shape[0]
    if syn.shape[0] != k or real.shape[2:] != syn.shape[2:]:
        raise DataError(
            f"real batch {tuple(real.shape)} and synthetic batch {tuple(syn.shape)} do not match"
        )
    rows = torch.arange(k) if classes is None else torch.as_tensor(list(classes))
    y_real = rows.to(real.device).unsqueeze(1).expand(k, real.shape[1])
    y_syn = rows.to(syn.device).unsqueeze(1).expand(k, syn.shape[1])
    if vectorize:
        names = matched_parameter_names(net, metric)
        with torch.no_grad():
            g_real = class_gradients(
                net, real.detach(), y_real, names=names, precision=precision, weights=real_weights
            )
        g_syn = class_gradients(net, syn, y_syn, names=names, precision=precision)
        return gradient_distance(g_real, g_syn, metric, batch_dims=1)
    # the reference shape: gradients of every parameter, one class at a time
    params = list(net.parameters())

    def logits(x: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        with precision_context(precision, x.device):
            return forward(x).to(x.dtype)

    out = []
    for c in range(k):
        real_logits = logits(real[c].detach(), net if real_forward is None else real_forward)
        loss_real = class_loss(
            real_logits, y_real[c], None if real_weights is None else real_weights[c]
        )
        g_real = [g.detach() for g in torch.autograd.grad(loss_real, params)]
        loss_syn = F.cross_entropy(logits(syn[c], net), y_syn[c])
        g_syn = torch.autograd.grad(loss_syn, params, create_graph=True)
        out.append(gradient_distance(g_real, g_syn, metric))
    return torch.stack(out)
