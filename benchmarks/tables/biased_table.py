"""Print the Colored MNIST tables (docs/benchmarks/bias-and-pruning.md) from `sh benchmarks/campaigns/biased_mnist5k.sh`'s results.

Per IPC: unbiased and worst-group test accuracy (%, mean ± std over the evaluation networks) of
every method at each bias-conflicting percentage, beside the full training split; then the
amplification, each set's unbiased accuracy minus random real rows' at the same IPC and ratio
(`*`: by more than the two standard deviations combined); then the mean accuracy on the
bias-aligned and on the bias-conflicting test rows. Cells not measured yet print `–`.

With ``--plot PNG``: unbiased test accuracy against the bias-conflicting percentage, one line
per method (error bars: std over networks), one panel per IPC, the full split dashed.

Usage: python benchmarks/tables/biased_table.py [--results benchmarks/results/biased-mnist5k]
       [--plot benchmarks/results/biased-mnist5k/unbiased.png]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from leaders_table import accuracy_cell, gain_cell  # a sibling script (benchmarks/tables/)

from ddkit.io import read_json

ORDER = (
    "random",
    "herding",
    "dm",
    "dm-kde",
    "idm",
    "idm-kde",
    "idm-start",
    "tesla",
    "dsa",
    "dsa-kde",
)
OPTIONAL = ("dsa", "dsa-kde")  # listed only once one of their cells is measured
_CELL = re.compile(
    r"colored-mnist5k-c(?P<ratio>[0-9.]+)-(?P<method>[a-z0-9-]+?)(-ipc(?P<ipc>\d+))?$"
)


def read_cells(folder: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(ratio, method, ipc) -> the first network's group summary (ipc 0: the full split)."""
    cells = {}
    for path in sorted(folder.glob("colored-mnist5k-c*.json")):
        m = _CELL.match(path.stem)
        if not m:
            continue
        result = read_json(path)["results"][0]
        method = m["method"]
        ipc = int(m["ipc"]) if m["ipc"] else 0
        cells[(m["ratio"], method, ipc)] = result["groups"]
    return cells


def shown_methods(cells: dict) -> list[str]:
    """:data:`ORDER`, less the optional methods that have no measured cell."""
    measured = {method for _, method, _ in cells}
    return [m for m in ORDER if m not in OPTIONAL or m in measured]


def table_rows(cells: dict, ipc: int) -> list[tuple[str, str, int]]:
    """``(label, method, ipc)`` of each row: the full split (``ipc`` 0), then the methods."""
    return [("full data", "full", 0), *[(m, m, ipc) for m in shown_methods(cells)]]


def accuracy_table(cells: dict, ratios: list[str], ipc: int) -> list[str]:
    head = "| method | " + " | ".join(f"{r} %: unbiased | worst group" for r in ratios) + " |"
    lines = [head, "|---|" + "---|---|" * len(ratios)]
    for label, method, at in table_rows(cells, ipc):
        row = []
        for r in ratios:
            g = cells.get((r, method, at))
            row += [accuracy_cell(g and g["unbiased"]), accuracy_cell(g and g["worst_group"])]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def aligned_conflicting_table(cells: dict, ratios: list[str], ipc: int) -> list[str]:
    """Mean aligned / conflicting test accuracy (%) per method and ratio."""
    lines = ["| method | " + " | ".join(f"{r} %" for r in ratios) + " |"]
    lines.append("|---|" + "---|" * len(ratios))
    for label, method, at in table_rows(cells, ipc):
        row = []
        for r in ratios:
            g = cells.get((r, method, at))
            shown = g and f"{100 * g['aligned']['mean']:.1f} / {100 * g['conflicting']['mean']:.1f}"
            row.append(shown or "–")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def amplification_table(cells: dict, ratios: list[str], ipc: int) -> list[str]:
    lines = ["| method | " + " | ".join(f"{r} %" for r in ratios) + " |"]
    lines.append("|---|" + "---|" * len(ratios))
    for method in shown_methods(cells)[1:]:
        row = []
        for r in ratios:
            g, base = cells.get((r, method, ipc)), cells.get((r, "random", ipc))
            row.append(gain_cell(g and g["unbiased"], base and base["unbiased"]))
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return lines


def plot_unbiased(cells: dict, ratios: list[str], ipcs: list[int], path: Path) -> None:
    """Unbiased accuracy (%) against the conflicting percentage: a panel per IPC, a line per
    method with at least one measured ratio, the full training split dashed in every panel."""
    from ddkit.plots import new_figure, save_figure

    fig, axes = new_figure(ncols=len(ipcs))
    for ax, ipc in zip(axes, ipcs, strict=True):
        for label, method, at in table_rows(cells, ipc):
            points = [(float(r), cells[(r, method, at)]["unbiased"]) for r in ratios
                      if (r, method, at) in cells]  # fmt: skip
            if not points:
                continue
            x, g = zip(*points, strict=True)
            ax.errorbar(x, [100 * v["mean"] for v in g], yerr=[100 * v["std"] for v in g],
                        fmt="k--" if at == 0 else "o-", capsize=2, label=label)  # fmt: skip
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([float(r) for r in ratios], labels=ratios)
        ax.set_xlabel("bias-conflicting training rows (%)")
        ax.set_ylabel("unbiased test accuracy (%)")
        ax.set_title(f"Colored MNIST (mnist5k), IPC {ipc}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def tables(cells: dict) -> str:
    """Per IPC: the accuracy, amplification and aligned / conflicting tables, with headings."""
    ratios = sorted({r for r, _, _ in cells}, key=float)
    out: list[str] = []
    for ipc in sorted({i for _, _, i in cells if i}):
        out += [f"#### IPC {ipc}: unbiased and worst-group test accuracy (%)", ""]
        out += accuracy_table(cells, ratios, ipc)
        out += ["", f"IPC {ipc}: unbiased accuracy minus random real rows' (points)", ""]
        out += amplification_table(cells, ratios, ipc)
        out += ["", f"IPC {ipc}: aligned / conflicting test accuracy (%)", ""]
        out += aligned_conflicting_table(cells, ratios, ipc) + [""]
    return "\n".join(out).strip("\n")


RESULTS = Path(__file__).resolve().parents[1] / "results" / "biased-mnist5k"
TABLES = {"biased": lambda: tables(read_cells(RESULTS))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--plot", type=Path, help="also draw unbiased accuracy against the ratio")
    args = ap.parse_args()
    cells = read_cells(Path(args.results))
    ratios = sorted({r for r, _, _ in cells}, key=float)
    print(tables(cells))
    if args.plot:
        plot_unbiased(cells, ratios, sorted({i for _, _, i in cells if i}), args.plot)


if __name__ == "__main__":
    main()
