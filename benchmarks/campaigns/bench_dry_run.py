"""How well ``--dry-run`` estimates hold (issue 70: within 1.5x of the real run): each case runs
its command with ``--dry-run``, then for real, each in its own process as a user would, and
records the estimate (parsed from the printed "about ..."), the real command's wall seconds and
their ratio, with the load average before each. Cases: ``ddkit distill`` (dm on digits, IPC
10, 100 iterations, and the preset's 1,000), a small privacy audit (dm at IPC 1, 4 shadows, a
pool of 200 rows, 20 epochs), ``ddkit evaluate`` of the short run's set (protocol fast),
``ddkit bench`` of the quick suite's random cell at IPC 1 (its own results folder). Writes
``benchmarks/results/dry_run.json``.

Issue 82 (estimates in seconds) adds the dry run's own wall seconds to every row and cases
whose set-up trains an artifact the dry run must not (``--cases seconds``): mtt on digits with
its experts trained (2 x 4 epochs, 20 iterations), sre2l with its teacher (5 epochs, 50
iterations), and the documented vl-mtt dry run (captioned-digits, 100 pairs: dry run only,
its real run takes a quarter of an hour here). Written to
``benchmarks/results/dry_run_seconds.json``.

    python benchmarks/campaigns/bench_dry_run.py [--out DIR] [--cases default|seconds]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ddkit.io import atomic_write_json
from ddkit.meter import machine_info

RESULTS = Path(__file__).resolve().parents[1] / "results" / "dry_run.json"
SECONDS_RESULTS = Path(__file__).resolve().parents[1] / "results" / "dry_run_seconds.json"
DDKIT = [sys.executable, "-m", "ddkit"]


def seconds_of(clock_text: str) -> float:
    """``1h02m``, ``3m05s`` or ``42s`` in seconds."""
    h, m, s = (re.search(rf"(\d+){u}", clock_text) for u in ("h", "m(?!s)", "s"))
    return sum(int(x.group(1)) * k for x, k in ((h, 3600), (m, 60), (s, 1)) if x)


def timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(DDKIT + argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, done.stdout


def case(name: str, argv: list[str], dry_extra: list[str], real_extra: list[str] | None) -> dict:
    """One row: the dry run's estimate and wall seconds, and (unless ``real_extra`` is None)
    the real command's wall seconds and the ratio."""
    load = os.getloadavg()[0]
    dry, printed = timed(argv + dry_extra)
    # a distillation's total follows "= about" (its set-up's parts have their own "about")
    found = re.findall(r"= about (\S+)", printed) or re.findall(r"about (\S+)", printed)
    estimate = seconds_of(found[-1])
    row = {"case": name, "command": "ddkit " + " ".join(argv), "estimate_s": estimate,
           "dry_run_wall_s": round(dry, 1), "load_average_before": load,
           "estimate_line": printed.strip().splitlines()[-1]}  # fmt: skip
    if real_extra is not None:
        real, _ = timed(argv + real_extra)
        row.update(
            real_wall_s=round(real, 1), ratio_real_to_estimate=round(real / max(estimate, 1), 2)
        )
    print(row, flush=True)
    return row


def seconds_cases(out: Path) -> list[dict]:
    """Issue 82: set-ups that train experts or a teacher, which the dry run times in part."""
    mtt = ["distill", "--dataset", "digits", "--method", "mtt", "--ipc", "1", "--iterations", "20",
           "--set", "num_experts=2", "--set", "expert_train_epochs=4", "--set", "max_start_epoch=2",
           "--set", f"experts_cache={out / 'experts'}", "--out", str(out / "mtt")]  # fmt: skip
    sre2l = ["distill", "--dataset", "digits", "--method", "sre2l", "--ipc", "1", "--iterations",
             "50", "--set", "teacher_epochs=5", "--set", f"teacher_cache={out / 'teachers'}",
             "--out", str(out / "sre2l")]  # fmt: skip
    vl = ["distill", "--dataset", "captioned-digits", "--method", "vl-mtt", "--ipc", "100",
          "--out", str(out / "vl-mtt")]  # fmt: skip
    return [
        case("mtt, its experts trained", mtt, ["--dry-run"], ["--quiet"]),
        case("sre2l, its teacher trained", sre2l, ["--dry-run"], ["--quiet"]),
        case("vl-mtt, the documented dry run (dry run only)", vl, ["--dry-run"], None),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/ddkit-dry-run")
    ap.add_argument("--cases", choices=("default", "seconds"), default="default")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    if args.cases == "seconds":
        rows = seconds_cases(out)
        atomic_write_json(SECONDS_RESULTS, {"machine": machine_info(), "rows": rows})
        return
    run = str(out / "dm")
    distill = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "10",
               "--iterations", "100", "--out", run]  # fmt: skip
    bench = ["bench", "--suite", "quick", "--methods", "random", "--ipcs", "1",
             "--results", str(out / "bench")]  # fmt: skip
    preset = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "10",
              "--out", str(out / "dm-preset")]  # fmt: skip
    audit = ["audit", "privacy", "--dataset", "digits", "--methods", "dm", "--ipc", "1", "--dp-batch", "32",
             "--shadows", "4", "--pool", "200", "--epochs", "20", "--out", str(out / "audit")]  # fmt: skip
    rows = [
        case("distill", distill, ["--dry-run"], ["--quiet"]),
        case("distill, the preset's 1,000 iterations", preset, ["--dry-run"], ["--quiet"]),
        case("audit privacy", audit, ["--dry-run"], []),
        case("evaluate", ["evaluate", run, "--protocol", "fast"], ["--dry-run"], ["--quiet"]),
        case("bench unit", bench, ["--dry-run"], []),
    ]
    atomic_write_json(RESULTS, {"machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
