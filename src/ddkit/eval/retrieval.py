"""Image-text retrieval (issue 71): train a dual encoder's trainable parts on a set of pairs and
report recall@1/5/10 both ways on the real test split, as vision-language distillation is judged
(Wu et al., "Vision-Language Dataset Distillation", TMLR 2024, arXiv:2308.07545; LoRS, Xu et al.,
ICML 2024, arXiv:2406.03793).

A paired set is a :class:`~ddkit.data.synthetic.SyntheticSet` of images (pairs have no classes:
its spec is the data's with one nominal class, every label 0; :func:`set_spec`) whose text lies
in ``extras``:

* ``text.ids`` ``(M, L)`` int64: real captions' token ids (a coreset of real pairs), or
* ``text.embeddings`` ``(M, L, d)`` and ``text.mask`` ``(M, L)``: learned continuous text in the
  text tower's frozen input-embedding space (:mod:`ddkit.models.text`), or
* ``text.features`` ``(M, F)``: learned text in the text tower's *output* space (``F`` its
  ``num_features``; ``meta['text_space'] = "output"``), as Wu et al. and LoRS learn BERT
  outputs: only the text head reads them, so such a set is trained and evaluated only with a
  frozen text tower (pretrained towers, or an ``hf:`` text tower without LoRA);
* optionally ``similarity.diag`` ``(M,)``, ``similarity.left`` / ``similarity.right``
  ``(M, r)``: LoRS's learned target similarity ``S = diag(a) + (alpha / r) L R^T`` (alpha in
  ``meta['similarity_alpha']``), which replaces the one-hot targets of the contrastive loss.

Caption ``j`` of a set describes image ``j``; ``meta['encoder']`` records the towers
(:class:`~ddkit.models.text.EncoderSpec`) the text's space belongs to, and ``meta['towers']``
(optional) that they were pretrained here and frozen (:mod:`ddkit.eval.towers`): every row
of its report then trains only the projection heads over the same frozen towers.

The recipe (:class:`RetrievalRecipe`): a freshly initialised dual encoder (seed per run), SGD
with momentum on the symmetric InfoNCE loss (CLIP's, fixed temperature), mini-batches of pairs,
a fixed number of epochs; every row of the report is trained under it: the set, ``random
pairs`` (as many real images as the set has pairs, one random caption each, drawn per run) and
``full data`` (every train caption with its image). Recall is over *all* test captions: an image
is retrieved at ``k`` if any of its captions ranks in its top ``k`` (ties count against it), a
caption if its image ranks in its top ``k``. Mean ± std over runs.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import TEXT_EMB, TEXT_FEAT, TEXT_IDS, TEXT_MASK, SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.evaluate import Report, run_seeds
from ddkit.eval.towers import cached_towers, freeze_towers, towers_of
from ddkit.models.text import DualEncoder, EncoderSpec, build_dual_encoder

__all__ = [
    "Pairs",
    "caption_of_each",
    "check_frozen_text",
    "RetrievalRecipe",
    "learned_rates",
    "RetrievalReport",
    "contrastive_loss",
    "encoder_spec_for",
    "evaluate_retrieval",
    "paired_set",
    "recall_at_k",
    "set_pairs",
    "set_spec",
    "similarity_matrix",
    "split_pairs",
    "train_pairs",
]

SIM_DIAG, SIM_LEFT, SIM_RIGHT = "similarity.diag", "similarity.left", "similarity.right"
ENCODER_KEY = "encoder"
KS = (1, 5, 10)
METRICS = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in KS)


# ------------------------------------------------------------------------------ the set format
def paired_set(
    images: torch.Tensor,
    spec: DatasetSpec,
    encoder: EncoderSpec,
    *,
    ids: torch.Tensor | None = None,
    emb: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    features: torch.Tensor | None = None,
    similarity: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None = None,
    tokenizer: Any = None,
    meta: dict[str, Any] | None = None,
) -> SyntheticSet:
    """A paired set (module docstring): ``images`` with real caption ``ids``, learned ``emb`` +
    ``mask`` or learned output-space ``features``, and optionally LoRS's similarity factors
    ``(diag, left, right, alpha)``; ``tokenizer`` (the captions') is recorded in
    ``meta['tokenizer']``."""
    n = len(images)
    extras: dict[str, torch.Tensor] = {}
    if ids is not None:
        extras[TEXT_IDS] = ids.detach().long().cpu().clone()
    if emb is not None:
        extras[TEXT_EMB] = emb.detach().float().cpu().clone()
        extras[TEXT_MASK] = mask.detach().float().cpu().clone()
    if features is not None:
        extras[TEXT_FEAT] = features.detach().float().cpu().clone()
    if len({n, *(len(v) for v in extras.values())}) != 1 or not extras:
        raise DataError(f"a paired set needs one caption per image ({n} images)")
    out = dict(meta or {})
    if features is not None:
        out["text_space"] = "output"
    out[ENCODER_KEY] = encoder.to_dict()
    if tokenizer is not None:
        out["tokenizer"] = tokenizer.to_dict()
    if similarity is not None:
        diag, left, right, alpha = similarity
        extras[SIM_DIAG], extras[SIM_LEFT], extras[SIM_RIGHT] = (
            t.detach().float().cpu().clone() for t in (diag, left, right)
        )
        out["similarity_alpha"] = float(alpha)
    labels = torch.zeros(n, dtype=torch.long)
    return SyntheticSet(images.detach().cpu(), labels, set_spec(spec), meta=out, extras=extras)


def set_spec(spec: DatasetSpec) -> DatasetSpec:
    """The spec a paired set stores: its data's (modality ``paired``), with one nominal class
    ``"pair"`` so that the set format's hard labels (all 0) hold."""
    return dataclasses.replace(spec, num_classes=1, class_names=("pair",))


@dataclass(frozen=True)
class Pairs:
    """What a dual encoder trains on: ``images`` ``(N, C, H, W)``, captions as frozen input
    embeddings ``emb`` ``(M, L, d)`` with ``mask`` ``(M, L)`` or (``emb`` and ``mask`` ``None``)
    as ``features`` ``(M, F)`` in the text tower's output space, ``caption_image`` ``(M,)`` (the
    image each describes) and an optional ``(M, M)`` target similarity (one-hot when ``None``)."""

    images: torch.Tensor
    emb: torch.Tensor | None
    mask: torch.Tensor | None
    caption_image: torch.Tensor
    target: torch.Tensor | None = None
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.caption_image.shape[0])

    def text_of(self, rows: Any) -> dict[str, torch.Tensor]:
        """The captions ``rows`` as :class:`~ddkit.models.text.DualEncoder` keywords."""
        if self.features is not None:
            return {"features": self.features[rows]}
        return {"emb": self.emb[rows], "mask": self.mask[rows]}

    def first(self, n: int) -> Pairs:
        """The first ``n`` captions (with every image), their targets among themselves."""
        cut = {k: getattr(self, k) for k in ("emb", "mask", "features")}
        return dataclasses.replace(
            self, caption_image=self.caption_image[:n],
            target=None if self.target is None else self.target[:n, :n],
            **{k: None if v is None else v[:n] for k, v in cut.items()},
        )  # fmt: skip


def similarity_matrix(
    diag: torch.Tensor, left: torch.Tensor, right: torch.Tensor, alpha: float
) -> torch.Tensor:
    """LoRS's learned similarity ``diag(a) + (alpha / r) L R^T`` (Xu et al., Eq. 6)."""
    return torch.diag(diag) + left @ right.T * (alpha / max(left.shape[1], 1))


#: the refusal of output-space text beside a trainable text tower, with its fix
NEEDS_FROZEN_TEXT = (
    "output-space text needs a frozen text tower: towers='pretrained' (or an hf: text tower "
    "with lora_rank=0)"
)


def check_frozen_text(model: DualEncoder) -> None:
    """Refuse, in one line, a text tower with trainable parameters: text in its output space
    (``text.features``) skips the tower, which holds only while the tower never trains."""
    if any(p.requires_grad for p in model.text.parameters()):
        raise ConfigError(NEEDS_FROZEN_TEXT)


def set_pairs(syn: SyntheticSet, model: DualEncoder) -> Pairs:
    """The pairs of a paired set as ``model`` reads them (real ids through its frozen table;
    output-space features, which need a frozen text tower, through its text head alone)."""
    x = syn.extras
    target = None
    if SIM_DIAG in x:
        alpha = float(syn.meta.get("similarity_alpha", 1.0))
        target = similarity_matrix(x[SIM_DIAG], x[SIM_LEFT], x[SIM_RIGHT], alpha)
    order = torch.arange(len(syn))
    if TEXT_FEAT in x:
        check_frozen_text(model)
        features, width = x[TEXT_FEAT], int(model.text.num_features)
        if features.ndim != 2 or features.shape[-1] != width:
            raise DataError(
                f"the set's text features are {tuple(features.shape)}, the text tower gives "
                f"{width}-d outputs; evaluate with the encoder the set records"
            )
        return Pairs(syn.images, None, None, order, target, features=features)
    if TEXT_EMB in x:
        emb, mask = x[TEXT_EMB], x[TEXT_MASK]
        if emb.shape[-1] != model.text.input_dim:
            raise DataError(
                f"the set's text embeddings are {emb.shape[-1]}-d, the text tower takes "
                f"{model.text.input_dim}-d inputs; evaluate with the encoder the set records"
            )
    elif TEXT_IDS in x:
        emb, mask = model.text_inputs(x[TEXT_IDS])
    else:
        raise DataError(
            "this set holds no captions (text.ids, text.embeddings or text.features); it is not "
            "a paired set"
        )
    return Pairs(syn.images, emb, mask, order, target)


def encoder_spec_for(syn: SyntheticSet, tokenizer: Any) -> EncoderSpec:
    """The towers a set records, else the built-in ones sized for ``tokenizer``."""
    recorded = syn.meta.get(ENCODER_KEY)
    if isinstance(recorded, dict):
        return EncoderSpec.from_dict(recorded)
    return EncoderSpec(
        vocab_size=int(tokenizer.vocab_size),
        max_len=int(tokenizer.max_len),
        pad_id=int(tokenizer.pad_id),
    )


# ------------------------------------------------------------------------------ training
def contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, temperature: float, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE between image features ``a`` and text features ``b`` (rows paired):
    one-hot targets (CLIP), or with ``target`` ``(n, n)`` the soft-target form LoRS uses for a
    learned similarity, ``-(S * log_softmax(logits)).sum(1).mean()`` both ways (equal to the
    one-hot loss at ``S = I``)."""
    logits = a @ b.T / temperature
    if target is None:
        labels = torch.arange(len(a), device=a.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    i2t = -(target * logits.log_softmax(1)).sum(1).mean()
    t2i = -(target.T * logits.T.log_softmax(1)).sum(1).mean()
    return (i2t + t2i) / 2


#: the retrieval recipe's optimizers (:class:`RetrievalRecipe`)
OPTIMIZERS = ("adam", "sgd", "learned")
#: the rates of the ``learned`` recipe are divided by this after half the epochs (LoRS's code)
LEARNED_DECAY = 0.1


@dataclass(frozen=True)
class RetrievalRecipe:
    """How every row of a retrieval report trains (module docstring): ``epochs`` over the
    pairs (``full_epochs`` for the full data, whose epochs are many steps), ``optimizer``
    ``"adam"`` or ``"sgd"`` (``lr``, ``momentum`` for SGD, ``weight_decay``) in mini-batches of
    ``batch`` pairs, InfoNCE at ``temperature``; ``runs`` seeds. ddkit's CPU-scale defaults,
    not a paper's (Adam: plain SGD stalls for hundreds of steps on these small encoders).

    ``optimizer="learned"`` is the papers' evaluation of a distilled set (LoRS, Xu et al., ICML
    2024, Algorithm 2 and its authors' code; Wu et al. likewise): SGD with ``momentum`` and
    ``weight_decay`` at the set's learned student rates, one per side (``rates``: image, text;
    :func:`evaluate_retrieval` reads them from the set's ``meta['student_lr']``), divided by 10
    after half the epochs; every row of the report trains at the same rates."""

    epochs: int = 200
    full_epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch: int = 64
    temperature: float = 0.07
    runs: int = 3
    rates: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"retrieval optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                f"{self.optimizer!r}"
            )
        for name in ("epochs", "full_epochs", "batch", "runs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"retrieval {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.temperature > 0:
            raise ConfigError("retrieval lr and temperature must be > 0")


def train_pairs(
    model: DualEncoder,
    pairs: Pairs,
    recipe: RetrievalRecipe,
    generator: torch.Generator,
    *,
    epochs: int | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """Train ``model``'s trainable parameters on ``pairs`` under ``recipe`` (``epochs``
    overrides its count); each epoch visits every caption once with its image, in an order
    drawn from ``generator``; ``on_epoch(e)`` runs after epoch ``e`` (1-based)."""
    opt = _optimizer(model, recipe)
    total = int(recipe.epochs if epochs is None else epochs)
    model.train()
    for e in range(total):
        if recipe.optimizer == "learned" and e == total // 2 + 1:
            for group in opt.param_groups:
                group["lr"] *= LEARNED_DECAY
        order = torch.randperm(len(pairs), generator=generator)
        for rows in order.split(recipe.batch):
            a, b = model(pairs.images[pairs.caption_image[rows]], **pairs.text_of(rows))
            target = None if pairs.target is None else pairs.target[rows][:, rows]
            loss = contrastive_loss(a, b, recipe.temperature, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(e + 1)
    model.eval()


# ------------------------------------------------------------------------------ recall
def recall_at_k(
    sims: torch.Tensor, caption_image: torch.Tensor, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Recall@k both ways from ``sims`` ``(N images, M captions)``; ``caption_image`` ``(M,)``
    names each caption's image. Image -> text: an image counts at ``k`` if fewer than ``k``
    captions of other images score at least as high as its best caption; text -> image: a
    caption counts if fewer than ``k`` other images score at least its own image's score."""
    n, m = sims.shape
    own = caption_image.view(1, m) == torch.arange(n, device=sims.device).view(n, 1)
    if not bool(own.any(1).all()):
        raise DataError("every test image needs at least one caption to be retrieved")
    best = sims.masked_fill(~own, float("-inf")).max(1).values  # (N,)
    i2t_rank = ((sims >= best[:, None]) & ~own).sum(1)
    mine = sims[caption_image, torch.arange(m, device=sims.device)]  # (M,)
    t2i_rank = ((sims >= mine[None, :]) & ~own).sum(0)
    out = {f"i2t_r{k}": float((i2t_rank < k).float().mean()) for k in ks}
    out.update({f"t2i_r{k}": float((t2i_rank < k).float().mean()) for k in ks})
    return out


@torch.no_grad()
def encode_split(model: DualEncoder, test: Any, batch: int = 256) -> dict[str, float]:
    """Recall@1/5/10 of ``model`` on a paired split ``test`` (its images and all captions)."""
    model.eval()
    a = torch.cat([model(x)[0] for x in test.images.split(batch)])
    parts = []
    for ids in test.captions.split(batch):
        emb, mask = model.text_inputs(ids)
        parts.append(model(None, emb, mask)[1])
    return recall_at_k(a @ torch.cat(parts).T, test.caption_image)


# ------------------------------------------------------------------------------ the report
@dataclass
class RetrievalRow:
    """One row of a retrieval report: per-run recalls (``METRICS``) and the seeds."""

    name: str
    pairs: int
    runs: list[dict[str, float]]
    seeds: list[int]
    train_seconds: float

    def mean(self, metric: str) -> float:
        return statistics.fmean(r[metric] for r in self.runs)

    def std(self, metric: str) -> float:
        values = [r[metric] for r in self.runs]
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        summary = {m: {"mean": self.mean(m), "std": self.std(m)} for m in METRICS}
        return {
            "model": self.name,
            "pairs": self.pairs,
            "runs": self.runs,
            "seeds": self.seeds,
            "train_seconds": self.train_seconds,
            **summary,
        }


@dataclass
class RetrievalReport(Report):
    """Recall@1/5/10 both ways for the set and its baselines (``ddkit evaluate`` prints
    :meth:`table` and writes :meth:`to_dict` to ``eval.json``)."""

    recipe: RetrievalRecipe
    results: list[RetrievalRow] = field(default_factory=list)
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def result(self, name: str) -> RetrievalRow:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def table(self) -> str:
        head = f"{'pairs of':<14} {'n':>6}  " + "  ".join(f"{m:>13}" for m in METRICS)
        lines = [head, "-" * len(head)]
        for r in self.results:
            cells = "  ".join(f"{100 * r.mean(m):>6.1f} ± {100 * r.std(m):<4.1f}" for m in METRICS)
            lines.append(f"{r.name:<14} {r.pairs:>6}  {cells}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "retrieval",
            "recipe": asdict(self.recipe),
            "seconds": self.seconds,
            "results": [r.to_dict() for r in self.results],
            "meta": self.meta,
        }


def _random_pairs(train: Any, model: DualEncoder, n: int, seed: int) -> Pairs:
    """``n`` real train images drawn with ``seed``, one of their captions each (drawn too)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randperm(len(train), generator=g)[:n]
    emb, mask = model.text_inputs(train.captions[caption_of_each(train, images, g)])
    return Pairs(train.images[images], emb, mask, torch.arange(n))


def caption_of_each(split: Any, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each image row in ``rows`` of a paired split, one of its captions drawn uniformly
    from ``g`` (the first of its captions in a random order of all captions)."""
    owner = split.caption_image.cpu()
    m, n = len(owner), len(split)
    order = torch.randperm(m, generator=g)
    first = torch.full((n,), m, dtype=torch.long)
    first = first.scatter_reduce(0, owner[order], torch.arange(m), "amin")[rows.cpu()]
    if bool((first == m).any()):
        raise DataError(f"image {int(rows[first == m][0])} of the paired split has no caption")
    return order[first]


def split_pairs(split: Any, model: DualEncoder) -> Pairs:
    """Every caption of a paired split with its image, as ``model``'s text tower reads them."""
    emb, mask = model.text_inputs(split.captions)
    return Pairs(split.images, emb, mask, split.caption_image)


#: This evaluator's name, which a modality names to be judged by it
#: (:attr:`~ddkit.data.modalities.base.Modality.evaluator`, :mod:`ddkit.eval.evaluators`).
RETRIEVAL = "retrieval"


def _check_split(syn: SyntheticSet, test: Any) -> None:
    if syn.spec.kind.evaluator != RETRIEVAL:  # the modalities whose sets retrieval judges
        raise ConfigError(
            f"retrieval evaluation takes a paired set; this one holds {syn.spec.modality}"
        )
    if not isinstance(test, syn.spec.kind.dataset_type()):
        raise DataError("retrieval evaluation needs a paired test split (images and captions)")
    if tuple(syn.spec.shape) != tuple(test.images.shape[1:]):
        raise DataError(
            f"the set's images are {tuple(syn.spec.shape)}, the test split's "
            f"{tuple(test.images.shape[1:])}; evaluate on the dataset the set was made from"
        )


def _optimizer(model: DualEncoder, recipe: RetrievalRecipe) -> torch.optim.Optimizer:
    """The optimizer of ``recipe`` over ``model``'s trainable parameters (``learned``: one
    group per side at its rate)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    if recipe.rates is None:
        raise ConfigError(
            "the 'learned' retrieval recipe needs the set's learned rates (image, text); "
            "evaluate_retrieval reads them from a vl-mtt set's meta['student_lr']"
        )
    groups = [
        {"params": [p for n, p in named if model.side_of(n) == side], "lr": float(rate)}
        for side, rate in zip(("image", "text"), recipe.rates)
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=0.0, momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )  # fmt: skip


def learned_rates(syn: SyntheticSet) -> tuple[float, float]:
    """The image and text student rates ``syn`` learned (``meta['student_lr']``, vl-mtt), as the
    ``learned`` retrieval recipe trains at them; a set without them is refused in one line."""
    rates = syn.meta.get("student_lr")
    if not isinstance(rates, dict) or not {"image", "text"} <= set(rates):
        raise ConfigError(
            "the 'learned' retrieval recipe trains at the set's learned student rates, and this "
            "set has none (only vl-mtt learns them): use the adam or sgd recipe"
        )
    return float(rates["image"]), float(rates["text"])


def evaluate_retrieval(
    syn: SyntheticSet,
    test: Any,
    train: Any = None,
    *,
    recipe: RetrievalRecipe | None = None,
    runs: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    full_data: bool = True,
    random_pairs: bool = True,
    towers: str | None = None,
    tower_cache: str | None = None,
) -> RetrievalReport:
    """Train fresh dual encoders (the towers ``syn`` records) on ``syn`` and report recall@1/5/10
    both ways on the paired split ``test``, mean ± std over ``runs`` seeds; with ``train`` (the
    paired train split) the ``random pairs`` and ``full data`` rows under the same recipe beside
    it (``full_data=False``: the random row only, e.g. when the full row was already trained
    under the same recipe and seed; ``random_pairs=False``: no random row, so with both off
    ``train`` only makes the pretrained towers). ``runs`` and ``epochs`` override the recipe's
    (``epochs`` both its counts). ``towers`` ``"pretrained"`` / ``"scratch"`` overrides what the set
    records (``meta['towers']``, :func:`ddkit.eval.towers.towers_of`): pretrained towers are
    read from ``tower_cache`` (else the recorded folder), made from ``train`` if not there,
    and frozen in every row. Same seed => same report."""
    _check_split(syn, test)
    base = recipe or RetrievalRecipe()
    given = {"runs": runs, "epochs": epochs, "full_epochs": epochs}
    recipe = dataclasses.replace(base, **{k: v for k, v in given.items() if v})
    if recipe.optimizer == "learned" and recipe.rates is None:
        recipe = dataclasses.replace(recipe, rates=learned_rates(syn))
    encoder = encoder_spec_for(syn, test.tokenizer)
    seeds = run_seeds(seed, recipe.runs)
    t0 = time.perf_counter()

    source, tower_recipe, cache = towers_of(syn.meta, towers, tower_cache)
    frozen = None
    if source == "pretrained":
        if train is None:
            raise ConfigError(
                "pretrained towers are made from the paired train split; pass it (or "
                "towers='scratch')"
            )
        frozen, _ = cached_towers(train, encoder, tower_recipe, cache_root=cache)

    def build(s: int) -> DualEncoder:
        model = build_dual_encoder(encoder, syn.spec.channels, syn.spec.image_size, s)
        return model if frozen is None else freeze_towers(model, frozen)

    rows: list[tuple[str, int, int, Callable[[DualEncoder, int], Pairs]]] = [
        (
            str(syn.meta.get("method", "set")),
            len(syn),
            recipe.epochs,
            lambda m, s: set_pairs(syn, m),
        )
    ]
    if train is not None:
        n = min(len(syn), len(train))
        if random_pairs:
            random = ("random pairs", n, recipe.epochs)
            rows.append((*random, lambda m, s: _random_pairs(train, m, n, s)))
        if full_data:
            full = ("full data", len(train.captions), recipe.full_epochs)
            rows.append((*full, lambda m, s: split_pairs(train, m)))
    report = RetrievalReport(recipe)
    for name, size, ep, make in rows:
        start, scores = time.perf_counter(), []
        for s in seeds:
            model = build(s)
            g = torch.Generator().manual_seed(s)
            train_pairs(model, make(model, s), recipe, g, epochs=ep)
            scores.append(encode_split(model, test))
        report.results.append(RetrievalRow(name, size, scores, seeds, time.perf_counter() - start))
    report.seconds = time.perf_counter() - t0
    report.meta = {"seed": seed, "encoder": encoder.to_dict(), "bytes": syn.storage_bytes()}
    report.meta["towers"] = source
    return report
