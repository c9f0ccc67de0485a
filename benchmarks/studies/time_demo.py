"""Time `ddkit demo` end to end (fresh run folder; install not included) and record the wall
time, the CPU time of the process and what it printed, in benchmarks/results/demo_timing.json.

Usage: python benchmarks/studies/time_demo.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ddkit.io import atomic_write_json, read_json
from ddkit.meter import machine_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="benchmarks/results/demo_timing.json")
    args = ap.parse_args()
    run = Path(tempfile.mkdtemp()) / "demo"
    ddkit = Path(sys.executable).with_name("ddkit")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([str(ddkit), "demo", "--out", str(run)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(done.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average_at_end": os.getloadavg(),
        "machine": machine_info(),
        "stdout": done.stdout,
        "demo": read_json(run / "demo.json"),
    }
    atomic_write_json(args.out, result)
    shutil.rmtree(run.parent, ignore_errors=True)
    print(done.stdout)
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
