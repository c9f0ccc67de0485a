"""Frozen backbones (issue 69): ``lgm`` sets and real-image baselines probed on two frozen
backbones (``bench_linear_probe.py``, ``linear_probe_mnist5k.json``), one table per IPC, a row
per set in the order the campaign wrote them, a column per probing backbone."""

from __future__ import annotations

import json
import re

from _campaigns import RESULTS

#: how the page names each backbone of the results file
BACKBONES = {
    "convnet3-bn-w32@fashionmnist": "Fashion-MNIST backbone",
    "convnet3-bn-w32": "mnist5k backbone",
}


_BACKBONE = re.compile("|".join(map(re.escape, sorted(BACKBONES, key=len, reverse=True))))


def _named(text: str) -> str:
    return _BACKBONE.sub(lambda m: BACKBONES[m[0]], text)


def frozen_backbones(ipc: int, name: str = "linear_probe_mnist5k.json") -> str:
    data = json.loads((RESULTS / name).read_text())
    (cell,) = [c for c in data["cells"] if c["ipc"] == ipc]
    by = {(r["set"], r["backbone"]): r for r in cell["rows"]}
    out = [
        "| set | " + " | ".join(f"probed on the {BACKBONES[b]}" for b in data["backbones"]) + " |",
        "|---|" + "---|" * len(data["backbones"]),
    ]
    for s in dict.fromkeys(r["set"] for r in cell["rows"]):
        cells = [f"{by[(s, b)]['mean']:.1f} ± {by[(s, b)]['std']:.1f}" for b in data["backbones"]]
        out.append(f"| {_named(s)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


TABLES = {
    "frozen-backbones:ipc1": lambda: frozen_backbones(1),
    "frozen-backbones:ipc10": lambda: frozen_backbones(10),
}
