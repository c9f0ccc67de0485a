"""Markdown tables of `ddkit audit` results files, for docs/benchmarks/trust.md.

Every figure is read from the results files named on the command line: per audited set, the
mean ± std over its networks (in %), with what produced them (protocol, epochs, networks, seed,
budgets) above each table.

Usage: python benchmarks/tables/trust_tables.py benchmarks/results/audit-*/adversarial.json ...
(an audit results file; the tables of docs/benchmarks/trust.md are registered in ``TABLES``).
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


def adversarial_table(path: Path, data: dict[str, Any], more: tuple[Path, ...] = ()) -> str:
    """The robust-accuracy table; the sets of the results files ``more`` (the same attacks on
    another recipe's networks, e.g. the full data's) follow as rows named with their epochs and
    folder."""
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
    sets = list(data["sets"].items())
    for extra in more:
        other = json.loads((ROOT / extra).read_text())
        epochs = other["protocol"]["epochs"]
        sets += [(f"{n} ({epochs} epochs; `{extra.parent.name}/`)", row)
                 for n, row in other["sets"].items()]  # fmt: skip
    for name, row in sets:
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


def _ci(metric: dict[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    value = f"{scale * metric['value']:.{digits}f}"
    if metric.get("low") is None:
        return value
    return f"{value} [{scale * metric['low']:.{digits}f}, {scale * metric['high']:.{digits}f}]"


def privacy_table(path: Path, data: dict[str, Any]) -> str:
    b, p = data["budgets"], data["protocol"]
    dp = b["dp"]
    fprs = [f"{100 * f:g}%" for f in b["fprs"]]
    attacks = ["loss", "lira"] if b["shadows"] else ["loss"]
    lines = [
        f"`{path}`: {data['dataset']}, pool {b['pool']} training rows: the target's "
        f"{b['members']} members (a class-stratified half) against its {b['non_members']} "
        f"non-members; {b['shadows']} LiRA shadows on complementary halves. Networks "
        f"{b['model']}: protocol `{p['name']}` ({b['epochs']} epochs) on the sets, "
        f"{b['full_epochs']} epochs on the full members; DP-SGD: delta {dp['delta']:g}, "
        f"expected batch {dp['batch_size']}, lr {dp['lr']:g}, momentum {dp['momentum']:g}, "
        f"clip {dp['max_grad_norm']:g}, accountant {dp['accountant']}; distillation "
        f"iterations {b['distillation_iterations']}; seed {data['seed']}. Test accuracy: mean ± "
        "std over the target and its shadows; attack metrics on the target, with "
        f"{b['bootstrap']}-resample bootstrap 95 % intervals; AUC x 100.",
        "",
        "| source | images | test accuracy (%) | "
        + " | ".join(f"{a} AUC | " + " | ".join(f"{a} TPR@{f}" for f in fprs) for a in attacks)
        + " | epsilon spent |",
        "|---|---|---|" + "---|" * (len(attacks) * (1 + len(fprs))) + "---|",
    ]
    order = {"full": 0, "dp": 1, "random": 2, "distilled": 3}
    rows = sorted(
        data["sets"].items(),
        key=lambda kv: (kv[1]["kind"] in ("random", "distilled"), kv[1]["ipc"] or 0,
                        order[kv[1]["kind"]], kv[1].get("epsilon") or 0, kv[0]),
    )  # fmt: skip
    for name, row in rows:
        acc = row["test_accuracy"]
        m = row["attacks"]
        cells = [
            " | ".join([_ci(m[a]["auc"])] + [_ci(m[a][f"tpr@{f}"]) for f in fprs]) for a in attacks
        ]
        spent = row.get("epsilon_spent")
        eps = f"{statistics.fmean(spent):.2f}" if spent else ""
        lines.append(
            f"| {name} | {row['num_images']} | {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f}"
            f" | {' | '.join(cells)} | {eps} |"
        )
    if data.get("incomplete"):
        lines += ["", "Not attacked yet (networks still training): " + ", ".join(
            f"{name} ({kept})" for name, kept in data["incomplete"].items()
        ) + "."]  # fmt: skip
    return "\n".join(lines)


BY_AUDIT = {"adversarial": adversarial_table, "backdoor": backdoor_table, "privacy": privacy_table}
ROOT = Path(__file__).resolve().parents[2]


def audit_table(name: str, *more: str) -> str:
    """The table of ``benchmarks/results/<name>`` (named so in its heading), and ``more``."""
    path = Path("benchmarks/results") / name
    data = json.loads((ROOT / path).read_text())
    if more:
        return adversarial_table(path, data, tuple(Path("benchmarks/results") / m for m in more))
    return BY_AUDIT[data["audit"]](path, data)


TABLES = {
    "trust:backdoor-naive": lambda: audit_table("audit-backdoor-mnist5k-naive/backdoor.json"),
    "trust:backdoor-doorping": lambda: audit_table("audit-backdoor-mnist5k-doorping/backdoor.json"),
    "trust:adversarial": lambda: audit_table(
        "audit-adversarial-mnist5k/adversarial.json",
        "audit-adversarial-mnist5k-full/adversarial.json",
    ),
    "trust:privacy": lambda: audit_table("audit-privacy-mnist5k/privacy.json"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.results:
        data = json.loads(path.read_text())
        print(BY_AUDIT[data["audit"]](path, data) + "\n")


if __name__ == "__main__":
    main()
