"""Scale-out on the CPU (issue 38; docs/benchmarks/scale-out.md): each distributed path with one
and two processes (``campaigns/distributed.sh``: ``distributed/times.tsv`` for the seconds,
``distributed/checks.txt`` for how far the two-process result lies from the one-process one)."""

from __future__ import annotations

import csv
import re

from _campaigns import RESULTS

#: each path's budget and what it splits (distributed.sh's defaults), and a note on its check
PATHS = {
    "experts": ("4 experts x 10 epochs, convnet2", "experts (4 of them)", ""),
    "dm": ("IPC 10, 500 iterations", "classes", ""),
    "dsa": ("IPC 10, 5 outer iterations", "classes, image gradients summed", ""),
    "evaluate": ("dm's set, protocol fast, 6 runs", "runs (6)", ""),
    "teacher": ("convnet3-bn, 10 epochs", "rows of every batch, gradients summed", "see below"),
    "sre2l": ("IPC 10, 200 iterations", "image indices", ""),
    "rded": ("IPC 10", "image indices (scoring)", ""),
    "tesla": ("IPC 10, 50 iterations", "rows of every student mini-batch",
              "the test's 1e-5 holds over 3 iterations"),
}  # fmt: skip
DIFF = re.compile(r"^(\w+): largest difference of images and labels (\S+) \(tolerance (\S+)\)")
TEACHER = re.compile(
    r"^teacher vs 1 process, 1 thread -- 2 processes: largest weight difference ([0-9.e-]+)"
)


def _e(x: float, spec: str = ".1e") -> str:
    """``1.3e-5``: the exponent without its padding zero."""
    mantissa, exponent = format(x, spec).split("e")
    return f"{mantissa}e{int(exponent)}"


def _checks() -> dict[str, str]:
    """Path -> how the two-process result compares, from the check log."""
    out = {}
    for line in (RESULTS / "distributed" / "checks.txt").read_text().splitlines():
        if line.startswith("experts:") and line.endswith("identical: True"):
            out["experts"] = "identical files"
        elif line.startswith("evaluate: accuracies identical: True"):
            out["evaluate"] = "identical accuracies"
        elif m := DIFF.match(line):
            path, diff, tol = m[1], float(m[2]), float(m[3])
            if diff == 0:
                out[path] = "identical" + (f" (tolerance {_e(tol, '.0e')})" if tol else "")
            else:
                out[path] = _e(diff)
        elif m := TEACHER.match(line):
            out["teacher"] = f"same accuracy; weights {_e(float(m[1]))} apart"
    return out


def distributed() -> str:
    with open(RESULTS / "distributed" / "times.tsv") as f:
        seconds = {(r["path"], r["processes"]): float(r["seconds"]) for r in csv.DictReader(f, delimiter="\t")}  # fmt: skip
    checks = _checks()
    out = [
        "| path | budget (digits) | split by | 1 process (s) | 2 processes (s) | speed-up | "
        "2 vs 1 process |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in dict.fromkeys(p for p, _ in seconds):
        budget, split, note = PATHS[path]
        one, two = seconds[(path, "1")], seconds[(path, "2")]
        check = checks[path] + (f" ({note})" if note else "")
        out.append(
            f"| {path} | {budget} | {split} | {one:.1f} | {two:.1f} | {one / two:.2f}x | {check} |"
        )
    return "\n".join(out)


TABLES = {"distributed:cpu": distributed}
