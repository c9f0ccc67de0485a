"""Modalities: what one row of a dataset is, each a registered plugin (as methods are).

One module a modality, each registering a :class:`~ddkit.data.modalities.base.Modality` (most
of them a :class:`~ddkit.data.modalities.rows.Rows`) with :func:`register_modality`, found by
walking this package (a new modality is one new file):

* :mod:`~ddkit.data.modalities.image` -- ``image``, ``(C, H, W)`` pixels;
* :mod:`~ddkit.data.modalities.table` -- ``table``, ``(F, 1, 1)`` named columns;
* :mod:`~ddkit.data.modalities.series` -- ``series``, ``(D, 1, L)`` time series;
* :mod:`~ddkit.data.modalities.graph` -- ``graph``, ``(F, 1, 1)`` nodes of one graph;
* :mod:`~ddkit.data.modalities.paired` -- ``paired``, images described by captions, no classes.

A row of every modality lies in a ``(C, H, W)`` tensor, so the storage, normalisation,
per-class index and matching code serve them all unchanged; what differs is asked of the
registered modality (``spec.kind``, :func:`get_modality`), never told from its name.
"""

from ddkit.data.modalities.base import (
    DEFAULT_MODALITY,
    MODALITIES,
    TABLE_LEARNERS,
    Modality,
    get_modality,
    register_modality,
)
from ddkit.data.modalities.rows import Rows
from ddkit.registry import import_submodules

__all__ = [
    "DEFAULT_MODALITY",
    "MODALITIES",
    "TABLE_LEARNERS",
    "Modality",
    "Rows",
    "get_modality",
    "load_all",
    "register_modality",
]


def load_all() -> None:
    """Import every module of this package (each registers its modality); run on import."""
    import_submodules(__name__)


load_all()
