"""How long `ddkit distill --dry-run` takes to answer on a generated image folder, and what it
says (issue 82: within 60 s at any data size). Runs the dry run as a child process, as a user
would, and appends one row (its wall seconds, the estimate and its line, the load average
before it) to ``benchmarks/results/scale/dry_run_seconds.json``.

    python benchmarks/scale/make_image_folder.py /tmp/scale/f224 --classes 1000 --per-class 2 --size 224
    python benchmarks/scale/dry_run_seconds.py /tmp/scale/f224 --case "dm, 1,000 x 2 at 224 px"
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from record import append_row

from ddkit.progress import parse_duration  # reads what ddkit.progress.clock wrote


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--case", required=True, help="what the row measures, in words")
    p.add_argument("--method", default="dm")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--note", default=None, help="anything the row should say besides")
    a = p.parse_args()
    command = [str(Path(sys.executable).with_name("ddkit")), "distill", "--dataset", "imagefolder",
               "--root", str(a.root), "--method", a.method, "--ipc", str(a.ipc), "--dry-run"]  # fmt: skip
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    line = done.stdout.strip().splitlines()[-1]
    row = {
        "case": a.case,
        "command": " ".join(["ddkit", *command[1:]]),
        "estimate_s": parse_duration(re.findall(r"= about (\S+)", line)[-1]),
        "dry_run_wall_s": round(wall, 1),
        "load_average_before": round(load, 2),
        "estimate_line": line,
        **({"note": a.note} if a.note else {}),
    }
    append_row("dry_run_seconds.json", row)


if __name__ == "__main__":
    main()
