"""Peak memory and time of any ddkit command (issue 68): runs it as a child process, reads
its peak resident set size from the kernel (``RUSAGE_CHILDREN``) and appends a row to
``benchmarks/results/scale/commands.json``.

    python benchmarks/scale/peak_rss.py --label "teacher, 10 per class" -- \\
        ddkit teacher --dataset imagefolder --root /tmp/tiny64 --epochs 1 --out /tmp/t
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from record import append_row, children_peak_gib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    run = [str(Path(sys.executable).with_name(command[0])), *command[1:]]
    start = time.perf_counter()
    rc = subprocess.run(run, check=False).returncode
    row = {
        "label": a.label,
        "command": " ".join(command),
        "peak_rss_gib": children_peak_gib(),
        "seconds": round(time.perf_counter() - start, 1),
        "status": "completed" if rc == 0 else f"stopped, exit {rc}",
    }
    append_row("commands.json", row)


if __name__ == "__main__":
    main()
