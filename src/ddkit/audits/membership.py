"""Membership-inference attacks and the metrics the security literature reports for them.

Every attack returns one score per queried row, higher meaning "more likely a member":

* the loss attack (Yeom et al., CSF 2018, arXiv:1709.01604): minus the target network's
  cross-entropy on the row;
* LiRA, online (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022,
  arXiv:2112.03570): the target's logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` on the
  row is compared with two Gaussians fitted to the same statistic of *shadow* networks trained
  with the row (IN) and without it (OUT): ``log N(phi; mu_in, s_in) - log N(phi; mu_out,
  s_out)``. The means are per row; the variances are shared by all rows (the pooled within-row
  variance of the IN and of the OUT statistics), the paper's choice when there are few shadows.
  One query per row (the paper's augmented queries are not used).

Metrics (:func:`attack_metrics`): the ROC AUC and the true-positive rate at low false-positive
rates (0.1 % and 1 %: the largest TPR whose FPR is at most the level), each with a bootstrap
percentile interval (members and non-members resampled with replacement, separately, from a
``torch.Generator``); :func:`roc_curve` gives the whole curve for a log-log plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.errors import ConfigError, DataError
from ddkit.meter import check_memory

#: The false-positive rates whose TPR is reported.
DEFAULT_FPRS = (0.001, 0.01)


@torch.no_grad()
def membership_signals(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(phi, loss)`` of ``net`` (eval mode) on each labelled row: the logit-scaled confidence
    ``log p_y - log(1 - p_y)``, computed stably from the logits as ``z_y - logsumexp_{k != y}
    z_k``, and the cross-entropy ``-log p_y``."""
    net.eval()
    phis, losses = [], []
    for start in range(0, len(images), batch_size):
        z = net(images[start : start + batch_size]).float()
        y = labels[start : start + batch_size]
        z_y = z.gather(1, y[:, None]).squeeze(1)
        others = z.scatter(1, y[:, None], float("-inf"))
        phis.append(z_y - torch.logsumexp(others, 1))
        losses.append(F.cross_entropy(z, y, reduction="none"))
    return torch.cat(phis).cpu(), torch.cat(losses).cpu()


def loss_attack(loss: torch.Tensor) -> torch.Tensor:
    """The loss attack's scores: minus the per-row loss."""
    return -loss


def _pooled_variance(values: torch.Tensor, mask: torch.Tensor, means: torch.Tensor) -> float:
    """The within-row variance of ``values[mask]`` around each row's mean, pooled over rows
    (degrees of freedom: the number of values minus the number of rows with any)."""
    resid = torch.where(mask, values - means, torch.zeros_like(values))
    dof = int(mask.sum()) - int(mask.any(0).sum())
    if dof < 1:
        raise DataError("LiRA needs at least two IN and two OUT shadow values for some row")
    return max(float(resid.pow(2).sum()) / dof, 1e-12)


def lira_online(
    target_phi: torch.Tensor, shadow_phi: torch.Tensor, shadow_in: torch.Tensor
) -> torch.Tensor:
    """Online LiRA scores (module docstring) of the target's ``phi`` (``(n,)``), given the
    shadows' ``phi`` on the same rows (``(S, n)``) and whether each row was IN each shadow's
    training data (``(S, n)`` bool). Every row needs at least one IN and one OUT shadow."""
    if shadow_phi.shape != shadow_in.shape or shadow_phi.shape[1:] != target_phi.shape:
        raise DataError(
            f"LiRA: shadow statistics {tuple(shadow_phi.shape)}, IN mask "
            f"{tuple(shadow_in.shape)} and target {tuple(target_phi.shape)} do not match"
        )
    shadow_in = shadow_in.bool()
    n_in, n_out = shadow_in.sum(0), (~shadow_in).sum(0)
    if int(n_in.min()) < 1 or int(n_out.min()) < 1:
        raise DataError("LiRA (online) needs every row IN at least one shadow and OUT of another")
    phi = shadow_phi.double()
    mu_in = torch.where(shadow_in, phi, 0.0).sum(0) / n_in
    mu_out = torch.where(~shadow_in, phi, 0.0).sum(0) / n_out
    var_in = _pooled_variance(phi, shadow_in, mu_in)
    var_out = _pooled_variance(phi, ~shadow_in, mu_out)
    x = target_phi.double()
    log_in = -0.5 * (x - mu_in).pow(2) / var_in - 0.5 * math.log(var_in)
    log_out = -0.5 * (x - mu_out).pow(2) / var_out - 0.5 * math.log(var_out)
    return (log_in - log_out).float()


# ============================================================================ the metrics
def _split(scores: torch.Tensor, is_member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores, is_member = scores.reshape(-1).double(), is_member.reshape(-1).bool()
    if len(scores) != len(is_member):
        raise DataError(f"{len(scores)} scores but {len(is_member)} membership labels")
    if not torch.isfinite(scores).all():
        raise DataError("attack scores contain NaN or infinite values")
    pos, neg = scores[is_member], scores[~is_member]
    if len(pos) == 0 or len(neg) == 0:
        raise DataError("membership metrics need at least one member and one non-member")
    return pos, neg


def _auc_and_tpr(
    pos: torch.Tensor, neg: torch.Tensor, fprs: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched over the leading dimension: ``pos`` ``(B, P)`` and ``neg`` ``(B, N)`` scores ->
    the AUC ``(B,)`` (ties count one half: the Mann-Whitney statistic) and the TPR at each FPR
    level ``(B, len(fprs))``."""
    neg_sorted = neg.sort(dim=1).values.contiguous()
    below = torch.searchsorted(neg_sorted, pos.contiguous(), side="left")
    not_above = torch.searchsorted(neg_sorted, pos.contiguous(), side="right")
    auc = (below + not_above).double().mean(1) / (2 * neg.shape[1])
    tprs = []
    for level in fprs:
        allowed = math.floor(level * neg.shape[1] + 1e-9)  # false positives allowed
        if allowed >= neg.shape[1]:
            tprs.append(torch.ones(len(pos), dtype=torch.double))
            continue
        # predict "member" above the (allowed+1)-th largest non-member score
        threshold = neg_sorted[:, neg.shape[1] - 1 - allowed]
        tprs.append((pos > threshold[:, None]).double().mean(1))
    return auc, torch.stack(tprs, 1)


def roc_curve(scores: torch.Tensor, is_member: torch.Tensor) -> tuple[list[float], list[float]]:
    """``(fpr, tpr)`` of the attack at every distinct threshold, from ``(0, 0)`` to ``(1, 1)``
    (members: ``is_member``; predicted member when the score is at least the threshold)."""
    pos, neg = _split(scores, is_member)
    values = torch.cat([pos, neg])
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    order = values.argsort(descending=True)
    values, labels = values[order], labels[order]
    tp, fp = labels.cumsum(0), (1 - labels).cumsum(0)
    last = torch.ones(len(values), dtype=torch.bool)  # last row of each run of tied scores
    last[:-1] = values[1:] != values[:-1]
    fpr = torch.cat([torch.zeros(1), fp[last] / len(neg)])
    tpr = torch.cat([torch.zeros(1), tp[last] / len(pos)])
    return fpr.tolist(), tpr.tolist()


def check_fprs(fprs: Sequence[float]) -> list[float]:
    """The FPR levels as floats in ``(0, 1)``, else a one-line :class:`ConfigError`."""
    levels = [float(f) for f in fprs]
    if not levels or any(not 0 < f < 1 for f in levels):
        raise ConfigError(f"FPR levels must lie in (0, 1), got {list(fprs)}")
    return levels


def fpr_key(level: float) -> str:
    """The results-file key of the TPR at FPR ``level``: ``"tpr@0.1%"``."""
    return f"tpr@{100 * level:g}%"


def check_bootstrap(bootstrap: int, rows: int) -> None:
    """Refuse (one line) a resample count that is no integer >= 0, or whose resamples of
    ``rows`` scores (indices and gathered scores) pass the memory budget."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ConfigError(f"bootstrap must be an integer >= 0, got {bootstrap!r}")
    check_memory(
        f"{bootstrap:,} bootstrap resamples of {rows:,} rows", 32 * bootstrap * rows,
        "use fewer --bootstrap resamples",
    )  # fmt: skip


def attack_metrics(
    scores: torch.Tensor,
    is_member: torch.Tensor,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    bootstrap: int = 200,
    confidence: float = 0.95,
    generator: torch.Generator,
) -> dict[str, Any]:
    """AUC and TPR at each FPR level of an attack's ``scores``, each as ``{"value", "low",
    "high"}`` with a ``confidence`` bootstrap percentile interval from ``bootstrap`` resamples
    (``0``: no interval); the counts of members and non-members."""
    levels = check_fprs(fprs)
    check_bootstrap(bootstrap, len(scores))
    pos, neg = _split(scores, is_member)
    auc, tpr = _auc_and_tpr(pos[None], neg[None], levels)
    values = {"auc": float(auc[0]), **{fpr_key(f): float(tpr[0, i]) for i, f in enumerate(levels)}}
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap:
        pick_pos = torch.randint(len(pos), (bootstrap, len(pos)), generator=generator)
        pick_neg = torch.randint(len(neg), (bootstrap, len(neg)), generator=generator)
        b_auc, b_tpr = _auc_and_tpr(pos[pick_pos], neg[pick_neg], levels)
        tail = (1 - confidence) / 2
        q = torch.tensor([tail, 1 - tail], dtype=torch.double)
        draws = torch.cat([b_auc[:, None], b_tpr], 1)
        bounds = torch.quantile(draws, q, dim=0)
        for i, key in enumerate(values):
            intervals[key] = (float(bounds[0, i]), float(bounds[1, i]))
    out: dict[str, Any] = {"members": len(pos), "non_members": len(neg)}
    for key, value in values.items():
        low, high = intervals.get(key, (None, None))
        out[key] = {"value": value, "low": low, "high": high}
    return out
