"""Teachers for decoupled distillation: train once, save with metadata, load without pickle.

SRe2L's "squeeze" stage (Yin, Xing & Shen, "Squeeze, Recover and Relabel: Dataset Condensation
at ImageNet Scale From A New Perspective", NeurIPS 2023) trains a network *with BatchNorm* on the
full training set; its running BN statistics are what the "recover" stage matches, and its soft
predictions are the labels of the "relabel" stage. RDED (Sun et al., "On the Diversity and
Realism of Distilled Dataset: An Efficient Dataset Distillation Paradigm", CVPR 2024) uses the
same kind of teacher as observer (to score crops) and as labeller.

A teacher on disk is a folder with ``teacher.safetensors`` (the ``state_dict``, BN running
statistics included) and ``teacher.json`` (model name, dataset spec, training recipe, seed,
train/validation accuracy and the SHA-256 of the weights). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, FileFormatError
from ddkit.io import atomic_replace_dir, atomic_write_json, load_tensors, read_json, sha256_file

WEIGHTS_FILE = "teacher.safetensors"
META_FILE = "teacher.json"
FORMAT = "ddkit.teacher"
DEFAULT_MODEL = "convnet3-bn"

__all__ = [
    "DEFAULT_MODEL",
    "cached_teacher",
    "dataset_fingerprint",
    "load_teacher",
    "save_teacher",
    "teacher_bytes",
    "teacher_cache_dir",
    "train_teacher",
]


def _protocol(
    epochs: int, lr: float, batch_size: int, augment: str | None, model: str, weight_decay: float
):
    from ddkit.eval.protocol import EvalProtocol

    return EvalProtocol(
        name="teacher",
        epochs=int(epochs),
        lr=float(lr),
        optimizer="sgd",
        momentum=0.9,
        weight_decay=float(weight_decay),
        batch_size=int(batch_size),
        schedule="cosine",
        augment=augment,
        targets="hard",
        models=(model,),
        runs=1,
    )


def train_teacher(
    train: ImageDataset,
    model: str = DEFAULT_MODEL,
    *,
    epochs: int = 30,
    lr: float = 0.05,
    seed: int = 0,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    augment: str | None = "crop",
    val: ImageDataset | None = None,
    out_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Train a teacher on the full ``train`` split (SGD momentum 0.9, cosine schedule, hard
    labels, light augmentation) and return it in eval mode.

    The recipe follows the usual "squeeze" stage (SGD + cosine, standard crop augmentation);
    epochs are scaled down for CPU. ``augment`` is a DSA strategy (``"crop"`` by default: a
    random shift, close to the pad-and-crop of the reference training scripts) or ``None``.
    The initialisation and data order come from ``seed`` (the global RNG is untouched).
    With ``out_dir`` the teacher is saved there (see :func:`save_teacher`); the training metadata
    is attached to the returned module as ``teacher_meta_``.
    """
    from ddkit.eval.train import accuracy, train_networks

    if epochs < 1:
        raise ConfigError(f"teacher epochs must be >= 1, got {epochs}")
    protocol = _protocol(epochs, lr, batch_size, augment, model, weight_decay)
    t0 = time.perf_counter()
    res = train_networks(
        model,
        train.spec,
        train.images,
        train.labels,
        protocol,
        [int(seed)],
        lr=float(lr),
        vectorize=False,
        device=device,
    )
    net = res.models[0].eval()
    meta: dict[str, Any] = {
        "model": model,
        "dataset": train.spec.name,
        "spec": train.spec.to_dict(),
        "train_fingerprint": dataset_fingerprint(train),
        "epochs": int(epochs),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "weight_decay": float(weight_decay),
        "augment": augment,
        "optimizer": "sgd",
        "schedule": "cosine",
        "seed": int(seed),
        "train_seconds": time.perf_counter() - t0,
        "train_accuracy": accuracy(net, train.images.to(device), train.labels),
        "val_accuracy": accuracy(net, val.images.to(device), val.labels)
        if val is not None and len(val)
        else None,
    }
    net.teacher_meta_ = meta
    if out_dir is not None:
        save_teacher(net, out_dir, meta)
    return net


def save_teacher(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``path/teacher.safetensors`` + ``path/teacher.json`` atomically.

    ``meta`` must name the ``model`` (a :func:`~ddkit.models.create_model` name) and the dataset
    ``spec`` (a dict); everything else is kept as provenance. Returns ``path``.
    """
    if "model" not in meta or "spec" not in meta:
        raise ConfigError("teacher metadata needs 'model' and 'spec'")
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    def fill(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS_FILE))
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

    atomic_replace_dir(path, fill)
    return Path(path)


def load_teacher(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a teacher saved by :func:`save_teacher`: ``(model in eval mode, metadata)``.

    Weights are read with safetensors (no pickle); a tampered, truncated or mismatched file
    raises :class:`~ddkit.errors.FileFormatError`. The returned model's parameters do not
    require gradients.
    """
    from ddkit.io import recover_replaced_dir
    from ddkit.models import create_model

    recover_replaced_dir(path)

    p = Path(path)
    if not (p / META_FILE).is_file():
        raise FileFormatError(f"no teacher at {str(p)!r} (expected {META_FILE} and {WEIGHTS_FILE})")
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{str(p / META_FILE)!r} is not a ddkit teacher file")
    wfile = p / WEIGHTS_FILE
    if not wfile.is_file():
        raise FileFormatError(f"missing file {str(wfile)!r}")
    if meta.get("sha256") and sha256_file(wfile) != meta["sha256"]:
        raise FileFormatError(f"{str(wfile)!r} does not match its checksum in {META_FILE}")
    spec = DatasetSpec.from_dict(meta.get("spec", {}))
    with torch.random.fork_rng(
        devices=[]
    ):  # the init is overwritten; keep the global RNG as it was
        net = create_model(
            meta["model"],
            num_classes=spec.num_classes,
            in_channels=spec.channels,
            image_size=spec.image_size,
        )
    try:
        net.load_state_dict(load_tensors(wfile), strict=True)
    except RuntimeError as e:
        raise FileFormatError(
            f"teacher weights in {str(p)!r} do not fit model {meta['model']!r}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    net = net.to(device).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    net.teacher_meta_ = meta
    return net, meta


def teacher_bytes(path: str | os.PathLike) -> int:
    """Bytes of a saved teacher's weights (what an evaluation that needs the teacher must ship)."""
    f = Path(path) / WEIGHTS_FILE
    if not f.is_file():
        raise FileFormatError(f"no teacher weights at {str(f)!r}")
    return f.stat().st_size


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
    return Path(root) / f"{train.spec.name}-{model}-{hashlib.sha256(key).hexdigest()[:12]}"


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
) -> tuple[nn.Module, Path]:
    """Load the teacher for ``(train, model, recipe)`` from ``cache_root``, training and saving
    it first if it is not there. Returns ``(teacher, folder)``. Same inputs => same teacher."""
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
            net, _ = load_teacher(folder)
            return net, folder
        except FileFormatError:
            pass  # a broken cache entry is rebuilt below
    train_teacher(train, model, out_dir=folder, **recipe)
    net, _ = load_teacher(folder)  # the saved copy, so a fresh run and a cached run agree exactly
    return net, folder
