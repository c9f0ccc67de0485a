"""Markdown tables of `ddkit audit` results files, for BENCHMARKS.md ("Trust audits").

Every figure is read from the results files named on the command line: per audited set, the
mean ± std over its networks (in %), with what produced them (protocol, epochs, networks, seed,
budgets) above each table.

Usage: python benchmarks/trust_tables.py benchmarks/results/audit-*/adversarial.json ...
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def _pm(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def _heading(path: Path, data: dict[str, Any]) -> str:
    p = data["protocol"]
    return (
        f"`{path}`: {data['dataset']}, networks {', '.join(p['models'])} trained by protocol "
        f"`{p['name']}` ({p['epochs']} epochs), {data['runs']} per set, seed {data['seed']}."
    )


def adversarial_table(path: Path, data: dict[str, Any]) -> str:
    b = data["budgets"]
    eps = [f"{e:g}/255" for e in b["epsilons_255"]]
    lines = [
        _heading(path, data) + f" PGD: {b['pgd_steps']} steps, random start; "
        f"{b['test_images']} test images. Robust accuracy (%): an image counts only if it is "
        "right clean and under every attack point tried (FGSM, then each PGD iterate).",
        "",
        "| set | images | clean | "
        + " | ".join(f"FGSM {e}" for e in eps)
        + " | "
        + " | ".join(f"PGD {e}" for e in eps)
        + " |",
        "|---|---|---|" + "---|" * (2 * len(eps)),
    ]
    for name, row in data["sets"].items():
        nets = row["networks"]
        fgsm = [_pm([n["fgsm"][i] for n in nets]) for i in range(len(eps))]
        pgd = [_pm([n["pgd"][i] for n in nets]) for i in range(len(eps))]
        lines.append(
            f"| {name} | {row['num_images']} | {_pm([n['clean'] for n in nets])} | "
            + " | ".join(fgsm)
            + " | "
            + " | ".join(pgd)
            + " |"
        )
    return "\n".join(lines)


def backdoor_table(path: Path, data: dict[str, Any]) -> str:
    b = data["budgets"]
    t = b["trigger"]
    lines = [
        _heading(path, data) + f" Attack `{b['attack']}`: a {t['size']}x{t['size']} patch of "
        f"value {t['value']} at {t['position']} on {b['poisoned_rows']} non-target training "
        f"rows ({b['fraction']:g} of them) relabelled to class {b['target']}; distillation "
        f"iterations {b['distillation_iterations']}. ASR on {b['asr_test_images']} triggered "
        "test images of the non-target classes.",
        "",
        "| set | role | images | clean accuracy (%) | attack success rate (%) |",
        "|---|---|---|---|---|",
    ]
    for name, row in data["sets"].items():
        nets = row["networks"]
        lines.append(
            f"| {name} | {row['role']} | {row['num_images']} | "
            f"{_pm([n['clean_accuracy'] for n in nets])} | {_pm([n['asr'] for n in nets])} |"
        )
    return "\n".join(lines)


TABLES = {"adversarial": adversarial_table, "backdoor": backdoor_table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.results:
        data = json.loads(path.read_text())
        print(TABLES[data["audit"]](path, data) + "\n")


if __name__ == "__main__":
    main()
