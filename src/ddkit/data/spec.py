"""`DatasetSpec`: what a model and a synthetic set need to know about a dataset, including what
one row of it is (its :class:`~ddkit.data.modalities.base.Modality`: an image, a table row, a
time series, a graph node, an image with captions).

Every modality lays a row out as a ``(C, H, W)`` tensor, so the storage, normalisation,
per-class index and matching code serve them all unchanged; each registers what its layout is
and what follows from it in its own module of :mod:`ddkit.data.modalities`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ddkit.data.modalities.base import (
    DEFAULT_MODALITY,
    MODALITIES,
    Modality,
    get_modality,
)
from ddkit.errors import ConfigError, DataError, FileFormatError

__all__ = ["COLUMN_KINDS", "MODALITIES", "Column", "DatasetSpec", "Modality", "get_modality"]

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


#: What a method can declare it ``needs`` (:attr:`ddkit.methods.base.Distiller.needs`) besides
#: a registered modality's name.
DIFFERENTIABLE = "differentiable"


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
    modality: str = DEFAULT_MODALITY
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
        """The shape a row has under its modality (:meth:`Modality.check_layout`)."""
        get_modality(self.modality).check_layout(self)

    @property
    def kind(self) -> Modality:
        """This dataset's :class:`Modality`."""
        return get_modality(self.modality)

    def check_needs(self, needs: str, who: str, fix: str = "") -> None:
        """Refuse in one line when ``who`` (a method, an augmentation) ``needs`` what this
        dataset's rows are not: a registered modality's name (``"image"``, ``"series"``,
        ``"graph"``, ``"paired"``) or ``"differentiable"``; ``fix`` says what to do instead
        (a needed modality's own :attr:`~Modality.needs_fix` comes first)."""
        if needs != DIFFERENTIABLE and needs not in MODALITIES:
            valid = ", ".join([*MODALITIES.names(), DIFFERENTIABLE])
            raise ConfigError(f"{who} declares unknown needs {needs!r}; valid: {valid}")
        kind = self.kind
        wanted = None if needs == DIFFERENTIABLE else get_modality(needs)
        if wanted is not kind and not kind.classes:  # e.g. pairs: no classes to distil
            raise ConfigError(
                f"{who} distils labelled rows; dataset {self.name!r} holds "
                f"{kind.needs_words or kind.noun} without classes (use a method that needs "
                f"{kind.name} rows: ddkit list methods)"
            )
        if wanted is not None and wanted is not kind:
            fix = wanted.needs_fix or fix
            raise ConfigError(
                f"{who} needs {wanted.needs_words or wanted.name}; dataset {self.name!r} "
                f"holds {self.modality} rows" + (f" ({fix})" if fix else "")
            )
        if wanted is None and not kind.differentiable:
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
        for name in _LEFT_OUT_AT_DEFAULT:
            if d[name] == _FIELD_DEFAULTS[name]:
                d.pop(name)
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
                modality=str(d.get("modality", DEFAULT_MODALITY)),
                columns=tuple(
                    Column(str(c["name"]), str(c["kind"]), tuple(c.get("categories", ())))
                    for c in d.get("columns", ())
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FileFormatError(f"invalid dataset spec in metadata: {e}") from None


#: Fields added after specs were first saved, written only when they differ from their default,
#: so that every key and cache name built from an older spec stays as it was.
_LEFT_OUT_AT_DEFAULT = ("modality",)
_FIELD_DEFAULTS = {f.name: f.default for f in fields(DatasetSpec)}
