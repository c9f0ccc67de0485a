"""``paired``: a row is an image of ``C`` channels, ``H x W`` pixels, described by one or more
captions (token ids beside the rows, :mod:`ddkit.data.paired`), without classes: ``ipc`` counts
the pairs of a set, and image-text retrieval judges it (issue 71)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import register_modality
from ddkit.data.modalities.rows import Rows
from ddkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch


class PairedModality(Rows):
    """Image-caption pairs: :class:`~ddkit.data.paired.PairedDataset` splits, read by name
    (the caption benchmarks, ``coco``, ...) or from a captions file or folder."""

    def check_ipc(self, train: Any, ipc: int) -> None:
        """A set's pairs: at least 2 (a contrastive loss needs a negative), at most the train
        images."""
        if int(ipc) != ipc or not 2 <= int(ipc) <= len(train):
            raise ConfigError(
                f"ipc is the number of pairs of a paired set: between 2 and the {len(train)} "
                f"train images, got {ipc}"
            )

    def dataset_type(self) -> type:
        from ddkit.data.paired import PairedDataset

        return PairedDataset

    def data_sample(self, train: Any, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return train.captions, train.images[rows]

    def claims(self, path: str | Path) -> bool:
        """A captions file or folder (:mod:`ddkit.data.captions`, told from its names)."""
        from ddkit.data.paired import is_paired

        return is_paired(path)

    def load_splits(self, dataset: str, root: str | None) -> Any:
        from ddkit.data.paired import load_paired_splits

        return load_paired_splits(dataset, root=root)

    def check_export(self, what: str) -> None:
        raise DataError(
            f"a paired set's captions have no place in {what}; export it with --format hf "
            "(captions as a text column) or --format set"
        )

    def hf_columns(self, syn: Any, hf: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The set's text: real captions as ``caption`` (decoded by the tokenizer the set
        records) and their token ids as ``caption_ids``; every other per-pair tensor (learned
        ``text.embeddings`` / ``text.mask`` or ``text.features``, ``similarity.*``) as float32,
        dots made ``_``."""
        from ddkit.data.synthetic import TEXT_EMB, TEXT_FEAT, TEXT_IDS
        from ddkit.data.tokenize import tokenizer_from_dict

        columns: dict[str, Any] = {}
        features: dict[str, Any] = {}
        for key, value in syn.extras.items():
            if key.startswith("zca."):
                continue
            if len(value) != len(syn):
                raise DataError(
                    f"the paired set's tensor {key!r} {tuple(value.shape)} has no row per pair; "
                    "export it with --format set"
                )
            if key == TEXT_IDS:
                record = syn.meta.get("tokenizer")
                if not isinstance(record, dict):
                    raise DataError(
                        "this paired set records no tokenizer, so its captions cannot be written "
                        "as text; export it with --format set"
                    )
                columns["caption"] = tokenizer_from_dict(record).decode(value)
                features["caption"] = hf.Value("string")
                ids, width = value.long().numpy(), value.shape[1]
                columns["caption_ids"] = ids
                features["caption_ids"] = hf.Sequence(hf.Value("int64"), length=width)
                continue
            name, array = key.replace(".", "_"), value.float().numpy()
            columns[name] = array
            features[name] = _array_feature(hf, array.shape[1:])
        if not columns:
            raise DataError(
                f"this paired set holds no captions ({TEXT_IDS}, {TEXT_EMB} or {TEXT_FEAT})"
            )
        return columns, features

    def tiny(self) -> Any:
        return tiny_paired()

    def fit_inputs(self, train: Any) -> tuple[torch.Tensor, ...]:
        return train.images, train.captions

    def refused_ipcs(self, train: Any) -> tuple[tuple[int, str], ...]:
        return (1, "ipc 1 (one pair has no negative)"), (len(train) + 1, "ipc > images")

    def set_problems(self, syn: Any, train: Any, ipc: int) -> list[str]:
        """A paired set holds ``ipc`` pairs of the data's modality: images of the data's shape,
        one caption each (token ids, learned embeddings or learned output-space features)."""
        from ddkit.data.synthetic import TEXT_EMB, TEXT_FEAT, TEXT_IDS

        shape = (ipc, *train.spec.shape)
        text = next(
            (syn.extras[k] for k in (TEXT_EMB, TEXT_IDS, TEXT_FEAT) if k in syn.extras), None
        )
        found = [
            (syn.spec.kind is train.spec.kind, f"the set's modality is {syn.spec.modality!r}"),
            (tuple(syn.images.shape) == shape, f"images {tuple(syn.images.shape)}, not {shape}"),
            (text is not None and len(text) == ipc, "the set holds no caption per image"),
        ]
        return [what for ok, what in found if not ok]


def _array_feature(hf: Any, shape: tuple[int, ...]) -> Any:
    """The ``datasets`` feature of one row of float32 values of ``shape`` (rank 0 to 2)."""
    if not shape:
        return hf.Value("float32")
    if len(shape) == 1:
        return hf.Sequence(hf.Value("float32"), length=shape[0])
    if len(shape) == 2:
        return hf.Array2D(shape, "float32")
    raise DataError(f"rows of shape {shape} have no datasets feature here; use --format set")


_COLOURS = ("red", "green", "blue", "yellow")
_SHAPES = ("square", "bar", "dot")


def tiny_paired(n_train: int = 40, n_test: int = 20, seed: int = 0) -> Any:
    """Tiny seeded paired splits (``PairedSplits``): ``3 x 8 x 8`` images whose colour channel
    and brightness follow a colour and a shape word, two template captions each."""
    import torch

    from ddkit.data.paired import PairedSplits, paired_from_arrays

    def make(n: int, s: int, like: Any = None) -> Any:
        g = torch.Generator().manual_seed(s)
        colour, shape = torch.randint(4, (n,), generator=g), torch.randint(3, (n,), generator=g)
        x = torch.rand(n, 3, 8, 8, generator=g) * 0.2
        x[torch.arange(n), colour % 3] += (0.5 + 0.1 * shape).view(n, 1, 1)
        captions = [
            [f"a {_COLOURS[c]} {_SHAPES[k]}", f"{_SHAPES[k]} in {_COLOURS[c]}"]
            for c, k in zip(colour.tolist(), shape.tolist())
        ]
        spec, tok = (None, None) if like is None else (like.spec, like.tokenizer)
        return paired_from_arrays(x, captions, tokenizer=tok, max_len=6, spec=spec, name="tiny")

    train = make(n_train, seed)
    return PairedSplits(train, make(n_test, seed + 1, train))


PAIRED = register_modality(
    PairedModality(
        "paired",
        row="an image of C channels, H x W pixels, described by one or more captions "
        "(token ids beside the rows)",
        layout="(C, H, W)",
        normalisation="per channel, train-split statistics",
        augmentations=("dsa",),
        # the image side; the text encoders live in ddkit.models.text
        models=("convnet", "resnet", "vit"),
        noun="image-text pairs",
        pixels=True,
        classes=False,
        evaluator="retrieval",
        needs_words="image-caption pairs",
        needs_fix="it distils image-caption pairs: load a paired dataset, e.g. captioned-digits",
        exported_beside=("the text (caption or text_*)",),
    )
)
