"""Score-based data pruning as coreset selectors: ``el2n``, ``grand``, ``margin``, ``dyn-unc``.

Each selector trains ``seeds`` proxy networks (:mod:`ddkit.methods.coreset.records`, cached and
reused across IPCs and kept fractions), turns their records into one score per row
(:mod:`ddkit.methods.coreset.scores`) and keeps, in every class, the ``ipc`` hardest rows
(``prefer="easy"``: the easiest), or with ``ccs=True`` the rows coverage-centric selection
picks (:mod:`ddkit.methods.coreset.ccs`). :func:`prune` keeps a fraction of the whole train
split instead (not class-balanced, as in the pruning papers); ``forgetting`` is available there
as a score too (its class-balanced selector is ``forgetting`` in
:mod:`ddkit.methods.coreset.selectors`).

The seeds of the proxy runs are derived from the selection seed, so the same seed gives the
same scores and the same rows. Papers: see :mod:`ddkit.methods.coreset.scores`; EL2N and GraNd
are read after ``epochs_net`` epochs (the paper's early epoch), the other scores over all of them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, ClassVar

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.errors import ConfigError
from ddkit.meter import check_memory
from ddkit.methods.base import MethodConfig, register_method
from ddkit.methods.config import AT_LEAST_ONE, DEVICE, POSITIVE, Alias, interval, one_of
from ddkit.methods.coreset.base import Selector
from ddkit.methods.coreset.ccs import (
    ccs_select,
    check_ccs,
    keep_extreme,
    keep_per_class,
    kept_count,
)
from ddkit.methods.coreset.records import ProxyRecipe, proxy_records
from ddkit.methods.coreset.scores import SCORES, hardness, score_named
from ddkit.rng import derive_seed, draw_seed

__all__ = [
    "SCORE_SELECTORS",
    "ScoreConfig",
    "ScoreSelector",
    "check_pruning_method",
    "prune",
    "prune_named",
    "pruning_methods",
    "pruning_scores",
]

TEST_SCORE_CACHE = os.path.join(tempfile.gettempdir(), "ddkit-test-scores")


@dataclasses.dataclass(frozen=True)
class ScoreConfig(MethodConfig):
    """Options of every score selector (proxy training, which end to keep, CCS, the cache)."""

    model: str = "convnet"
    epochs_net: int = 10
    lr_net: float = 0.01
    batch_net: int = 256
    seeds: int = 1  # independent proxy runs the score is averaged over
    window: int = 3  # dynamic uncertainty's J (epochs per window)
    prefer: str = "hard"  # keep the hardest rows, or "easy"
    ccs: bool = False
    ccs_beta: float = 0.0
    ccs_bins: int = 50
    score_cache: str = "runs/scores"  # "" keeps nothing on disk
    device: str = "auto"  # "auto": where the training data lives

    rules = {
        "epochs_net": AT_LEAST_ONE,
        "lr_net": POSITIVE,
        "batch_net": AT_LEAST_ONE,
        "seeds": AT_LEAST_ONE,
        "window": interval(2),
        "prefer": one_of("hard", "easy"),
        "ccs_beta": interval(0, 1, high_open=True),
        "ccs_bins": AT_LEAST_ONE,
        "device": DEVICE,
    }
    aliases = {"epochs": Alias("epochs_net"), "lr": Alias("lr_net")}

    def recipe(self) -> ProxyRecipe:
        return ProxyRecipe(self.model, self.epochs_net, self.lr_net, self.batch_net)


def pruning_scores(
    train: ImageDataset, score: str, config: ScoreConfig, generator: torch.Generator
) -> torch.Tensor:
    """One float64 value of ``score`` per row of ``train`` (its own orientation: see
    :data:`~ddkit.methods.coreset.scores.SCORES`), averaged over ``config.seeds`` proxy runs
    whose seeds are derived from one draw of ``generator``; records past the memory budget are
    refused before the first proxy network is trained."""
    check_memory(
        f"the records of {config.seeds:,} proxy runs of {config.epochs_net} epochs on "
        f"{len(train):,} rows",
        32 * config.seeds * (config.epochs_net + 1) * len(train),
        "use fewer --seeds or --epochs",
    )
    base = draw_seed(generator)
    seeds = [derive_seed(base, "proxy", s) for s in range(config.seeds)]
    records = proxy_records(
        train, config.recipe(), seeds, cache=config.score_cache or None, device=config.device
    )
    return score_named(score).compute(records, config.window)


def _keep_per_class(
    hard: torch.Tensor,
    train: ImageDataset,
    ipc: int,
    generator: torch.Generator,
    cfg: ScoreConfig,
) -> torch.Tensor:
    """:func:`~ddkit.methods.coreset.ccs.keep_per_class` with ``cfg``'s end and CCS options."""
    return keep_per_class(
        hard,
        train.labels,
        train.spec.num_classes,
        ipc,
        generator,
        prefer=cfg.prefer,
        ccs=cfg.ccs,
        beta=cfg.ccs_beta,
        bins=cfg.ccs_bins,
    )


class ScoreSelector(Selector):
    """Shared part of the score selectors; a subclass sets ``name`` and ``score``."""

    score: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = ScoreConfig
    test_overrides: ClassVar[dict[str, Any]] = {
        "epochs_net": 2,
        "window": 2,
        "score_cache": TEST_SCORE_CACHE,
    }

    def select(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        hard = hardness(pruning_scores(train, self.score, cfg, generator), SCORES[self.score].hard)
        return _keep_per_class(hard, train, ipc, generator, cfg)


@dataclasses.dataclass(frozen=True)
class EarlyScoreConfig(ScoreConfig):
    """EL2N's and GraNd's: read early in training (4 epochs), averaged over 4 proxy runs."""

    epochs_net: int = 4
    seeds: int = 4


SCORE_SELECTORS: dict[str, type[ScoreSelector]] = {}


def _selector(cls: type[ScoreSelector]) -> type[ScoreSelector]:
    SCORE_SELECTORS[cls.score] = cls
    return cls


@register_method
@_selector
class EL2NSelector(ScoreSelector):
    """el2n: per class, the rows with the largest error L2 norm early in training.

    Paul et al., NeurIPS 2021 (arXiv 2107.07075); averaged over ``seeds`` proxy runs."""

    name = score = "el2n"

    Config = EarlyScoreConfig


@register_method
@_selector
class GraNdSelector(ScoreSelector):
    """grand: per class, the rows with the largest last-layer gradient norm early in training.

    Paul et al., NeurIPS 2021 (arXiv 2107.07075); on the logits, averaged over ``seeds`` runs."""

    name = score = "grand"

    Config = EarlyScoreConfig


@register_method
@_selector
class MarginSelector(ScoreSelector):
    """margin: per class, the rows with the smallest accumulated margin over epochs.

    The area under the margin of Pleiss et al., NeurIPS 2020 (arXiv 2001.10528)."""

    name = score = "margin"


@register_method
@_selector
class DynamicUncertaintySelector(ScoreSelector):
    """dyn-unc: per class, the rows whose true-class probability varies most over epochs.

    Dynamic uncertainty, He et al., CVPR 2024 workshops (arXiv 2306.05175)."""

    name = score = "dyn-unc"

    @dataclasses.dataclass(frozen=True)
    class Config(ScoreConfig):
        def check(self) -> None:
            if self.window > self.epochs_net:
                raise ConfigError(
                    f"window={self.window} needs at least as many epochs, got epochs_net="
                    f"{self.epochs_net}"
                )


@_selector
class ForgettingScoreSelector(ScoreSelector):
    """Forgetting events as a pruning score (for :func:`prune` and CCS; the registered
    class-balanced selector is ``forgetting``)."""

    name = "forgetting-score"
    score = "forgetting"


def score_config(score: str, **options: Any) -> ScoreConfig:
    """The config of ``score``'s selector with ``options``; unknown names raise one line."""
    score_named(score)
    cls = SCORE_SELECTORS[score]
    return cls.Config(**cls.Config.upgrade(options))


def prune(
    train: ImageDataset,
    score: str,
    *,
    keep: float | None = None,
    ipc: int | None = None,
    seed: int = 0,
    **options: Any,
) -> torch.Tensor:
    """Row indices of ``train`` kept by ``score``: a fraction ``keep`` of all rows, or ``ipc``
    rows per class (give exactly one). ``options`` are :class:`ScoreConfig` fields (``prefer``,
    ``ccs``, ``ccs_beta``, ``ccs_bins``, ``seeds``, ``epochs_net``, ``score_cache`` ...).
    Everything is checked before a proxy network is trained. Same seed => same rows."""
    cfg = score_config(score, **options)
    if (keep is None) == (ipc is None):
        raise ConfigError("give either a kept fraction or an IPC, not both")
    if cfg.ccs:
        check_ccs(len(train), cfg.ccs_beta, cfg.ccs_bins)
    if ipc is not None:
        train.check_ipc(ipc)
    else:
        n = kept_count(float(keep), len(train))
        if cfg.ccs and n > len(train) - int(cfg.ccs_beta * len(train)):
            raise ConfigError(f"ccs_beta={cfg.ccs_beta} prunes too many rows to keep {n}")
    generator = torch.Generator().manual_seed(int(seed))
    hard = hardness(pruning_scores(train, score, cfg, generator), SCORES[score].hard)
    if ipc is not None:
        return _keep_per_class(hard, train, ipc, generator, cfg)
    if cfg.ccs:
        return ccs_select(hard, n, generator, beta=cfg.ccs_beta, bins=cfg.ccs_bins)
    return keep_extreme(hard, n, generator, cfg.prefer)


RANDOM = "random"
CCS_SUFFIX = "-ccs"


def pruning_methods() -> list[str]:
    """Names :func:`prune_named` takes: ``random``, every score, and every score with
    ``-ccs`` (coverage-centric selection on top of it)."""
    return [RANDOM, *sorted(SCORES), *(f"{s}{CCS_SUFFIX}" for s in sorted(SCORES))]


def check_pruning_method(name: str) -> None:
    """A one-line :class:`ConfigError` for a name :func:`prune_named` does not take."""
    if name not in pruning_methods():
        raise ConfigError(f"unknown pruning method {name!r}; valid: {', '.join(pruning_methods())}")


def prune_named(
    train: ImageDataset, method: str, keep: float, *, seed: int = 0, **options: Any
) -> torch.Tensor:
    """Row indices of ``train`` keeping a fraction ``keep`` by ``method``
    (:func:`pruning_methods`): ``random`` keeps uniformly random rows (the pruning papers'
    baseline, not class-balanced), a score name its hardest rows (:func:`prune`), and
    ``<score>-ccs`` coverage-centric selection over that score. Same seed => same rows."""
    check_pruning_method(method)
    if method == RANDOM:
        n = kept_count(float(keep), len(train))
        unused = sorted(set(options) - {"score_cache"})  # no scores, so nothing to cache
        if unused:
            raise ConfigError(f"random pruning takes no options, got {', '.join(unused)}")
        return torch.randperm(len(train), generator=torch.Generator().manual_seed(int(seed)))[:n]
    if method.endswith(CCS_SUFFIX):
        options = {**options, "ccs": True}
    return prune(train, method.removesuffix(CCS_SUFFIX), keep=keep, seed=seed, **options)
