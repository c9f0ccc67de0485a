"""Pretrained frozen towers for image-text retrieval (issue 86): made here once per data and
recipe, cached, then used frozen with trained projection heads, as vision-language distillation
does with an ImageNet-pretrained NFNet and a frozen BERT (Wu et al., "Vision-Language Dataset
Distillation", TMLR 2024, arXiv:2308.07545; LoRS, Xu et al., ICML 2024, arXiv:2406.03793).

No download: the towers are the built-in ones (:mod:`ddkit.models.text`, the image network and
the ``bag`` / ``gru`` text tower an :class:`~ddkit.models.text.EncoderSpec` names), pretrained
on the paired train split's **attributes** (:attr:`ddkit.data.paired.PairedDataset.attributes`;
for ``scenes-*``: kind, colour, size and count per region, :mod:`ddkit.data.scenes`):

* the image tower, with one linear classifier per attribute column on its features, learns to
  read every column from the image (the sum of the columns' cross-entropies: a per-region,
  multi-attribute objective; each column's values are its own classes, an empty region's
  included);
* the text tower learns the same columns from every caption of the image (the captions of
  ``scenes-*`` come from a grammar that names exactly these attributes,
  :func:`ddkit.data.scenes.parse_caption`), reading the frozen seeded token table, which stays
  as it is so the token-input space of a set means the same with or without pretraining.

Both train with Adam under :class:`TowerRecipe` from its ``seed`` (the data order from a
``torch.Generator``, the initial weights from :func:`~ddkit.rng.seeded_global_rng`): same data,
towers and recipe, same weights. :func:`cached_towers` keeps them as one safetensors file in a
cache folder, named by the SHA-256 of the data's fingerprint, the towers' spec (the projection
size ``dim`` aside: heads are not pretrained) and the recipe, written atomically, read without
pickle. :func:`freeze_towers` loads them into a freshly built :class:`~ddkit.models.text.DualEncoder`
and freezes them: no parameter of a tower requires a gradient (so neither
:func:`~ddkit.eval.retrieval.train_pairs` nor :class:`~ddkit.models.text.TrainableView` touches
them), and they stay in eval mode; only the heads train. Gradients still flow *through* them to
their inputs, which distillation needs.

Deviations from the papers: the towers are small networks pretrained here on this data's own
attributes, not web-scale models; ``hf:`` towers (:mod:`ddkit.models.text`) remain for real
pretrained weights and are refused here (they are pretrained already).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.data.fingerprint import fingerprint
from ddkit.errors import ConfigError, DataError
from ddkit.eval.dry_run import SetupCost, is_estimating, record, time_part
from ddkit.io import ensure_writable_dir, json_sha256, load_tensors, save_tensors
from ddkit.models.text import HF_PREFIX, DualEncoder, EncoderSpec, build_dual_encoder
from ddkit.rng import seeded_global_rng

__all__ = [
    "DEFAULT_TOWER_CACHE",
    "TOWERS",
    "TOWERS_KEY",
    "FrozenTower",
    "TowerRecipe",
    "attribute_classes",
    "cached_towers",
    "check_towers",
    "freeze_towers",
    "pretrain_towers",
    "tower_cache_file",
    "towers_of",
    "towers_record",
]

#: The suffix of a side's standardisation statistics in a towers' state (``image_norm.mean``)
NORM = "_norm"
#: the smallest standard deviation a feature is divided by, as a share of the features' mean
#: one (a feature nearly constant on the train split is not blown up on other inputs)
STD_FLOOR = 0.01
#: Tower sources: trained with the heads from scratch, or pretrained here and frozen.
TOWERS = ("scratch", "pretrained")
#: Where the pretrained towers are kept (one file per data, towers and recipe).
DEFAULT_TOWER_CACHE = "runs/towers"
FORMAT = "ddkit-towers-1"


@dataclass(frozen=True)
class TowerRecipe:
    """How the towers are pretrained (module docstring): ``epochs`` over the train split
    (images for the image tower, captions for the text tower), Adam at ``lr`` in mini-batches
    of ``batch``, from ``seed``; ``standardize``: each frozen tower's outputs are then
    standardised per feature by the train split's mean and standard deviation, fixed (the
    papers' frozen features come normalised: BERT's last layer is a LayerNorm; raw ReLU
    features, all of one sign, leave the heads' SGD ill-conditioned). ddkit's CPU-scale
    defaults."""

    epochs: int = 5
    lr: float = 1e-3
    batch: int = 64
    seed: int = 0
    standardize: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"tower {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"tower lr must be > 0, got {self.lr}")
        if int(self.seed) < 0:
            raise ConfigError(f"tower seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_towers(towers: str, spec: EncoderSpec | None = None) -> None:
    """Refuse, in one line, a tower source that is not one of :data:`TOWERS`, or pretraining
    of an ``hf:`` tower (pretrained already)."""
    if towers not in TOWERS:
        raise ConfigError(f"towers must be one of {', '.join(TOWERS)}, got {towers!r}")
    if towers == "pretrained" and spec is not None:
        for side in (spec.image, spec.text):
            if side.startswith(HF_PREFIX):
                raise ConfigError(
                    f"towers='pretrained' pretrains the built-in towers; {side} is pretrained "
                    "already (use towers='scratch' with hf: towers)"
                )


def attribute_classes(train: Any) -> tuple[torch.Tensor, list[int]]:
    """Each attribute column's values as class ids ``(N, A)`` and each column's class count;
    data without attributes are a one-line DataError."""
    attrs = getattr(train, "attributes", None)
    if attrs is None or attrs.numel() == 0:
        name = getattr(getattr(train, "spec", None), "name", "?")
        raise DataError(
            f"pretrained towers learn the data's attributes; {name!r} records none "
            "(use a scenes-* dataset, or towers='scratch')"
        )
    codes, sizes = [], []
    for column in attrs.T:
        values, ids = torch.unique(column, return_inverse=True)
        codes.append(ids)
        sizes.append(len(values))
    return torch.stack(codes, 1), sizes


def _data_key(train: Any) -> str:
    return fingerprint(repr(train.spec), train.images, train.captions, train.attributes)


def _tower_key(spec: EncoderSpec) -> dict[str, Any]:
    """The spec's fields that shape the towers (the heads' ``dim`` aside)."""
    return {k: v for k, v in spec.to_dict().items() if k != "dim"}


def tower_cache_file(
    root: str | os.PathLike, train: Any, spec: EncoderSpec, recipe: TowerRecipe
) -> Path:
    """``root/towers-<name>-<hash>.safetensors``; the hash covers data, towers and recipe."""
    key = {"data": _data_key(train), "towers": _tower_key(spec), "recipe": recipe.to_dict()}
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in train.spec.name)
    return Path(root) / f"towers-{name}-{json_sha256(key)[:16]}.safetensors"


def _fit(
    tower: nn.Module,
    inputs: Any,
    targets: torch.Tensor,
    sizes: list[int],
    recipe: TowerRecipe,
    seed: int,
) -> None:
    """Train ``tower`` with one linear classifier per column of ``targets`` on its features;
    ``inputs(rows)`` gives the tower's features of ``rows``."""
    with seeded_global_rng(seed):
        head = nn.Linear(tower.num_features, sum(sizes)).to(targets.device)
    params = [*tower.parameters(), *head.parameters()]
    opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=recipe.lr)
    g = torch.Generator().manual_seed(seed)
    tower.train()
    for _ in range(recipe.epochs):
        for rows in torch.randperm(len(targets), generator=g).split(recipe.batch):
            rows = rows.to(targets.device)
            logits = head(inputs(rows)).split(sizes, dim=1)
            loss = sum(F.cross_entropy(z, targets[rows, j]) for j, z in enumerate(logits))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    tower.eval()


def pretrain_towers(train: Any, spec: EncoderSpec, recipe: TowerRecipe) -> dict[str, torch.Tensor]:
    """The towers ``spec`` names pretrained on ``train``'s attributes (module docstring): a
    state dict with ``image.*`` and ``text.*`` entries (the modules :func:`freeze_towers`
    fills)."""
    check_towers("pretrained", spec)
    codes, sizes = attribute_classes(train)
    codes = codes.to(train.images.device)
    dev, s = train.images.device, int(recipe.seed)
    model = build_dual_encoder(spec, train.spec.channels, train.spec.image_size, s).to(dev)
    _fit(model.image, lambda r: model.image(train.images[r]), codes, sizes, recipe, s + 1)
    captions, owner = train.captions.to(dev), train.caption_image.to(dev)

    def read(rows: torch.Tensor) -> torch.Tensor:
        return model.text(*model.text_inputs(captions[rows]))

    _fit(model.text, read, codes[owner], sizes, recipe, s + 2)
    state = {f"image.{k}": v for k, v in model.image.state_dict().items()}
    state.update({f"text.{k}": v for k, v in model.text.state_dict().items()})
    if recipe.standardize:
        every = torch.arange(len(train.images), device=dev)
        with torch.no_grad():
            for side, features in (
                ("image", _features(lambda r: model.image(train.images[r]), every, recipe)),
                ("text", _features(read, torch.arange(len(captions), device=dev), recipe)),
            ):
                state[f"{side}{NORM}.mean"] = features.mean(0)
                std = features.std(0)
                state[f"{side}{NORM}.std"] = std.clamp_min(STD_FLOOR * float(std.mean()) + 1e-12)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _features(read: Any, rows: torch.Tensor, recipe: TowerRecipe) -> torch.Tensor:
    """A tower's outputs of ``rows`` (``read(rows)``), in mini-batches of the recipe's size."""
    return torch.cat([read(part) for part in rows.split(4 * recipe.batch)])


def cached_towers(
    train: Any,
    spec: EncoderSpec,
    recipe: TowerRecipe | None = None,
    *,
    cache_root: str | os.PathLike = DEFAULT_TOWER_CACHE,
) -> tuple[dict[str, torch.Tensor], Path]:
    """The pretrained towers for ``(train, spec, recipe)``: read from ``cache_root`` when there,
    else pretrained (:func:`pretrain_towers`) and written there atomically. Returns ``(state,
    file)``. Same inputs, same towers."""
    recipe = recipe or TowerRecipe()
    check_towers("pretrained", spec)
    path = tower_cache_file(cache_root, train, spec, recipe)
    what = f"pretrained towers x {recipe.epochs} epochs"
    if path.is_file():
        record(SetupCost(what, 0.0))
        return load_tensors(path), path
    if is_estimating():
        return _stand_in_towers(train, spec, recipe, what), path
    state = pretrain_towers(train, spec, recipe)
    ensure_writable_dir(path.parent)
    meta = {"format": FORMAT, "recipe": json_sha256(recipe.to_dict()), "data": _data_key(train)}
    save_tensors(path, state, metadata=meta)
    return state, path


def _stand_in_towers(
    train: Any, spec: EncoderSpec, recipe: TowerRecipe, what: str
) -> dict[str, torch.Tensor]:
    """A dry run's towers: one pretraining epoch timed on a part of the images
    (:func:`~ddkit.eval.dry_run.time_part`), scaled to the recipe's epochs and recorded; the
    part's towers stand in."""
    one = dataclasses.replace(recipe, epochs=1)

    def one_pass(n: int) -> dict[str, torch.Tensor]:
        return pretrain_towers(train.subset(torch.arange(n)), spec, one)

    part = time_part(one_pass, len(train), recipe.batch)
    timed = f"one epoch of both towers, {part.text()}, x {recipe.epochs} epochs"
    record(SetupCost(what, part.pass_seconds * recipe.epochs, timed, part.spent))
    return part.result


class FrozenTower(nn.Module):
    """A tower that never trains: its parameters need no gradient and it stays in eval mode;
    ``num_features``, ``input_dim`` and ``inputs`` are the wrapped tower's. With ``mean`` and
    ``std`` (per feature, on the tower's device; fixed buffers) its outputs are standardised by
    them."""

    def __init__(
        self, tower: nn.Module, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.tower = tower.eval()
        for p in tower.parameters():
            p.requires_grad_(False)
        self.num_features = int(tower.num_features)
        if hasattr(tower, "input_dim"):
            self.input_dim = int(tower.input_dim)
        # buffers (not in the state dict): they follow the model to a device
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def train(self, mode: bool = True) -> FrozenTower:
        super().train(mode)
        self.tower.eval()
        return self

    def inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tower.inputs(ids)

    def forward(self, *args: Any) -> torch.Tensor:
        out = self.tower(*args)
        return out if self.mean is None else (out - self.mean) / self.std


def freeze_towers(model: DualEncoder, state: dict[str, torch.Tensor]) -> DualEncoder:
    """``model`` with its towers loaded from ``state`` (:func:`pretrain_towers`) and frozen
    (:class:`FrozenTower`); its heads keep their initial weights and train. A state of other
    towers is a one-line ConfigError."""
    for side in ("image", "text"):
        tower = getattr(model, side)
        part = {k[len(side) + 1 :]: v for k, v in state.items() if k.startswith(side + ".")}
        try:
            device = next(iter(tower.state_dict().values())).device
            tower.load_state_dict({k: v.to(device) for k, v in part.items()})
        except RuntimeError:
            raise ConfigError(
                f"the cached {side} tower does not fit the encoder built; pretrain the towers "
                "for this encoder spec (delete the cache file, or use towers='scratch')"
            ) from None
        stats = (state.get(f"{side}{NORM}.{k}") for k in ("mean", "std"))  # (standardised)
        mean, std = (None if t is None else t.to(device) for t in stats)
        setattr(model, side, FrozenTower(tower, mean, std))
    return model


#: The key of a paired set's meta recording its towers (absent: from scratch).
TOWERS_KEY = "towers"


def towers_record(recipe: TowerRecipe, cache_root: str | os.PathLike) -> dict[str, Any]:
    """What a paired set's ``meta['towers']`` holds when made with pretrained towers: the
    recipe and the cache folder, so that its evaluation freezes the same towers."""
    return {"source": "pretrained", "recipe": recipe.to_dict(), "cache": str(cache_root)}


def towers_of(
    meta: dict[str, Any], towers: str | None = None, cache_root: str | os.PathLike | None = None
) -> tuple[str, TowerRecipe, str]:
    """``(source, recipe, cache_root)``: ``towers`` / ``cache_root`` where given, else what
    ``meta`` records (:func:`towers_record`), else from scratch with the default recipe."""
    rec = meta.get(TOWERS_KEY)
    rec = rec if isinstance(rec, dict) else {}
    source = towers or str(rec.get("source", "scratch"))
    check_towers(source)
    try:  # a record from before standardisation was an option holds raw towers
        recorded = rec.get("recipe")
        recipe = TowerRecipe(**({"standardize": False} | recorded)) if recorded else TowerRecipe()
    except TypeError as e:
        raise ConfigError(f"invalid towers record in the set's meta: {e}") from None
    return source, recipe, str(cache_root or rec.get("cache", DEFAULT_TOWER_CACHE))
