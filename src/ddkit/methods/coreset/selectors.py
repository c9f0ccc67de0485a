"""Coreset selectors: herding, greedy k-center and forgetting scores.

Every selector is class-balanced (exactly ``ipc`` rows per class, returned class by class), is
deterministic given the ``torch.Generator`` passed to :meth:`Selector.select`, and never touches
the global RNG (network initialisation and training run under ``torch.random.fork_rng`` seeded
from that generator).

* ``herding`` -- Welling, "Herding dynamical weights to learn", ICML 2009; in the kernel-herding
  form of Chen, Welling & Smola, "Super-samples from kernel herding", UAI 2010, as used for the
  herding baseline of Zhao et al., "Dataset condensation with gradient matching", ICLR 2021
  (and iCaRL, Rebuffi et al. 2017).
* ``kcenter`` -- greedy k-center of Sener & Savarese, "Active learning for convolutional neural
  networks: a core-set approach", ICLR 2018.
* ``forgetting`` -- Toneva et al., "An empirical study of example forgetting during deep neural
  network learning", ICLR 2019.

Herding and k-center work in an embedding space chosen by the config field ``embedding``:
``"trained"`` (features of a ConvNet trained briefly on the real train set), ``"pixels"``
(flattened images) or ``"random"`` (features of a randomly initialised network).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import torch
from torch import nn

from ddkit.data.dataset import ImageDataset
from ddkit.errors import ConfigError
from ddkit.methods.base import MethodConfig, register_method
from ddkit.methods.common import fresh_network
from ddkit.methods.config import (
    AT_LEAST_ONE,
    DEVICE,
    NON_NEGATIVE,
    POSITIVE,
    Alias,
    one_of,
    resolve_device,
)
from ddkit.methods.coreset.base import Selector
from ddkit.models import predict
from ddkit.progress import Progress
from ddkit.rng import draw_seed, seeded_global_rng

EMBEDDINGS = ("trained", "pixels", "random")

# ``on_batch(epoch, index, logits)`` is called for every training batch with the logits computed
# *before* the update on that batch (Toneva et al. record correctness at presentation time).
BatchHook = Callable[[int, torch.Tensor, torch.Tensor], None]


# ------------------------------------------------------------------------ shared training helper
@dataclasses.dataclass(frozen=True)
class FeatureNetRecipe:
    """How :func:`train_feature_net` trains its network: a fresh ``model``, ``epochs`` epochs
    (0: the randomly initialised net) of SGD at ``lr`` with ``momentum`` and ``weight_decay``
    on shuffled mini-batches of ``batch_size``. Checked when built."""

    model: str
    epochs: int
    lr: float = 0.01
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def train_feature_net(
    train: ImageDataset,
    recipe: FeatureNetRecipe,
    generator: torch.Generator,
    *,
    device: torch.device | str = "auto",
    on_batch: BatchHook | None = None,
) -> nn.Module:
    """Train a fresh network on ``train`` as ``recipe`` says (cross-entropy) and return it in
    eval mode, its progress reported like any long loop. ``recipe.epochs == 0`` returns the
    randomly initialised net.

    Initialisation, data order and any random layer (dropout) draw from ``generator`` only; the
    global RNG is left as it was.
    """
    model, epochs = recipe.model, recipe.epochs
    device = resolve_device(device, train.images)
    net = fresh_network(model, train, generator).to(device)
    seed = draw_seed(generator)
    images, labels = train.images.to(device), train.labels.to(device)
    if epochs > 0:
        from ddkit.eval.train import TrainRecipe, sgd_train

        sgd = TrainRecipe(epochs, recipe.lr, recipe.batch_size, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)  # fmt: skip
        bar = Progress(f"feature network {model} on {len(images):,} images", epochs, unit="epochs")
        with seeded_global_rng(seed, device):  # dropout, if the model has any
            sgd_train(net, images, labels, sgd, generator=generator, on_batch=on_batch,
                      on_epoch=lambda epoch: bar.update(1))  # fmt: skip
        bar.close()
    net.eval()
    return net


def embed_images(
    net: nn.Module, images: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """``net.embed`` features ``(N, F)`` float32 on the CPU of ``images``, in batches, without
    gradients (:func:`ddkit.models.predict`); leaves ``net`` in eval mode."""
    net.eval()
    if not len(images):
        return torch.zeros(0, getattr(net, "num_features", 0))
    return predict(
        net, images, batch_size=batch_size, method="embed", post=lambda f: f.float().cpu()
    )


# ------------------------------------------------------------------------ per-class padding
def pad_by_class(
    train: ImageDataset, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group ``features`` ``(N, F)`` by class into a padded ``(K, M, F)`` tensor (``M`` = largest
    class), with the row indices ``(K, M)`` (-1 for padding) and a validity mask ``(K, M)``."""
    groups = train.class_indices
    k, m = len(groups), max(len(g) for g in groups)
    rows = torch.full((k, m), -1, dtype=torch.long, device=features.device)
    for c, g in enumerate(groups):
        rows[c, : len(g)] = g
    valid = rows >= 0
    feats = features[rows.clamp_min(0)] * valid.unsqueeze(-1).to(features.dtype)
    return feats, rows, valid


def _float(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 features stay float64, e.g. for exact tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def herding_order(features: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """Kernel herding (linear kernel), vectorised over classes.

    ``features`` ``(K, M, F)`` with ``valid`` ``(K, M)``; returns positions ``(K, n)``. Step ``t``
    (1-based) picks the unchosen ``x`` minimising ``|| mu - (s + x) / t ||`` where ``mu`` is the
    class mean and ``s`` the sum of the already chosen features (Chen et al. 2010, Eq. 5 with a
    linear kernel; iCaRL's herding).
    """
    x = _float(features)
    w = valid.to(x.dtype).unsqueeze(-1)
    mu = (x * w).sum(1) / w.sum(1).clamp_min(1)  # (K, F)
    sq = torch.einsum("kmf,kmf->km", x, x)
    s = torch.zeros_like(mu)
    taken = ~valid.clone()
    picks = []
    for t in range(1, n + 1):
        r = mu - s / t
        # || r - x/t ||^2 = ||r||^2 - 2 <r, x>/t + ||x||^2/t^2; ||r||^2 does not depend on x.
        score = sq / (t * t) - 2.0 * torch.einsum("kmf,kf->km", x, r) / t
        score = score.masked_fill(taken, float("inf"))
        j = score.argmin(1)
        picks.append(j)
        taken[torch.arange(len(j)), j] = True
        s = s + x[torch.arange(len(j)), j]
    return torch.stack(picks, 1) if picks else torch.zeros(len(x), 0, dtype=torch.long)


def kcenter_order(features: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy k-center (Sener & Savarese 2018), vectorised over classes.

    Starts from the sample nearest the class mean, then repeatedly adds the sample farthest
    (Euclidean) from the chosen set. ``features`` ``(K, M, F)``, ``valid`` ``(K, M)``; returns
    positions ``(K, n)``.
    """
    x = _float(features)
    k = len(x)
    ar = torch.arange(k)
    w = valid.to(x.dtype).unsqueeze(-1)
    mu = (x * w).sum(1) / w.sum(1).clamp_min(1)
    sq = torch.einsum("kmf,kmf->km", x, x)

    def dist2(c: torch.Tensor) -> torch.Tensor:  # squared distance of every row to c (K, F)
        d = sq - 2.0 * torch.einsum("kmf,kf->km", x, c) + (c * c).sum(-1, keepdim=True)
        return d.clamp_min(0)

    taken = ~valid.clone()
    if n == 0:
        return torch.zeros(k, 0, dtype=torch.long)
    j = dist2(mu).masked_fill(taken, float("inf")).argmin(1)
    picks = [j]
    taken[ar, j] = True
    mind = dist2(x[ar, j])
    for _ in range(n - 1):
        j = mind.masked_fill(taken, -1.0).argmax(1)
        picks.append(j)
        taken[ar, j] = True
        mind = torch.minimum(mind, dist2(x[ar, j]))
    return torch.stack(picks, 1)


# ------------------------------------------------------------------------ forgetting
def count_forgetting_events(correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forgetting events from a ``(T, N)`` boolean history of per-presentation correctness.

    Returns ``(events, learned)``: ``events[i]`` counts the transitions correct -> incorrect
    between consecutive presentations of sample ``i``; ``learned[i]`` says whether it was ever
    classified correctly (Toneva et al. 2019, Sec. 2).
    """
    c = torch.as_tensor(correct, dtype=torch.bool)
    if c.ndim != 2:
        raise ValueError(f"correctness history must be (T, N), got {tuple(c.shape)}")
    events = (c[:-1] & ~c[1:]).sum(0)
    return events.long(), c.any(0)


def forgetting_scores(correct: torch.Tensor) -> torch.Tensor:
    """Forgettability per sample: the number of forgetting events, ``inf`` for samples never
    learned (counted as forgotten infinitely often, as in Toneva et al. 2019)."""
    events, learned = count_forgetting_events(correct)
    return events.double().masked_fill(~learned, float("inf"))


def top_per_class(
    scores: torch.Tensor, labels: torch.Tensor, num_classes: int, n: int, generator: torch.Generator
) -> torch.Tensor:
    """Row indices ``(K, n)`` of the ``n`` highest-scoring rows of each class, ties broken by a
    random order drawn from ``generator``. Every class must have at least ``n`` rows."""
    scores, labels = scores.cpu(), labels.cpu()  # a selection's bookkeeping: on the CPU
    perm = torch.randperm(len(scores), generator=generator)
    order = perm[torch.argsort(-scores[perm], stable=True)]  # by score desc, ties random
    order = order[torch.argsort(labels[order], stable=True)]  # grouped by class
    counts = torch.bincount(labels, minlength=num_classes)
    if n and int(counts.min()) < n:
        raise ConfigError(f"a class has only {int(counts.min())} rows, {n} were asked for")
    starts = torch.cumsum(counts, 0) - counts
    return order[starts.unsqueeze(1) + torch.arange(n)]


# ------------------------------------------------------------------------ shared embeddings
#: the embeddings kept while :func:`shared_embeddings` is active (``None``: none kept)
_SHARED: ContextVar[list[tuple[Any, ...]] | None] = ContextVar("shared_embeddings", default=None)


@contextmanager
def shared_embeddings() -> Iterator[None]:
    """A block in which herding and k-center share their trained embedding: a selector that asks
    for the embedding of the same rows (the same object), by the same recipe, from a generator
    in the same state, gets the kept one and the generator's state after it, so its selection
    is bit for bit what it would have been (``--method auto`` costs both selectors on one
    split)."""
    token = _SHARED.set([])
    try:
        yield
    finally:
        _SHARED.reset(token)


def _embedding(
    train: ImageDataset, recipe: FeatureNetRecipe, generator: torch.Generator, device: str
) -> torch.Tensor:
    """The features of ``train`` by a network trained as ``recipe`` says, or the kept ones
    inside :func:`shared_embeddings` (the generator then set to the state training left)."""
    kept = _SHARED.get()
    state = generator.get_state()
    if kept is not None:
        for rows, key, before, after, feats in kept:
            if rows is train and key == (recipe, device) and torch.equal(before, state):
                generator.set_state(after)
                return feats
    net = train_feature_net(train, recipe, generator, device=device)
    feats = embed_images(net, train.images)
    if kept is not None:  # the rows are held here, so no other object can take their id
        kept.append((train, (recipe, device), state, generator.get_state(), feats))
    return feats


# ------------------------------------------------------------------------ selectors
@dataclasses.dataclass(frozen=True)
class EmbeddingConfig(MethodConfig):
    """Embedding used by herding / k-center (see the module docstring)."""

    embedding: str = "trained"  # trained | pixels | random
    model: str = "convnet"
    epochs_net: int = 10
    lr_net: float = 0.01
    batch_net: int = 256
    device: str = "auto"  # "auto": where the training data lives

    rules = {
        "embedding": one_of(*EMBEDDINGS),
        "epochs_net": NON_NEGATIVE,
        "lr_net": POSITIVE,
        "batch_net": AT_LEAST_ONE,
        "device": DEVICE,
    }
    aliases = {
        "embed_epochs": Alias("epochs_net"),
        "lr": Alias("lr_net"),
        "batch_size": Alias("batch_net"),
    }


class _EmbeddingSelector(Selector):
    """Shared part of herding and k-center: embed the train set, pad by class, order.

    Subclasses set ``name`` and ``order`` (e.g. ``staticmethod(herding_order)``).
    """

    Config: ClassVar[type[MethodConfig]] = EmbeddingConfig
    test_overrides: ClassVar[dict[str, Any]] = {"epochs_net": 1}

    @property
    def deterministic(self) -> bool:
        """Pixel embeddings involve no randomness: the selection ignores the seed."""
        return self.config.embedding == "pixels"

    def features(self, train: ImageDataset, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        if cfg.embedding == "pixels":
            return train.images.flatten(1).float()
        epochs = cfg.epochs_net if cfg.embedding == "trained" else 0
        recipe = FeatureNetRecipe(cfg.model, epochs, lr=cfg.lr_net, batch_size=cfg.batch_net)
        return _embedding(train, recipe, generator, cfg.device)

    def order(self, features: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
        raise NotImplementedError

    def select(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        feats, rows, valid = pad_by_class(train, self.features(train, generator))
        pos = self.order(feats, valid, ipc)
        return rows.gather(1, pos).flatten()


@register_method
class HerdingSelector(_EmbeddingSelector):
    """herding: per class, running mean of embeddings greedily matched to the class mean.

    Welling, ICML 2009; kernel herding of Chen, Welling & Smola, UAI 2010 (the DC baseline).
    """

    name = "herding"
    order = staticmethod(herding_order)


@register_method
class KCenterSelector(_EmbeddingSelector):
    """kcenter: per class, greedy k-center in embedding space (Sener & Savarese 2018)."""

    name = "kcenter"
    order = staticmethod(kcenter_order)


def kmeans_centres(
    features: torch.Tensor, valid: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    """Per class, the samples nearest the ``n`` centres of a k-means clustering (k-means++
    starts, Lloyd iterations; scikit-learn, seeded from ``generator``). ``features``
    ``(K, M, F)``, ``valid`` ``(K, M)``; returns positions ``(K, n)``, distinct within a class."""
    from sklearn.cluster import KMeans

    picks = []
    for x, ok in zip(_float(features), valid, strict=True):
        rows = torch.nonzero(ok).flatten()
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        km = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(x[rows].double().numpy())
        centres = torch.from_numpy(km.cluster_centers_).to(x.dtype)
        dist = torch.cdist(centres, x[rows])
        chosen: list[int] = []
        for d in dist:  # nearest sample per centre, never the same one twice
            d = d.clone()
            d[chosen] = float("inf")
            chosen.append(int(d.argmin()))
        picks.append(rows[torch.tensor(chosen)])
    return torch.stack(picks)


@register_method
class KMeansSelector(_EmbeddingSelector):
    """kmeans: per class, the real samples nearest the centres of a k-means clustering of the
    embeddings (the k-means coreset that DC-BENCH, Cui et al. NeurIPS 2022, found hard to beat
    as a proxy for architecture search)."""

    name = "kmeans"

    def select(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        feats, rows, valid = pad_by_class(train, self.features(train, generator))
        pos = kmeans_centres(feats, valid, ipc, generator)
        return rows.gather(1, pos).flatten()


@register_method
class ForgettingSelector(Selector):
    """forgetting: per class, the samples forgotten most often during training.

    Toneva et al., ICLR 2019. A network is trained on the real set for ``epochs`` epochs; a
    forgetting event is a sample going from correct to incorrect between consecutive
    presentations. Never-learned samples rank first; ties are broken by a seeded random order.
    """

    name = "forgetting"
    test_overrides: ClassVar[dict[str, Any]] = {"epochs_net": 2}

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        model: str = "convnet"
        epochs_net: int = 10
        lr_net: float = 0.01
        batch_net: int = 256
        device: str = "auto"  # "auto": where the training data lives

        rules = {
            "epochs_net": AT_LEAST_ONE,
            "lr_net": POSITIVE,
            "batch_net": AT_LEAST_ONE,
            "device": DEVICE,
        }
        aliases = {
            "epochs": Alias("epochs_net"),
            "lr": Alias("lr_net"),
            "batch_size": Alias("batch_net"),
        }

    def correctness_history(self, train: ImageDataset, generator: torch.Generator) -> torch.Tensor:
        """``(epochs, N)`` booleans: was sample ``i`` classified correctly when presented in
        epoch ``e`` (prediction made on its mini-batch, before the update)."""
        cfg = self.config
        correct = torch.zeros(cfg.epochs_net, len(train), dtype=torch.bool)
        labels = train.labels.cpu()

        def record(epoch: int, idx: torch.Tensor, logits: torch.Tensor) -> None:
            idx = idx.cpu()
            correct[epoch, idx] = logits.argmax(1).cpu() == labels[idx]

        recipe = FeatureNetRecipe(
            cfg.model, cfg.epochs_net, lr=cfg.lr_net, batch_size=cfg.batch_net
        )
        train_feature_net(train, recipe, generator, device=cfg.device, on_batch=record)
        return correct

    def select(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        scores = forgetting_scores(self.correctness_history(train, generator))
        return top_per_class(scores, train.labels, train.spec.num_classes, ipc, generator).flatten()
