"""Tiny datasets of every modality, for tests and the conformance suite (:mod:`ddkit.testing`):
real 8x8 digits (:func:`tiny_digits`) and fabricated tables, series, a graph and image-caption
pairs (:func:`tiny_table`, :func:`tiny_series`, :func:`tiny_graph`, :func:`tiny_paired`). Each is seeded and cached; treat
it as read-only. Each modality gives its own (:meth:`ddkit.data.modalities.base.Modality.tiny`,
defined in its module of :mod:`ddkit.data.modalities`); these are their names for tests."""

from __future__ import annotations

from ddkit.data.modalities.graph import tiny_graph
from ddkit.data.modalities.image import tiny_digits
from ddkit.data.modalities.paired import tiny_paired
from ddkit.data.modalities.series import tiny_series
from ddkit.data.modalities.table import tiny_table

__all__ = ["tiny_digits", "tiny_graph", "tiny_paired", "tiny_series", "tiny_table"]
