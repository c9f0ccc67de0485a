"""How much a ddkit install puts on disk (issue 70: "a lean install"): the size of a virtual
environment, of its site-packages and of their largest distributions, and whether any CUDA
library came with it. Run on a fresh environment made by ``pip install .`` (the plain install)
and on the test environment (``make install``, every extra); rows go into
``benchmarks/results/install_size.json`` under the name given.

    python3 -m venv /tmp/plain && /tmp/plain/bin/pip install .
    python benchmarks/campaigns/install_size.py plain /tmp/plain
    python benchmarks/campaigns/install_size.py test .venv
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from ddkit.io import atomic_write_json, read_json

OUT = Path(__file__).resolve().parents[1] / "results" / "install_size.json"


def tree_bytes(path: str) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("venv")
    args = ap.parse_args()
    (site,) = glob.glob(os.path.join(args.venv, "lib", "python3*", "site-packages"))
    parts = {p.name: tree_bytes(str(p)) for p in Path(site).iterdir() if p.is_dir()}
    largest = sorted(parts.items(), key=lambda kv: -kv[1])[:8]
    cuda = sorted(p for p in parts if p.startswith(("nvidia", "cuda")) or "cu12" in p)
    row = {
        "venv_mb": round(tree_bytes(args.venv) / 2**20),
        "site_packages_mb": round(tree_bytes(site) / 2**20),
        "largest_mb": {k: round(v / 2**20) for k, v in largest},
        "cuda_packages": cuda,
    }
    rows = read_json(OUT) if OUT.exists() else {}
    rows[args.name] = row
    atomic_write_json(OUT, rows)
    print(args.name, row)


if __name__ == "__main__":
    main()
