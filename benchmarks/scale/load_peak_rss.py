"""Peak memory and time of loading an image folder, decoded into memory or through the
memory-mapped cache (issue 68); appends a row to ``benchmarks/results/scale/load_peak_rss.json``.

    python benchmarks/scale/load_peak_rss.py /tmp/tiny64x160 --per-class 160 --cache always
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from record import append_row, children_peak_gib

LOAD = (
    "import sys; from ddkit.data import load_dataset; "
    "s = load_dataset('imagefolder', root=sys.argv[1]); "
    "print(len(s.train), len(s.test), float(s.train.images[::97].mean()))"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--per-class", type=int, required=True)
    p.add_argument("--cache", choices=["always", "never"], required=True)
    p.add_argument("--label", default="", help="e.g. 'first load' or 'cache present'")
    a = p.parse_args()
    env = {**os.environ, "DDKIT_FOLDER_CACHE": a.cache}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LOAD, str(a.root)], env=env, check=False)
    seconds = time.perf_counter() - start
    row = {
        "per_class": a.per_class,
        "cache": a.cache,
        "label": a.label,
        "peak_rss_gib": children_peak_gib(),
        "seconds": round(seconds, 1),
        "status": "completed" if done.returncode == 0 else f"stopped, exit {done.returncode}",
    }
    append_row("load_peak_rss.json", row)


if __name__ == "__main__":
    main()
