"""Speed levers on CPU (issue 14; docs/benchmarks/speed.md): each lever and their combinations
against the baseline path, from ``bench_speed.py``'s ``speed.json``: evaluation training, one
DM step and one IDM step. Bold: ``inplace+bf16+compile``, the combination the defaults took."""

from __future__ import annotations

import json
from typing import Any

from _campaigns import RESULTS

#: the order of the variants in every table (those a part measured)
VARIANTS = (
    "baseline",
    "inplace",
    "bf16",
    "channels_last",
    "compile",
    "inplace+bf16",
    "inplace+bf16+compile",
    "all",
    "inplace+bf16+compile+chunk512",
)
CHOSEN = "inplace+bf16+compile"
MODELS = {"convnet": "ConvNet-3 w128", "convnet-w32": "ConvNet-3 w32"}


def _speed() -> dict[str, Any]:
    return json.loads((RESULTS / "speed.json").read_text())


def _speedup(variant: str, value: float) -> str:
    text = f"{value:.2f}x"
    return f"**{text}**" if variant == CHOSEN else text


def _variants(cell: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(v, cell["variants"][v]) for v in VARIANTS if v in cell["variants"]]


def evaluation() -> str:
    data = _speed()
    peaks = {(m["model"], m["images"]): m["peak"] for m in data["memory"]["eval"]}
    out = [
        "| model | images | variant | CPU s/step | images/CPU s | speed-up | peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in data["eval"]:
        peak = peaks[(cell["model"], cell["images"])]
        for v, r in _variants(cell):
            out.append(
                f"| {MODELS[cell['model']]} | {cell['images']} | {v} | {r['cpu_s_per_step']:.3f} | "
                f"{r['images_per_cpu_s']:.0f} | {_speedup(v, r['speedup_cpu'])} | "
                f"{peak[v]['extra_mb']:.0f} |"
            )
    return "\n".join(out)


def dm_step() -> str:
    data = _speed()
    peaks = {m["batch_real"]: m["peak"] for m in data["memory"]["dm"]}
    out = [
        "| batch_real | variant | CPU s/step | images/CPU s | speed-up | peak MB | max RSS MB | diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in data["dm"]:
        peak = peaks[cell["batch_real"]]
        for v, r in _variants(cell):
            out.append(
                f"| {cell['batch_real']} | {v} | {r['cpu_s_per_step']:.2f} | "
                f"{r['images_per_cpu_s']:.0f} | {_speedup(v, r['speedup_cpu'])} | "
                f"{peak[v]['extra_mb']:.0f} | {peak[v]['max_rss_mb']:.0f} | "
                f"{r['rel_diff_images_vs_baseline']:.0e} |"
            )
    return "\n".join(out)


def idm_step() -> str:
    out = ["| batch_real | variant | CPU s/step | speed-up | diff |", "|---|---|---|---|---|"]
    for cell in _speed()["idm"]:
        for v, r in _variants(cell):
            out.append(
                f"| {cell['batch_real']} | {v} | {r['cpu_s_per_step']:.2f} | "
                f"{_speedup(v, r['speedup_cpu'])} | {r['rel_diff_images_vs_baseline']:.0e} |"
            )
    return "\n".join(out)


TABLES = {
    "speed-levers:eval": evaluation,
    "speed-levers:dm": dm_step,
    "speed-levers:idm": idm_step,
}
