"""How well ``--dry-run`` estimates hold (issue 70: within 1.5x of the real run): each case runs
its command with ``--dry-run``, then for real, each in its own process as a user would, and
records the estimate (parsed from the printed "about ..."), the real command's wall seconds and
their ratio, with the load average before each. Cases: ``ddkit distill`` (dm on digits, IPC
10, 100 iterations, and the preset's 1,000), a small privacy audit (dm at IPC 1, 4 shadows, a
pool of 200 rows, 20 epochs), ``ddkit evaluate`` of the short run's set (protocol fast),
``ddkit bench`` of the quick suite's random cell at IPC 1 (its own results folder). Writes
``benchmarks/results/dry_run.json``.

    python benchmarks/bench_dry_run.py [--out DIR]
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

RESULTS = Path(__file__).parent / "results" / "dry_run.json"
DDKIT = [sys.executable, "-m", "ddkit"]


def seconds_of(clock_text: str) -> float:
    """``1h02m``, ``3m05s`` or ``42s`` in seconds."""
    h, m, s = (re.search(rf"(\d+){u}", clock_text) for u in ("h", "m(?!s)", "s"))
    return sum(int(x.group(1)) * k for x, k in ((h, 3600), (m, 60), (s, 1)) if x)


def timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(DDKIT + argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, done.stdout


def case(name: str, argv: list[str], dry_extra: list[str], real_extra: list[str]) -> dict:
    load = os.getloadavg()[0]
    _, printed = timed(argv + dry_extra)
    estimate = seconds_of(re.findall(r"about (\S+)", printed)[-1])
    real, _ = timed(argv + real_extra)
    row = {"case": name, "command": "ddkit " + " ".join(argv), "estimate_s": estimate,
           "real_wall_s": round(real, 1), "ratio_real_to_estimate": round(real / max(estimate, 1), 2),
           "load_average_before": load}  # fmt: skip
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/ddkit-dry-run")
    out = Path(ap.parse_args().out)
    shutil.rmtree(out, ignore_errors=True)
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
