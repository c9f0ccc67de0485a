"""Which rows a pruning score keeps: the hardest (or easiest) ones, or coverage-centric selection.

* :func:`keep_extreme` -- the ``n`` rows with the highest hardness (``prefer="hard"``) or the
  lowest (``"easy"``), ties broken by a random order from the generator.
* :func:`ccs_select` -- CCS of Zheng et al., "Coverage-centric coreset selection for high
  pruning rates", ICLR 2023 (arXiv 2210.15809), Algorithm 1: drop the hardest ``beta`` fraction,
  split the rest into ``bins`` equal-width bins of the score, then walk the bins from the
  smallest to the largest, taking ``min(size, budget // bins_left)`` random rows from each, so
  the budget is spread evenly and what a small bin cannot use goes to the larger ones.
* :func:`keep_per_class` -- either of the two inside every class, ``ipc`` rows each, for the
  class-balanced :class:`~ddkit.methods.coreset.Selector` API.

Deviation from the CCS code: infinite scores (rows a proxy never learned, for forgetting) fall
into the outermost bin instead of breaking the bin edges.
"""

from __future__ import annotations

from typing import Literal

import torch

from ddkit.errors import ConfigError
from ddkit.meter import check_memory

__all__ = ["bin_of", "ccs_select", "check_ccs", "keep_extreme", "keep_per_class", "kept_count"]

Prefer = Literal["hard", "easy"]


def kept_count(fraction: float, total: int) -> int:
    """Rows kept at ``fraction`` of ``total`` (rounded, at least one); a fraction outside
    ``(0, 1]`` is a one-line :class:`ConfigError`."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"the kept fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * total))


def _random_order(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def keep_extreme(
    hardness: torch.Tensor, n: int, generator: torch.Generator, prefer: Prefer = "hard"
) -> torch.Tensor:
    """Positions of the ``n`` hardest rows of ``hardness`` ``(N,)`` (higher = harder), or the
    ``n`` easiest with ``prefer="easy"``, hardest (easiest) first; ties in random order."""
    if not 0 <= n <= len(hardness):
        raise ConfigError(f"cannot keep {n} of {len(hardness)} rows")
    perm = _random_order(len(hardness), generator)
    key = hardness[perm] if prefer == "hard" else -hardness[perm]
    return perm[torch.argsort(key, descending=True, stable=True)][:n]


def bin_of(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index in ``[0, bins)`` of every value, over ``bins`` equal-width bins between the
    smallest and largest finite value; ``-inf`` / ``inf`` go to the first / last bin."""
    finite = values[torch.isfinite(values)]
    if not len(finite):
        return torch.zeros(len(values), dtype=torch.long)
    lo, hi = finite.min(), finite.max()
    width = (hi - lo) / bins
    if width <= 0:
        return torch.zeros(len(values), dtype=torch.long)
    scaled = ((values.clamp(lo, hi) - lo) / width).floor().long()
    return scaled.clamp(0, bins - 1)


def _bin_quotas(sizes: torch.Tensor, budget: int) -> torch.Tensor:
    """CCS's budget split: bins from smallest to largest each take ``min(size, budget //
    bins_left)``; returns the quota of every bin. A loop over bins, never over rows."""
    quotas = torch.zeros_like(sizes)
    order = torch.argsort(sizes, stable=True)
    left = budget
    for i, b in enumerate(order.tolist()):
        take = min(int(sizes[b]), left // (len(order) - i))
        quotas[b] = take
        left -= take
    return quotas


def check_ccs(rows: int, beta: float, bins: int) -> None:
    """Before any score is computed: a one-line :class:`ConfigError` for a hard-pruning
    fraction outside ``[0, 1)`` or more score bins than the ``rows`` to prune."""
    if not 0 <= beta < 1:
        raise ConfigError(f"the CCS hard-pruning fraction beta must be in [0, 1), got {beta}")
    if not 1 <= bins <= rows:
        raise ConfigError(f"CCS takes 1 to {rows:,} score bins (the rows), got {bins:,}")


def ccs_select(
    hardness: torch.Tensor,
    n: int,
    generator: torch.Generator,
    *,
    beta: float = 0.0,
    bins: int = 50,
) -> torch.Tensor:
    """Positions of ``n`` rows chosen by coverage-centric selection (Zheng et al., ICLR 2023):
    the hardest ``floor(beta * N)`` rows of ``hardness`` ``(N,)`` are pruned first, then ``n``
    rows are sampled at random, stratified over ``bins`` equal-width score bins."""
    total = len(hardness)
    if not 0 <= beta < 1:
        raise ConfigError(f"the CCS hard-pruning fraction beta must be in [0, 1), got {beta}")
    if bins < 1:
        raise ConfigError(f"CCS needs at least one bin, got {bins}")
    check_memory(f"{bins:,} CCS score bins", 64 * bins, "use fewer bins")
    pruned = int(beta * total)
    order = keep_extreme(hardness, total, generator)  # hardest first, ties random
    pool = order[pruned:]
    if n > len(pool):
        raise ConfigError(
            f"CCS with beta={beta} leaves {len(pool)} rows, fewer than the {n} to keep; "
            "lower beta or keep fewer"
        )
    which = bin_of(hardness[pool], bins)
    counts = torch.bincount(which, minlength=bins)
    quotas = _bin_quotas(counts, n)
    # Order the rows bin by bin, at random inside a bin; keep the first quota[bin] of each bin.
    shuffled = _random_order(len(pool), generator)
    by_bin = shuffled[torch.argsort(which[shuffled], stable=True)]
    rank = torch.empty_like(by_bin)
    rank[by_bin] = torch.arange(len(pool)) - (torch.cumsum(counts, 0) - counts)[which[by_bin]]
    chosen = pool[rank < quotas[which]]
    if len(chosen) != n:  # _bin_quotas always fills the budget when the pool is large enough
        raise AssertionError(f"CCS chose {len(chosen)} rows instead of {n}")
    return chosen


def keep_per_class(
    hardness: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ipc: int,
    generator: torch.Generator,
    *,
    prefer: Prefer = "hard",
    ccs: bool = False,
    beta: float = 0.0,
    bins: int = 50,
) -> torch.Tensor:
    """Row indices ``(num_classes * ipc,)``, class by class: in each class the ``ipc`` rows
    :func:`keep_extreme` or (with ``ccs``) :func:`ccs_select` keeps. A class with fewer than
    ``ipc`` rows is a one-line :class:`ConfigError`."""
    picks = []
    hardness, labels = hardness.cpu(), labels.cpu()  # a selection's bookkeeping: on the CPU
    for c in range(num_classes):  # a loop over classes; the selection inside is vectorised
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) < ipc:
            raise ConfigError(
                f"class {c} has only {len(rows)} rows, {ipc} per class were asked for"
            )
        if ccs:
            pos = ccs_select(hardness[rows], ipc, generator, beta=beta, bins=bins)
        else:
            pos = keep_extreme(hardness[rows], ipc, generator, prefer)
        picks.append(rows[pos])
    return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)
