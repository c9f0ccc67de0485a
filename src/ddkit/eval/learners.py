"""Evaluation by the learners tabular and time-series users use (issue 39): each is trained on
a (synthetic) set's rows and tested on the real test split, reported as :func:`ddkit.eval.evaluate` reports
networks (an :class:`~ddkit.eval.evaluate.EvalReport` of one :class:`ModelResult` per learner).

Learners (scikit-learn; the names are ``--learners`` values):

* ``logreg``: multinomial logistic regression (L2, ``C=1``, lbfgs);
* ``knn``: k-nearest neighbours, ``k = min(5, smallest class count of the training set)``
  (at IPC 1 that is the 1-NN classifier);
* ``rf``: random forest, 100 trees;
* ``gb``: histogram gradient boosting (scikit-learn's LightGBM-style booster), with
  ``min_samples_leaf = clip(N // 10, 1, 20)`` (scikit-learn's 20 would leave a distilled set of
  a few rows per class a single leaf, a constant prediction);
* ``xgboost``: XGBoost's booster, an optional extra (``pip install 'ddkit[boosting]'``);
* ``rocket``: MiniRocket features (Dempster, Schmidt & Webb, "MiniRocket: A Very Fast (Almost)
  Deterministic Transform for Time Series Classification", KDD 2021; sktime's
  ``MiniRocketMultivariate``, 10,000 kernels) and a ridge classifier with its regularisation
  chosen by leave-one-out cross-validation over ``logspace(-3, 3, 10)``, as the paper; series
  only, extra ``timeseries``;
* networks of :mod:`ddkit.models`, through :func:`ddkit.eval.evaluate`: ``mlp`` under the
  ``tabular`` protocol, ``conv1d`` and ``resnet1d`` under the ``series`` protocol.

Deterministic learners run once; random ones (``rf``, ``gb``, ``xgboost``, ``rocket``, the
networks) run once per
seed of :func:`ddkit.eval.evaluate.run_seeds`, so the table shows mean ± std over seeds where the
learner is random. Rows are the set's stored rows (its normalised space), flattened (``rocket``
reads them as ``(N, D, L)`` series); soft labels are read as their argmax. Test rows are put in the same space as the set's.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.modalities import Modality, get_modality
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, require_extra
from ddkit.eval.evaluate import EvalReport, ModelResult, evaluate, run_seeds, test_in_set_space
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.levers import torch_threads_kept
from ddkit.registry import Registry

__all__ = [
    "LEARNERS",
    "NETWORK_LEARNERS",
    "Learner",
    "evaluate_learners",
    "learner_names",
    "warm_up",
]


@dataclass(frozen=True)
class Learner:
    """A classifier factory ``build(seed, ys) -> estimator`` (``fit`` / ``predict``), whether
    its result depends on the seed, the rows it reads: ``"flat"`` ``(N, F)`` or
    ``"series"`` ``(N, D, L)``, and ``warm_up``, where the learner has a cost paid once per
    process (a compilation), a call that pays it (:func:`warm_up`)."""

    build: Callable[[int, np.ndarray], Any]
    random: bool
    rows: str = "flat"
    warm_up: Callable[[], None] | None = None


LEARNERS: Registry[Learner] = Registry("learner")


def _knn(seed: int, y: np.ndarray) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=int(min(5, np.bincount(y).min())))


def _logreg(seed: int, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000)


def _rf(seed: int, y: np.ndarray) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)


def _gb(seed: int, y: np.ndarray) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    leaf = int(max(1, min(20, len(y) // 10)))  # the default 20 leaves a 10-row set one leaf
    return HistGradientBoostingClassifier(random_state=seed, min_samples_leaf=leaf)


def _xgboost(seed: int, y: np.ndarray) -> Any:
    xgb = require_extra("xgboost", "boosting", "the xgboost learner")
    return xgb.XGBClassifier(n_estimators=100, random_state=seed, n_jobs=1)


LEARNERS.add("logreg", Learner(_logreg, False), help="logistic regression (scikit-learn)")
LEARNERS.add("knn", Learner(_knn, False), help="k-nearest neighbours, k = min(5, rows per class)")
LEARNERS.add("rf", Learner(_rf, True), help="random forest, 100 trees (scikit-learn)")
LEARNERS.add("gb", Learner(_gb, True), help="histogram gradient boosting (scikit-learn)")
LEARNERS.add("xgboost", Learner(_xgboost, True), help="XGBoost (extra 'boosting')")


class _Rocket:
    """MiniRocket features of ``(N, D, L)`` series, then a ridge classifier (see the module
    docstring)."""

    def __init__(self, seed: int) -> None:
        from sklearn.linear_model import RidgeClassifierCV

        rocket = require_extra("sktime.transformations.panel.rocket", "timeseries", "rocket")
        self.transform = rocket.MiniRocketMultivariate(random_state=seed)
        self.ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Rocket:
        if x.shape[-1] < 9:
            raise ConfigError(
                f"the rocket learner needs series of 9 steps or more, got {x.shape[-1]}"
            )
        with torch_threads_kept():  # numba's OpenMP layer would change torch's threads
            self.ridge.fit(self.transform.fit_transform(x), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch_threads_kept():
            return self.ridge.predict(self.transform.transform(x))


def _warm_rocket() -> None:
    """One MiniRocket fit and prediction on a few short series: numba compiles MiniRocket's
    kernels on their first call in a process (from its disk cache after the first process)."""
    x = np.random.default_rng(0).standard_normal((8, 1, 16))
    _Rocket(0).fit(x, np.arange(8) % 2).predict(x)


LEARNERS.add(
    "rocket",
    Learner(lambda seed, y: _Rocket(seed), True, rows="series", warm_up=_warm_rocket),
    help="MiniRocket + ridge, series only (sktime; extra 'timeseries')",
)


@dataclass(frozen=True)
class RowReading:
    """How learners read a set's rows (a modality names one:
    :attr:`~ddkit.data.modalities.base.Modality.learner_rows`): flattened from dimension
    ``flatten_from`` (1: ``(N, F)`` vectors; 2: ``(N, D, L)`` series), z-normalised first or not
    (:func:`_znormalized`), and the protocol that trains a network learner on them."""

    flatten_from: int
    znormalise: bool
    protocol: EvalProtocol


#: The row readings (:class:`RowReading`) by name; a learner that reads ``"flat"`` rows takes
#: every set, the others only sets whose modality reads its rows the same way.
#: Their protocols are resolved once, at import.
READINGS = {
    "flat": RowReading(1, False, get_protocol("tabular")),
    "series": RowReading(2, True, get_protocol("series")),
}
#: Learners that are networks of :mod:`ddkit.models`, with the rows they read (the protocol
#: that trains them is the reading's).
NETWORK_LEARNERS = {"mlp": "flat", "conv1d": "series", "resnet1d": "series"}
#: The ``--learners`` default on tables (:attr:`~ddkit.data.modalities.base.Modality.learners`).
DEFAULT_LEARNERS = get_modality("table").learners
#: The ``--learners`` default on series.
SERIES_LEARNERS = get_modality("series").learners


def learner_names(
    text: str | Sequence[str] | None, modality: str | Modality = "table"
) -> list[str]:
    """``--learners`` values (comma-separated or a list; ``None``: the ``modality``'s own,
    :attr:`~ddkit.data.modalities.base.Modality.learners`), each checked before any training:
    an unknown one, or one that does not read the ``modality``'s rows, is a one-line
    :class:`ConfigError`."""
    kind = get_modality(modality) if isinstance(modality, str) else modality
    if text is None:
        return list(kind.learners)
    items = text.split(",") if isinstance(text, str) else [str(t) for t in text]
    names = [t.strip().lower() for t in items if t.strip()]
    valid = [*LEARNERS.names(), *NETWORK_LEARNERS]
    for n in names:
        if n not in valid:
            raise ConfigError(f"unknown learner {n!r}; valid: {', '.join(valid)}")
        reads = NETWORK_LEARNERS[n] if n in NETWORK_LEARNERS else LEARNERS.get(n).rows
        if reads not in ("flat", kind.learner_rows):
            raise ConfigError(f"learner {n!r} takes {reads}; this set holds {kind.name} rows")
    if not names:
        raise ConfigError(f"no learner given; valid: {', '.join(valid)}")
    return names


#: The learners whose one-time cost this process has paid (:func:`warm_up`).
_WARM: set[str] = set()


def warm_up(learners: str | Sequence[str] | None) -> None:
    """Pay the one-time cost (:attr:`Learner.warm_up`) of each of ``learners`` (comma-separated
    or a list; ``None``: none) that has one and has not paid it in this process, so that a
    learner timed after it is timed on its runs alone."""
    items = learners.split(",") if isinstance(learners, str) else learners or []
    for name in (n.strip().lower() for n in items):
        if name in NETWORK_LEARNERS or name in _WARM or not name:
            continue
        hook = LEARNERS.get(name).warm_up
        if hook is not None:
            hook()
        _WARM.add(name)


def _rows(x: torch.Tensor, reading: str = "flat") -> np.ndarray:
    """Stored rows as a learner reads them (:data:`READINGS`): flat ``(N, F)`` or series
    ``(N, D, L)``."""
    return x.detach().double().cpu().flatten(READINGS[reading].flatten_from).numpy()


def _fit_score(
    learner: Learner, seed: int, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray
) -> tuple[float, float]:
    """Train and test accuracy of one fit. scikit-learn's warning that a target with more
    classes than half its rows "could represent a regression problem" is silenced: at IPC 1
    every row of a set is its own class by design."""
    est = learner.build(seed, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater")
        est.fit(x, y)
    return float((est.predict(x) == y).mean()), float((est.predict(xt) == yt).mean())


def _znormalized(syn: SyntheticSet, test: ImageDataset) -> tuple[SyntheticSet, ImageDataset]:
    """``syn`` and ``test`` with every series z-normalised (:func:`ddkit.data.series.znormalize`)
    as every series learner sees them: a distilled series' level and scale are free (the
    matching network's instance norm ignores them), and would otherwise decide a k-NN or
    MiniRocket by amplitude alone. The set's series are z-normalised in real units and stored
    back in its normalised space; UCR series are z-normalised already, so real rows barely
    change."""
    from ddkit.data.series import znormalize

    shape = (1, -1) + (1,) * (syn.images.dim() - 2)
    mean = torch.tensor(syn.spec.mean, dtype=syn.images.dtype).view(shape)
    std = torch.tensor(syn.spec.std, dtype=syn.images.dtype).view(shape)
    stored = (znormalize(syn.images) - mean) / std  # z-normalising ignores the spec's affine map
    return replace(syn, images=stored), replace(test, images=znormalize(test.images))


def evaluate_learners(
    syn: SyntheticSet,
    test: ImageDataset,
    learners: str | Sequence[str] | None = None,
    *,
    runs: int = 5,
    seed: int = 0,
    epochs: int | None = None,
) -> EvalReport:
    """Train each of ``learners`` (default :data:`DEFAULT_LEARNERS`) on ``syn``'s rows and report
    its accuracy on the real ``test`` split; random learners run ``runs`` times (one seed each),
    deterministic ones once. ``epochs`` overrides the ``mlp`` learner's. Same seed => same report.
    The seconds reported leave out a learner's one-time cost (:func:`warm_up`).
    On series every learner (the networks too) sees each series z-normalised, set and test
    alike (:func:`_znormalized`).
    """
    kind = syn.spec.kind
    names = learner_names(learners, kind)
    if runs < 1:
        raise ConfigError(f"runs must be >= 1, got {runs}")
    reading = READINGS[kind.learner_rows]
    if reading.znormalise:
        syn, test = _znormalized(syn, test)
    warm_up(names)  # the seconds reported are the learners' runs, not a compilation
    t0 = time.perf_counter()
    protocol = reading.protocol
    report = EvalReport(protocol=protocol, lr=protocol.lr, num_train_images=len(syn))
    y, in_space = syn.hard_labels.cpu().numpy(), test_in_set_space(syn, test)
    yt = in_space.labels.cpu().numpy()
    for name in names:
        if name in NETWORK_LEARNERS:
            p = READINGS[NETWORK_LEARNERS[name]].protocol
            nets = evaluate(
                syn, test, p, models=[name], runs=runs, epochs=epochs, seed=seed, progress=False
            )
            report.results.append(nets.results[0])
            continue
        learner = LEARNERS.get(name)
        x, xt = _rows(syn.images, learner.rows), _rows(in_space.images, learner.rows)
        seeds = run_seeds(seed, runs) if learner.random else [seed]
        start = time.perf_counter()
        scores = [_fit_score(learner, s, x, y, xt, yt) for s in seeds]
        took = time.perf_counter() - start
        report.results.append(
            ModelResult(
                model=name,
                accuracies=[s[1] for s in scores],
                seeds=seeds,
                train_seconds=took,
                images_per_second=len(x) * len(seeds) / max(took, 1e-9),
                vectorized=False,
                train_accuracies=[s[0] for s in scores],
            )
        )
    report.seconds = time.perf_counter() - t0
    report.meta = {"seed": seed, "learners": names, "bytes": syn.storage_bytes()}
    return report
