"""Peak memory and time of any ddkit command (issue 68): runs it as a child process, reads
its peak resident set size from the kernel (``RUSAGE_CHILDREN``) and appends a row to
``benchmarks/results/scale/commands.json``.

    python benchmarks/scale/peak_rss.py --label "teacher, 10 per class" -- \\
        ddkit teacher --dataset imagefolder --root /tmp/tiny64 --epochs 1 --out /tmp/t
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from ddkit.io import atomic_write_json
from ddkit.meter import machine_info

RESULTS = Path(__file__).parents[1] / "results" / "scale" / "commands.json"


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
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3),
        "seconds": round(time.perf_counter() - start, 1),
        "status": "completed" if rc == 0 else f"stopped, exit {rc}",
        "machine": machine_info(),
    }
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, [*rows, row])
    print(json.dumps({k: v for k, v in row.items() if k != "machine"}), file=sys.stderr)


if __name__ == "__main__":
    main()
