"""rded on a validation split (issue 85): which of its steps costs what against random real
images, under hard labels and under per-view soft labels (``benchmarks/studies/tune_val.py``
rows, ``tune_rded_*.json``; random real images with the same labels are rded with as many
candidates as images, i.e. no selection, relabelled the same way)."""

from __future__ import annotations

import json

from _campaigns import RESULTS

#: (file stem after ``tune_``, the row's value, what the row is)
HARD = (
    ("rded_mnist5k_ipc10_hard_candidates", 10, "no selection: 10 random images per class"),
    ("rded_mnist5k_ipc10_hard_candidates", 30, "whole images, best 10 of 30 candidates"),
    ("rded_mnist5k_ipc10_hard_factor_fullscale", 1, "whole images, best 10 of 300 (the default)"),
    ("rded_mnist5k_ipc10_hard_factor", 1, "crops of area 0.5-1 (the default before)"),
    ("rded_mnist5k_ipc10_hard_factor_refscale", 1, "crops of area 0.08-1 (the scripts')"),
    ("rded_mnist5k_ipc10_hard_factor", 2, "stitched 2 x 2, crops 0.5-1, DSA"),
    ("rded_mnist5k_ipc10_hard_factor2_patchviews", 2, "stitched 2 x 2, RDED's views (patches:2)"),
    ("rded_mnist5k_ipc10_hard_factor", "random real", "random real images (tune_val's), DSA"),
    (
        "rded_mnist5k_ipc10_hard_factor2_patchviews",
        "random real",
        "random real images, RDED's views (patches:2)",
    ),
)
SOFT = (
    ("rded_mnist5k_ipc10_views_candidates", 10, "mnist5k, IPC 10", "no selection (random real)"),
    ("rded_mnist5k_ipc10_views_candidates", 30, "mnist5k, IPC 10", "whole images, best of 30"),
    ("rded_mnist5k_ipc10_views_candidates", 300, "mnist5k, IPC 10", "whole images, best of 300"),
    ("rded_mnist5k_ipc10_views_default", 300, "mnist5k, IPC 10", "crops 0.5-1, best of 300"),
    ("rded_mnist5k_ipc50_views_fullscale", 300, "mnist5k, IPC 50", "whole images, best of 300"),
    ("rded_mnist5k_ipc50_views_oldscale", 300, "mnist5k, IPC 50", "crops 0.5-1, best of 300"),
    (
        "rded_fashionmnist_ipc10_views_fullscale",
        300,
        "Fashion-MNIST, IPC 10",
        "whole images, best of 300",
    ),
    (
        "rded_fashionmnist_ipc10_views_oldscale",
        300,
        "Fashion-MNIST, IPC 10",
        "crops 0.5-1, best of 300",
    ),
)


def _accuracy(stem: str, value: object) -> str:
    path = RESULTS / f"tune_{stem}.json"
    if not path.exists():
        return "not measured"
    rows = [r for r in json.loads(path.read_text())["rows"] if r["value"] == value]
    if not rows:
        return "not measured"
    r = rows[-1]
    return f"{100 * r['val_mean']:.1f} ± {100 * r['val_std']:.1f}"


def hard_labels() -> str:
    out = ["| rded under hard labels (mnist5k, IPC 10) | validation accuracy (%) |", "|---|---|"]
    out += [f"| {what} | {_accuracy(stem, value)} |" for stem, value, what in HARD]
    return "\n".join(out)


def soft_labels() -> str:
    out = ["| data | rded under per-view soft labels | validation accuracy (%) |", "|---|---|---|"]
    out += [f"| {data} | {what} | {_accuracy(stem, value)} |" for stem, value, data, what in SOFT]
    return "\n".join(out)


TABLES = {"rded-validation:hard": hard_labels, "rded-validation:soft": soft_labels}
