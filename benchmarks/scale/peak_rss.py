"""Peak memory and time of any ddkit command (issue 68): runs it as a child process, reads
its peak resident set size from the kernel (``RUSAGE_CHILDREN``) and appends a row to
``benchmarks/results/scale/commands.json``.

    python benchmarks/scale/peak_rss.py --label "teacher, 10 per class" -- \\
        ddkit teacher --dataset imagefolder --root /tmp/tiny64 --epochs 1 --out /tmp/t

``--memory-limit 4G`` runs the command in a memory cgroup of that size (Linux, cgroup v1,
as root): a memory-mapped folder cache's pages count against the limit and are dropped under
it, so the command shows whether it runs in that much memory, not only what it touched when
memory was plentiful; the row records the limit and the cgroup's own peak.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from record import append_row, children_peak_gib

_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def parse_bytes(text: str) -> int:
    """``4G``, ``512M`` or a number of bytes."""
    unit = text[-1:].upper()
    return int(float(text[:-1]) * _UNITS[unit]) if unit in _UNITS else int(text)


CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def memory_group(limit_bytes: int) -> Path:
    """A fresh cgroup-v1 memory group capped at ``limit_bytes`` (swap included)."""
    group = CGROUP_V1 / f"ddkit-peak-{os.getpid()}"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    swap = group / "memory.memsw.limit_in_bytes"
    if swap.exists():
        swap.write_text(str(limit_bytes))
    return group


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True)
    p.add_argument("--memory-limit", default=None, help="e.g. 4G: run inside a memory cgroup")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    run = [str(Path(sys.executable).with_name(command[0])), *command[1:]]
    group = None
    if a.memory_limit is not None:
        group = memory_group(parse_bytes(a.memory_limit))
    enter = None if group is None else (lambda: (group / "tasks").write_text(str(os.getpid())))
    start = time.perf_counter()
    rc = subprocess.run(run, check=False, preexec_fn=enter).returncode
    row = {
        "label": a.label,
        "command": " ".join(command),
        "peak_rss_gib": children_peak_gib(),
        "seconds": round(time.perf_counter() - start, 1),
        "status": "completed" if rc == 0 else f"stopped, exit {rc}",
    }
    if group is not None:
        peak = int((group / "memory.max_usage_in_bytes").read_text())
        row["memory_limit"] = a.memory_limit
        row["cgroup_peak_gib"] = round(peak / 2**30, 3)
        group.rmdir()
    append_row("commands.json", row)


if __name__ == "__main__":
    main()
