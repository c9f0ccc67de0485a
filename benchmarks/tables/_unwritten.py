"""Tables on the benchmark pages that no writer produces yet (:data:`write.UNWRITTEN`):
(page, header row) -> (how many such tables, why). Each entry is a debt: give the table a
writer in this folder and markers on its page, and drop its line here."""

from __future__ import annotations

SCALE = (
    "the page belongs to the scale work (issue 82, not edited here); "
    "benchmarks/scale/scale_table.py prints its tables from benchmarks/results/scale/"
)
SNAPSHOT = (
    "a snapshot of the first standard-suite rows, since re-run: frepo's 94.23 is kept in "
    "standard.json's 'replaced' list, bptt's 88.23 ± 0.26 (SGD student) in no results file; its "
    "last column comments on the re-runs"
)
READING = (
    "a reading of the standard suite: the best of each family with near ties picked by hand and "
    "a judgement column (lead); its figures are standard.json's, whose tables suites.md and "
    "BENCHMARKS.md generate"
)

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
    ): (1, SNAPSHOT),
    (
        "docs/benchmarks/history.md",
        "| cell | best trajectory | best of dc / dsa / dm / idm | best selector | lead |",
    ): (1, READING),
}
