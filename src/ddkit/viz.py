"""Pictures of synthetic sets: image grids, per-class feature histograms for tables, per-class
line plots for series."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ddkit.io import atomic_write

#: Values (channels x pixels) of the images one band of a grid's rows holds at most.
GRID_BLOCK_ELEMENTS = 2**22
PixelRows = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def image_grid(
    pixels: PixelRows,
    labels: torch.Tensor,
    num_classes: int,
    path: str | os.PathLike,
    *,
    max_per_class: int = 10,
    min_cell: int = 32,
    pad: int = 2,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Save images in [0, 1] as a PNG grid, one row per class, each row headed by its class
    name when ``class_names`` are given. ``pixels`` is an ``(N, C, H, W)`` tensor or a function
    giving the pixels of some rows (such as :meth:`SyntheticSet.pixels`): the grid is drawn a
    band of class rows at a time, in bytes, so a large set is never copied whole."""
    from PIL import Image, ImageDraw

    take = pixels if callable(pixels) else pixels.__getitem__
    index, row, col = _grid_cells(labels, num_classes, max_per_class)
    c, h, w = take(index[:0]).shape[1:]
    scale = max(1, -(-min_cell // max(h, w)))
    cols = int(col.max()) + 1 if len(col) else 1
    H, W = h * scale + pad, w * scale + pad
    names = None if class_names is None else [str(n) for n in class_names]
    font, left = _name_margin(names, pad)
    image = Image.new("RGB", (left + cols * W + pad, num_classes * H + pad), "white")
    per_band = max(1, GRID_BLOCK_ELEMENTS // (max(c, 3) * H * W * cols))  # class rows
    for r0 in range(0, num_classes, per_band):
        r1 = min(r0 + per_band, num_classes)
        a, b = torch.searchsorted(row, torch.tensor([r0, r1])).tolist()
        if b > a:  # a band without images stays white
            img = take(index[a:b]).float().clamp(0, 1).mul_(255).round_().to(torch.uint8)
            img = img.expand(-1, 3, h, w) if c == 1 else img[:, :3]
            img = img.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
            band = torch.full(((r1 - r0) * H, image.width, 3), 255, dtype=torch.uint8)
            cells = band[:, left + pad : left + pad + cols * W]
            cells = cells.unflatten(1, (cols, W)).unflatten(0, (r1 - r0, H))  # views of band
            cells[row[a:b] - r0, : h * scale, col[a:b], : w * scale] = img.permute(0, 2, 3, 1)
            image.paste(Image.fromarray(band.numpy()), (0, pad + r0 * H))
    if names is not None:
        _draw_row_names(ImageDraw.Draw(image), names, font, H, pad)
    atomic_write(path, lambda p: image.save(p, format="PNG"))
    return Path(path)


def _grid_cells(
    labels: torch.Tensor, num_classes: int, max_per_class: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows a grid shows and their cells: ``(index, row, column)``, the first
    ``max_per_class`` rows of each class ``0 .. num_classes - 1`` in dataset order."""
    labels = labels.long().cpu()
    order = torch.argsort(labels, stable=True)
    ordered = labels[order]
    counts = torch.bincount(ordered.clamp(min=0), minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - starts[ordered.clamp(min=0)]
    keep = (ordered >= 0) & (ordered < num_classes) & (rank < max_per_class)
    return order[keep], ordered[keep], rank[keep]


def _name_margin(names: list[str] | None, pad: int):  # noqa: ANN202
    """The font that names a grid's rows and the width of the white margin that holds the
    names (0 without names)."""
    from PIL import Image, ImageDraw, ImageFont

    if names is None:
        return None, 0
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return font, max(int(draw.textlength(n, font=font)) for n in names) + 3 * pad


def _draw_row_names(draw, names: list[str], font, row_height: int, pad: int) -> None:  # noqa: ANN001
    """Write ``names[r]`` in the margin beside row ``r``, centred in the row's height."""
    for r, name in enumerate(names):
        top, bottom = draw.textbbox((0, 0), name, font=font)[1::2]
        y = pad + r * row_height + (row_height - pad - (bottom - top)) // 2 - top
        draw.text((pad, y), name, fill="black", font=font)


def feature_histograms(
    columns: Sequence[tuple[str, Sequence[str], torch.Tensor]],
    labels: torch.Tensor,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    max_features: int = 12,
    bins: int = 12,
) -> Path:
    """Save per-class histograms of table columns as a PNG: one panel per column (the first
    ``max_features``), one outline per class. ``columns``: ``(name, categories, values)`` with
    ``values`` ``(N,)`` in the raw scale, or category indices when ``categories`` is not empty.
    The picture of a table set, where an image grid would show nothing."""
    plt = _pyplot()
    shown = list(columns)[:max_features]
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, categories, values) in zip(axes.flat, shown):
        v = values.detach().double().cpu()
        edges = (
            torch.arange(len(categories) + 1, dtype=torch.float64) - 0.5
            if categories
            else torch.linspace(
                float(v.min()), float(v.max()) + 1e-9, bins + 1, dtype=torch.float64
            )
        )
        for k, cname in enumerate(class_names):
            part = v[labels == k]
            if len(part):
                ax.hist(part.numpy(), bins=edges.numpy(), histtype="step", label=_text(cname))
        ax.set_title(_text(name), fontsize=8)
        if categories:
            ax.set_xticks(range(len(categories)), [_text(c) for c in categories], fontsize=6)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    return _save_figure(plt, fig, path)


def series_lines(
    series: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    max_per_class: int = 10,
    max_channels: int = 4,
) -> Path:
    """Save per-class line plots of series ``(N, D, L)`` (raw scale) as a PNG: one column of
    panels per class, one row per channel (the first ``max_channels``), up to ``max_per_class``
    series of the class drawn in each panel. The picture of a series set."""
    plt = _pyplot()
    x = series.detach().double().cpu()
    k, d = len(class_names), min(x.shape[1], max_channels)
    fig, axes = plt.subplots(
        d, k, figsize=(2.4 * k, 1.6 * d + 0.4), squeeze=False, sharex=True, sharey="row"
    )
    for c, cname in enumerate(class_names):
        rows = x[labels == c][:max_per_class]
        axes[0, c].set_title(_text(cname), fontsize=8)
        for ch in range(d):
            ax = axes[ch, c]
            if len(rows):
                ax.plot(rows[:, ch].T.numpy(), linewidth=0.8, alpha=0.8)
            ax.tick_params(labelsize=6)
            if c == 0 and x.shape[1] > 1:
                ax.set_ylabel(f"channel {ch}", fontsize=7)
    return _save_figure(plt, fig, path)


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot on the file-only backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(plt, fig, path: str | os.PathLike) -> Path:  # noqa: ANN001
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)
    return Path(path)


def _text(value: object) -> str:
    """``value`` as matplotlib text drawn literally (a ``$`` is not math)."""
    return str(value).replace("$", r"\$")
