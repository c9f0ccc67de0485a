"""What is stored, at equal bytes (docs/benchmarks/families.md): every set distilled through a
codec or as a generator by ``bench_codecs.py``, beside plain pixels of the same objective and
random real images, per IPC's bytes. Rows in the order of the results files; bold: the best
set of each objective at each IPC; the cells that could not fit their bytes share one line."""

from __future__ import annotations

import json
import re
from typing import Any

from _campaigns import RESULTS

MNIST5K = (
    "codecs_mnist5k.json",
    "codecs_mnist5k_mtt.json",
    "codecs_mnist5k_ipc10_generative.json",
    "codecs_mnist5k_ipc10_haba.json",
)
#: what sets a file's rows apart when a later file measures the same cell again
NOTES = {
    ("codecs_mnist5k.json", "haba:5"): "hallucinator weights at scale 1, before the fix",
    ("codecs_mnist5k_ipc10_haba.json", "haba:5"): "weight scale 0.1",
    ("codecs_mnist5k_mtt.json", None): "AVX-512 run",
}
SIZE = re.compile(r"(hallucinators|decoder|generator)(?: alone)? takes? (\d+) bytes")


def _rows(files: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(f, r) for f in files for r in json.loads((RESULTS / f).read_text())["rows"]]


def _label(file: str, r: dict[str, Any], seen: set, classes: int, saved: int) -> str | None:
    """The row's name; None for a random row measured again by a later file without a note."""
    if r["method"] == "random":
        note = NOTES.get((file, None))
        if ("random", r["ipc"]) in seen and not note:
            return None
        seen.add(("random", r["ipc"]))
        return "random real" + (f" ({note})" if ("random", r["ipc"]) in seen and note else "")
    if r["method"] == "dim":
        if r["images"] == saved:
            return f"dim, its {saved:,} saved samples"
        return f"dim, {r['images'] // classes} per class drawn"
    note = NOTES.get((file, r["codec"]))
    return f"{r['method']}, {r['codec']}" + (f" ({note})" if note else "")


def _order(rows: list[tuple[str, dict[str, Any]]], r: dict[str, Any]) -> tuple:
    """Random real images first, then each objective and codec where it first appears in the
    files (several files' rows of one cell together), a generator's samples largest first."""
    methods = list(dict.fromkeys(x["method"] for _, x in rows))
    codecs = list(dict.fromkeys(x["codec"] for _, x in rows))
    return (r["method"] != "random", methods.index(r["method"]), codecs.index(r["codec"]),
            -r.get("images", 0) * (r["method"] == "dim"))  # fmt: skip


def codec_table(files: tuple[str, ...], seconds: bool = True, classes: int = 10) -> str:
    rows = _rows(files)
    best = {}
    for _, r in rows:
        if "error" not in r and r["codec"]:
            key = (r["ipc"], r["method"])
            best[key] = max(best.get(key, 0.0), r["mean"])
    out = ["| IPC bytes | set | training images | bytes stored | accuracy (%) |"
           + (" distill s |" if seconds else ""), "|---|---|---|---|---|" + ("---|" if seconds else "")]  # fmt: skip
    seen: set = set()
    for ipc in sorted({r["ipc"] for _, r in rows}):
        cells = [(f, r) for f, r in rows if r["ipc"] == ipc and "error" not in r]
        saved = max((r["images"] for _, r in cells if r["method"] == "dim"), default=0)
        cells.sort(key=lambda c: _order(rows, c[1]))
        for file, r in cells:
            label = _label(file, r, seen, classes, saved)
            if label is None:
                continue
            acc = f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"
            if r["codec"] and r["mean"] == best[(ipc, r["method"])]:
                acc = f"**{acc}**"
            line = f"| {ipc} | {label} | {r['images']:,} | {r['storage_bytes']:,} | {acc} |"
            out.append(line + (f" {r['distill_seconds']:,.0f} |" if seconds else ""))
        failed = [r for _, r in rows if r["ipc"] == ipc and "error" in r]
        if failed:
            out.append(_did_not_fit(ipc, failed, seconds))
    return "\n".join(out)


def _did_not_fit(ipc: int, failed: list[dict[str, Any]], seconds: bool) -> str:
    codecs = " / ".join(r["codec"] for r in failed if r["codec"])
    methods = {r["method"] for r in failed if r["codec"]}
    names = "; ".join(
        [f"{', '.join(sorted(methods))}, {codecs}"] * bool(codecs)
        + [r["method"] for r in failed if not r["codec"]]
    )
    sizes = []
    for r in failed:
        what, n = SIZE.search(r["error"]).groups()
        sizes.append(f"{what} {int(n):,}" + (" bytes" if not sizes else ""))
    line = f"| {ipc} | {names} | – | – | do not fit ({'; '.join(sizes)}) |"
    return line + (" – |" if seconds else "")


TABLES = {
    "codecs:mnist5k": lambda: codec_table(MNIST5K),
    "codecs:digits": lambda: codec_table(("codecs_digits.json",), seconds=False),
}
