"""Teachers for decoupled distillation: train once, save with metadata, load without pickle.

SRe2L's "squeeze" stage (Yin, Xing & Shen, "Squeeze, Recover and Relabel: Dataset Condensation
at ImageNet Scale From A New Perspective", NeurIPS 2023) trains a network *with BatchNorm* on the
full training set; its running BN statistics are what the "recover" stage matches, and its soft
predictions are the labels of the "relabel" stage. RDED (Sun et al., "On the Diversity and
Realism of Distilled Dataset: An Efficient Dataset Distillation Paradigm", CVPR 2024) uses the
same kind of teacher as observer (to score crops) and as labeller.

A teacher on disk is a folder with ``teacher.safetensors`` (the ``state_dict``, BN running
statistics included) and ``teacher.json`` (model name, dataset spec, training recipe, seed,
train/validation accuracy and the SHA-256 of the weights). Nothing is unpickled. A teacher from
elsewhere (a checkpoint file, a Hugging Face model) is named by a network source, ``file:PATH``
or ``hf:PATH`` (:mod:`ddkit.models.external`); :func:`resolve_teacher` takes either.

While :func:`train_teacher` trains into a folder, it keeps a checkpoint there after every epoch,
``checkpoint/state.safetensors`` (network ``state_dict``, the SGD momentum buffers as
``momentum.<parameter>``, the data-order / augmentation generator's state as a uint8 tensor) and
``checkpoint/checkpoint.json`` (epochs finished, recipe, training-data fingerprint, seconds
spent), both written atomically. A new call with the same folder, recipe and data resumes after
the last finished epoch, bit-identical to an uninterrupted run; a checkpoint of another recipe or
other data is refused. The finished teacher replaces the whole folder, checkpoint included.

Under ``torchrun`` (a :mod:`ddkit.distributed` session) the teacher trains data-parallel: every
rank draws each batch as one process does, trains on its share of the rows, the gradients are
summed over the ranks and BatchNorm normalises by the whole batch
(:func:`~ddkit.eval.train.sgd_train` with ``data_parallel=True``), so the teacher is the
one-process teacher up to the rounding of those sums. Rank 0 alone writes the checkpoint and
the teacher; a checkpoint resumes with any number of processes.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddkit import distributed
from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError
from ddkit.eval.dry_run import SetupCost, is_estimating, record, time_part
from ddkit.eval.protocol import EvalProtocol
from ddkit.io import (
    atomic_replace_dir,
    atomic_write_json,
    check_replaceable_dir,
    load_tensors,
    made_as,
    read_json,
    recover_replaced_dir,
    safe_name,
    sha256_file,
    write_safetensors,
)
from ddkit.models.teacher_files import (
    FORMAT,
    META_FILE,
    WEIGHTS_FILE,
    load_teacher,
    warn_if_untrained,
)
from ddkit.progress import Progress, ProgressSetting

DEFAULT_MODEL = "convnet3-bn"
DEFAULT_WEIGHT_DECAY = 5e-4
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.safetensors"
CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_FORMAT = "ddkit.teacher-checkpoint"

__all__ = [
    "DEFAULT_MODEL",
    "TeacherRecipe",
    "cached_teacher",
    "dataset_fingerprint",
    "load_teacher",
    "save_teacher",
    "teacher_bytes",
    "teacher_cache_dir",
    "train_teacher",
]


@dataclass(frozen=True)
class TeacherRecipe:
    """How :func:`train_teacher` trains a teacher: a ``model`` (a
    :func:`~ddkit.models.create_model` name, with BatchNorm for SRe2L) trained for ``epochs``
    with SGD (momentum 0.9, cosine schedule, learning rate ``lr``, ``weight_decay``) on batches
    of ``batch_size`` hard-labelled images under ``augment`` (a DSA strategy, ``"crop"`` by
    default: a random shift, close to the pad-and-crop of the reference training scripts, or
    ``None``), its initialisation and data order drawn from ``seed``. Fewer than one epoch is
    refused in one line. :meth:`to_dict` is what the teacher's files record of it."""

    model: str = DEFAULT_MODEL
    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    augment: str | None = "crop"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"teacher epochs must be >= 1, got {self.epochs}")
        for name, kind in (("epochs", int), ("lr", float), ("batch_size", int),
                           ("weight_decay", float), ("seed", int)):  # fmt: skip
            object.__setattr__(self, name, kind(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as the teacher's checkpoint and ``teacher.json`` record it."""
        return asdict(self)

    def protocol(self) -> EvalProtocol:
        """The recipe as an evaluation protocol of one run (how :func:`_fit` trains)."""
        return EvalProtocol(
            name="teacher",
            epochs=self.epochs,
            lr=self.lr,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            schedule="cosine",
            augment=self.augment,
            targets="hard",
            models=(self.model,),
            runs=1,
        )


def train_teacher(
    train: ImageDataset,
    recipe: TeacherRecipe = TeacherRecipe(),
    *,
    val: ImageDataset | None = None,
    out_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressSetting = "auto",
) -> nn.Module:
    """Train a teacher on the full ``train`` split as ``recipe`` says (SGD momentum 0.9,
    cosine schedule, hard labels, light augmentation: :class:`TeacherRecipe`) and return it in
    eval mode.

    The recipe follows the usual "squeeze" stage (SGD + cosine, standard crop augmentation);
    epochs are scaled down for CPU. The initialisation and data order come from the recipe's
    ``seed`` (the global RNG is untouched).
    With ``out_dir`` the teacher is saved there (see :func:`save_teacher`), and a checkpoint
    written after every epoch lets a new call with the same folder, recipe and data resume an
    interrupted run (module docstring); a checkpoint of another recipe or other data raises
    :class:`ConfigError`. The training metadata is attached to the returned module as
    ``teacher_meta_``. A teacher whose training accuracy (its agreement with the hard labels
    it was trained on, measured anyway) says it is untrained is warned about
    (:func:`~ddkit.models.teacher_files.warn_if_untrained`). ``val``: a split whose accuracy
    the metadata records. ``progress``: its epochs counted by :class:`ddkit.progress.Progress`
    (``False``: silent).
    """
    from ddkit.eval.train import accuracy

    data_key = dataset_fingerprint(train)
    checkpoint = None
    if out_dir is not None:
        check_replaceable_dir(out_dir, _teacher_folder, "a teacher folder")  # before training
        checkpoint = _Checkpoint(Path(out_dir) / CHECKPOINT_DIR, recipe.to_dict(), data_key)
    net, resumed, seconds = _fit(
        train, recipe.protocol(), recipe.seed, checkpoint, device, progress
    )
    meta: dict[str, Any] = {
        "dataset": train.spec.name,
        "spec": train.spec.to_dict(),
        "train_fingerprint": data_key,
        **recipe.to_dict(),
        "optimizer": "sgd",
        "schedule": "cosine",
        "train_seconds": seconds,
        "resumed_after_epoch": resumed,
        "train_accuracy": accuracy(net, train.images.to(device), train.labels),
        "val_accuracy": accuracy(net, val.images.to(device), val.labels)
        if val is not None and len(val)
        else None,
    }
    net.teacher_meta_ = meta
    warn_if_untrained(meta, f"{recipe.model} on {train.spec.name!r}")
    if out_dir is not None:  # replaces the folder, the checkpoint with it (rank 0 writes)
        distributed.main_only(lambda: save_teacher(net, out_dir, meta))
    return net


def _fit(
    train: ImageDataset,
    protocol: EvalProtocol,
    seed: int,
    checkpoint: _Checkpoint | None,
    device: torch.device | str,
    progress: ProgressSetting = False,
) -> tuple[nn.Module, int, float]:
    """Train the teacher as :func:`~ddkit.eval.train.train_networks` trains one network one by
    one (same initialisation, generator and augmentation), resuming from ``checkpoint`` and
    writing it after every epoch when given, its epochs reported as ``progress`` says. Returns
    ``(net in eval mode, epoch resumed after, training seconds over all sessions)``."""
    from ddkit.eval.train import Augmenter, TrainRecipe, build_networks, run_generators, sgd_train

    device = torch.device(device)
    net = build_networks(protocol.models[0], train.spec, [seed], device)[0]
    gen = run_generators([seed])[0]
    recipe = TrainRecipe.of_protocol(protocol, protocol.lr, device)
    opt = recipe.make_optimizer(list(net.parameters()))
    start, before = checkpoint.restore(net, opt, gen) if checkpoint else (0, 0.0)
    t0 = time.perf_counter()

    report = progress if distributed.is_main() else False
    bar = Progress(f"teacher {protocol.models[0]}", protocol.epochs, start=start, unit="epochs",
                   setting=report)  # fmt: skip

    def after(epoch: int) -> None:
        if checkpoint is not None:
            seconds = before + time.perf_counter() - t0
            distributed.main_only(lambda: checkpoint.write(net, opt, gen, epoch + 1, seconds))
        bar.update(1)

    sgd_train(
        net,
        train.images.to(device),
        train.labels.to(device),
        recipe,
        generator=gen,
        optimizer=opt,
        augment=Augmenter.from_protocol(protocol, train.spec),
        on_epoch=after,
        start_epoch=start,
        data_parallel=True,
    )
    bar.close()
    return net, start, before + time.perf_counter() - t0


@dataclass(frozen=True)
class _Checkpoint:
    """The checkpoint folder of a teacher in training (layout in the module docstring); it
    belongs to one ``recipe`` and one training set (``data_key``, its fingerprint)."""

    folder: Path
    recipe: dict[str, Any]
    data_key: str

    def write(
        self,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        epoch: int,
        seconds: float,
    ) -> None:
        """Replace the checkpoint with the state after ``epoch`` finished epochs."""
        tensors = _training_state(net, opt, gen)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "epoch": int(epoch),
            "recipe": self.recipe,
            "train_fingerprint": self.data_key,
            "train_seconds": float(seconds),
        }

        def fill(tmp: Path) -> None:
            write_safetensors(tmp / CHECKPOINT_STATE, tensors)
            atomic_write_json(tmp / CHECKPOINT_META, meta)

        owned = made_as(CHECKPOINT_META, CHECKPOINT_FORMAT)
        atomic_replace_dir(self.folder, fill, owned=owned, kind="a teacher checkpoint")

    def restore(
        self, net: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
    ) -> tuple[int, float]:
        """Load the checkpoint into ``net``, ``opt`` and ``gen``: ``(epochs finished, seconds
        spent)``, or ``(0, 0.0)`` when there is none. Under torchrun rank 0 finishes an
        interrupted replacement of the folder before any rank reads it."""
        distributed.main_only(lambda: recover_replaced_dir(self.folder))
        if not (self.folder / CHECKPOINT_META).is_file():
            return 0, 0.0
        meta = read_json(self.folder / CHECKPOINT_META)
        self._check(meta)
        try:
            _load_training_state(load_tensors(self.folder / CHECKPOINT_STATE), net, opt, gen)
        except (KeyError, RuntimeError, FileFormatError) as e:
            raise FileFormatError(
                f"teacher checkpoint {str(self.folder)!r} is damaged "
                f"({str(e).splitlines()[0]}); delete it to start over"
            ) from None
        return int(meta["epoch"]), float(meta.get("train_seconds", 0.0))

    def _check(self, meta: Any) -> None:
        """Refuse a checkpoint that is not one, or that belongs to another recipe or data."""
        where = f"teacher checkpoint {str(self.folder)!r}"
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise FileFormatError(f"{where} is not a ddkit teacher checkpoint; delete it")
        old = meta.get("recipe") or {}
        why = [f"{k} {old.get(k)!r}, not {v!r}" for k, v in self.recipe.items() if old.get(k) != v]
        if meta.get("train_fingerprint") != self.data_key:
            why.append("other training data")
        if why:
            raise ConfigError(
                f"{where} belongs to another teacher ({'; '.join(why)}); delete it to start "
                "over, or train into another out_dir"
            )


def _training_state(
    net: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Everything the next epoch needs, as named CPU tensors: ``net.<key>`` (state_dict),
    ``momentum.<parameter>`` (SGD momentum buffers) and ``generator`` (uint8 state)."""
    out = {f"net.{k}": v for k, v in net.state_dict().items()}
    for name, p in net.named_parameters():
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[f"momentum.{name}"] = buf
    out["generator"] = gen.get_state()
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def _load_training_state(
    tensors: dict[str, torch.Tensor],
    net: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
) -> None:
    """Put a :func:`_training_state` back into ``net``, ``opt`` and ``gen``."""
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    for name, p in net.named_parameters():
        buf = tensors.get(f"momentum.{name}")
        if buf is not None:
            opt.state[p]["momentum_buffer"] = buf.to(p.device)
    gen.set_state(tensors["generator"])


def _teacher_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a saved teacher, or the checkpoint of one in training."""
    saved = made_as(META_FILE, FORMAT)(folder)
    return saved or made_as(CHECKPOINT_META, CHECKPOINT_FORMAT)(folder / CHECKPOINT_DIR)


def save_teacher(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``path/teacher.safetensors`` + ``path/teacher.json`` atomically.

    ``meta`` must name the ``model`` (a :func:`~ddkit.models.create_model` name) and the dataset
    ``spec`` (a dict); everything else is kept as provenance. Returns ``path``.
    """
    if "model" not in meta or "spec" not in meta:
        raise ConfigError("teacher metadata needs 'model' and 'spec'")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    def fill(tmp: Path) -> None:
        write_safetensors(tmp / WEIGHTS_FILE, state)
        atomic_write_json(
            tmp / META_FILE,
            {
                "format": FORMAT,
                **meta,
                "num_parameters": int(sum(p.numel() for p in model.parameters())),
                "bytes": (tmp / WEIGHTS_FILE).stat().st_size,
                "sha256": sha256_file(tmp / WEIGHTS_FILE),
            },
        )

    atomic_replace_dir(path, fill, owned=_teacher_folder, kind="a teacher folder")
    return Path(path)


def teacher_bytes(path: str | os.PathLike) -> int:
    """Bytes of a teacher's weights (what an evaluation that needs the teacher must ship): a
    saved teacher folder's, or those of any network source
    (:func:`ddkit.models.external.source_bytes`: ``file:`` / ``hf:`` ...)."""
    from ddkit.models.external import source_bytes

    return source_bytes(path)


def dataset_fingerprint(data: ImageDataset) -> str:
    """SHA-256 (hex, first 16 chars) of a dataset's images, labels and spec
    (:func:`ddkit.data.fingerprint.fingerprint`): the cache key part that ties a teacher to the
    exact data it was trained on."""
    return fingerprint(data, repr(sorted(data.spec.to_dict().items())))


def teacher_cache_dir(
    root: str | os.PathLike, train: ImageDataset, model: str, **recipe: Any
) -> Path:
    """``root/<dataset>-<model>-<hash>`` where the hash covers the data and the recipe."""
    key = repr((dataset_fingerprint(train), model, sorted(recipe.items()))).encode()
    name = f"{safe_name(train.spec.name)}-{safe_name(model)}"  # nothing outside root
    return Path(root) / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}"


def cached_teacher(
    train: ImageDataset,
    model: str = DEFAULT_MODEL,
    *,
    cache_root: str | os.PathLike = "runs/teachers",
    epochs: int = 30,
    lr: float = 0.05,
    seed: int = 0,
    batch_size: int = 128,
    augment: str | None = "crop",
    progress: ProgressSetting = "auto",
) -> tuple[nn.Module, Path]:
    """Load the teacher for ``(train, model, recipe)`` from ``cache_root``, training and saving
    it first if it is not there (its epochs reported as ``progress`` says). Returns
    ``(teacher, folder)``, the teacher on the device of ``train``'s images (where it is
    trained, too). Same inputs => same teacher. In a dry run
    (:func:`ddkit.eval.dry_run.estimating`) a teacher not cached is not trained:
    :func:`stand_in_teacher`."""
    device = train.images.device
    recipe = {
        "epochs": int(epochs),
        "lr": float(lr),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "augment": augment,
    }
    folder = teacher_cache_dir(cache_root, train, model, **recipe)
    if (folder / META_FILE).is_file():
        try:
            net, _ = load_teacher(folder, device)
            record(SetupCost(f"teacher {model} x {epochs} epochs", 0.0))
            return net, folder
        except FileFormatError:
            pass  # a broken cache entry is rebuilt below
    if is_estimating():
        return stand_in_teacher(train, model, **recipe), folder
    recipe_of = TeacherRecipe(model, epochs, lr, batch_size, augment=augment, seed=seed)
    train_teacher(train, recipe_of, out_dir=folder, device=device, progress=progress)
    # the saved copy: fresh and cached runs agree exactly
    net, _ = load_teacher(folder, device, warn_untrained=False)
    return net, folder


def stand_in_teacher(
    train: ImageDataset,
    model: str,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int,
    augment: str | None,
) -> nn.Module:
    """A dry run's teacher: the cost of training it (:func:`train_teacher`'s recipe) from one
    epoch timed in part (:func:`ddkit.eval.dry_run.time_part`) plus its closing accuracy pass
    over the same part, scaled to the whole split, recorded; the network trained on that part
    stands in (a teacher of the right shape, not a trained one). Nothing is written."""
    from ddkit.eval.train import accuracy

    device = train.images.device
    protocol = TeacherRecipe(model, 1, lr, batch_size, augment=augment, seed=seed).protocol()

    def one_pass(n: int) -> nn.Module:
        part = ImageDataset(train.images[:n], train.labels[:n], train.spec)
        return _fit(part, protocol, int(seed), None, device)[0]

    part = time_part(one_pass, len(train), batch_size)
    t0 = time.perf_counter()
    accuracy(part.result, train.images[: part.rows], train.labels[: part.rows])
    took = time.perf_counter() - t0
    check = took * len(train) / max(part.rows, 1)
    timed = f"one epoch, {part.text()}, x {epochs} epochs, and its accuracy pass"
    what = f"teacher {model} x {epochs} epochs"
    record(SetupCost(what, part.pass_seconds * epochs + check, timed, part.spent + took))
    net = part.result
    net.teacher_meta_ = {"model": model, "spec": train.spec.to_dict(), "stand_in": True}
    return net


def resolve_teacher(
    syn: SyntheticSet | None = None,
    teacher: Any = None,
    device: torch.device | str = "cpu",
    *,
    spec: DatasetSpec | None = None,
    backbone: bool = False,
) -> tuple[nn.Module, str | None]:
    """A teacher module from ``teacher`` (a module, a ``ddkit teacher`` folder or any network
    source: ``file:PATH``, ``hf:PATH``, ... -- :func:`ddkit.models.external.load_network`) or
    else from ``syn.meta['teacher_dir']``, whose weights must still have the SHA-256 the set
    recorded in ``meta['teacher']``. ``spec`` (default: the set's) is the data the teacher will
    see (its class count checked, its normalisation converted for a Hugging Face model);
    ``backbone``: only the features are wanted (a headless model is taken, the class count not
    checked). Returns ``(module in eval mode, source or None)``; the source of a folder is the
    folder's path as given."""
    from ddkit.models.external import is_source, load_network

    if isinstance(teacher, nn.Module):
        return teacher.to(device).eval(), None
    meta = syn.meta if syn is not None else {}
    source = teacher if teacher is not None else meta.get("teacher_dir")
    if source is None:
        raise ConfigError(
            "this evaluation needs a teacher: pass teacher=<folder or file:PATH / hf:PATH> "
            "(--teacher on the command line) or use a set whose meta records 'teacher_dir'"
        )
    recorded = meta.get("teacher") if teacher is None else None
    sha = recorded.get("sha256") if isinstance(recorded, dict) else None
    spec = spec if spec is not None or syn is None else syn.spec
    net = load_network(source, spec=spec, device=device, sha256=sha, backbone=backbone).module
    name = os.fspath(source)
    return net, name if is_source(name) else str(Path(name))
