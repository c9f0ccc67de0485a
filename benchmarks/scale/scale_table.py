"""Markdown tables of the data-at-scale measurements (docs/benchmarks/data-at-scale.md), read
from ``benchmarks/results/scale/``: dm's peak memory and time on generated Tiny-ImageNet-shaped
folders, the peak memory of loading them in memory or through the cache, and of the teacher
and rded commands on them, decode throughput, seconds per iteration, and full MNIST read as a
stream of PNGs against the in-memory dataset.

Usage: python benchmarks/scale/scale_table.py
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "results" / "scale"


def _results(name: str) -> list[dict]:
    return json.loads((RESULTS / name).read_text())


def _table(columns: list[str], cells: Iterable[list[object]]) -> list[str]:
    """A Markdown table: the header row, its rule, one row per list of cells."""
    head = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return head + ["| " + " | ".join(map(str, row)) + " |" for row in cells]


def dm_table() -> list[str]:
    rows = sorted(_results("dm_peak_rss.json"), key=lambda r: (r["image_size"], r["per_class"]))
    return _table(
        ["classes x images", "size", "iterations", "peak RSS (GiB)", "seconds", "outcome",
         "CPU, code"],
        ([f"{r['classes']} x {r['per_class']}", f"{r['image_size']} px", r["iterations"],
          f"{r['peak_rss_gib']:.2f}", f"{r['seconds']:,.0f}", r["status"], _made(r)]
         for r in rows),
    )  # fmt: skip


def _made(row: dict) -> str:
    """Where and with which code a row was measured: the CPU, the commit, a note."""
    parts = [row.get("machine", {}).get("cpu", "?"), row.get("commit") or "", row.get("note", "")]
    return ", ".join(p for p in parts if p)


def load_table() -> list[str]:
    rows = sorted(_results("load_peak_rss.json"), key=lambda r: r["per_class"])
    return _table(
        ["images per class", "how", "peak RSS (GiB)", "seconds"],
        ([r["per_class"], r["label"], f"{r['peak_rss_gib']:.2f}", f"{r['seconds']:.1f}"]
         for r in rows),
    )  # fmt: skip


def commands_table() -> list[str]:
    return _table(
        ["command", "peak RSS (GiB)", "memory cgroup: limit, peak (GiB)", "seconds", "outcome"],
        ([r["label"], f"{r['peak_rss_gib']:.2f}", _cgroup(r), f"{r['seconds']:,.0f}",
          r["status"]] for r in _results("commands.json")),
    )  # fmt: skip


def _cgroup(row: dict) -> str:
    """The memory cgroup a command ran in (``peak_rss.py --memory-limit``), or none."""
    if "memory_limit" not in row:
        return "–"
    return f"{row['memory_limit']}, {row['cgroup_peak_gib']:.2f}"


def decode_table() -> list[str]:
    rows = [r for r in _results("decode_rate.json") if not r.get("note")]  # noted: replaced
    return _table(
        ["image size", "images", "mean file (KB)", "worker processes", "images per second"],
        (["x".join(map(str, r["image_size"])), f"{r['images']:,}",
          f"{r['mean_file_bytes'] / 1000:.1f}", r.get("workers", 0) or "none",
          f"{r['images_per_second']:,}"] for r in rows),
    )  # fmt: skip


def equivalence_table() -> list[str]:
    rows = [r for r in _results("stream_equivalence.json") if "method" in r]  # not the pixels
    return _table(
        ["method", "data", "set equal to memory-by-class", "max abs difference", "accuracy (%)",
         "distil seconds"],
        ([r["method"], r["version"], "bit for bit" if r["set_equal_to_memory_by_class"] else "no",
          f"{r['max_abs_difference']:.3g}", _accuracy(r), f"{r['seconds']:,.0f}"] for r in rows),
    )  # fmt: skip


def _accuracy(row: dict) -> str:
    (result,) = row["evaluation_results"]
    return f"{100 * result['mean']:.2f} ± {100 * result['std']:.2f}"


def step_table() -> list[str]:
    return _table(
        ["method", "network", "classes x train images", "size", "seconds per iteration",
         "load seconds", "load average"],
        ([r["method"], r["model"] or r["teacher_model"],
          f"{r['classes']} x {r['train_images'] // r['classes']}",
          "x".join(map(str, r["image_size"])), f"{r['seconds_per_iteration']:.2f}",
          f"{r['load_seconds']:.1f}", f"{r['load_average_after']:.1f}"]
         for r in _results("step_seconds.json")),
    )  # fmt: skip


def main() -> None:
    tables = (dm_table(), load_table(), commands_table(), decode_table(), step_table(),
              equivalence_table())  # fmt: skip
    for table in tables:
        print("\n".join(table))
        print()


if __name__ == "__main__":
    main()
