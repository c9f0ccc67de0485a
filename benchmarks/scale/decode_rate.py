"""Decode throughput of an image folder on this machine (issue 68): lists the folder, decodes
every image into memory (in DataLoader worker processes for 2,000 images or more) and appends ``images per second`` to
``benchmarks/results/scale/decode_rate.json``.

    python benchmarks/scale/make_image_folder.py /tmp/in224 --classes 100 --per-class 10 --size 224
    python benchmarks/scale/decode_rate.py /tmp/in224
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from record import append_row

from ddkit.data.folders import decode_listing, decode_workers, list_image_folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    a = p.parse_args()
    listing = list_image_folder(a.root)
    start = time.perf_counter()
    raw = decode_listing(listing)
    seconds = time.perf_counter() - start
    files = [f for split in listing.splits.values() for c in split.values() for f in c]
    row = {
        "images": listing.total,
        "image_size": list(raw.train_images.shape[-2:]),
        "format": sorted({f.suffix for f in files}),
        "mean_file_bytes": round(sum(f.stat().st_size for f in files) / len(files)),
        "seconds": round(seconds, 2),
        "images_per_second": round(listing.total / seconds),
        "workers": decode_workers(listing.total),
    }
    append_row("decode_rate.json", row)


if __name__ == "__main__":
    main()
