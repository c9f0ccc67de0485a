"""Training records of proxy networks, the input of every pruning score, cached on disk.

One proxy run trains a fresh network on the real train split with ddkit's own trainer
(:func:`~ddkit.methods.coreset.selectors.train_feature_net`: SGD, cross-entropy, shuffled
mini-batches) and records, for every row:

* ``true_prob``, ``margin``, ``correct`` ``(epochs, N)``: the true-class probability, the logit
  margin and whether the prediction was right when the row was presented in each epoch (logits
  of its mini-batch, before the update, as Toneva et al. 2019 record forgetting);
* ``el2n``, ``grand`` ``(N,)``: EL2N and the last-layer GraNd of the network after its last epoch
  (eval mode, whole train split).

Cache layout (the convention of expert trajectories, :mod:`ddkit.methods.trajectory.experts`)::

    <cache>/<dataset>-<model>-<hash>/seed_<seed>.safetensors

where the hash covers the dataset's content fingerprint and spec and the training recipe
(model, epochs, lr, batch, momentum, weight decay). Each file holds one run, so runs are reused
across kept fractions, IPCs, scores and seed counts. The safetensors header keeps the format,
the key and a checksum of the tensors; a file that fails it is refused, never silently used.
Files are written atomically (:func:`ddkit.io.save_tensors`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.errors import ConfigError, FileFormatError
from ddkit.io import load_tensors, safe_name, save_tensors
from ddkit.methods.coreset.scores import el2n, grand, logit_margin, true_class_prob
from ddkit.methods.coreset.selectors import FeatureNetRecipe, embed_images, train_feature_net

__all__ = ["FIELDS", "ProxyRecipe", "Records", "proxy_records", "record_run", "records_folder"]

FORMAT = "ddkit.pruning-records"
FORMAT_VERSION = 1
FIELDS = ("true_prob", "margin", "correct", "el2n", "grand")


@dataclass(frozen=True)
class ProxyRecipe(FeatureNetRecipe):
    """How proxy networks are trained (everything that changes the records but the seed): a
    :class:`FeatureNetRecipe` of at least one epoch, ten by default."""

    model: str = "convnet"
    epochs: int = 10

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"proxy networks need epochs >= 1, got {self.epochs}")
        super().__post_init__()


@dataclass(frozen=True)
class Records:
    """Records of ``S`` proxy runs stacked on a leading axis: ``true_prob``, ``margin``,
    ``correct`` ``(S, epochs, N)`` and ``el2n``, ``grand`` ``(S, N)``."""

    true_prob: torch.Tensor
    margin: torch.Tensor
    correct: torch.Tensor
    el2n: torch.Tensor
    grand: torch.Tensor

    @classmethod
    def stack(cls, runs: Sequence[dict[str, torch.Tensor]]) -> Records:
        return cls(**{f: torch.stack([r[f] for r in runs]) for f in FIELDS})


def record_run(
    train: ImageDataset, recipe: ProxyRecipe, seed: int, device: torch.device | str = "auto"
) -> dict[str, torch.Tensor]:
    """Train one proxy network from ``seed`` and return its records (module docstring)."""
    n, e = len(train), recipe.epochs
    true_prob = torch.zeros(e, n, dtype=torch.float32)
    margin = torch.zeros(e, n, dtype=torch.float32)
    correct = torch.zeros(e, n, dtype=torch.bool)
    labels = train.labels.cpu()  # the records are kept on the CPU

    def on_batch(epoch: int, index: torch.Tensor, logits: torch.Tensor) -> None:
        index, logits = index.cpu(), logits.float().cpu()
        y = labels[index]
        true_prob[epoch, index] = true_class_prob(logits, y).float()
        margin[epoch, index] = logit_margin(logits, y).float()
        correct[epoch, index] = logits.argmax(1) == y

    net = train_feature_net(
        train,
        recipe,
        torch.Generator().manual_seed(int(seed)),
        device=device,
        on_batch=on_batch,
    )
    features = embed_images(net, train.images).double()
    head = net.classifier
    with torch.no_grad():
        logits = features @ head.weight.detach().double().cpu().T
        if head.bias is not None:
            logits = logits + head.bias.detach().double().cpu()
    return {
        "true_prob": true_prob,
        "margin": margin,
        "correct": correct,
        "el2n": el2n(logits, labels),
        "grand": grand(logits, features, labels, bias=head.bias is not None),
    }


def _key(train: ImageDataset, recipe: ProxyRecipe) -> dict[str, object]:
    return {
        "data": fingerprint(train),
        "spec": train.spec.to_dict(),
        "recipe": asdict(recipe),
    }


def records_folder(cache: str | os.PathLike, train: ImageDataset, recipe: ProxyRecipe) -> Path:
    """``cache/<dataset>-<model>-<hash>``: the folder of the runs of ``recipe`` on ``train``."""
    text = json.dumps(_key(train, recipe), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return Path(cache) / safe_name(
        f"{train.spec.name}-{recipe.model.lower()}-{digest}", max_length=96
    )


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    return fingerprint(*(tensors[f] for f in FIELDS), length=64)


def _save(path: Path, tensors: dict[str, torch.Tensor], key: str, seed: int) -> None:
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "key": key,
        "seed": str(seed),
        "checksum": _checksum(tensors),
    }
    save_tensors(path, tensors, metadata=header)


def _load(path: Path, key: str, seed: int) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    tensors = load_tensors(path)  # FileFormatError if truncated or unreadable
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    fixes = f"delete {str(path)!r} to recompute it"
    if header.get("format") != FORMAT or header.get("key") != key:
        raise FileFormatError(f"{str(path)!r} holds other records than asked for; {fixes}")
    if header.get("seed") != str(seed) or set(tensors) != set(FIELDS):
        raise FileFormatError(f"{str(path)!r} holds other records than asked for; {fixes}")
    if header.get("checksum") != _checksum(tensors):
        raise FileFormatError(f"{str(path)!r} fails its checksum (changed after writing); {fixes}")
    return tensors


def proxy_records(
    train: ImageDataset,
    recipe: ProxyRecipe,
    seeds: Sequence[int],
    *,
    cache: str | os.PathLike | None = "runs/scores",
    device: torch.device | str = "auto",
) -> Records:
    """The records of one proxy run per seed in ``seeds``, stacked. With ``cache`` each run is
    read from ``records_folder(cache, ...)/seed_<seed>.safetensors`` when there (refused in one
    line if it fails its checksum), else trained and written there. Same seeds => same records."""
    if not seeds:
        raise ConfigError("pruning scores need at least one proxy seed")
    folder = records_folder(cache, train, recipe) if cache else None
    key = json.dumps(_key(train, recipe), sort_keys=True)
    runs = []
    for seed in seeds:
        path = folder / f"seed_{int(seed)}.safetensors" if folder is not None else None
        if path is not None and path.is_file():
            runs.append(_load(path, key, int(seed)))
            continue
        run = record_run(train, recipe, int(seed), device)
        if path is not None:
            _save(path, run, key, int(seed))
        runs.append(run)
    return Records.stack(runs)
