"""Fair accounting for soft-label distillation: storage budget and DD-Ranking-style scores.

Storage (:func:`storage_report`): what an evaluation under a protocol must be given, in bytes —
images, labels (hard int64, stored soft labels, per-view soft labels), a learned lr, other extras
(e.g. ZCA matrices), and the teacher's weights when the protocol asks a teacher (``targets="teacher"``)
— next to the bytes of the real training set (float32 images + int64 labels).

Scores (:func:`ranking_scores`), after DD-Ranking (Li et al., "DD-Ranking: Rethinking the
Evaluation of Dataset Distillation", arXiv:2505.13300, 2025): with accuracies as fractions,

* ``HLR = acc(real full, hard) - acc(syn, hard)`` — hard-label recovery (lower is better);
* ``IOR = acc(syn, soft) - acc(random, soft)`` — improvement over a random real subset of the
  same size under the identical (soft) recipe;
* ``LRS = (e^a - e^-1) / (e - e^-1)`` with ``a = w IOR - (1 - w) HLR`` (``w = 0.5``);
* ``ARS = (e^b - e^-1) / (e - e^-1)`` with
  ``b = g (acc(syn, aug) - acc(random, aug)) + (1 - g) (acc(syn, no aug) - acc(random, no aug))``
  (``g = 0.5``), "aug" being the soft recipe as it is and "no aug" the same recipe without
  DSA augmentation and without mixing.

Each synthetic-set run and random-subset run share a seed (same initialisation and data-order
streams), so the per-run differences are paired; means and standard deviations are over runs.

Nothing here is *chosen* on the test split: the recipes are fixed presets (epochs given by the
caller, e.g. scaled down for CPU) and the random subset is drawn with a seed. The accuracies are
*reported* on the real test split. (DD-Ranking tunes lr and epoch on the test set; we do not.)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.label_budget import IMAGE_PREFIX, label_tensor_keys, labels_decoded
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.evaluate import evaluate
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.relabel import has_view_labels, regenerate_labels, relabel

__all__ = [
    "RankingBaselines",
    "RankingSettings",
    "dataset_bytes",
    "lrs",
    "random_like",
    "ranking_scores",
    "storage_report",
]


def dataset_bytes(data: ImageDataset) -> int:
    """Bytes of a real dataset as ddkit holds it: float32 images + int64 labels."""
    return int(data.images.numel() * 4 + data.labels.numel() * 8)


def _nbytes(t: torch.Tensor) -> int:
    return int(t.numel() * t.element_size())


def storage_report(
    syn: SyntheticSet,
    *,
    train_size_bytes: int,
    protocol: str | EvalProtocol = "soft",
    teacher_bytes: int | None = None,
) -> dict[str, Any]:
    """Bytes an evaluation of ``syn`` under ``protocol`` needs, and the ratio to the real train set.

    * ``images``: the stored images (float32);
    * ``labels``: protocols with ``targets="hard"``: one int64 class per image; ``"stored"``:
      the labels as stored (soft ``N x K`` float32, or their encoded form under a label budget,
      :mod:`ddkit.data.label_budget`; nothing for labels decoded from per-view labels);
      ``"teacher"``: 0 (the teacher supplies every target);
    * ``view_labels``: FKD per-view labels in ``extras`` (view boxes, flips, encoded values,
      indices and scales) and per-region labels, when the protocol trains on stored labels;
    * ``lr``: 4 bytes for a learned lr the protocol uses; ``extras``: any other extra tensor;
    * ``teacher``: the teacher's weights when the protocol needs a teacher, or trains on
      stored labels the teacher regenerates (label budget ``regen``): ``teacher_bytes``, or
      the bytes of ``meta['teacher_dir']`` (:func:`ddkit.eval.teacher.teacher_bytes`).

    Also returns ``stored`` (everything in the set), ``ratio = total / train_size_bytes`` and
    the set's ``label_budget`` where it has one.
    """
    if train_size_bytes <= 0:
        raise ConfigError(f"train_size_bytes must be > 0, got {train_size_bytes}")
    p = get_protocol(protocol)
    n = len(syn)
    from ddkit.data.synthetic import STORED_IMAGES

    keys = set(label_tensor_keys(syn.extras))
    image_keys = {k for k in keys if k.startswith(IMAGE_PREFIX)}
    other_extras = sum(
        _nbytes(v) for k, v in syn.extras.items() if k not in keys and k != STORED_IMAGES
    )
    if p.targets == "hard":
        labels, views = n * 8, 0
    elif p.needs_teacher:
        labels, views = 0, 0
    else:
        own = 0 if labels_decoded(syn.meta, syn.extras) else _nbytes(syn.labels)
        labels = own + sum(_nbytes(syn.extras[k]) for k in image_keys)
        views = sum(_nbytes(syn.extras[k]) for k in keys - image_keys)
    parts = {
        "images": _nbytes(syn.stored_images),
        "labels": labels,
        "view_labels": views,
        "lr": 4 if (syn.lr is not None and p.use_learned_lr) else 0,
        "extras": other_extras,
        "teacher": _teacher_bytes(syn, p, teacher_bytes),
    }
    budget = syn.meta.get("label_budget")
    total = sum(parts.values())
    return {
        **parts,
        "total": total,
        "stored": syn.storage_bytes()["total"],
        "train_bytes": int(train_size_bytes),
        "ratio": total / train_size_bytes,
        "protocol": p.name,
        **({"label_budget": budget} if budget else {}),
    }


def _teacher_bytes(syn: SyntheticSet, p: EvalProtocol, given: int | None) -> int:
    """The teacher's weight bytes when ``p`` needs a teacher, or trains on stored labels that
    the teacher regenerates (label budget ``regen``): ``given`` or from its folder / source."""
    regen = p.targets == "stored" and syn.meta.get("label_budget") == "regen"
    if not (p.needs_teacher or regen):
        return 0
    if given is not None:
        return int(given)
    from ddkit.eval.teacher import teacher_bytes

    folder = syn.meta.get("teacher_dir")
    if not folder:
        raise ConfigError(
            f"protocol {p.name!r} needs a teacher: pass teacher_bytes= or use a set "
            "whose meta records 'teacher_dir'"
        )
    return int(teacher_bytes(folder))


def lrs(ior: float, hlr: float, w: float = 0.5) -> float:
    """DD-Ranking's label-robust score for IOR/HLR given as fractions: in [0, 1]."""
    a = w * ior - (1 - w) * hlr
    return (math.exp(a) - math.exp(-1)) / (math.e - math.exp(-1))


def _robust(b: float) -> float:
    return (math.exp(b) - math.exp(-1)) / (math.e - math.exp(-1))


def random_like(syn: SyntheticSet, train: ImageDataset, seed: int) -> SyntheticSet:
    """A random real subset with the same number of images per class as ``syn`` (classes from
    its hard labels), drawn without replacement with ``seed``."""
    counts = torch.bincount(syn.hard_labels, minlength=train.spec.num_classes).tolist()
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    for c, m in enumerate(counts):
        if m == 0:
            continue
        ix = train.class_indices[c]
        if m > len(ix):
            raise ConfigError(
                f"class {train.spec.class_names[c]!r} has {len(ix)} training images, "
                f"the synthetic set {m}"
            )
        rows.append(ix[torch.randperm(len(ix), generator=g)[:m]])
    index = torch.cat(rows)
    return SyntheticSet.from_real(
        train, index, meta={"method": "random", "seed": int(seed), "indices": index.tolist()}
    )


def _no_aug(p: EvalProtocol) -> EvalProtocol:
    return dataclasses.replace(p, name=f"{p.name}-noaug", augment=None, mix=None)


def _hard(p: EvalProtocol) -> EvalProtocol:
    return p if p.targets == "hard" else dataclasses.replace(p, targets="hard")


def _fingerprint(s: SyntheticSet) -> str:
    """Content hash of a set (images, labels, extras): the cache key of its evaluations."""
    from ddkit.data.fingerprint import fingerprint

    return fingerprint(s.images, s.labels, *(s.extras[k] for k in sorted(s.extras)), length=20)


def _paired(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def _ms(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0}


class _Evaluations:
    """Evaluations of sets under recipes, memoised in ``cache`` by (set, recipe, epochs, runs,
    seed), so the random-subset and full-data runs are shared between synthetic sets."""

    def __init__(
        self, test: ImageDataset, teacher: Any, cache: dict, *, seed: int, runs: int | None, device
    ) -> None:
        self.test, self.teacher, self.cache = test, teacher, cache
        self.seed, self.runs, self.device = seed, runs, device

    def one(self, tag: str, s: SyntheticSet, p: EvalProtocol, epochs: int | None) -> dict[str, Any]:
        key = (tag, p, epochs, self.runs, self.seed)
        if key not in self.cache:
            rep = evaluate(
                s,
                self.test,
                p,
                teacher=self.teacher if p.needs_teacher else None,
                runs=self.runs,
                epochs=epochs,
                seed=self.seed,
                device=self.device,
                progress=False,
            )
            r = rep.results[0]
            self.cache[key] = {
                "accuracies": list(r.accuracies),
                "mean": r.mean,
                "std": r.std,
                "seconds": rep.seconds,
                "protocol": rep.protocol.name,
                "epochs": rep.protocol.epochs,
                "model": r.model,
            }
        return self.cache[key]

    def averaged(
        self, sets: list[SyntheticSet], p: EvalProtocol, epochs: int | None
    ) -> dict[str, Any]:
        """Several random draws: their per-run accuracies averaged (one draw: as it is)."""
        draws = [self.one(f"random:{_fingerprint(r)}", r, p, epochs) for r in sets]
        if len(draws) == 1:
            return draws[0]
        per_run = [statistics.fmean(v) for v in zip(*(d["accuracies"] for d in draws))]
        return {**_ms(per_run), "accuracies": per_run, "draws": draws}


def _random_sets(
    syn: SyntheticSet,
    train: ImageDataset,
    seed: int,
    random_set: SyntheticSet | list[SyntheticSet] | None,
    random_draws: int,
) -> list[SyntheticSet]:
    """The given random subset(s), or ``random_draws`` drawn with seeds ``seed + 7919 d``."""
    if random_set is not None:
        return list(random_set) if isinstance(random_set, (list, tuple)) else [random_set]
    if random_draws < 1:
        raise ConfigError(f"random_draws must be >= 1, got {random_draws}")
    return [random_like(syn, train, seed + 7919 * d) for d in range(int(random_draws))]


def _relabel_like(
    syn: SyntheticSet, sets: list[SyntheticSet], teacher: Any, seed: int
) -> list[SyntheticSet]:
    """Hard-labelled random subsets relabelled by ``teacher`` as ``syn`` was (same temperature,
    views and top-k), so both train on stored soft labels of the same kind."""
    temp = float(syn.meta.get("label_temperature", 1.0))
    views = int(syn.meta.get("label_views", 0)) if has_view_labels(syn) else 0
    g = torch.Generator().manual_seed(int(seed) + 1)
    budget = syn.meta.get("label_budget")
    topk = syn.meta.get("label_topk") if views and budget is None else None
    kw = {"generator": g if views else None, "topk": topk, "budget": budget}
    return [r if r.soft else relabel(r, teacher, temp, views=views, **kw) for r in sets]


def _full_accuracy(
    evals: _Evaluations,
    train: ImageDataset,
    p: EvalProtocol,
    epochs: int | None,
    given: float | list[float] | None,
) -> dict[str, Any]:
    """The full training set under the hard recipe: measured, or ``given`` (fraction or runs)."""
    if given is None:
        full_set = SyntheticSet.from_real(train, meta={"method": "full"})
        return evals.one(f"full:{_fingerprint(full_set)}", full_set, p, epochs)
    runs = list(given) if isinstance(given, (list, tuple)) else [float(given)]
    return {
        "accuracies": runs,
        "mean": statistics.fmean(runs),
        "std": statistics.pstdev(runs) if len(runs) > 1 else 0.0,
        "given": True,
    }


def _scores(acc: dict[str, Any], w: float, gamma: float) -> dict[str, dict[str, float]]:
    """HLR, IOR (soft, hard, without augmentation), LRS and ARS from paired per-run accuracies."""
    syn_hard = acc["syn_hard"]["accuracies"]
    full = acc["full_hard"]["accuracies"]
    n = len(syn_hard)
    full = (full * n)[:n] if len(full) != n else full
    hlr = _paired(full, syn_hard)
    ior = _paired(acc["syn_soft"]["accuracies"], acc["random_soft"]["accuracies"])
    ior_hard = _paired(syn_hard, acc["random_hard"]["accuracies"])
    ior_naug = _paired(acc["syn_soft_noaug"]["accuracies"], acc["random_soft_noaug"]["accuracies"])
    lrs_runs = [lrs(i, h, w) for i, h in zip(ior, hlr)]
    ars_runs = [_robust(gamma * a + (1 - gamma) * b) for a, b in zip(ior, ior_naug)]
    return {
        "HLR": _ms(hlr),
        "IOR": _ms(ior),
        "IOR_hard": _ms(ior_hard),
        "IOR_noaug": _ms(ior_naug),
        "LRS": _ms(lrs_runs),
        "ARS": _ms(ars_runs),
    }


@dataclass(frozen=True)
class RankingSettings:
    """How :func:`ranking_scores` measures: the ``hard`` recipe (its targets made hard here) and
    the ``soft`` one, resolved, each network trained ``epochs_hard`` / ``epochs_soft`` epochs
    (``None``: the recipe's own), ``runs`` networks per evaluation (``None``: the recipe's),
    and the weights of LRS (``w``) and ARS (``gamma``). :meth:`of` resolves recipes' names."""

    hard: EvalProtocol
    soft: EvalProtocol
    epochs_hard: int | None = None
    epochs_soft: int | None = None
    runs: int | None = None
    w: float = 0.5
    gamma: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "hard", _hard(self.hard))

    @classmethod
    def of(
        cls,
        hard: str | EvalProtocol = "dsa",
        soft: str | EvalProtocol = "teacher-kd",
        *,
        epochs_hard: int | None = None,
        epochs_soft: int | None = None,
        runs: int | None = None,
        w: float = 0.5,
        gamma: float = 0.5,
    ) -> RankingSettings:
        """The settings with the recipes ``hard`` and ``soft`` given by name or as protocols."""
        return cls(get_protocol(hard), get_protocol(soft), epochs_hard, epochs_soft, runs, w, gamma)


@dataclass(frozen=True)
class RankingBaselines:
    """What :func:`ranking_scores` compares a set with: the full training set's accuracy under
    the hard recipe (``full_accuracy``, a fraction or per-run list; ``None``: measured), and
    ``random_draws`` random real subsets of the set's size (seeds ``seed + 7919 d``; their
    per-run accuracies averaged, which lowers the noise of IOR: a single draw is a noisy
    baseline at small IPC), or the subset(s) ``random_set`` instead."""

    full_accuracy: float | list[float] | None = None
    random_set: SyntheticSet | list[SyntheticSet] | None = None
    random_draws: int = 1


def ranking_scores(
    syn: SyntheticSet,
    splits: DatasetSplits,
    settings: RankingSettings,
    seed: int = 0,
    teacher: Any = None,
    *,
    baselines: RankingBaselines = RankingBaselines(),  # noqa: B008  (frozen)
    cache: dict | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Evaluate ``syn`` and a random real subset of the same size under the hard and the soft
    recipe of ``settings`` (and the soft recipe without augmentation) and compute IOR, HLR,
    LRS and ARS.

    ``teacher`` (module or folder; default ``syn.meta['teacher_dir']``) is needed by recipes
    whose targets come from a teacher, and to relabel the random subset when the soft recipe
    trains on stored soft labels (same temperature and number of views as ``syn``).
    ``baselines`` gives the full training set's accuracy (measured when not given) and the
    random subsets. ``cache`` (a dict) memoises evaluations by (set content, recipe), so
    several methods can share the random-subset and full-data runs. Returns a JSON-able dict.
    """
    from ddkit.eval.teacher import resolve_teacher

    t0 = time.perf_counter()
    ph, ps = settings.hard, settings.soft
    epochs_hard, epochs_soft, w, gamma = (settings.epochs_hard, settings.epochs_soft,
                                          settings.w, settings.gamma)  # fmt: skip
    pn = _no_aug(ps)
    regen = ps.uses_stored_labels and syn.meta.get("label_budget") == "regen"
    relabel_random = ps.uses_stored_labels and (syn.soft or regen)
    net = None
    if ps.needs_teacher or relabel_random:
        net, _ = resolve_teacher(syn, teacher, device)
    if regen:  # the soft labels the set's crops and teacher give (FKD-style regeneration)
        syn = regenerate_labels(syn, net, device)
    rdms = _random_sets(syn, splits.train, seed, baselines.random_set, baselines.random_draws)
    if relabel_random:
        rdms = _relabel_like(syn, rdms, net, seed)
    evals = _Evaluations(splits.test, net, {} if cache is None else cache, seed=seed,
                         runs=settings.runs, device=device)  # fmt: skip
    sid = f"syn:{_fingerprint(syn)}"
    acc = {
        "syn_hard": evals.one(sid, syn, ph, epochs_hard),
        "random_hard": evals.averaged(rdms, ph, epochs_hard),
        "syn_soft": evals.one(sid, syn, ps, epochs_soft),
        "random_soft": evals.averaged(rdms, ps, epochs_soft),
        "syn_soft_noaug": evals.one(sid, syn, pn, epochs_soft),
        "random_soft_noaug": evals.averaged(rdms, pn, epochs_soft),
        "full_hard": _full_accuracy(evals, splits.train, ph, epochs_hard, baselines.full_accuracy),
    }
    return {
        "accuracy": acc,
        **_scores(acc, w, gamma),
        "w": w,
        "gamma": gamma,
        "recipes": {"hard": ph.to_dict(), "soft": ps.to_dict(), "soft_noaug": pn.to_dict()},
        "epochs": {"hard": epochs_hard or ph.epochs, "soft": epochs_soft or ps.epochs},
        "random_set": {"seeds": [r.meta.get("seed") for r in rdms], "size": len(rdms[0])},
        "reported_on": "test split (final epoch); no choice made on test: fixed recipes, seeded random subset",
        "seconds": time.perf_counter() - t0,
    }
