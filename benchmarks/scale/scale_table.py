"""Markdown tables of the data-at-scale measurements (docs/benchmarks/data-at-scale.md), read
from ``benchmarks/results/scale/``: dm's peak memory and time on generated Tiny-ImageNet-shaped
folders, the peak memory of loading them in memory or through the cache, and of the teacher
and rded commands on them, decode throughput, seconds per iteration, and full MNIST read as a
stream of PNGs against the in-memory dataset.

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


def equivalence_table() -> list[str]:
    rows = json.loads((RESULTS / "stream_equivalence.json").read_text())
    lines = ["| method | data | set equal to memory-by-class | max abs difference | "
             "accuracy (%) | distil seconds |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "method" not in r:
            continue  # the check of the pixels alone, quoted in the text
        (result,) = r["evaluation_results"]
        acc = f"{100 * result['mean']:.2f} ± {100 * result['std']:.2f}"
        lines.append(
            f"| {r['method']} | {r['version']} | {'bit for bit' if r['set_equal_to_memory_by_class'] else 'no'} "
            f"| {r['max_abs_difference']:.3g} | {acc} | {r['seconds']:,.0f} |"
        )
    return lines


def step_table() -> list[str]:
    rows = json.loads((RESULTS / "step_seconds.json").read_text())
    lines = ["| method | network | classes x train images | size | seconds per iteration | "
             "load seconds | load average |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        net = r["model"] or r["teacher_model"]
        h, w = r["image_size"]
        lines.append(
            f"| {r['method']} | {net} | {r['classes']} x {r['train_images'] // r['classes']} | "
            f"{h}x{w} | {r['seconds_per_iteration']:.2f} | {r['load_seconds']:.1f} | "
            f"{r['load_average_after']:.1f} |"
        )
    return lines


def main() -> None:
    tables = (dm_table(), load_table(), commands_table(), decode_table(), step_table(),
              equivalence_table())  # fmt: skip
    for table in tables:
        print("\n".join(table))
        print()


if __name__ == "__main__":
    main()
