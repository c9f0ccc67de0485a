"""Coreset selection: a :class:`Selector` returns indices into the real set (random, herding,
k-center, forgetting), evaluated by the same code as distilled sets.

Score-based pruning sits beside them: ``scores.py`` (EL2N, GraNd, accumulated margin,
forgetting, dynamic uncertainty as pure functions), ``records.py`` (proxy training records,
cached), ``ccs.py`` (hardest / easiest rows and coverage-centric selection), ``pruning.py`` (the
``el2n``, ``grand``, ``margin``, ``dyn-unc`` selectors and :func:`prune`) and ``cli.py``
(``ddkit prune``).
"""

from ddkit.methods.coreset.base import RandomSelector, Selector
from ddkit.methods.coreset.ccs import ccs_select, keep_extreme, keep_per_class
from ddkit.methods.coreset.pruning import ScoreConfig, ScoreSelector, prune, pruning_scores
from ddkit.methods.coreset.records import ProxyRecipe, Records, proxy_records
from ddkit.methods.coreset.scores import (
    SCORES,
    area_under_margin,
    dynamic_uncertainty,
    el2n,
    grand,
)
from ddkit.methods.coreset.selectors import (
    FeatureNetRecipe,
    ForgettingSelector,
    HerdingSelector,
    KCenterSelector,
    train_feature_net,
)

__all__ = [
    "SCORES",
    "FeatureNetRecipe",
    "ForgettingSelector",
    "HerdingSelector",
    "KCenterSelector",
    "ProxyRecipe",
    "RandomSelector",
    "Records",
    "ScoreConfig",
    "ScoreSelector",
    "Selector",
    "area_under_margin",
    "ccs_select",
    "dynamic_uncertainty",
    "el2n",
    "grand",
    "keep_extreme",
    "keep_per_class",
    "proxy_records",
    "prune",
    "pruning_scores",
    "train_feature_net",
]
