"""Peak memory and time of `ddkit distill --method dm` on a generated image folder (issue 68).

Runs the command as a child process and reads its peak resident set size from the kernel
(``RUSAGE_CHILDREN``), or parses a ``/usr/bin/time -v`` log of a run made by hand
(``--time-log``); appends one row to ``benchmarks/results/scale/dm_peak_rss.json``.

    python benchmarks/scale/make_image_folder.py /tmp/tiny64x40 --classes 200 --per-class 40
    python benchmarks/scale/dm_peak_rss.py /tmp/tiny64x40 --per-class 40 --size 64
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import append_row, children_peak_gib


def _from_time_log(path: Path) -> tuple[float, float]:
    """(peak GiB, seconds) from a ``/usr/bin/time -v`` log."""
    text = path.read_text()
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    clock = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", text).group(1)
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return kb / 2**20, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--per-class", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--time-log", type=Path, help="read a /usr/bin/time -v log instead of running")
    a = p.parse_args()
    command = [str(Path(sys.executable).with_name("ddkit")), "distill", "--dataset", "imagefolder", "--root", str(a.root),
               "--method", "dm", "--ipc", "1", "--iterations", str(a.iterations)]  # fmt: skip
    if a.time_log:
        peak, seconds = _from_time_log(a.time_log)
        status = "completed" if "Exit status: 0" in a.time_log.read_text() else "failed"
    else:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            rc = subprocess.run([*command, "--out", f"{out}/run"], check=False).returncode
            seconds = time.perf_counter() - start
        peak = children_peak_gib()
        status = "completed" if rc == 0 else f"stopped, exit {rc}"
    row = {
        "command": " ".join(["ddkit", *command[1:]]),
        "classes": a.classes,
        "per_class": a.per_class,
        "image_size": a.size,
        "iterations": a.iterations,
        "peak_rss_gib": round(peak, 3),
        "seconds": round(seconds, 1),
        "status": status,
    }
    append_row("dm_peak_rss.json", row)


if __name__ == "__main__":
    main()
