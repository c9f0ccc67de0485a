"""The decision record of ``--method auto``: every candidate with its settings, cost estimate,
measured seconds, validation accuracy, the round it reached and why it stopped; kept in the
run's ``config.json`` and the set's ``meta.json`` under ``"auto"``, printed as a table at the
end of ``ddkit distill`` (:func:`record_table`) and shown by ``ddkit report``."""

from __future__ import annotations

from typing import Any

from ddkit.methods.auto.tournament import Row

#: the columns of :func:`record_table` and of the report's table
COLUMNS = ("candidate", "options", "cost estimate", "measured", "iterations", "val acc", "round",
           "why it stopped")  # fmt: skip


def cost_text(cost: dict[str, Any] | None) -> str:
    """A cost estimate in words: ``"4.2 s + 0.031 s/it x 2,000"``, or a selector's set."""
    if not cost:
        return "-"
    if not cost.get("planned_iterations"):
        return f"{cost['setup_seconds']:.1f} s (the selection)"
    return (
        f"{cost['setup_seconds']:.1f} s + {cost['seconds_per_iteration']:.3g} s/it x "
        f"{cost['planned_iterations']:,}"
    )


def row_cells(row: dict[str, Any]) -> list[str]:
    """One candidate's cells, in :data:`COLUMNS`' order."""
    acc = row.get("val_accuracy")
    options = ", ".join(f"{k}={v}" for k, v in sorted(row.get("options", {}).items()))
    return [
        str(row.get("label", "?")),
        options or "-",
        cost_text(row.get("cost")),
        f"{row.get('measured_seconds', 0.0):.1f} s",
        f"{row.get('iterations', 0):,}",
        "-" if acc is None else f"{100 * acc:.2f} %",
        "-" if row.get("round") is None else str(row["round"]),
        str(row.get("why", "")),
    ]


def rows_record(rows: list[Row]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in rows]


def record_table(record: dict[str, Any]) -> str:
    """The record as the fixed-width table ``ddkit distill`` prints, with a line above it that
    says what was compared on what, and a line below it with the choice."""
    cells = [list(COLUMNS), *(row_cells(r) for r in record.get("candidates", []))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([heading(record), *lines, record.get("why", "")])


def heading(record: dict[str, Any]) -> str:
    """What the tournament compared, on which rows, within what time."""
    val, recipe = record.get("validation", {}), record.get("recipe", {})
    folds = val.get("folds")
    rows = (
        f"{folds} validation folds of {val.get('fraction', 0):.0%} of each class's training rows "
        f"({val.get('val_rows', '?')} held out in all, seed {val.get('seed', '?')})"
        if folds
        else f"a validation split of {val.get('val_rows', '?')} training rows "
        f"({val.get('fraction', 0):.0%} of each class, seed {val.get('seed', '?')})"
    )
    learners = (record.get("scoring learners") or {}).get("learners")
    by = f" by {learners.replace(',', ', ')}" if learners else ""
    return (
        f"--method auto: {len(record.get('candidates', []))} candidates, "
        f"{record.get('rounds', '?')} round(s) of successive halving on {rows}; "
        f"{recipe.get('runs', '?')} runs of "
        f"{recipe.get('epochs', '?')} epochs each{by}; tournament "
        f"{record.get('spent_seconds', 0):.0f} s of its {record.get('tournament_seconds', 0):.0f} s"
    )
