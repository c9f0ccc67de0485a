"""Coreset baselines of image-text pairs: real pairs, chosen at random or by herding.

* ``vl-random``: ``ipc`` train images drawn uniformly without replacement, one of each image's
  captions drawn too (the "random pairs" baseline of Wu et al., TMLR 2024, arXiv:2308.07545);
* ``vl-herding``: kernel herding (Welling, ICML 2009; Chen, Welling & Smola, UAI 2010, as in
  :func:`ddkit.methods.coreset.selectors.herding_order`) on *joint* embeddings: a dual encoder
  trained ``epochs_net`` epochs on the real pairs (0: at its random initialisation) embeds each
  train image ``a_i`` and each caption; an image's joint embedding is ``[a_i ; mean_j b_j]``
  over its captions; herding picks ``ipc`` images whose running mean best matches the data's
  mean, each kept with its caption closest to it (ties: the first).

Both store the captions' token ids (``text.ids``), so the set is read by any tower that shares
the tokenizer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ddkit.data.synthetic import SyntheticSet
from ddkit.eval.retrieval import RetrievalRecipe, caption_of_each, paired_set, train_pairs
from ddkit.methods.base import register_method
from ddkit.methods.config import NON_NEGATIVE, POSITIVE
from ddkit.methods.coreset.selectors import herding_order
from ddkit.methods.vision_language.base import EncoderConfig, PairedDistiller
from ddkit.rng import draw_seed

__all__ = ["VLHerding", "VLRandom"]


class _PairSelector(PairedDistiller):
    """Chooses real pairs in ``init`` (``state_['rows']``, ``state_['captions']``); no
    iterations."""

    kind = "selector"

    def step(self, iteration: int) -> dict[str, float]:
        return {}

    def result(self) -> SyntheticSet:
        rows, captions = self.state_["rows"], self.state_["captions"]
        meta = {"indices": rows.tolist(), "caption_indices": captions.tolist()}
        meta.update(self.towers_meta())
        train = self.train_
        return paired_set(
            train.images[rows],
            train.spec,
            self.encoder_,
            ids=train.captions[captions],
            tokenizer=train.tokenizer,
            meta=meta,
        )


@register_method
class VLRandom(_PairSelector):
    """vl-random: ipc random real image-text pairs (one random caption per drawn image)."""

    name = "vl-random"

    @dataclasses.dataclass(frozen=True)
    class Config(EncoderConfig):
        pass

    def init(self, train: Any, ipc: int, generator: torch.Generator, iterations: int) -> None:
        self.encoder_ = self.encoder_spec(train)
        rows = torch.randperm(len(train), generator=generator)[:ipc]
        self.state_["rows"] = rows
        self.state_["captions"] = caption_of_each(train, rows, generator)


@dataclasses.dataclass(frozen=True)
class HerdingConfig(EncoderConfig):
    """vl-herding: the encoder that embeds the pairs and its training."""

    epochs_net: int = 5  # epochs of the embedding encoder on the real pairs (0: untrained)
    lr_net: float = 1e-3  # its Adam learning rate
    batch_net: int = 64  # its mini-batch of pairs

    rules = {"epochs_net": NON_NEGATIVE, "lr_net": POSITIVE, "batch_net": POSITIVE}


@register_method
class VLHerding(_PairSelector):
    """vl-herding: real pairs chosen by kernel herding on joint image-text embeddings of a dual
    encoder trained on the real pairs."""

    name = "vl-herding"
    Config = HerdingConfig
    test_overrides: ClassVar[dict[str, Any]] = {
        "epochs_net": 1,
        "embed_dim": 8,
        "token_dim": 8,
        "text_width": 16,
        "image_encoder": "convnet2-w8",
    }

    def init(self, train: Any, ipc: int, generator: torch.Generator, iterations: int) -> None:
        cfg = self.config
        seed = draw_seed(generator)
        model, real = self.prepare(train, seed)
        if cfg.epochs_net:
            recipe = RetrievalRecipe(
                epochs=cfg.epochs_net, lr=cfg.lr_net, batch=cfg.batch_net,
                temperature=cfg.temperature, runs=1,
            )  # fmt: skip
            train_pairs(model, real, recipe, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            model.eval()
            a = torch.cat([model(x)[0] for x in real.images.split(256)])
            b = torch.cat(
                [model(None, e, m)[1] for e, m in zip(real.emb.split(256), real.mask.split(256))]
            )
        n = len(a)
        owner = real.caption_image
        text = torch.zeros_like(a).index_add_(0, owner, b)
        text = text / torch.bincount(owner, minlength=n).clamp_min(1).unsqueeze(1).to(a.dtype)
        joint = torch.cat([a, text], 1)
        valid = torch.ones(1, n, dtype=torch.bool, device=joint.device)
        rows = herding_order(joint[None], valid, ipc)[0]
        score = (a[owner] * b).sum(1)  # each caption's similarity to its own image
        top = torch.full((n,), float("-inf"), device=score.device)
        top = top.scatter_reduce(0, owner, score, "amax")
        ids = torch.arange(len(owner), device=score.device)
        best = torch.full((n,), len(owner), dtype=torch.long, device=score.device)
        hit = score == top[owner]  # the first caption reaching its image's best score
        best = best.scatter_reduce(0, owner[hit], ids[hit], "amin")
        self.state_["rows"] = rows
        self.state_["captions"] = best[rows]
