"""Markdown tables of the data-at-scale measurements (BENCHMARKS.md "Data at scale"), read
from ``benchmarks/results/scale/``: dm's peak memory and time on generated Tiny-ImageNet-shaped
folders, the peak memory of loading them in memory or through the cache, and of the teacher
and rded commands on them.

Usage: python benchmarks/scale/scale_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "results" / "scale"


def _cpu(row: dict) -> str:
    m = row.get("machine", {})
    return f"{m.get('cpu', '?')} ({m.get('arithmetic', m.get('capability', '?'))})"


def dm_table() -> list[str]:
    rows = json.loads((RESULTS / "dm_peak_rss.json").read_text())
    lines = ["| classes x images | size | iterations | peak RSS (GiB) | seconds | outcome |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["image_size"], r["per_class"])):
        lines.append(
            f"| {r['classes']} x {r['per_class']} | {r['image_size']} px | {r['iterations']} | "
            f"{r['peak_rss_gib']:.2f} | {r['seconds']:,.0f} | {r['status']} |"
        )
    return lines


def load_table() -> list[str]:
    rows = json.loads((RESULTS / "load_peak_rss.json").read_text())
    lines = ["| images per class | how | peak RSS (GiB) | seconds |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["per_class"]):
        lines.append(
            f"| {r['per_class']} | {r['label']} | {r['peak_rss_gib']:.2f} | {r['seconds']:.1f} |"
        )
    return lines


def commands_table() -> list[str]:
    rows = json.loads((RESULTS / "commands.json").read_text())
    lines = ["| command | peak RSS (GiB) | seconds | outcome |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['peak_rss_gib']:.2f} | {r['seconds']:,.0f} | {r['status']} |"
        )
    return lines


def decode_table() -> list[str]:
    rows = json.loads((RESULTS / "decode_rate.json").read_text())
    lines = ["| image size | images | mean file (KB) | worker processes | images per second |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if r.get("note"):
            continue  # a replaced variant, kept in the results file with its note
        h, w = r["image_size"]
        lines.append(
            f"| {h}x{w} | {r['images']:,} | {r['mean_file_bytes'] / 1000:.1f} | "
            f"{r.get('workers', 0) or 'none'} | {r['images_per_second']:,} |"
        )
    return lines


def main() -> None:
    for table in (dm_table(), load_table(), commands_table(), decode_table()):
        print("\n".join(table))
        print()


if __name__ == "__main__":
    main()
