"""Tables on the benchmark pages that no writer produces yet (:data:`write.UNWRITTEN`):
(page, header row) -> (how many such tables, why). Each entry is a debt: give the table a
writer in this folder and markers on its page, and drop its line here."""

from __future__ import annotations

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

CODE_READING = (
    "no figures: a reading of the authors' code beside ddkit's, step by step (issue 85), written "
    "by hand as the docstrings it summarises are"
)

UNWRITTEN: dict[tuple[str, str], tuple[int, str]] = {
    (
        "docs/benchmarks/history.md",
        "| IPC | method | accuracy (%) | random real (%) | vs random |",
    ): (1, SNAPSHOT),
    (
        "docs/benchmarks/history.md",
        "| cell | best trajectory | best of dc / dsa / dm / idm | best selector | lead |",
    ): (1, READING),
    (
        "docs/benchmarks/pretrained-and-labels.md",
        "| method | step | reference code | ddkit | why |",
    ): (1, CODE_READING),
    (
        "docs/benchmarks/pretrained-and-labels.md",
        "| step | reference code | ddkit | note |",
    ): (1, CODE_READING),
}
