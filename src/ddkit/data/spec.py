"""`DatasetSpec`: what a model and a synthetic set need to know about a dataset, including what
one row of it is (its :class:`Modality`: an image, a table row, a time series).

Every modality lays a row out as a ``(C, H, W)`` tensor, so the storage, normalisation,
per-class index and matching code serve them all unchanged:

* ``image``: ``(C, H, W)`` pixels;
* ``table``: ``(F, 1, 1)``, one channel per feature: a numeric column is one channel, a
  categorical column one channel per category (one-hot); per-channel normalisation is the
  per-feature standardisation tabular learners expect;
* ``series``: ``(D, 1, L)``, ``D`` channels over ``L`` time steps (a 1-D signal along the width);
* ``graph``: ``(F, 1, 1)``, one node's ``F`` features (node classification); the edges live
  beside the rows (:mod:`ddkit.data.graph`; a condensed graph keeps its adjacency as an extra
  tensor of its set);
* ``paired``: ``(C, H, W)`` pixels of an image that one or more captions describe, without
  classes; the captions (token ids) and the caption-to-image index live beside the rows
  (:mod:`ddkit.data.paired`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ddkit.errors import ConfigError, DataError, FileFormatError

COLUMN_KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class Column:
    """One column of a table: ``kind`` ``"numeric"`` (one channel) or ``"categorical"`` (one
    channel per entry of ``categories``, one-hot in real rows).

    A distilled row's categorical block holds free real scores, one per category; it is read as
    the category of the largest score (:meth:`DatasetSpec.decode_rows`), so an exported row
    always holds a valid category."""

    name: str
    kind: str = "numeric"
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        if self.kind not in COLUMN_KINDS:
            raise DataError(
                f"column {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(COLUMN_KINDS)}"
            )
        if (self.kind == "categorical") != bool(self.categories):
            raise DataError(
                f"column {self.name!r}: a categorical column needs its categories, "
                "a numeric one has none"
            )

    @property
    def width(self) -> int:
        """Channels the column takes in a stored row."""
        return len(self.categories) if self.kind == "categorical" else 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.categories:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class Modality:
    """What one row of a dataset is, and what follows from it.

    ``layout``: how a row lies in its stored ``(C, H, W)`` tensor; ``normalisation``: what the
    spec's per-channel ``mean`` / ``std`` standardise; ``augmentations``: the augmentation
    families that fit (``"dsa"``: DSA's image operations, Zhao & Bilen ICML 2021; ``"series"``:
    the time-series operations of :mod:`ddkit.augment.series`);
    ``models``: the model families that fit, the first being the default of a method or
    evaluation that names none for this modality (images keep each method's own default);
    ``differentiable``: whether a row is a point of a continuous space that gradient-based
    methods (DM, DC, KIP, MTT) can move.
    """

    name: str
    row: str
    layout: str
    normalisation: str
    augmentations: tuple[str, ...]
    models: tuple[str, ...]
    differentiable: bool = True


MODALITIES: dict[str, Modality] = {
    m.name: m
    for m in (
        Modality(
            "image",
            row="an image of C channels, H x W pixels",
            layout="(C, H, W)",
            normalisation="per channel, train-split statistics",
            augmentations=("dsa",),
            models=("convnet", "mlp", "lenet", "alexnet", "vgg", "resnet", "vit"),
        ),
        Modality(
            "table",
            row="a vector of named features, numeric or categorical (one-hot)",
            layout="(F, 1, 1): one channel per numeric column, one per category",
            normalisation="per numeric feature, train-split statistics; one-hot columns as is",
            augmentations=(),
            models=("mlp",),
        ),
        Modality(
            "series",
            row="a time series of L steps with D channels",
            layout="(D, 1, L)",
            normalisation="per channel over all time steps, train-split statistics",
            augmentations=("series",),
            models=("conv1d", "resnet1d", "mlp"),
        ),
        Modality(
            "graph",
            row="a node of a graph: a vector of F features (its edges beside the rows)",
            layout="(F, 1, 1)",
            normalisation="per feature, train-node statistics",
            augmentations=(),
            # the GCN (ddkit.models.graph) reads the adjacency too: the graph methods and the
            # graph evaluation build it; a method that moves rows alone gets the mlp
            models=("mlp",),
        ),
        Modality(
            "paired",
            row="an image of C channels, H x W pixels, described by one or more captions "
            "(token ids beside the rows)",
            layout="(C, H, W)",
            normalisation="per channel, train-split statistics",
            augmentations=("dsa",),
            # the image side; the text encoders live in ddkit.models.text
            models=("convnet", "resnet", "vit"),
        ),
    )
}

#: What a method can declare it ``needs`` (:attr:`ddkit.methods.base.Distiller.needs`).
NEEDS = ("image", "series", "graph", "paired", "differentiable")


_NEEDS_WORDS = {
    "image": "images",
    "graph": "a graph (node classification)",
    "paired": "image-caption pairs",
}


def get_modality(name: str) -> Modality:
    """The :class:`Modality` called ``name``, or a one-line :class:`DataError`."""
    try:
        return MODALITIES[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown modality {name!r}; valid: {', '.join(MODALITIES)}") from None


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a classification dataset.

    ``mean``/``std`` are per-channel statistics of the *train* split in the raw scale
    (``[0, 1]`` for 8-bit images); stored rows are ``(x - mean) / std``.
    ``transform`` names an extra whitening applied after normalisation (``"zca"``) or is ``None``.
    ``modality`` says what a row is (:data:`MODALITIES`; see the module docstring for each
    layout); a ``table`` lists its ``columns`` (their widths add up to ``channels``).
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(default=())
    transform: str | None = None
    modality: str = "image"
    columns: tuple[Column, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        names = tuple(self.class_names) or tuple(str(i) for i in range(self.num_classes))
        object.__setattr__(self, "class_names", names)
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError("mean/std must have one value per channel")
        if len(self.class_names) != self.num_classes:
            raise DataError("class_names must have one entry per class")
        object.__setattr__(self, "columns", tuple(self.columns))
        self._check_layout()

    def _check_layout(self) -> None:
        """The shape a row has under its modality (see the module docstring)."""
        get_modality(self.modality)
        if self.modality != "table" and self.columns:
            raise DataError(f"only a table has columns; this spec's modality is {self.modality}")
        if self.modality in ("table", "series", "graph") and self.image_size[0] != 1:
            raise DataError(f"a {self.modality} row is laid out with H = 1, got {self.image_size}")
        if self.modality == "graph" and self.image_size != (1, 1):
            raise DataError(f"a graph node is laid out (F, 1, 1), got {self.image_size}")
        if self.modality == "table":
            width = sum(c.width for c in self.columns)
            if self.image_size != (1, 1) or width != self.channels:
                raise DataError(
                    f"a table of {len(self.columns)} columns takes {width} channels of 1x1, "
                    f"the spec has {self.channels} of {self.image_size}"
                )

    @property
    def kind(self) -> Modality:
        """This dataset's :class:`Modality`."""
        return MODALITIES[self.modality]

    def check_needs(self, needs: str, who: str, fix: str = "") -> None:
        """Refuse in one line when ``who`` (a method, an augmentation) ``needs`` what this
        dataset's rows are not: ``"image"``, ``"series"``, ``"graph"``, ``"paired"`` or
        ``"differentiable"``
        (:data:`NEEDS`); ``fix`` says what to do instead."""
        if needs not in NEEDS:
            raise ConfigError(f"{who} declares unknown needs {needs!r}; valid: {', '.join(NEEDS)}")
        if needs == "graph":  # a method's fix for other rows points elsewhere
            fix = "it condenses graphs: load a graph dataset, e.g. sbm or --dataset graph"
        if needs == "paired":
            fix = "it distils image-caption pairs: load a paired dataset, e.g. captioned-digits"
        if self.modality == "paired" and needs != "paired":  # pairs have no classes
            raise ConfigError(
                f"{who} distils labelled rows; dataset {self.name!r} holds image-caption pairs "
                "without classes (use a vision-language method: ddkit list methods)"
            )
        if needs in ("image", "series", "graph", "paired") and self.modality != needs:
            raise ConfigError(
                f"{who} needs {_NEEDS_WORDS.get(needs, needs)}; dataset {self.name!r} "
                f"holds {self.modality} rows" + (f" ({fix})" if fix else "")
            )
        if needs == "differentiable" and not self.kind.differentiable:
            raise ConfigError(f"{who} needs differentiable rows; {self.modality} rows are not")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Stored row shape ``(C, H, W)`` (for a table ``(F, 1, 1)``, a series ``(D, 1, L)``)."""
        return (self.channels, *self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON. An image spec is written as before the modalities (no
        ``modality`` key: absent means image), so every key and cache name built from it is
        unchanged; :meth:`ddkit.data.synthetic.SyntheticSet.save` writes the modality always."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["mean"], d["std"], d["class_names"] = (
            list(self.mean),
            list(self.std),
            list(self.class_names),
        )
        d.pop("columns")
        if self.modality == "image":
            d.pop("modality")
        if self.columns:
            d["columns"] = [c.to_dict() for c in self.columns]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        try:
            return cls(
                name=str(d["name"]),
                num_classes=int(d["num_classes"]),
                channels=int(d["channels"]),
                image_size=tuple(d["image_size"]),
                mean=tuple(d["mean"]),
                std=tuple(d["std"]),
                class_names=tuple(d.get("class_names", ())),
                transform=d.get("transform"),
                modality=str(d.get("modality", "image")),
                columns=tuple(
                    Column(str(c["name"]), str(c["kind"]), tuple(c.get("categories", ())))
                    for c in d.get("columns", ())
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FileFormatError(f"invalid dataset spec in metadata: {e}") from None
