"""Per-group k-means in torch, vectorised over groups (classes), seeded by a generator.

Shared by the methods that cluster each class's rows: ``latent-prototypes`` (the generative
family: per-class centroids of autoencoder codes) and DREAM's representative real batches of the
matching family (:mod:`ddkit.methods.matching.dream`). Groups are padded to one ``(K, M, D)``
tensor with a validity mask ``(K, M)`` (:func:`ddkit.methods.coreset.selectors.pad_by_class`);
padding rows never count.

* :func:`initial_centres`: k-means++ starts (Arthur & Vassilvitskii, "k-means++: The Advantages
  of Careful Seeding", SODA 2007);
* :func:`kmeans_step`: one Lloyd iteration; :func:`kmeans`: starts, then Lloyd iterations until
  the centres stop moving (at most ``iterations``);
* :func:`representative_positions`: per group, rows taken round-robin over the clusters, the
  nearest to its centre first (DREAM's "representative" rows).
"""

from __future__ import annotations

import torch

from ddkit.errors import ConfigError

__all__ = ["initial_centres", "kmeans", "kmeans_step", "representative_positions"]


def kmeans_step(
    points: torch.Tensor, valid: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration for every group at once: ``points`` ``(K, M, D)`` with ``valid``
    ``(K, M)`` (padding rows are ignored), ``centres`` ``(K, n, D)``. Returns the new centres
    (each the mean of its members; a centre without members stays where it was) and the
    assignment ``(K, M)`` of each point to its nearest centre before the update."""
    dist = torch.cdist(points, centres)  # (K, M, n)
    assign = dist.argmin(2)
    member = torch.nn.functional.one_hot(assign, centres.shape[1]).to(points.dtype)
    member = member * valid.unsqueeze(-1).to(points.dtype)
    sums = member.transpose(1, 2) @ points  # (K, n, D)
    counts = member.sum(1).unsqueeze(-1)  # (K, n, 1)
    new = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return new, assign


def kmeans(
    points: torch.Tensor,
    valid: torch.Tensor,
    n: int,
    generator: torch.Generator,
    iterations: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, ``n`` k-means centres of the valid rows of ``points`` ``(K, M, D)``: k-means++
    starts drawn with ``generator`` (:func:`initial_centres`), then Lloyd iterations
    (:func:`kmeans_step`), vectorised over groups, until no centre moves or after
    ``iterations`` (stopping at a fixed point gives the same centres as running on). Returns
    ``(centres (K, n, D), assignment (K, M))``; a group needs at least ``n`` valid rows."""
    centres = initial_centres(points, valid, n, generator)
    for _ in range(iterations):
        new = kmeans_step(points, valid, centres)[0]
        if torch.equal(new, centres):
            break
        centres = new
    return centres, kmeans_step(points, valid, centres)[1]


def initial_centres(
    points: torch.Tensor, valid: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ starts (Arthur & Vassilvitskii, SODA 2007), every group at once: per group of
    ``points`` ``(K, M, D)``, a first valid row drawn uniformly, then each next one with
    probability proportional to its squared distance to the nearest row already drawn (all with
    ``generator``; uniformly again where every distance is 0). Returns ``(K, n, D)``."""
    counts = valid.sum(1)
    if int(counts.min()) < n:
        raise ConfigError(
            f"k-means with {n} centres needs at least {n} points per group; the smallest group "
            f"has {int(counts.min())}"
        )
    mask = valid.to(torch.float64).cpu()
    pick = torch.multinomial(mask, 1, generator=generator)  # (K, 1)
    picks = [pick]
    nearest = torch.full(valid.shape, float("inf"), dtype=torch.float64)
    for _ in range(1, n):
        last = _rows(points, pick.to(points.device))  # (K, 1, D)
        d2 = ((points - last) ** 2).sum(-1).double().cpu()
        nearest = torch.minimum(nearest, d2)
        weights = nearest * mask
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, mask)
        pick = torch.multinomial(weights, 1, generator=generator)
        picks.append(pick)
    return _rows(points, torch.cat(picks, 1).to(points.device)).clone()


def _rows(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``points[k, index[k, j]]`` for ``points`` ``(K, M, D)`` and ``index`` ``(K, n)``."""
    return points.gather(1, index.unsqueeze(-1).expand(-1, -1, points.shape[2]))


def representative_positions(
    points: torch.Tensor,
    valid: torch.Tensor,
    clusters: int,
    size: int,
    generator: torch.Generator,
    iterations: int = 50,
) -> torch.Tensor:
    """Per group, ``size`` distinct valid rows of ``points`` ``(K, M, D)`` that represent its
    ``clusters`` k-means clusters (:func:`kmeans`; DREAM, Liu et al., ICCV 2023): round-robin over
    the clusters, each cluster's members in order of distance to its centre -- first every
    cluster's nearest member, then every cluster's second nearest, and so on (within a round,
    nearest first); a cluster out of members drops out of later rounds. With ``clusters ==
    size`` and no empty cluster this is the row nearest each centre, as the authors' code
    picks. Returns positions ``(K, size)`` into ``M``; every group needs ``size`` valid rows
    (and ``clusters <= size``)."""
    smallest = int(valid.sum(1).min())
    if not 1 <= clusters <= size <= smallest:
        raise ConfigError(
            f"representative rows need 1 <= clusters ({clusters}) <= size ({size}) <= the "
            f"smallest group ({smallest} rows)"
        )
    centres, assign = kmeans(points, valid, clusters, generator, iterations)
    dist = (points - _rows(centres, assign)).pow(2).sum(-1)  # (K, M): to the own centre
    dist = dist.masked_fill(~valid, float("inf"))
    by_distance = dist.argsort(dim=1, stable=True)  # nearest first, per group
    sorted_assign = assign.gather(1, by_distance)
    member = torch.nn.functional.one_hot(sorted_assign, clusters).to(torch.int32)
    rank = (member.cumsum(1) * member).sum(-1) - 1  # place of each row within its cluster
    rank = rank.masked_fill(~valid.gather(1, by_distance), valid.shape[1])  # padding last
    order = rank.argsort(dim=1, stable=True)[:, :size]  # round by round, nearest first in a round
    return by_distance.gather(1, order)
