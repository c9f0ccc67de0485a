"""The bf16 and compile levers in gradient and trajectory matching (issue 14;
docs/benchmarks/speed.md), from ``bench_speed_matching.py``'s results: fp32 against bf16 per
method (``speed_matching_trajectory.json``), every variant at digits IPC 10 (its ``digits``
cells), and the compiled real side at mnist5k IPC 1 (``speed_matching_compile.json``)."""

from __future__ import annotations

import json
from typing import Any

from _campaigns import RESULTS

MODELS = {"convnet": "ConvNet-3 w128", "convnet-w32": "ConvNet-3 w32", "convnet2": "convnet2"}
#: what one timed step of each method is (the cells' settings fill in the numbers)
STEPS = {
    "dc": "one matching step, batch_real {batch_real}",
    "dsa": "the same with DSA",
    "mtt": "{syn_steps} student steps on {images} images, unrolled",
    "tesla": "the same, TESLA backward",
}


def _cells(name: str) -> list[dict[str, Any]]:
    return json.loads((RESULTS / name).read_text())["cells"]


def bf16_per_method() -> str:
    out = [
        "| method | IPC | model | step | rounds×steps | fp32 CPU s/step | bf16 CPU s/step | "
        "speed-up | diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in _cells("speed_matching_trajectory.json"):
        if "speedup_cpu" not in c:  # the variant cells (digits) have their own table
            continue
        step = STEPS[c["method"]].format(**c["settings"], images=10 * c["ipc"])
        v = c["variants"]
        out.append(
            f"| {c['method']} | {c['ipc']} | {MODELS[c['model']]} | {step} | "
            f"{c['rounds']}×{c['steps_per_round']} | {v['fp32']['cpu_s_per_step']:.3f} | "
            f"{v['bf16']['cpu_s_per_step']:.3f} | {c['speedup_cpu']:.2f}x | "
            f"{c['rel_diff_images']:.0e} |"
        )
    return "\n".join(out)


def variants_digits() -> str:
    out = [
        "| method | model | variant | CPU s/step | speed-up | diff |",
        "|---|---|---|---|---|---|",
    ]
    for c in _cells("speed_matching_trajectory.json"):
        if "speedup_cpu" in c:
            continue
        for name, v in sorted(c["variants"].items()):
            out.append(
                f"| {c['method']} | {MODELS[c['model']]} | {name} | {v['cpu_s_per_step']:.2f} | "
                f"{v['speedup_cpu']:.2f}x | {v['rel_diff_images']:.0e} |"
            )
    return "\n".join(out)


def compiled_real_side() -> str:
    """Bold: bf16 + compile where it is the row's fastest (the levers ``dsa`` took by default)."""
    levers = ("compile", "bf16", "bf16+compile")
    out = [
        "| method | model | rounds×steps | fp32 CPU s/step | compile | bf16 | bf16+compile | "
        "diff (compile / bf16+compile) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in _cells("speed_matching_compile.json"):
        v = c["variants"]
        best = max(levers, key=lambda k: v[k]["speedup_cpu"])
        ups = [f"{v[k]['speedup_cpu']:.2f}x" for k in levers]
        if best == "bf16+compile":
            ups[-1] = f"**{ups[-1]}**"
        out.append(
            f"| {c['method']} | {MODELS[c['model']]} | {c['rounds']}×{c['steps_per_round']} | "
            f"{v['fp32']['cpu_s_per_step']:.3f} | {' | '.join(ups)} | "
            f"{v['compile']['rel_diff_images']:.0e} / {v['bf16+compile']['rel_diff_images']:.0e} |"
        )
    return "\n".join(out)


TABLES = {
    "speed-matching:bf16": bf16_per_method,
    "speed-matching:digits": variants_digits,
    "speed-matching:compile": compiled_real_side,
}
