"""Time series as datasets (issue 39): the UCR / UEA classification sets that ship inside
sktime's wheel, and your own arrays.

A series of ``L`` steps with ``D`` channels is stored in the ``(D, 1, L)`` layout of
:mod:`ddkit.data.spec`, standardised per channel over all steps with train-split statistics
(the UCR sets are already z-normalised series by series; ddkit does not normalise a series by
its own statistics, so a distilled series keeps its level and scale). The series learners of
``ddkit evaluate --learners`` z-normalise every series, set and test alike (:func:`znormalize`):
a distilled series' amplitude is free under the matching network's instance norm, so do the
same before a learner of your own.

Input rules (one clear line, never a silent guess): every series of a dataset has one length
and one channel count (series of unequal length are refused: resample, pad or truncate them
first); a missing (NaN) or infinite value is refused with the row and step where it is (fill,
interpolate or drop that series first), and so is a value beyond the float32 range of stored rows (rescale those series); a
series needs at least 2 steps; a series needs its one label.

Datasets (the extra ``timeseries``: sktime reads the ``.ts`` files in its wheel, no download):
``gunpoint``, ``italypowerdemand``, ``arrowhead``, ``osuleaf`` (univariate) and
``basicmotions`` (6 channels), each with its published train / test split (Dau et al., "The
UCR Time Series Archive", IEEE/CAA JAS 2019; Bagnall et al., "The UEA multivariate time series
classification archive, 2018", arXiv:1811.00075). Your own arrays: :func:`from_series`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ddkit.data.builtin import RawData, register_dataset
from ddkit.data.dataset import ArrayExtras, DatasetSplits, from_arrays
from ddkit.data.table import encode_target
from ddkit.errors import DataError, require_extra

__all__ = ["UCR_SETS", "from_series", "series_array"]

SeriesInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor | Sequence[float]]


def _numpy(values: object) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _stack_rows(values: Sequence[object], what: str) -> np.ndarray:
    """Rows given one by one (each ``(L,)`` or ``(D, L)``), stacked; unequal shapes refused."""
    rows = [_numpy(r) for r in values]
    if not rows:
        raise DataError(f"{what}: no series given")
    first = rows[0].shape
    for i, r in enumerate(rows):
        if r.shape != first:
            what_differs = "length" if r.shape[:-1] == first[:-1] else "shape"
            raise DataError(
                f"{what}: series of unequal {what_differs} (row {i}: {r.shape}, row 0: {first}); "
                "resample, pad or truncate them to one length first"
            )
    return np.stack(rows)


def series_array(values: SeriesInput, what: str = "series") -> np.ndarray:
    """Series as float64 ``(N, D, L)``, from an array ``(N, L)`` / ``(N, D, L)`` or a sequence of
    rows ``(L,)`` / ``(D, L)``, by the module's input rules (unequal lengths, missing values and
    non-numbers are a one-line :class:`DataError`)."""
    if isinstance(values, torch.Tensor | np.ndarray) and _numpy(values).dtype != object:
        arr = _numpy(values)
    else:
        arr = _stack_rows(list(values), what)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise DataError(f"{what} must have shape (N, L) or (N, D, L), got {arr.shape}")
    if len(arr) == 0:
        raise DataError(f"{what}: no series given")
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.shape[2] < 2:
        raise DataError(f"{what}: a series needs at least 2 steps, got {arr.shape[2]}")
    arr = arr.astype(np.float64, copy=False)
    top = float(np.finfo(np.float32).max)
    bad, kind = ~np.isfinite(arr), "missing (NaN) or infinite values"
    fix = "fill, interpolate or drop those series first"
    if not bad.any() and (arr.max() > top or arr.min() < -top):
        bad, kind = (arr > top) | (arr < -top), "values beyond the float32 range of stored rows"
        fix = "rescale them or drop those series first"
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=(1, 2)))
        step = int(np.flatnonzero(bad[rows[0]].any(axis=0))[0])
        raise DataError(
            f"{what}: {len(rows)} series hold {kind} (first: row {rows[0]}, step {step}); {fix}"
        )
    return arr


def znormalize(x: torch.Tensor) -> torch.Tensor:
    """Every series of ``x`` (its last dimension, e.g. ``(N, D, 1, L)``) shifted and scaled to
    zero mean and unit (population) standard deviation, channel by channel: the UCR archive's
    convention and ROCKET's own normalisation. A constant series becomes zeros."""
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, unbiased=False, keepdim=True)
    return (x - mean) / std.clamp_min(1e-8)


def _check_labels(x: np.ndarray, y: object, split: str) -> None:
    """One label per series of ``x``, else a one-line :class:`DataError`."""
    count = len(_numpy(y).reshape(-1)) if y is not None else 0
    if count != len(x):
        raise DataError(
            f"{len(x)} {split} series but {count} {split} labels; give one label per series"
        )


def from_series(
    x: SeriesInput,
    y: np.ndarray | torch.Tensor | Sequence[int],
    x_test: SeriesInput | None = None,
    y_test: np.ndarray | torch.Tensor | Sequence[int] | None = None,
    *,
    name: str = "series",
    class_names: list[str] | None = None,
    num_classes: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetSplits:
    """Build series :class:`DatasetSplits` from ``(N, L)`` / ``(N, D, L)`` arrays (or lists of
    equal-length rows) and class indices; without test arrays the ddkit convention applies
    (rows whose index ``% 5 == 0`` are the test split)."""
    xs = series_array(x, "train series")
    _check_labels(xs, y, "train")
    xt = None
    if x_test is not None:
        xt = series_array(x_test, "test series")
        _check_labels(xt, y_test, "test")
        if xt.shape[1:] != xs.shape[1:]:
            raise DataError(
                f"test series have (D, L) = {xt.shape[1:]}, train series {xs.shape[1:]}; "
                "give both splits one channel count and length"
            )
    return from_arrays(
        xs,
        _numpy(y),
        xt,
        None if y_test is None else _numpy(y_test),
        name=name,
        num_classes=num_classes,
        val_fraction=val_fraction,
        seed=seed,
        extras=ArrayExtras(class_names, modality="series"),
    )


# ---------------------------------------------------------------- sktime's bundled sets


@dataclass(frozen=True)
class UCRSet:
    """A classification set whose ``.ts`` files ship in sktime's wheel, read by its
    ``sktime.datasets.<loader>``."""

    name: str
    loader: str
    help: str


UCR_SETS = (
    UCRSet("gunpoint", "load_gunpoint", "UCR GunPoint: 50 / 150 series of 150 steps, 2 classes"),
    UCRSet(
        "italypowerdemand",
        "load_italy_power_demand",
        "UCR ItalyPowerDemand: 67 / 1,029 series of 24 steps, 2 classes",
    ),
    UCRSet(
        "arrowhead", "load_arrow_head", "UCR ArrowHead: 36 / 175 series of 251 steps, 3 classes"
    ),
    UCRSet("osuleaf", "load_osuleaf", "UCR OSULeaf: 200 / 242 series of 427 steps, 6 classes"),
    UCRSet(
        "basicmotions",
        "load_basic_motions",
        "UEA BasicMotions: 40 / 40 series of 6 channels x 100 steps, 4 classes",
    ),
)


def read_ucr(ucr: UCRSet) -> RawData:
    """``ucr``'s train and test split through sktime (extra ``timeseries``) as series
    :class:`RawData`; class names as the files write them (numbers sorted numerically)."""
    datasets = require_extra("sktime.datasets", "timeseries", f"dataset {ucr.name!r}")
    load = getattr(datasets, ucr.loader)
    x, y = load(split="train", return_type="numpy3D")
    xt, yt = load(split="test", return_type="numpy3D")
    labels, names = encode_target([str(v) for v in [*y, *yt]], ucr.name, "class")
    return RawData(
        series_array(x, f"{ucr.name} train"),
        labels[: len(y)],
        series_array(xt, f"{ucr.name} test"),
        labels[len(y) :],
        class_names=names,
        num_classes=len(names),
        modality="series",
    )


def _ucr_loader(ucr: UCRSet):  # noqa: ANN202 - a dataset loader
    def load(root: str | None = None) -> RawData:
        return read_ucr(ucr)

    load.__name__ = f"_{ucr.name}"
    return load


for _ucr in UCR_SETS:
    register_dataset(
        _ucr.name, builtin=True, modality="series", help=f"{_ucr.help} (extra 'timeseries')"
    )(_ucr_loader(_ucr))
