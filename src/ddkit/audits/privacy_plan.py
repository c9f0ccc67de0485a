"""What the privacy audit trains (:mod:`ddkit.audits.privacy`): the sources that turn member
rows into a network (:class:`Source`, :func:`privacy_sources`), the pool of training rows
(:func:`pool_rows`), and the members of every network, the target's and the shadows'
(:func:`membership_masks`), checked before any work (:func:`check_members`,
:func:`plan_membership`), and what it will train (:func:`privacy_plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ddkit.audits.estimate import AuditPlan, DistillJob, NetworkJob
from ddkit.audits.membership import check_bootstrap
from ddkit.data.dataset import DatasetSplits
from ddkit.errors import ConfigError, require_extra
from ddkit.meter import check_memory
from ddkit.methods import method_names
from ddkit.rng import derive_seed


# ============================================================================ sources
@dataclass(frozen=True)
class Source:
    """One way to turn member rows into a network (:mod:`ddkit.audits.privacy`): ``kind`` is
    ``full``, ``dp``, ``random`` or ``distilled``."""

    kind: str
    method: str | None = None
    ipc: int | None = None
    epsilon: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "full":
            return "full"
        if self.kind == "dp":
            return f"dp/eps{self.epsilon:g}"
        return f"{self.method}/ipc{self.ipc}"


def privacy_sources(
    methods: Sequence[str],
    ipcs: Sequence[int],
    *,
    dp_epsilons: Sequence[float] = (),
    full: bool = True,
) -> list[Source]:
    """The sources to audit: ``full`` (with ``full``), DP-SGD at each epsilon, and per IPC a
    random real subset and each method's distilled set (``random`` among ``methods`` adds
    nothing: it is always there)."""
    sources = [Source("full")] if full else []
    sources += [Source("dp", epsilon=float(e)) for e in dp_epsilons]
    for ipc in ipcs:
        sources.append(Source("random", "random", int(ipc)))
        sources += [
            Source("distilled", m, int(ipc)) for m in method_names(methods) if m != "random"
        ]
    if not sources:
        raise ConfigError("nothing to audit: give methods, DP epsilons or the full data")
    return sources


# ============================================================================ members
def pool_rows(labels: torch.Tensor, pool: int | None, *, seed: int) -> torch.Tensor:
    """The pool's row indices (sorted): all rows, or about ``pool`` of them with every class
    keeping its share; each class trimmed to an even count by dropping one random row."""
    g = torch.Generator().manual_seed(derive_seed(seed, "privacy-pool"))
    share = 1.0 if pool is None else pool / len(labels)
    if pool is not None and not 0 < pool <= len(labels):
        raise ConfigError(f"pool must be in 1..{len(labels)} rows, got {pool}")
    rows = []
    for c in torch.unique(labels).tolist():
        ix = torch.nonzero(labels == c).flatten()
        ix = ix[torch.randperm(len(ix), generator=g)]
        keep = int(round(share * len(ix)))
        rows.append(ix[: keep - keep % 2])
    return torch.cat(rows).sort().values


def _stratified_half(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random half of every class's rows (each class has an even count), as a bool mask."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        ix = torch.nonzero(labels == c).flatten()
        mask[ix[torch.randperm(len(ix), generator=g)[: len(ix) // 2]]] = True
    return mask


def membership_masks(labels: torch.Tensor, shadows: int, *, seed: int) -> torch.Tensor:
    """``(1 + shadows, n)`` bool: row 0 the target's members (a stratified half), then the
    shadows' in complementary pairs of stratified halves (:mod:`ddkit.audits.privacy`).
    ``shadows``: 0, or an even number >= 4."""
    bad = isinstance(shadows, bool) or not isinstance(shadows, int)
    if bad or shadows % 2 or shadows == 2 or shadows < 0:
        raise ConfigError(
            f"shadows must be 0 (no LiRA) or an even number >= 4 (every row IN two and OUT of "
            f"two, for LiRA's variances), got {shadows!r}"
        )
    check_memory(
        f"the membership masks of {shadows:,} shadow networks", 2 * (1 + shadows) * len(labels),
        "use fewer --shadows",
    )  # fmt: skip
    g = torch.Generator().manual_seed(derive_seed(seed, "privacy-masks"))
    masks = [_stratified_half(labels, g)]
    for _ in range(shadows // 2):
        half = _stratified_half(labels, g)
        masks += [half, ~half]
    return torch.stack(masks)


def check_members(labels: torch.Tensor, num_classes: int, ipcs: Sequence[int]) -> None:
    """A one-line :class:`ConfigError` when a class of the pool has no non-members or too few
    members for the largest IPC (members: half of every class)."""
    counts = torch.bincount(labels, minlength=num_classes)
    smallest = int(counts.min())
    if smallest < 2:
        raise ConfigError(
            f"class {int(counts.argmin())} has {smallest} rows in the pool; membership inference "
            "needs members and as many non-members of every class: raise --pool"
        )
    if ipcs and max(ipcs) > smallest // 2:
        raise ConfigError(
            f"IPC {max(ipcs)} exceeds the {smallest // 2} members of class "
            f"{int(counts.argmin())} (half of the pool); lower --ipc or raise --pool"
        )


def plan_membership(
    splits: DatasetSplits,
    sources: Sequence[Source],
    *,
    shadows: int,
    pool: int | None,
    seed: int,
    bootstrap: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool's rows and the networks' membership masks (:func:`pool_rows`,
    :func:`membership_masks`), once every setting is checked: a one-line error before any
    work for too few rows, a bad shadow or bootstrap count, shadow networks whose statistics
    do not fit the memory budget, or DP-SGD without opacus."""
    if any(s.kind == "dp" for s in sources):
        require_extra("opacus", "privacy", "DP-SGD")
    rows = pool_rows(splits.train.labels, pool, seed=seed)
    labels = splits.train.labels[rows]
    check_members(labels, splits.spec.num_classes, [s.ipc for s in sources if s.ipc])
    check_bootstrap(bootstrap, len(rows))
    nets = len(sources) * (1 + (shadows if isinstance(shadows, int) and shadows > 0 else 0))
    check_memory(  # every network's phi and loss on every pool row, stacked per source
        f"the statistics of {nets:,} target and shadow networks on {len(rows):,} pool rows",
        2 * 4 * 2 * nets * len(rows), "use fewer --shadows or a smaller --pool",
    )  # fmt: skip
    return rows, membership_masks(labels, shadows, seed=seed)


# ============================================================================ the plan
def privacy_plan(
    sources: Sequence[Source],
    masks: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    full_epochs: int,
    iterations: Any = None,
    quick: dict[str, Any] | None = None,
) -> AuditPlan:
    """What the privacy audit trains (:class:`~ddkit.audits.estimate.AuditPlan`): per source
    one network per row of ``masks`` (the target and the shadows), each distilled source
    distilling one set per network from its members."""
    from ddkit.audits.base import iterations_of

    count, members = len(masks), int(masks[0].sum())
    nets, distils = [], []
    for s in sources:
        if s.kind in ("full", "dp"):
            nets.append(NetworkJob(s.name, count, full_epochs, members))
            continue
        nets.append(NetworkJob(s.name, count, epochs, int(s.ipc) * num_classes))
        if s.kind == "distilled":
            distils.append(DistillJob(s.method, s.ipc, iterations_of(iterations, s.method, s.ipc),
                                      count))  # fmt: skip
    return AuditPlan("privacy", tuple(nets), tuple(distils), quick or None)
