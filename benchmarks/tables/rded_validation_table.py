"""rded on a validation split (issue 85): which of its steps costs what against random real
images, under hard labels and under per-view soft labels (``benchmarks/studies/tune_val.py``
rows, ``tune_rded_*.json``; random real images with the same labels are rded with as many
candidates as images, i.e. no selection, relabelled the same way)."""

from __future__ import annotations

import json
from collections.abc import Iterable

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


def _table(columns: tuple[str, ...], rows: Iterable[tuple[tuple[object, ...], str, object]]) -> str:
    """A Markdown table of ``columns`` and a validation-accuracy column: a row per
    ``(cells, file stem after tune_, the tune_val row's value)``."""
    out = [
        "| " + " | ".join(columns) + " | validation accuracy (%) |",
        "|---" * (len(columns) + 1) + "|",
    ]
    out += [
        f"| {' | '.join(map(str, cells))} | {_accuracy(stem, value)} |"
        for cells, stem, value in rows
    ]
    return "\n".join(out)


def hard_labels() -> str:
    return _table(("rded under hard labels (mnist5k, IPC 10)",),
                  (((what,), stem, value) for stem, value, what in HARD))  # fmt: skip


def soft_labels() -> str:
    return _table(("data", "rded under per-view soft labels"),
                  (((data, what), stem, value) for stem, value, data, what in SOFT))  # fmt: skip


#: the recovery methods' crops at 28 px (``tune_decoupled_*.json``: each method's mnist5k preset,
#: 500 iterations, teacher-kd, 3 ConvNet-3 width 32): (file stem after ``tune_decoupled_``,
#: the row's value, the method, what the row is)
CROPS = (
    ("mnist5k_ipc10_sre2l_crop", "none", "sre2l", "no crops (the default)"),
    ("mnist5k_ipc10_sre2l_crop", "fixed", "sre2l", "the scripts' crops, area 0.08-1"),
    ("mnist5k_ipc10_edc_crop", "none", "edc", "no crops (the default below 64 px)"),
    ("mnist5k_ipc10_edc_crop_min", 0.5, "edc", "crops of area 0.5-1"),
    ("mnist5k_ipc10_edc_crop", "fixed", "edc", "the scripts' crops, area 0.08-1"),
    ("mnist5k_ipc10_cda_crop_min", 0.5, "cda", "curriculum down to area 0.5"),
    ("mnist5k_ipc10_cda_crop_min", 0.25, "cda", "curriculum down to area 0.25"),
)


def recovery_crops() -> str:
    return _table(
        ("method", "crops during recovery (mnist5k, IPC 10)"),
        (((method, what), "decoupled_" + stem, value) for stem, value, method, what in CROPS),
    )


#: sre2l's recovery under the label-budget campaign's evaluation (teacher-kd, 3 ConvNet-3 of
#: width 128, on the validation split): (file stem after ``tune_decoupled_``, the row's value,
#: the recovery, the student's epochs)
SRE2L_EPOCHS = (
    ("mnist5k_ipc10_sre2l_plain_e50", "convnet3-bn", "plain defaults (teacher ConvNet-3-BN, 30 epochs; 1,000 iterations)", 50),
    ("mnist5k_ipc10_sre2l_plain500_e50", "convnet3-bn", "the same teacher, 500 iterations", 50),
    ("mnist5k_ipc10_sre2l_preset_e50", "convnet3-bn-w32", "mnist5k preset (teacher of width 32, 15 epochs; 500 iterations)", 50),
    ("mnist5k_ipc10_sre2l_plain_e300", "convnet3-bn", "plain defaults (the same set as the first row)", 300),
)  # fmt: skip


def sre2l_epochs() -> str:
    return _table(
        ("sre2l recovery (mnist5k, IPC 10)", "student epochs"),
        (
            ((what, epochs), "decoupled_" + stem, value)
            for stem, value, what, epochs in SRE2L_EPOCHS
        ),
    )


TABLES = {
    "rded-validation:hard": hard_labels,
    "rded-validation:soft": soft_labels,
    "decoupled-validation:crops": recovery_crops,
    "decoupled-validation:sre2l-epochs": sre2l_epochs,
}
