"""Tables on the benchmark pages that no writer produces yet (:data:`write.UNWRITTEN`):
(page, header row) -> (how many such tables, why). Each entry is a debt: give the table a
writer in this folder and markers on its page, and drop its line here."""

from __future__ import annotations

SCALE = (
    "the page belongs to the scale work (issue 82, not edited here); "
    "benchmarks/scale/scale_table.py prints its tables from benchmarks/results/scale/"
)
TODO = "figures in a results file; no writer yet"

UNWRITTEN: dict[tuple[str, str], tuple[int, str]] = {
    (
        "docs/benchmarks/data-at-scale.md",
        "| classes x images | size | iterations | peak RSS (GiB) | seconds | outcome | CPU, code |",
    ): (1, SCALE),
    ("docs/benchmarks/data-at-scale.md", "| command | peak RSS (GiB) | seconds | outcome |"): (
        1,
        SCALE,
    ),
    (
        "docs/benchmarks/data-at-scale.md",
        "| image size | images | mean file (KB) | worker processes | images per second |",
    ): (1, SCALE),
    ("docs/benchmarks/data-at-scale.md", "| images per class | how | peak RSS (GiB) | seconds |"): (
        1,
        SCALE,
    ),
    (
        "docs/benchmarks/data-at-scale.md",
        "| method | data | set equal to memory-by-class | max abs difference | accuracy (%) | distil seconds |",
    ): (1, SCALE),
    (
        "docs/benchmarks/data-at-scale.md",
        "| method | network | classes x train images | size | seconds per iteration | load seconds | load average |",
    ): (1, SCALE),
    (
        "docs/benchmarks/history.md",
        "| IPC | method | accuracy (%) | random real (%) | vs random |",
    ): (1, TODO),
    ("docs/benchmarks/history.md", "| IPC | set | `fast` | `mse` |"): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| MNIST | cell | the new seed (GPU, 3 networks) | distillation on the GPU | both seeds (2 x 3) |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| N (syn steps) | iterations | loss, first → last 10 % | learned lr | validation acc (%) |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| cell | best trajectory | best of dc / dsa / dm / idm | best selector | lead |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| change from the preset (lr_img 0.001, un-normalised random ConvNets) | Platt loss, last 10 % | accuracy (%) | results file |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| change from the preset (lr_img 0.003, online SGD lr 0.01, 100 online steps) | accuracy (%) | results file |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| dataset, IPC 1 | random real | rtp, label_scale 3 | 10 | 30 |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| dataset, IPC 10 | iterations | lr_img | ce_weight | loss per class, first → last 10 % | validation acc (%) |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| lr_lr | M (expert epochs) | N (syn steps) | loss, first → last 10 % | learned lr | validation acc (%) |",
    ): (1, TODO),
    ("docs/benchmarks/history.md", "| method | IPC 1 (%) | vs random | IPC 10 (%) | vs random |"): (
        1,
        TODO,
    ),
    (
        "docs/benchmarks/history.md",
        "| method | IPC 1 (%) | vs random | IPC 10 (%) | vs random | IPC 50 (%) | vs random |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| set | `fast` (100 epochs), stored labels | `fast`, hard labels | `dsa` (1000 epochs), stored labels | `dsa`, hard labels |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| set | kernel ridge regression (%) | ConvNet-3 trained on it (%) |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| set | protocol `dsa` (the suite's: 1000 epochs, DSA) | `dc_aug` at 300 epochs (DC's MNIST augmentation; the protocol's epochs then) | `dc` (300 epochs, no augmentation) | `dsa`, evaluated at width 32 |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| set | unroll (steps) | lr_img | distillation loss, first → last 10 % | validation accuracy (%) |",
    ): (1, TODO),
    (
        "docs/benchmarks/history.md",
        "| student (`inner`, `syn_lr`) | lr_img | distillation loss, first → last 10 % | validation accuracy (%) |",
    ): (1, TODO),
}
