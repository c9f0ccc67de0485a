"""Charts people would rather look at than read: learning curves of a run, accuracy against IPC
from benchmark results, accuracies side by side, and synthetic beside real images.

Every function writes one PNG atomically (matplotlib, headless) and returns its path.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ddkit.errors import DataError
from ddkit.io import atomic_write


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 3.6):  # noqa: ANN201
    """A matplotlib figure (Agg backend) with ``ncols`` panels in a row: ``(fig, [axes])``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: str | os.PathLike) -> Path:  # noqa: ANN001
    """Write ``fig`` as a PNG at ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    _names_as_text(fig)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return Path(path)


def _names_as_text(fig) -> None:  # noqa: ANN001
    """Draw every label, title and legend entry as typed: a ``$`` in a dataset or method name
    starts no matplotlib math text (which a lone or odd ``$...$`` would fail to parse)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        if "$" in text.get_text():
            text.set_parse_math(False)


def is_number(value: Any) -> bool:
    """Whether a JSON value is a number (not a bool, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def is_result_row(row: Any) -> bool:
    """Whether a benchmark results row names its cell: dataset and method as text, IPC and
    kept percentage as integers or absent."""
    return (
        isinstance(row, dict)
        and isinstance(row.get("dataset"), str)
        and isinstance(row.get("method"), str)
        and (row.get("ipc") is None or type(row.get("ipc")) is int)
        and (row.get("keep") is None or type(row.get("keep")) is int)
    )


def shown_row(row: Any) -> bool:
    """Whether a benchmark results row can be shown: a finished row (no ``error``) naming its
    cell, with a numeric ``mean`` and ``std``; anything else is left out."""
    return (
        is_result_row(row)
        and "error" not in row
        and is_number(row.get("mean"))
        and is_number(row.get("std"))
    )


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """The records of a run's ``log.jsonl`` (or of ``log.jsonl.gz``, as a finished bench cell
    keeps it): objects of an integer ``iteration`` and numbers. A line cut short by a kill, or
    one that is no such record, ends the log."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rows = []
    for line in raw.decode(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if not is_log_record(row):
            break
        rows.append(row)
    return rows


def is_log_record(row: object) -> bool:
    """Whether ``row`` is a log record: an object of an integer ``iteration`` and numbers (NaN
    included: a diverged loss is logged as it was)."""
    return (
        isinstance(row, dict)
        and isinstance(row.get("iteration"), int)
        and all(is_number(v) or v != v for v in row.values())
    )


def plot_learning_curve(log: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Each metric of a run's ``log.jsonl`` against the iteration (one panel per metric, at most
    four), with a running mean over about 2 % of the run."""
    rows = read_log(log)
    if not rows:
        raise DataError(f"{log}: no iterations logged yet")
    metrics = [k for k in rows[0] if k != "iteration"][:4]
    if not metrics:
        raise DataError(f"{log}: the log holds no metrics to plot")
    fig, axes = new_figure(len(metrics), width=4.2)
    its = [r["iteration"] + 1 for r in rows]
    window = max(1, len(rows) // 50)
    for ax, key in zip(axes, metrics, strict=True):
        values = torch.tensor([float(r.get(key, float("nan"))) for r in rows])
        ax.plot(its, values, lw=0.6, alpha=0.4, color="tab:blue")
        if window > 1:
            kernel = torch.ones(window) / window
            smooth = torch.nn.functional.conv1d(values.view(1, 1, -1), kernel.view(1, 1, -1))
            ax.plot(its[window - 1 :], smooth.flatten(), color="tab:blue", lw=1.5)
        ax.set_xlabel("iteration")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_accuracy_vs_ipc(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, x: str = "ipc"
) -> Path:
    """Benchmark rows (``ddkit bench`` results) as accuracy against IPC (``x="ipc"``), against
    the bytes each set stores (``x="bytes"``: rows that recorded ``storage_bytes``) or against
    the percentage of the training split a pruning method kept (``x="keep"``), one panel per
    dataset, one line per method with ± one standard deviation; random real images dashed,
    full data a horizontal line."""
    rows = [r for r in rows if shown_row(r)]
    full = [r for r in rows if r["method"] == "full"]
    if x == "bytes":
        rows = [{**r, "ipc": r["storage_bytes"]} for r in rows if r.get("storage_bytes")]
    elif x == "keep":
        rows = [{**r, "ipc": r["keep"]} for r in rows if r.get("keep")] + full
    else:
        rows = [r for r in rows if not r.get("keep")]
    datasets = sorted({r["dataset"] for r in rows})
    if not datasets:
        raise DataError("no finished benchmark rows to plot")
    fig, axes = new_figure(len(datasets), width=5.5, height=4.2)
    for ax, ds in zip(axes, datasets, strict=True):
        mine = [r for r in rows if r["dataset"] == ds]
        methods = sorted({r["method"] for r in mine if r["method"] != "full"})
        for i, method in enumerate(methods):
            pts = sorted((r["ipc"], r["mean"], r["std"]) for r in mine if r["method"] == method)
            xs = [p[0] for p in pts]
            y = [100 * p[1] for p in pts]
            e = [100 * p[2] for p in pts]
            style = {"marker": "osD^v<>"[i // 10 % 7], "ls": ("-", ":")[i // 10 % 2]}
            if method == "random":
                style = {"marker": "o", "ls": "--", "color": "black"}
            ax.errorbar(xs, y, yerr=e, ms=3, capsize=2, label=method, **style)
        ipcs = sorted({r["ipc"] for r in mine if r.get("ipc")})
        if x != "keep":
            ax.set_xscale("log")
        if x in ("ipc", "keep"):
            ax.set_xticks(ipcs, [str(i) for i in ipcs])
        for r in mine:
            if r["method"] == "full":
                ax.axhline(100 * r["mean"], color="grey", lw=1, label="full data")
        labels = {"ipc": "images per class", "bytes": "bytes stored", "keep": "% of rows kept"}
        ax.set_xlabel(labels[x])
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def plot_accuracies(
    results: Mapping[str, tuple[float, float]], path: str | os.PathLike, title: str = ""
) -> Path:
    """Accuracies side by side: ``{label: (mean, std)}`` as fractions, drawn in %."""
    fig, (ax,) = new_figure(width=max(4.0, 1.3 * len(results)))
    labels = list(results)
    means = [100 * results[k][0] for k in labels]
    stds = [100 * results[k][1] for k in labels]
    # categories become tick labels only when drawn: their "$" is escaped instead
    bars = ax.bar(
        [k.replace("$", r"\$") for k in labels],
        means,
        yerr=stds,
        capsize=3,
        color="tab:blue",
        alpha=0.8,
    )
    ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=2, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_continual(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Continual-learning curves (:meth:`ContinualResult.to_dict` rows): test accuracy on the
    classes seen so far against the number of classes, one line per method (± std over class
    orders)."""
    fig, (ax,) = new_figure(width=5.5, height=4.0)
    for r in results:
        curves = torch.tensor(r["curves"]) * 100
        k = len(r["orders"][0]) if r["orders"] else r["steps"]
        seen = [(t + 1) * k // r["steps"] for t in range(r["steps"])]
        std = curves.std(0) if len(curves) > 1 else torch.zeros(curves.shape[1])
        style = {"ls": "--", "color": "black"} if r["method"] == "random" else {}
        ax.errorbar(seen, curves.mean(0), yerr=std, marker="o", ms=3, capsize=2,
                    label=r["method"], **style)  # fmt: skip
    ax.set_xlabel("classes seen")
    ax.set_ylabel("test accuracy on seen classes (%)")
    if results:
        ax.set_title(f"{results[0]['dataset']}: {results[0]['memory']} images per class in memory")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _ranking_panels(
    panels: Sequence[tuple[str, Sequence[float], Sequence[float], Mapping[str, Any]]],
    xlabel: str,
    ylabel: str,
    path: str | os.PathLike,
) -> Path:
    """One scatter panel per ``(name, reference scores, candidate scores, row)``, titled with
    the row's image count and rank correlations (``num_images``, ``spearman``, ``kendall``)."""
    if not panels:
        raise DataError("nothing to plot")
    fig, axes = new_figure(len(panels), width=3.6, height=3.6)
    for ax, (name, xs, ys, row) in zip(axes, panels, strict=True):
        ax.scatter(xs, ys, s=10)
        ax.set_title(
            f"{name} ({row['num_images']} img)\n"
            f"Spearman {row['spearman']:.2f}, Kendall {row['kendall']:.2f}",
            fontsize=9,
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_proxy_ranking(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Architecture search (:func:`ddkit.apps.nas.architecture_search`): per proxy, each
    architecture's validation accuracy after proxy training against after full-data training,
    titled with the rank correlations."""
    full = result["full"]["val"]
    archs = sorted(full)
    panels = [
        (row["proxy"], [100 * full[a] for a in archs], [100 * row["val"][a] for a in archs], row)
        for row in result["proxies"]
    ]
    return _ranking_panels(
        panels, "val. acc., full training (%)", "val. acc., proxy training (%)", path
    )


def plot_hcdc(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """HCDC (:func:`ddkit.apps.hcdc.calibrated_search`): per candidate validation set, each
    setting's validation loss on it against on the real validation split, titled with the rank
    correlations."""
    real = result["real"]["scores"]
    names = sorted(real)
    panels = [
        (row["candidate"], [real[n]["loss"] for n in names],
         [row["scores"][n]["loss"] for n in names], row)
        for row in result["candidates"]
    ]  # fmt: skip
    xlabel = f"val. loss, real split ({result['real']['num_images']} img)"
    return _ranking_panels(panels, xlabel, "val. loss, condensed set", path)


def plot_federated(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Federated learning (``ddkit app federated`` rows, one per alpha): test accuracy against
    bytes communicated, FedAvg as a curve over rounds, each one-shot upload as a point."""
    fig, axes = new_figure(len(results), width=4.2, height=3.8)
    for ax, r in zip(axes, results, strict=True):
        curve = r["fedavg"]["curve"]
        ax.plot([c["bytes"] for c in curve], [100 * c["accuracy"] for c in curve], marker=".",
                color="grey", label=f"FedAvg ({len(curve)} rounds)")  # fmt: skip
        for one in r["one_shot"]:
            ax.errorbar([one["bytes"]], [100 * one["mean"]], yerr=[100 * one["std"]], marker="o",
                        capsize=2, ls="none", label=f"{one['method']} IPC {one['ipc']}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("bytes communicated")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"alpha = {r['alpha']:g}, {r['clients']} clients", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_synthetic_vs_real(
    synthetic: Any,
    real: Any,
    path: str | os.PathLike,
    *,
    per_class: int = 5,
    seed: int = 0,
) -> Path:
    """Per class, up to ``per_class`` synthetic images, a gap, then as many randomly drawn real
    training images of the same class (seeded), each row named by its class."""
    from ddkit.viz import image_grid

    k = synthetic.spec.num_classes
    g = torch.Generator().manual_seed(seed)
    syn_pix, syn_y = synthetic.pixels(), synthetic.hard_labels
    per_class = min(per_class, int(torch.bincount(syn_y, minlength=k).max()))
    real_pix = real.pixels() if hasattr(real, "pixels") else _real_pixels(real)
    blank = torch.ones_like(syn_pix[:1])
    images, labels = [], []
    for c in range(k):
        mine = syn_pix[syn_y == c][:per_class]
        pool = real_pix[real.labels == c]
        picks = pool[torch.randperm(len(pool), generator=g)[: len(mine) or per_class]]
        pad = blank.expand(per_class - len(mine), *blank.shape[1:])
        row = torch.cat([mine, pad, blank, picks])
        images.append(row)
        labels.append(torch.full((len(row),), c))
    return image_grid(
        torch.cat(images),
        torch.cat(labels),
        k,
        path,
        max_per_class=2 * per_class + 1,
        class_names=synthetic.spec.class_names,
    )


def _real_pixels(dataset: Any) -> torch.Tensor:
    from ddkit.data.dataset import denormalise

    return denormalise(dataset.images, dataset.spec).clamp(0, 1)
