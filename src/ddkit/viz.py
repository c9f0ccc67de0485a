"""Pictures of synthetic sets: image grids, per-class feature histograms for tables, per-class
line plots for series."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ddkit.io import atomic_write


def image_grid(
    pixels: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    path: str | os.PathLike,
    *,
    max_per_class: int = 10,
    min_cell: int = 32,
    pad: int = 2,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Save ``pixels`` ((N, C, H, W) in [0, 1]) as a PNG grid, one row per class, each row
    headed by its class name when ``class_names`` are given."""
    from PIL import Image

    n, c, h, w = pixels.shape
    scale = max(1, -(-min_cell // max(h, w)))
    rows = [pixels[labels == k][:max_per_class] for k in range(num_classes)]
    cols = max(1, max(len(r) for r in rows))
    H, W = h * scale + pad, w * scale + pad
    canvas = torch.ones(3, num_classes * H + pad, cols * W + pad)
    for r, imgs in enumerate(rows):
        for j, img in enumerate(imgs):
            img = img.expand(3, h, w) if c == 1 else img[:3]
            img = img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            canvas[
                :, pad + r * H : pad + r * H + h * scale, pad + j * W : pad + j * W + w * scale
            ] = img
    arr = (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(arr)
    if class_names is not None:
        image = _with_row_names(image, [str(n) for n in class_names], H, pad)
    atomic_write(path, lambda p: image.save(p, format="PNG"))
    return Path(path)


def _with_row_names(image, names: list[str], row_height: int, pad: int):  # noqa: ANN001, ANN202
    """``image`` with a white margin on the left holding ``names[r]`` beside row ``r``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw = ImageDraw.Draw(image)
    width = max(int(draw.textlength(n, font=font)) for n in names) + 3 * pad
    out = Image.new("RGB", (image.width + width, image.height), "white")
    out.paste(image, (width, 0))
    text = ImageDraw.Draw(out)
    for r, name in enumerate(names):
        top, bottom = text.textbbox((0, 0), name, font=font)[1::2]
        y = pad + r * row_height + (row_height - pad - (bottom - top)) // 2 - top
        text.text((pad, y), name, fill="black", font=font)
    return out


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
