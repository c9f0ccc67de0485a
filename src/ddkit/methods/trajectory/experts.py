"""Expert trajectories: networks trained on real data with a parameter snapshot per epoch.

As in MTT (Cazenavette et al., CVPR 2022, ``buffer.py``): ``E`` networks are trained on the real
training split with plain SGD (lr 0.01, no momentum by default), batch 256, cross-entropy and
DSA augmentation (per-sample draws), optionally on ZCA-whitened images. Unlike the reference,
whose buffers are pickled lists that must be retrained from scratch after a crash, the
trajectories here are files that can be resumed and shared:

``out_dir/experts.json``
    shared metadata: dataset spec (with ``transform: "zca"`` when whitened), model and its
    parameter layout, lr, momentum, batch size, augmentation, epochs, ZCA flag, seed.
``out_dir/zca.safetensors``
    the fitted :class:`ddkit.augment.ZCA` (only with ``zca=True``).
``out_dir/expert_007/epoch_012.safetensors``
    the flat parameter vector (``params``; plus ``momentum`` when momentum > 0) after 12 epochs
    (epoch 0 is the initialisation), with metadata (dataset, model, normalisation, ZCA, lr,
    seed, expert, epoch) in the safetensors header; written atomically.

Determinism: the initialisation of expert ``e`` and the data order / augmentation of its epoch
``j`` come from generators seeded by a hash of ``(seed, e, j)``, so continuing from any snapshot
gives bit-identical files to an uninterrupted run (on the same machine and torch build;
experts trained one at a time, ``together=1``, the default on the CPU).

Concurrency: a process claims an expert by its lock file ``expert_007.lock``
(:mod:`ddkit.claims`); others skip claimed experts, and a lock whose process is gone is taken
over.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.func import vmap

from ddkit import distributed
from ddkit.claims import claim, claimed_by_other
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, DataError, FileFormatError
from ddkit.eval.dry_run import SetupCost, is_estimating, record, time_part
from ddkit.io import (
    atomic_write_json,
    ensure_writable_dir,
    load_tensors,
    read_json,
    save_tensors,
)
from ddkit.methods.trajectory.memory import check_experts
from ddkit.models import build_network, predict
from ddkit.progress import Progress, ProgressSetting, to_stderr
from ddkit.rng import derive_seed

if TYPE_CHECKING:
    from ddkit.augment import DSA, SeriesAugment
    from ddkit.methods.trajectory.student import FlatModel

__all__ = [
    "ExpertBuffer",
    "ExpertSettings",
    "train_experts",
    "load_experts",
    "derive_seed",
    "apply_zca",
]

FORMAT = "ddkit.experts"
FORMAT_VERSION = 1
META_FILE = "experts.json"
ZCA_FILE = "zca.safetensors"
#: experts trained at once by default on a GPU (``train_experts(together=None)``)
TOGETHER_ON_ACCELERATORS = 8

# settings that must agree between every process / resume writing one folder
_MUST_MATCH = (
    "spec",
    "model",
    "params",
    "lr",
    "momentum",
    "weight_decay",
    "batch_size",
    "augment",
    "zca",
    "seed",
)


def _expert_dir(root: Path, e: int) -> Path:
    return root / f"expert_{e:03d}"


def _epoch_file(root: Path, e: int, epoch: int) -> Path:
    return _expert_dir(root, e) / f"epoch_{epoch:03d}.safetensors"


# ---------------------------------------------------------------------------- locks
def _lock_path(root: Path, e: int) -> Path:
    return root / f"expert_{e:03d}.lock"


# ---------------------------------------------------------------------------- ZCA
def apply_zca(data: ImageDataset, zca) -> ImageDataset:
    """``data`` with ZCA-whitened images and ``spec.transform = "zca"``."""
    import dataclasses

    spec = dataclasses.replace(data.spec, transform="zca")
    return ImageDataset(zca.transform(data.images), data.labels, spec)


# ---------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class ExpertSettings:
    """How every expert of one folder is trained (recorded in ``experts.json``; every process
    and resume writing the folder must use the same): plain SGD at ``lr`` with ``momentum`` and
    ``weight_decay``, mini-batches of ``batch_size``, the augmentation ``augment``, ZCA
    whitening (``zca``) and the ``seed`` every expert's initialisation and epochs derive from.
    Checked when built.

    ``augment``: ``"dsa"`` (the dataset's default augmentation: its DSA strategy on images,
    the series operations on series, none on tables), an explicit DSA strategy, series
    operations (``"series"``, ``"jitter_slice"``) or ``None``.
    """

    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256
    augment: str | None = "dsa"
    zca: bool = False
    seed: int = 0

    @classmethod
    def of_config(cls, cfg: Any) -> ExpertSettings:
        """The settings of a method's auto-trained experts: its config's ``expert_lr``,
        ``expert_batch``, ``zca`` and ``expert_seed`` (SGD without momentum or weight decay,
        the dataset's default augmentation)."""
        return cls(lr=cfg.expert_lr, batch_size=cfg.expert_batch, zca=cfg.zca, seed=cfg.expert_seed)

    def __post_init__(self) -> None:
        _check_count("batch_size", self.batch_size)
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")


def _check_count(name: str, v: int) -> None:
    if int(v) != v or v < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {v}")


# ---------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class _Recipe:
    """What every expert of one folder is trained with."""

    fm: FlatModel
    images: torch.Tensor
    labels: torch.Tensor
    model: str  # lower case
    spec: DatasetSpec
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    augment: str | None  # DSA strategy or series operations
    dsa: DSA | SeriesAugment | None
    seed: int
    epochs: int
    header: dict[str, str]  # safetensors metadata of every snapshot


def _make_recipe(train: ImageDataset, model: str, epochs: int, settings: ExpertSettings) -> _Recipe:
    from ddkit.augment import augmenter
    from ddkit.methods.trajectory.student import FlatModel

    s = settings
    strategy = _augment_strategy(s.augment, train.spec)
    name = str(model).lower()
    return _Recipe(
        fm=FlatModel(build_network(name, train.spec, 0)),
        images=train.images,
        labels=train.labels,
        model=name,
        spec=train.spec,
        lr=float(s.lr),
        momentum=float(s.momentum),
        weight_decay=float(s.weight_decay),
        batch_size=int(s.batch_size),
        augment=strategy,
        dsa=augmenter(strategy) if strategy else None,
        seed=int(s.seed),
        epochs=int(epochs),
        header=_snapshot_header(train.spec, name, s.zca, s.lr, s.seed),
    )


def _check_arguments(num_experts: int, epochs: int, together: int | None = None) -> None:
    """The counts :class:`ExpertSettings` does not hold (it checks its own when built)."""
    _check_count("num_experts", num_experts)
    _check_count("epochs", epochs)
    _check_count("together", 1 if together is None else together)


def _splits(
    splits_or_train: DatasetSplits | ImageDataset,
) -> tuple[ImageDataset, ImageDataset | None]:
    if isinstance(splits_or_train, DatasetSplits):
        train, test = splits_or_train.train, splits_or_train.test
    elif isinstance(splits_or_train, ImageDataset):
        train, test = splits_or_train, None
    else:
        raise DataError("train_experts needs DatasetSplits or an ImageDataset")
    if train.spec.transform is not None:
        raise DataError(
            f"train_experts expects un-whitened data (spec.transform={train.spec.transform!r}); "
            "pass zca=True instead"
        )
    return train, test


def _whiten(
    root: Path, train: ImageDataset, test: ImageDataset | None
) -> tuple[ImageDataset, ImageDataset | None]:
    """ZCA-whiten both splits with the folder's ZCA (fitted on ``train`` and saved if new)."""
    from ddkit.augment import ZCA

    zpath = root / ZCA_FILE
    if zpath.exists():
        zca_obj = ZCA.from_tensors(load_tensors(zpath))
    else:
        zca_obj = ZCA().fit(train.images)
        save_tensors(zpath, zca_obj.to_tensors())
    return apply_zca(train, zca_obj), (apply_zca(test, zca_obj) if test is not None else None)


def _augment_strategy(augment: str | None, spec: DatasetSpec) -> str | None:
    from ddkit.augment import default_strategy, is_series_strategy

    if augment == "dsa" and "series" in spec.kind.augmentations:
        return "series"  # "dsa" is the dataset's default: series operations on series
    if not augment or (augment == "dsa" and "dsa" not in spec.kind.augmentations):
        return None  # ... and none on tables
    if is_series_strategy(augment):
        spec.check_needs("series", f"expert augmentation {augment!r}", "use augment=None")
        return str(augment)
    spec.check_needs("image", f"expert augmentation {augment!r}", "use augment=None")
    return default_strategy(spec.channels, spec.name) if augment == "dsa" else str(augment)


def _folder_meta(recipe: _Recipe, train: ImageDataset, zca: bool) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": train.spec.to_dict(),
        "model": recipe.model,
        "params": recipe.fm.param_layout(),
        "num_params": recipe.fm.num_params,
        "lr": recipe.lr,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "batch_size": recipe.batch_size,
        "augment": recipe.augment,
        "zca": bool(zca),
        "seed": recipe.seed,
        "epochs": recipe.epochs,
        "data_fingerprint": fingerprint(train),
    }


def _write_folder_meta(root: Path, meta: dict[str, Any]) -> None:
    """Write ``experts.json``, refusing a folder whose experts were trained otherwise; the
    recorded number of epochs only grows."""
    mpath = root / META_FILE
    if mpath.exists():
        old = read_json(mpath)
        diff = [k for k in _MUST_MATCH + ("data_fingerprint",) if old.get(k) != meta[k]]
        if diff:
            raise ConfigError(
                f"expert folder {str(root)!r} holds experts trained with different {', '.join(diff)}; "
                "use another --out folder"
            )
        if int(old.get("epochs", 0)) > meta["epochs"]:
            meta = {**meta, "epochs": int(old["epochs"])}
    if not mpath.exists() or read_json(mpath) != meta:
        atomic_write_json(mpath, meta)


def _snapshot_header(
    spec: DatasetSpec, model: str, zca: bool, lr: float, seed: int
) -> dict[str, str]:
    return {
        "dataset": spec.name,
        "model": model,
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "zca": str(bool(zca)).lower(),
        "lr": repr(float(lr)),
        "seed": str(int(seed)),
    }


# ---------------------------------------------------------------------------- training
def train_experts(
    splits_or_train: DatasetSplits | ImageDataset,
    model: str,
    num_experts: int,
    epochs: int,
    out_dir: str | os.PathLike,
    settings: ExpertSettings = ExpertSettings(),
    *,
    resume: bool = False,
    together: int | None = None,
    progress: ProgressSetting | Callable[[str], None] = False,
) -> ExpertBuffer:
    """Train ``num_experts`` networks for ``epochs`` epochs on the real train split, saving a
    snapshot every epoch under ``out_dir`` (layout in the module docstring).

    Args:
        splits_or_train: :class:`DatasetSplits` (train split used; the test accuracy of each
            finished expert is recorded for information only) or a train :class:`ImageDataset`.
        settings: how every expert is trained (:class:`ExpertSettings`: lr, momentum, weight
            decay, batch size, augmentation, ZCA, seed); MTT's recipe by default.
        resume: continue experts that a stopped run left unfinished. Without it, a folder with
            unfinished experts that no live process is working on raises :class:`ConfigError`.
            Finished experts are never retrained, and experts claimed by a live process
            (another ``train_experts`` on the same folder) are skipped either way.
        together: how many experts train at once, as one ``vmap``-ed network (each with its
            own initialisation, data order and augmentation, so the same experts up to
            rounding); ``None``: :data:`TOGETHER_ON_ACCELERATORS` on a GPU, 1 on the CPU (where
            ``vmap``'s grouped convolutions lose on images larger than 8x8, BENCHMARKS.md).
            One at a time keeps the resume guarantee of the module docstring; trained
            together, a resumed group may round differently from an uninterrupted one.
        progress: the epochs to train counted by :class:`ddkit.progress.Progress` (``True``,
            ``"auto"``, ``"lines"``, ``"bar"``; ``False``: silent), or a callable given each
            message, one per expert and epoch.

    In a dry run (:func:`ddkit.eval.dry_run.estimating`) nothing is trained or written: the
    epochs ``out_dir`` lacks are costed from one epoch timed in part, and a stand-in buffer
    (:class:`StandInBuffer`) is returned; a complete folder is loaded as it is.

    Returns the (lazily loading) :class:`ExpertBuffer` of ``out_dir``.
    """
    train, test = _splits(splits_or_train)
    _check_arguments(num_experts, epochs, together)
    say = _messages(progress)
    on_cpu = train.images.device.type == "cpu"
    check_experts(train.spec, model, num_experts=num_experts, epochs=epochs,
                  momentum=settings.momentum, batch_size=min(settings.batch_size, len(train)),
                  together=together or (1 if on_cpu else TOGETHER_ON_ACCELERATORS),
                  out_dir=out_dir, device=train.images.device)  # fmt: skip
    if is_estimating():
        return stand_in_experts(train, model, num_experts, epochs, out_dir, settings, together)
    # in a distributed session rank 0 prepares the folder (ZCA, experts.json) before the others
    # read it; each rank then trains the experts of its shard (distributed.shard)
    prepared = distributed.main_only(
        lambda: _prepare_folder(
            Path(out_dir), train, test, model, epochs, settings, resume, num_experts
        )
    )
    if prepared is None:  # another rank prepared the folder: read it
        prepared = _prepare_folder(Path(out_dir), train, test, model, epochs, settings)
    root, train, test, recipe = prepared
    if together is None:
        together = 1 if recipe.images.device.type == "cpu" else TOGETHER_ON_ACCELERATORS
    pending = [
        e for e in distributed.shard(range(num_experts)) if not _finished(root, e, recipe.epochs)
    ]
    left = sum(_epochs_left(root, pending, recipe.epochs))
    bar = None if callable(progress) else Progress("expert trajectories", left, unit="epochs",
                                                   setting=progress)  # fmt: skip
    on_epoch = None if bar is None else (lambda loss: bar.update(1, {"loss": loss}))
    for first in range(0, len(pending), together):
        with ExitStack() as claims:
            group = []
            for e in pending[first : first + together]:
                if not claims.enter_context(claim(_lock_path(root, e))):
                    say(f"expert {e}: claimed by another process, skipping")
                elif not _finished(root, e, recipe.epochs):  # re-read under the lock
                    group.append(e)
            if group:
                thetas = _train_group(root, group, recipe, say, on_epoch)
                for e, theta in zip(group, thetas):
                    _write_info(root, e, recipe, theta, test, say)
    if bar is not None:
        bar.close()
    distributed.barrier()  # every rank's experts are written before any rank reads the folder
    return load_experts(root)


def _messages(progress: ProgressSetting | Callable[[str], None]) -> Callable[[str], None]:
    """Where :func:`train_experts`'s messages go: the caller's callable, stderr when progress
    is reported, nowhere when silent."""
    if callable(progress):
        return progress
    if progress:
        return to_stderr
    return lambda msg: None


def _epochs_left(root: Path, experts: list[int], epochs: int) -> list[int]:
    """The epochs each of ``experts`` still lacks in ``root`` (all of them where it has none)."""
    return [max(0, epochs - (_last_epoch(root, e) or 0)) for e in experts]


def _group_rounds(left: list[int], together: int) -> int:
    """Epoch rounds of experts trained ``together`` at a time, in order, a group's round
    lasting until its slowest member is done (as :func:`_train_group` trains them)."""
    pending = [n for n in left if n > 0]
    return sum(max(pending[i : i + together]) for i in range(0, len(pending), together))


def stand_in_experts(
    train: ImageDataset,
    model: str,
    num_experts: int,
    epochs: int,
    out_dir: str | os.PathLike,
    settings: ExpertSettings,
    together: int | None = None,
) -> ExpertBuffer:
    """A dry run's expert buffer: ``out_dir``'s when complete (no cost), else the cost of the
    epochs it lacks -- one epoch of ``together`` experts timed in part (:func:`time_part`),
    times the epoch rounds -- recorded (:func:`ddkit.eval.dry_run.record`), and a
    :class:`StandInBuffer` from the timed part. Nothing is written."""
    root = Path(out_dir)
    what = f"{num_experts} expert trajectories x {epochs} epochs"
    left = _epochs_left(root, list(range(num_experts)), epochs)
    if not any(left) and (root / META_FILE).is_file():
        record(SetupCost(what, 0.0))
        return load_experts(root)
    t0, zca = time.perf_counter(), None
    if settings.zca:  # fitted once per folder: timed whole
        from ddkit.augment import ZCA

        zca = ZCA().fit(train.images)
        train = apply_zca(train, zca)
    recipe = _make_recipe(train, model, epochs, settings)
    on_cpu = train.images.device.type == "cpu"
    k = min(together or (1 if on_cpu else TOGETHER_ON_ACCELERATORS), num_experts)
    init = build_network(recipe.model, recipe.spec, derive_seed(recipe.seed, 0, "init"))
    start = recipe.fm.flatten(init).to(recipe.images.device)
    fixed = time.perf_counter() - t0

    def one_pass(n: int) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(derive_seed(recipe.seed, e, 0)) for e in range(k)]
        part = replace(recipe, images=recipe.images[:n], labels=recipe.labels[:n])
        return _train_epoch(part, start.repeat(k, 1), None, gens)[0][0]

    part = time_part(one_pass, len(recipe.images), recipe.batch_size)
    rounds = _group_rounds(left, k)
    timed = f"one epoch of {k} expert(s), {part.text()}, x {rounds} epoch rounds"
    record(SetupCost(what, fixed + part.pass_seconds * rounds, timed, fixed + part.spent))
    meta = {**_folder_meta(recipe, train, settings.zca), "stand_in": True}
    return StandInBuffer(root, meta, list(range(num_experts)), start=start.cpu(),
                         moved=(part.result - start).cpu(), whitening=zca)  # fmt: skip


def _prepare_folder(
    out_dir: Path,
    train: ImageDataset,
    test: ImageDataset | None,
    model: str,
    epochs: int,
    settings: ExpertSettings,
    resume: bool | None = None,
    num_experts: int = 0,
) -> tuple[Path, ImageDataset, ImageDataset | None, _Recipe]:
    """The folder (created), the splits (whitened with the folder's ZCA, fitted and saved when
    new) and the recipe; with ``resume`` not ``None``, also write ``experts.json`` and, unless
    resuming, refuse a folder with unfinished experts."""
    root = ensure_writable_dir(out_dir) if resume is not None else out_dir
    if settings.zca:
        train, test = _whiten(root, train, test)
    recipe = _make_recipe(train, model, epochs, settings)
    if resume is not None:
        _write_folder_meta(root, _folder_meta(recipe, train, settings.zca))
        if not resume:
            _refuse_unfinished(root, num_experts, recipe.epochs)
    return root, train, test, recipe


def _refuse_unfinished(root: Path, num_experts: int, epochs: int) -> None:
    """Raise if an earlier run left experts unfinished that no live process is training."""
    unfinished = []
    for e in range(num_experts):
        last = _last_epoch(root, e)
        if last is not None and last < epochs and not claimed_by_other(_lock_path(root, e)):
            unfinished.append(e)
    if unfinished:
        raise ConfigError(
            f"expert folder {str(root)!r} holds unfinished experts {unfinished[:5]}"
            f"{'...' if len(unfinished) > 5 else ''} from an earlier run; pass resume=True (--resume) "
            "to continue them"
        )


def _finished(root: Path, e: int, epochs: int) -> bool:
    last = _last_epoch(root, e)
    return last is not None and last >= epochs


def _start_expert(
    root: Path, e: int, recipe: _Recipe, say: Callable[[str], None]
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Where expert ``e`` continues: ``(theta, momentum buffer, epochs done)`` from its last
    snapshot, or its seeded initialisation (written as epoch 0)."""
    last = _last_epoch(root, e)
    if last is None:
        net = build_network(recipe.model, recipe.spec, derive_seed(recipe.seed, e, "init"))
        theta = recipe.fm.flatten(net).to(recipe.images.device)
        _write_snapshot(root, e, 0, theta, None, recipe.momentum, recipe.header)
        return theta, None, 0
    theta, buf = _read_snapshot(root, e, last, recipe.momentum)
    say(f"expert {e}: resuming after epoch {last}")
    # snapshots load on the CPU in float32; training runs where and as precisely as the data
    device, dtype = recipe.images.device, recipe.images.dtype
    return theta.to(device, dtype), None if buf is None else buf.to(device, dtype), last


def _train_group(
    root: Path,
    group: list[int],
    recipe: _Recipe,
    say: Callable[[str], None],
    on_epoch: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """Train the experts ``group`` together, each from where it stands to ``recipe.epochs``,
    one snapshot per expert and epoch; expert ``e``'s epoch ``j`` draws its data order and
    augmentation from ``derive_seed(seed, e, j)``. Experts resumed at different epochs advance
    in lockstep, one epoch each per round, and leave the group when done; each expert's epoch
    is told to ``on_epoch(train loss)`` where given, else said. Returns the final parameters,
    one row per expert of ``group``."""
    starts = [_start_expert(root, e, recipe, say) for e in group]
    thetas = torch.stack([theta for theta, _, _ in starts])
    momenta = None
    if recipe.momentum:
        momenta = torch.stack(
            [torch.zeros_like(theta) if buf is None else buf for theta, buf, _ in starts]
        )
    done = [epochs for _, _, epochs in starts]
    while any(epochs < recipe.epochs for epochs in done):
        rows = [i for i, epochs in enumerate(done) if epochs < recipe.epochs]
        gens = [
            torch.Generator().manual_seed(derive_seed(recipe.seed, group[i], done[i])) for i in rows
        ]
        theta, buf, losses = _train_epoch(
            recipe, thetas[rows], None if momenta is None else momenta[rows], gens
        )
        thetas[rows] = theta
        if momenta is not None:
            momenta[rows] = buf
        for k, i in enumerate(rows):
            e, done[i] = group[i], done[i] + 1
            if not torch.isfinite(theta[k]).all():
                raise DataError(
                    f"expert {e} diverged at epoch {done[i]} (lr {recipe.lr} too large?)"
                )
            header = {**recipe.header, "train_loss": repr(losses[k])}
            _write_snapshot(root, e, done[i], theta[k], None if buf is None else buf[k],
                            recipe.momentum, header)  # fmt: skip
            if on_epoch is not None:
                on_epoch(losses[k])
            else:
                say(f"expert {e}: epoch {done[i]}/{recipe.epochs} train loss {losses[k]:.4f}")
    return thetas


def _train_epoch(
    recipe: _Recipe,
    thetas: torch.Tensor,
    momenta: torch.Tensor | None,
    gens: list[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor | None, list[float]]:
    """One epoch of SGD (:func:`~ddkit.eval.train.sgd_step`) on ``recipe``'s images for each
    row of ``thetas`` ``(K, P)``, row ``k`` drawing its data order and augmentation from
    ``gens[k]``; ``K > 1`` rows share one ``vmap``-ed forward per batch. Returns new parameters
    and momenta (the caller's tensors stay as they were) and each row's mean training loss."""
    from ddkit.eval.train import sgd_step

    fm, images, labels, dsa = recipe.fm, recipe.images, recipe.labels, recipe.dsa
    lr, momentum, wd = recipe.lr, recipe.momentum, recipe.weight_decay
    batch_size = recipe.batch_size

    def loss_of(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(fm(w, x), y)

    together = len(gens)
    thetas = thetas.clone()
    if momentum:
        momenta = torch.zeros_like(thetas) if momenta is None else momenta.clone()
    n = len(images)
    perms = [torch.randperm(n, generator=g) for g in gens]
    totals = torch.zeros(together, dtype=torch.float64, device=images.device)
    for s in range(0, n, batch_size):
        xs, ys = [], []
        for perm, gen in zip(perms, gens):
            idx = perm[s : s + batch_size]
            xs.append(images[idx] if dsa is None else dsa(images[idx], gen, shared=False))
            ys.append(labels[idx])
        w = thetas.detach().requires_grad_(True)
        if together == 1:  # the plain forward: one expert's files as they always were
            losses = loss_of(w[0], xs[0], ys[0]).unsqueeze(0)
        else:
            losses = vmap(loss_of)(w, torch.stack(xs), torch.stack(ys))
        (g,) = torch.autograd.grad(losses.sum(), w)
        sgd_step([thetas], [g], [momenta], lr=lr, momentum=momentum, weight_decay=wd)
        totals += losses.detach().double() * len(ys[0])
    return thetas, momenta, (totals / max(n, 1)).tolist()


def _write_info(
    root: Path,
    e: int,
    recipe: _Recipe,
    theta: torch.Tensor,
    test: ImageDataset | None,
    say: Callable[[str], None],
) -> None:
    """``expert_XXX/info.json``: epochs and, given a test split, the test accuracy."""
    info: dict[str, Any] = {"expert": e, "epochs": recipe.epochs}
    if test is not None:
        logits = predict(lambda x: recipe.fm(theta, x), test.images, batch_size=1024)
        info["test_accuracy"] = float((logits.argmax(1) == test.labels).float().mean())
        say(f"expert {e}: test accuracy {100 * info['test_accuracy']:.2f}% (information only)")
    atomic_write_json(_expert_dir(root, e) / "info.json", info)


# ---------------------------------------------------------------------------- snapshots
def _write_snapshot(root, e, epoch, theta, buf, momentum, header) -> None:
    """``expert_XXX/epoch_YYY.safetensors``: ``params`` (float32) and, with momentum, the
    ``momentum`` buffer; ``header`` plus the expert and epoch as metadata."""
    tensors = {"params": theta.detach().float().contiguous()}
    if momentum and buf is not None:
        tensors["momentum"] = buf.detach().contiguous()
    save_tensors(
        _epoch_file(root, e, epoch),
        tensors,
        metadata={**header, "expert": str(e), "epoch": str(epoch)},
    )


def _read_snapshot(
    root: Path, e: int, epoch: int, momentum: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(params, momentum buffer or None)`` of a snapshot written by :func:`_write_snapshot`."""
    snap = load_tensors(_epoch_file(root, e, epoch))
    buf = None
    if momentum:
        buf = snap.get("momentum")
        if buf is None and epoch > 0:
            raise FileFormatError(f"{_epoch_file(root, e, epoch)} lacks the momentum buffer")
    return snap["params"], buf


def _last_epoch(root: Path, e: int) -> int | None:
    """The highest saved epoch of expert ``e`` (None if it has no snapshot). Snapshots are written
    atomically in order, so the set of epochs is always ``0..last``."""
    d = _expert_dir(root, e)
    if not d.is_dir():
        return None
    eps = []
    for p in d.glob("epoch_*.safetensors"):
        try:
            eps.append(int(p.stem.split("_")[1]))
        except (IndexError, ValueError):
            continue
    return max(eps) if eps else None


# ---------------------------------------------------------------------------- loading
@dataclass
class ExpertBuffer:
    """A folder of expert trajectories, loaded lazily (a small LRU cache of snapshots).

    ``experts`` lists the indices of complete experts (all ``epochs`` snapshots present);
    :meth:`params` returns them on ``device`` (the matching method's: its data's).
    """

    root: Path
    meta: dict[str, Any]
    experts: list[int]
    cache_size: int = 32
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        self._zca = None

    @property
    def epochs(self) -> int:
        return int(self.meta["epochs"])

    @property
    def spec(self) -> DatasetSpec:
        return DatasetSpec.from_dict(self.meta["spec"])

    @property
    def model(self) -> str:
        return str(self.meta["model"])

    @property
    def zca(self) -> bool:
        return bool(self.meta.get("zca", False))

    def __len__(self) -> int:
        return len(self.experts)

    def params(self, expert: int, epoch: int) -> torch.Tensor:
        """Flat parameter vector of the ``expert``-th complete expert after ``epoch`` epochs."""
        if not 0 <= expert < len(self.experts):
            raise ConfigError(
                f"expert index {expert} out of range (buffer has {len(self.experts)})"
            )
        if not 0 <= epoch <= self.epochs:
            raise ConfigError(
                f"epoch {epoch} out of range (experts were trained for {self.epochs})"
            )
        key = (self.experts[expert], int(epoch))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        v = self._snapshot(*key).to(self.device)
        self._cache[key] = v
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return v

    def _snapshot(self, e: int, epoch: int) -> torch.Tensor:
        """Expert ``e``'s parameters after ``epoch`` epochs, read from its file."""
        t = load_tensors(_epoch_file(self.root, e, epoch))
        if "params" not in t:
            raise FileFormatError(f"{_epoch_file(self.root, e, epoch)} has no 'params' tensor")
        v = t["params"]
        if v.numel() != int(self.meta["num_params"]):
            raise FileFormatError(
                f"{_epoch_file(self.root, e, epoch)} has {v.numel()} parameters, expected "
                f"{self.meta['num_params']}"
            )
        return v

    def zca_transform(self):
        """The fitted :class:`ddkit.augment.ZCA` of this buffer (``None`` without ZCA)."""
        if not self.zca:
            return None
        if self._zca is None:
            from ddkit.augment import ZCA

            self._zca = ZCA.from_tensors(load_tensors(self.root / ZCA_FILE))
        return self._zca

    def check_data(self, data: ImageDataset) -> None:
        """Raise :class:`ConfigError` if ``data`` (un-whitened) is not the data these experts saw."""
        spec, mine = data.spec, self.spec
        if (spec.name, spec.shape, spec.num_classes) != (mine.name, mine.shape, mine.num_classes):
            raise ConfigError(
                f"experts in {str(self.root)!r} were trained on {mine.name} {mine.shape} with "
                f"{mine.num_classes} classes, not {spec.name} {spec.shape} with {spec.num_classes}"
            )
        close = all(
            abs(a - b) <= 1e-4 * max(1.0, abs(b))
            for a, b in zip(spec.mean + spec.std, mine.mean + mine.std)
        )
        if not close:
            raise ConfigError(
                f"experts in {str(self.root)!r} used a different normalisation (mean/std) than this data"
            )


@dataclass
class StandInBuffer(ExpertBuffer):
    """A dry run's stand-in for experts not trained (:func:`stand_in_experts`): every expert
    is one trajectory, ``start`` moved by ``moved`` (a part of one epoch's training) per
    epoch. It has the real buffer's shapes and step cost, not its values: nothing to distil
    from."""

    start: torch.Tensor | None = None
    moved: torch.Tensor | None = None
    whitening: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._zca = self.whitening

    def _snapshot(self, e: int, epoch: int) -> torch.Tensor:
        return self.start + epoch * self.moved

    def zca_transform(self):
        return self._zca


def load_experts(path: str | os.PathLike, *, min_experts: int = 1) -> ExpertBuffer:
    """Open an expert folder written by :func:`train_experts` (only complete experts are used)."""
    root = Path(path)
    mpath = root / META_FILE
    if not mpath.is_file():
        raise FileFormatError(
            f"no expert trajectories in {str(root)!r} (missing {META_FILE}); "
            "train them with `ddkit experts`"
        )
    meta = read_json(mpath)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{str(mpath)!r} is not a ddkit expert-trajectory file")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise FileFormatError(f"{str(root)!r} was written by a newer ddkit")
    epochs = int(meta["epochs"])
    experts = sorted(
        int(d.name.split("_")[1])
        for d in root.glob("expert_*")
        if d.is_dir() and d.name.split("_")[1].isdigit()
    )
    complete = [e for e in experts if (_last_epoch(root, e) or 0) >= epochs]  # None/0 -> incomplete
    if len(complete) < min_experts:
        raise FileFormatError(
            f"{str(root)!r} has {len(complete)} complete expert(s) of {epochs} epochs; need {min_experts} "
            "(finish them with `ddkit experts ... --resume`)"
        )
    return ExpertBuffer(root, meta, complete)
