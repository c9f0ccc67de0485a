"""What every paired (image-text) method shares: its encoder options and the check that a dataset
holds pairs (the base driver's :meth:`~ddkit.methods.base.Distiller.start` asks it).

A paired run's ``ipc`` is the number of pairs the set holds (pairs have no classes; the issue's
"100 and 500 pairs"), at least 2 (a contrastive loss needs a negative) and at most the number of
train images. The split is a :class:`ddkit.data.paired.PairedDataset` (``images``, ``captions``
token ids, ``caption_image``, ``tokenizer``, ``spec`` of modality ``paired``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ddkit.data.paired import PairedDataset
from ddkit.errors import ConfigError
from ddkit.eval.retrieval import Pairs, split_pairs
from ddkit.eval.towers import (
    DEFAULT_TOWER_CACHE,
    TOWERS,
    TOWERS_KEY,
    TowerRecipe,
    cached_towers,
    check_towers,
    freeze_towers,
    towers_record,
)
from ddkit.methods.base import Distiller
from ddkit.methods.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    MethodConfig,
    Rule,
    one_of,
)
from ddkit.models.text import BUILTIN_TEXT, HF_PREFIX, DualEncoder, EncoderSpec, build_dual_encoder

__all__ = ["EncoderConfig", "PairedDistiller", "check_paired"]

_TEXT = Rule(
    lambda v: v in BUILTIN_TEXT or (v.startswith(HF_PREFIX) and len(v) > len(HF_PREFIX)),
    f"must be one of {', '.join(BUILTIN_TEXT)} or hf:PATH (a local Hugging Face folder)",
)


@dataclasses.dataclass(frozen=True)
class EncoderConfig(MethodConfig):
    """The dual encoder a paired method trains (:class:`ddkit.models.text.EncoderSpec`)."""

    image_encoder: str = "convnet"  # a create_model name, or hf:PATH (frozen, heads trained)
    text_encoder: str = "bag"  # bag | gru (built in, frozen seeded table) | hf:PATH
    embed_dim: int = 64  # the shared space of the projection heads
    token_dim: int = 32  # the built-in text tower's input-embedding width
    text_width: int = 128  # the built-in text tower's body width
    table_seed: int = 0  # seed of the built-in frozen token table (the text space of a set)
    lora_rank: int = 0  # > 0: LoRA adapters on hf: towers through peft (ddkit[lora])
    temperature: float = 0.07  # InfoNCE temperature (CLIP's initial value)
    towers: str = "scratch"  # scratch | pretrained (pretrained here, cached, frozen; heads train)
    tower_epochs: int = 5  # epochs of the towers' pretraining (ddkit.eval.towers)
    standardize_towers: bool = True  # pretrained towers' outputs standardised per feature
    tower_cache: str = DEFAULT_TOWER_CACHE  # the folder keeping pretrained towers

    rules = {
        "text_encoder": _TEXT,
        "embed_dim": AT_LEAST_ONE,
        "token_dim": AT_LEAST_ONE,
        "text_width": AT_LEAST_ONE,
        "table_seed": NON_NEGATIVE,
        "lora_rank": NON_NEGATIVE,
        "temperature": POSITIVE,
        "towers": one_of(*TOWERS),
        "tower_epochs": AT_LEAST_ONE,
    }


def check_paired(train: Any, ipc: int, who: str) -> None:
    """Refuse, in one line, data that are not image-text pairs or an ``ipc`` (pairs) that does
    not fit them (:meth:`ddkit.data.modalities.paired.PairedModality.check_ipc`)."""
    if not isinstance(train, PairedDataset):
        spec = getattr(train, "spec", None)
        holds = getattr(spec, "modality", type(train).__name__)
        raise ConfigError(
            f"{who} needs image-text pairs; dataset {getattr(spec, 'name', '?')!r} holds "
            f"{holds} rows (load a paired dataset, e.g. captioned-digits)"
        )
    train.spec.kind.check_ipc(train, ipc)


class PairedDistiller(Distiller):
    """A method on image-text pairs: ``needs = "paired"``; the base driver's :meth:`start`
    checks the pairs (:meth:`check_data`: :func:`check_paired`) instead of classes."""

    needs: ClassVar[str] = "paired"
    Config: ClassVar[type[MethodConfig]] = EncoderConfig

    def check_data(self, train: Any, ipc: int) -> None:
        check_paired(train, ipc, f"method {self.name!r}")

    def budget_for(self, train: Any) -> int:
        """The config's iterations: a paired method's budget is ddkit's own choice, not a
        published CIFAR-scale count to scale to the data."""
        return int(self.config.iterations)

    def distilled_with(self) -> str | None:
        return None

    def encoder_spec(self, train: Any) -> EncoderSpec:
        """The towers of this run, sized by the captions' tokenizer."""
        c, tok = self.config, train.tokenizer
        return EncoderSpec(
            image=c.image_encoder,
            text=c.text_encoder,
            dim=c.embed_dim,
            token_dim=c.token_dim,
            width=c.text_width,
            table_seed=c.table_seed,
            lora_rank=c.lora_rank,
            vocab_size=int(tok.vocab_size),
            max_len=int(tok.max_len),
            pad_id=int(tok.pad_id),
        )

    def tower_recipe(self) -> TowerRecipe:
        """How pretrained towers are made (the tower seed is fixed: every run, and the
        evaluation, freezes the same towers)."""
        return TowerRecipe(
            epochs=self.config.tower_epochs, standardize=self.config.standardize_towers
        )

    def towers_meta(self) -> dict[str, Any]:
        """``{'towers': ...}`` for the set's meta when the towers are pretrained, else ``{}``."""
        if self.config.towers != "pretrained":
            return {}
        return {TOWERS_KEY: towers_record(self.tower_recipe(), self.config.tower_cache)}

    def build_encoder(self, seed: int) -> DualEncoder:
        """A fresh dual encoder for the run's data, initialised under ``seed``; its towers
        pretrained and frozen (``towers_``) where the config says so."""
        spec = self.train_.spec
        model = build_dual_encoder(self.encoder_, spec.channels, spec.image_size, seed)
        if getattr(self, "towers_", None) is not None:
            model = freeze_towers(model, self.towers_)
        return model.to(self.train_.images.device)  # computed where the data lives

    def prepare(self, train: Any, seed: int) -> tuple[DualEncoder, Pairs]:
        """Set ``encoder_`` (and ``towers_``: the pretrained towers, read from or written to
        ``tower_cache``, or ``None``) and return a model built under ``seed`` and the real
        pairs as its (frozen) text table reads them."""
        self.encoder_ = self.encoder_spec(train)
        self.towers_ = None
        if self.config.towers == "pretrained":
            check_towers("pretrained", self.encoder_)
            self.towers_, _ = cached_towers(
                train, self.encoder_, self.tower_recipe(), cache_root=self.config.tower_cache
            )
        model = self.build_encoder(seed)
        with torch.no_grad():
            return model, split_pairs(train, model)
