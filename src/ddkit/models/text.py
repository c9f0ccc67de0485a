"""Encoders for image-text pairs (issue 71): an image tower and a text tower, each followed by a
linear projection head into one shared space, as in CLIP-style contrastive training and the
vision-language distillation of Wu et al. ("Vision-Language Dataset Distillation", TMLR 2024,
arXiv:2308.07545) and LoRS (Xu et al., "Low-Rank Similarity Mining for Multimodal Dataset
Distillation", ICML 2024, arXiv:2406.03793).

Text enters a tower in two steps, so a distilled set can hold *continuous* text:

1. ``tower.inputs(ids)`` looks token ids up in a **frozen** input-embedding table: ``(n, L, d)``
   embeddings and an ``(n, L)`` mask of the real tokens;
2. ``tower(embeddings, mask)`` is the trainable body: ``(n, F)`` features.

A distilled set stores learned ``(M, L, d)`` embeddings and their masks in that input space; a
real caption is its table rows. The table is frozen so that the space means the same to every
network trained later (Wu et al. keep BERT frozen for the same reason).

Towers (:class:`EncoderSpec` names them):

* image ``convnet`` (or any :func:`~ddkit.models.create_model` name): the network's ``embed``
  features, every weight trainable;
* text ``bag``: the table (seeded by ``table_seed``, standard normal entries: a smaller scale
  starts every caption at nearly the same features, where plain SGD stalls) plus learned position
  embeddings, a two-layer MLP (``width``) on every token, then a masked mean over the tokens (the
  MLP before the mean lets a word's position change its features, so "red on blue" and "blue on
  red" differ, which a plain bag of words cannot tell);
* text ``gru``: the same inputs through a one-layer GRU (``width``), masked mean of its outputs;
* ``hf:PATH`` (either side): a pretrained Hugging Face model from a local folder (a CLIP or ViT
  folder serves images, a BERT-style folder text; CLIP's text model, which reads token ids
  only, is refused in one line), frozen, needing the
  ``transformers`` extra; text is the masked mean of its last hidden states over
  ``inputs_embeds`` from the model's own input table, images are resized to the model's size
  (and a grey channel repeated to three) and read from its pooled output. Attention runs
  eager (the fused kernels have no second derivative, which trajectory matching takes) and
  the model stays in eval mode (no dropout). ``lora_rank > 0`` adds
  LoRA adapters (Hu et al., ICLR 2022) to its attention query/value projections through
  ``peft`` (the ``lora`` extra); only the adapters and the heads train.

:class:`DualEncoder` holds both towers and both heads; ``forward(images, embeddings, mask)``
returns L2-normalised features of either side (``None`` for a side not asked). The trainable
parameters are those with ``requires_grad``; :class:`TrainableView` evaluates the model at a
flat vector of them (``torch.func.functional_call``), for trajectory matching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddkit.data.hf_folders import LOAD_OPTIONS, check_hf_folder
from ddkit.errors import ConfigError, FileFormatError, require_extra
from ddkit.meter import BUDGET_ENV, check_memory
from ddkit.models.registry import create_model
from ddkit.rng import seeded_global_rng

__all__ = [
    "BUILTIN_TEXT",
    "DualEncoder",
    "EncoderSpec",
    "TrainableView",
    "build_dual_encoder",
    "load_hf_model",
]

#: The built-in text towers.
BUILTIN_TEXT = ("bag", "gru")
HF_PREFIX = "hf:"
#: Linear layers LoRA adapts in a pretrained model (attention query / value projections of BERT,
#: ViT and CLIP).
LORA_TARGETS = ("query", "value", "q_proj", "v_proj")


@dataclass(frozen=True)
class EncoderSpec:
    """How to build a :class:`DualEncoder`; recorded in a distilled set's meta so its evaluation
    builds the same towers. ``vocab_size``, ``max_len`` and ``pad_id`` come from the captions'
    tokenizer."""

    image: str = "convnet"
    text: str = "bag"
    dim: int = 64
    token_dim: int = 32
    width: int = 128
    table_seed: int = 0
    lora_rank: int = 0
    vocab_size: int = 0
    max_len: int = 0
    pad_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderSpec:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as e:
            raise FileFormatError(f"invalid encoder record in the set's meta: {e}") from None


def check_encoder_names(image: str, text: str) -> None:
    """Refuse an encoder name that is neither built in nor ``hf:PATH``, in one line."""
    if not (text in BUILTIN_TEXT or text.startswith(HF_PREFIX)):
        raise ConfigError(
            f"text_encoder {text!r} is unknown; valid: {', '.join(BUILTIN_TEXT)} or hf:PATH "
            "(a local Hugging Face folder)"
        )
    if image.startswith(HF_PREFIX) and not image[len(HF_PREFIX) :]:
        raise ConfigError("image_encoder 'hf:' names no folder; write hf:PATH")


def _builtin_text_parameters(spec: EncoderSpec) -> int:
    """Parameters and table entries of the built-in text tower ``spec`` describes."""
    d, w = spec.token_dim, spec.width
    body = 3 * (d * w + w * w + 2 * w) if spec.text == "gru" else d * w + w * w + 2 * w
    return spec.vocab_size * d + spec.max_len * d + body


def _check_encoder_size(spec: EncoderSpec, parameters: int) -> None:
    """Refuse (one line naming the sizes) encoders of ``parameters`` float32 values beyond the
    memory budget, before they are built."""
    sizes = (f"dim {spec.dim:,}, width {spec.width:,}, vocabulary {spec.vocab_size:,} x "
             f"{spec.token_dim:,}, max_len {spec.max_len:,}")  # fmt: skip
    check_memory(
        f"the dual encoder ({sizes}: {parameters:,} parameters)",
        4 * parameters,
        f"record smaller encoder sizes (or caption with a smaller vocabulary), or raise "
        f"${BUDGET_ENV}",
    )


# ------------------------------------------------------------------------------ towers
def _masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(h.dtype).unsqueeze(-1)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class BuiltinText(nn.Module):
    """The built-in text tower (``bag`` or ``gru``, module docstring): a frozen seeded table
    (a buffer, so never trained), learned positions, a trainable body."""

    def __init__(self, kind: str, spec: EncoderSpec) -> None:
        super().__init__()
        if spec.vocab_size < 1 or spec.max_len < 1:
            raise ConfigError("the text tower needs the tokenizer's vocab_size and max_len")
        g = torch.Generator().manual_seed(int(spec.table_seed))
        self.register_buffer("table", torch.randn(spec.vocab_size, spec.token_dim, generator=g))
        self.pad_id, self.kind = int(spec.pad_id), kind
        self.position = nn.Parameter(torch.zeros(spec.max_len, spec.token_dim))
        if kind == "gru":
            self.body = nn.GRU(spec.token_dim, spec.width, batch_first=True)
        else:
            self.body = nn.Sequential(
                nn.Linear(spec.token_dim, spec.width), nn.ReLU(), nn.Linear(spec.width, spec.width)
            )
        self.num_features = int(spec.width)
        self.input_dim = int(spec.token_dim)

    def inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ids.numel() and int(ids.max()) >= self.table.shape[0]:
            raise ConfigError(
                f"caption token id {int(ids.max())} is beyond the text tower's vocabulary of "
                f"{self.table.shape[0]}; build the encoder from the captions' tokenizer"
            )
        return self.table[ids], (ids != self.pad_id).float()

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = emb + self.position[: emb.shape[1]]
        if self.kind == "gru":
            return _masked_mean(self.body(h)[0], mask)
        return _masked_mean(self.body(h), mask)


class HFText(nn.Module):
    """A frozen pretrained text model read through ``inputs_embeds`` (module docstring)."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.model, self.pad_id = model, int(pad_id)
        table = model.get_input_embeddings()
        self.num_features = int(model.config.hidden_size)
        self.input_dim = int(table.embedding_dim)
        try:  # a tower that cannot read embeddings (CLIP's text model wants ids) is refused now
            with torch.no_grad():
                self(torch.zeros(1, 1, self.input_dim), torch.ones(1, 1))
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"the text model {type(model).__name__} does not take inputs_embeds ({e}); "
                "use a BERT-style text folder, or the built-in text tower"
            ) from None

    def train(self, mode: bool = True) -> HFText:
        """The pretrained model stays in eval mode (no dropout: no global RNG use)."""
        super().train(mode)
        self.model.eval()
        return self

    def inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.model.get_input_embeddings()
        if ids.numel() and int(ids.max()) >= table.num_embeddings:
            raise ConfigError(
                f"caption token id {int(ids.max())} is beyond the model's vocabulary of "
                f"{table.num_embeddings}; tokenize the captions with the model's own tokenizer"
            )
        with torch.no_grad():
            return table(ids), (ids != self.pad_id).float()

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs_embeds=emb, attention_mask=mask.long())
        return _masked_mean(out.last_hidden_state, mask)


class NetImage(nn.Module):
    """An image tower from :func:`create_model`: its ``embed`` features (the classifier
    dropped)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.classifier = nn.Identity()
        self.net = net
        self.num_features = int(net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


class HFImage(nn.Module):
    """A frozen pretrained vision model (module docstring): images resized to its input size,
    one channel repeated to three, features from its pooled output (else the first token)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        self.size = int(getattr(cfg, "image_size", 224))
        self.channels = int(getattr(cfg, "num_channels", 3))
        self.num_features = int(cfg.hidden_size)

    def train(self, mode: bool = True) -> HFImage:
        """The pretrained model stays in eval mode (no dropout: no global RNG use)."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]


# ------------------------------------------------------------------------------ pretrained
def load_hf_model(path: str, part: str) -> nn.Module:
    """The pretrained model in local folder ``path`` for ``part`` (``"text"`` or ``"image"``),
    frozen: the CLIP tower of that side if the folder is a CLIP model, else the model itself.
    Needs the ``transformers`` extra; nothing is downloaded."""
    transformers = require_extra("transformers", "transformers", f"the {part} encoder hf:{path}")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"hf:{path} is not a Hugging Face model folder (no config.json there); "
            "save one with model.save_pretrained(PATH)"
        )
    check_hf_folder(transformers, folder, f"the {part} encoder hf:{path}")
    try:
        model = transformers.AutoModel.from_pretrained(
            str(folder), attn_implementation="eager", trust_remote_code=False, **LOAD_OPTIONS
        )
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileFormatError(f"cannot load the model in {path!r}: {first}") from None
    tower = getattr(model, "text_model" if part == "text" else "vision_model", model)
    for p in tower.parameters():
        p.requires_grad_(False)
    return tower.eval()


def add_lora(model: nn.Module, rank: int, seed: int) -> nn.Module:
    """LoRA adapters of ``rank`` on ``model``'s attention query / value projections through
    ``peft`` (extra ``lora``), initialised under ``seed``; the base weights stay frozen."""
    peft = require_extra("peft", "lora", "LoRA adapters (lora_rank > 0)")
    targets = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS
        }
    )
    if not targets:
        raise ConfigError(
            f"lora_rank > 0, but the model has no attention projection named "
            f"{', '.join(LORA_TARGETS)} to adapt; use lora_rank=0"
        )
    config = peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets)
    with seeded_global_rng(seed):
        model = peft.inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


# ------------------------------------------------------------------------------ dual encoder
class DualEncoder(nn.Module):
    """Image tower + text tower, each with a linear head into a ``dim``-d shared space; the
    features are L2-normalised (module docstring)."""

    def __init__(self, image: nn.Module, text: nn.Module, dim: int) -> None:
        super().__init__()
        self.image, self.text = image, text
        self.image_head = nn.Linear(image.num_features, dim)
        self.text_head = nn.Linear(text.num_features, dim)

    def text_inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(n, L)`` -> their frozen input embeddings ``(n, L, d)`` and mask."""
        return self.text.inputs(ids)

    def forward(
        self,
        images: torch.Tensor | None,
        emb: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Unit image features of ``images`` and unit text features of the input embeddings
        ``emb`` + ``mask`` through the text tower, or of ``features`` ``(n, num_features)``
        already in the text tower's output space (only its head applies)."""
        a = b = None
        if images is not None:
            a = F.normalize(self.image_head(self.image(images)), dim=1)
        if features is None and emb is not None:
            features = self.text(emb, mask)
        if features is not None:
            b = F.normalize(self.text_head(features), dim=1)
        return a, b

    def side_of(self, name: str) -> str:
        """``"image"`` or ``"text"``: the side a parameter belongs to."""
        return "image" if name.startswith(("image.", "image_head.")) else "text"


def build_dual_encoder(spec: EncoderSpec, channels: int, image_size, seed: int) -> DualEncoder:
    """A :class:`DualEncoder` for ``channels x image_size`` images as ``spec`` says, its
    trainable weights initialised under ``seed`` (the global RNG is left as it was)."""
    check_encoder_names(spec.image, spec.text)
    builtin = not spec.text.startswith(HF_PREFIX)
    # the text tower and both heads' biases, before anything is built
    _check_encoder_size(spec, 2 * spec.dim + (_builtin_text_parameters(spec) if builtin else 0))
    with seeded_global_rng(seed):
        if spec.image.startswith(HF_PREFIX):
            vision = load_hf_model(spec.image[len(HF_PREFIX) :], "image")
            if spec.lora_rank:
                vision = add_lora(vision, spec.lora_rank, seed)
            image: nn.Module = HFImage(vision)
        else:
            net = create_model(
                spec.image, num_classes=1, in_channels=channels, image_size=image_size
            )
            image = NetImage(net)
        if not builtin:
            words = load_hf_model(spec.text[len(HF_PREFIX) :], "text")
            if spec.lora_rank:
                words = add_lora(words, spec.lora_rank, seed + 1)
            text: nn.Module = HFText(words, spec.pad_id)
        else:
            text = BuiltinText(spec.text, spec)
        _check_encoder_size(spec, spec.dim * (image.num_features + text.num_features + 2))
        return DualEncoder(image, text, spec.dim)


class TrainableView:
    """A :class:`DualEncoder` evaluated at a flat vector of its trainable parameters (those
    with ``requires_grad``, in ``named_parameters`` order); the frozen ones stay the model's."""

    def __init__(self, model: DualEncoder) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.model = model
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.num_params = int(sum(self.numels))
        image = torch.tensor([model.side_of(n) == "image" for n in self.names])
        #: ``(P,)`` bool: which entries of the flat vector belong to the image side
        mask = torch.repeat_interleave(image, torch.tensor(self.numels))
        self.image_mask = mask.to(named[0][1].device) if named else mask

    def flatten(self) -> torch.Tensor:
        """The model's current trainable parameters as one flat vector (a copy)."""
        params = dict(self.model.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names]).clone()

    def load(self, theta: torch.Tensor) -> None:
        """Write ``theta`` into the model's trainable parameters."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, part in self.unflatten(theta).items():
                params[n].copy_(part)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(theta, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def __call__(self, theta: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.model, self.unflatten(theta), args, kwargs, strict=False)
