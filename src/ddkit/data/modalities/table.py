"""``table``: a row is a vector of named features, numeric or categorical (one-hot), laid out
``(F, 1, 1)``; learners judge a set (:mod:`ddkit.data.table` reads the files)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddkit.data.modalities.base import check_one_high, register_modality
from ddkit.data.modalities.rows import Rows
from ddkit.errors import DataError

if TYPE_CHECKING:
    from ddkit.data.spec import DatasetSpec


class TableModality(Rows):
    """Named columns, one channel per numeric column and one per category."""

    def check_layout(self, spec: DatasetSpec) -> None:
        check_one_high(self, spec)
        width = sum(c.width for c in spec.columns)
        if spec.image_size != (1, 1) or width != spec.channels:
            raise DataError(
                f"a table of {len(spec.columns)} columns takes {width} channels of 1x1, "
                f"the spec has {spec.channels} of {spec.image_size}"
            )

    def draw(self, syn: Any, path: str | Path, *, max_per_class: int, min_cell: int) -> Path:
        """Per-class histograms of the set's columns (:func:`ddkit.viz.feature_histograms`)."""
        from ddkit.data.table import column_values
        from ddkit.viz import feature_histograms

        columns = [(c.name, c.categories, v) for c, v in column_values(syn.images, syn.spec)]
        return feature_histograms(columns, syn.hard_labels, syn.spec.class_names, path)

    def tiny(self) -> Any:
        return tiny_table()


@functools.lru_cache(maxsize=1)
def tiny_table(rows: int = 150) -> Any:
    """A fabricated table of ``rows`` rows (test = every 5th row), 3 classes: two numeric
    columns shifted by class and a categorical column of three categories that follows the
    class most of the time. Seeded; cached; treat it as read-only."""
    import torch

    from ddkit.data.dataset import ArrayExtras, from_arrays
    from ddkit.data.spec import Column

    g = torch.Generator().manual_seed(0)
    y = torch.arange(rows) % 3
    cat = torch.where(
        torch.rand(rows, generator=g) < 0.8, y, torch.randint(3, (rows,), generator=g)
    )
    x = torch.cat(
        [
            (y[:, None] * 2.0 + torch.randn(rows, 2, generator=g)) * torch.tensor([1.0, 10.0]),
            torch.nn.functional.one_hot(cat, 3).float(),
        ],
        dim=1,
    )
    columns = (Column("a"), Column("b"), Column("kind", "categorical", ("p", "q", "r")))
    rows = ArrayExtras(modality="table", columns=columns)
    return from_arrays(x[:, :, None, None], y, name="tiny-table", extras=rows)


TABLE = register_modality(
    TableModality(
        "table",
        row="a vector of named features, numeric or categorical (one-hot)",
        layout="(F, 1, 1): one channel per numeric column, one per category",
        normalisation="per numeric feature, train-split statistics; one-hot columns as is",
        augmentations=(),
        models=("mlp",),
        protocol="tabular",
    )
)
