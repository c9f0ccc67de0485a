"""Cost per step, time and memory (docs/benchmarks/speed.md), each table from its campaign's
results file: evaluation training vectorised against one by one (``eval_throughput.json``), how
far evaluation training can go (``conv_ceiling.json``), gradient matching vectorised against
the class loop (``matching_speed_*.json``), DM / IDM likewise (``dm_speed.json``), trajectory
matching's memory against the unroll (``trajectory_memory.json``), and the performance-matching
methods' cost with KIP's kernel against the support (``performance_cost.json``)."""

from __future__ import annotations

import json
from typing import Any

from _campaigns import RESULTS

MODELS = {"convnet": "ConvNet-3 w128", "convnet-w32": "ConvNet-3 w32"}
SIZES = {"digits": "8×8", "mnist5k": "28×28"}


def _read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def eval_throughput() -> str:
    out = [
        "| dataset | images | runs x epochs | vectorised img/s | one-by-one img/s | speed-up | "
        "mean acc vec / seq |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in _read("eval_throughput.json")["rows"]:
        out.append(
            f"| {r['dataset']} ({SIZES[r['dataset']]}) | {r['images']} | {r['runs']} x "
            f"{r['epochs']} | {r['vectorized_images_per_s']:.0f} | "
            f"{r['sequential_images_per_s']:.0f} | {r['speedup']:.2f}x | "
            f"{100 * r['vectorized_mean_acc']:.1f} / {100 * r['sequential_mean_acc']:.1f} |"
        )
    return "\n".join(out)


def conv_ceiling() -> str:
    out = [
        "| model | images | GFLOP/step (conv) | baseline CPU s/step | convs fp32 (GFLOP/s) | "
        "convs bf16 (GFLOP/s) | best levers | bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in _read("conv_ceiling.json")["cells"]:
        out.append(
            f"| {MODELS[c['model']]} | {c['images']} | {c['gflop_per_step']['conv']:.1f} | "
            f"{c['baseline_cpu_s_per_step']:.3f} | {c['conv_fp32_cpu_s']:.3f} s "
            f"({c['conv_fp32_gflops']:.0f}) | {c['conv_bf16_cpu_s']:.3f} s "
            f"({c['conv_bf16_gflops']:.0f}) | {c['best_cpu_s_per_step']:.3f} s, "
            f"{c['best_speedup']:.2f}x | {c['bound']:.2f}x |"
        )
    return "\n".join(out)


def _short(x: float) -> str:
    """``9.7e-5``: one decimal, the exponent without padding."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def matching_speed() -> str:
    out = [
        "| method | vectorised s/step | class loop s/step | speed-up | vectorised peak | "
        "loop peak | max abs diff of images |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("matching_speed_dc.json", "matching_speed_dsa.json",
                 "matching_speed_dc_outer1_chunk2.json"):  # fmt: skip
        r = _read(name)
        chunk = r["overrides"].get("class_chunk")
        label = r["method"] + (f", `class_chunk={chunk}`" if chunk else "")
        vec, loop = r["vectorised"], r["loop"]
        out.append(
            f"| {label} | {vec['mean_seconds']:.1f} | {loop['mean_seconds']:.1f} | "
            f"{r['speedup']:.2f}x | {vec['max_peak_mb'] / 1000:.1f} GB | "
            f"{loop['max_peak_mb'] / 1000:.1f} GB | {_short(max(r['max_abs_diff']))} "
            f"(updates ~{max(r['max_abs_update_per_iteration']):.2f}) |"
        )
    return "\n".join(out)


def dm_speed() -> str:
    variants = {
        "vectorised": "vectorised (one forward)",
        "vectorised+chunk512": "vectorised, `embed_chunk={embed_chunk}`",
        "class-loop": "class loop",
    }
    out = [
        "| method | variant | wall s/it | CPU s/it | CPU speed-up | peak extra RSS | "
        "max abs diff vs loop |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in _read("dm_speed.json")["rows"]:
        out.append(
            f"| {r['method']} | {variants[r['variant']].format(**r['config'])} | "
            f"{r['seconds_per_iteration']:.1f} | {r['cpu_seconds_per_iteration']:.2f} | "
            f"{r['cpu_speedup_vs_loop']:.2f}x | {r['peak_extra_mb']:.0f} MB | "
            f"{r['max_abs_diff_vs_loop']:g} |"
        )
    return "\n".join(out)


def trajectory_memory() -> str:
    rows = {(r["method"], r["syn_steps"]): r for r in _read("trajectory_memory.json")["rows"]}
    out = [
        "| N (syn_steps) | MTT peak MB | TESLA peak MB | MTT CPU s/it | TESLA CPU s/it |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({n for _, n in rows}):
        mtt, tesla = rows[("mtt", n)], rows[("tesla", n)]
        out.append(
            f"| {n} | {mtt['peak_step_mb']:.0f} | {tesla['peak_step_mb']:.0f} | "
            f"{mtt['cpu_seconds_per_iteration']:.2f} | {tesla['cpu_seconds_per_iteration']:.2f} |"
        )
    return "\n".join(out)


#: how the performance-matching table names each variant; a method's settings at its first row
COST_NAMES = {"kip-fc": "kip, fc NTK", "kip-conv": "kip, conv NTK"}
COST_SETTINGS = {"rfad": "{models} ConvNet-{depth} width {width}, {batch_real} targets / class"}
OOM = "out of memory under the cap"


def _error(r: dict[str, Any]) -> str:
    return OOM if "out of memory" in r["error"] else r["error"]


def performance_cost() -> str:
    out = [
        "| method | IPC | CPU s / iteration | wall s / iteration | step peak (MiB) | "
        "peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    named: set[str] = set()
    for r in _read("performance_cost.json")["methods"]:
        name = COST_NAMES.get(r["variant"], r["variant"])
        if r["variant"] in COST_SETTINGS and r["variant"] not in named:
            name += f" ({COST_SETTINGS[r['variant']].format(**r['config'])})"
        named.add(r["variant"])
        if r.get("error"):
            cells = f"{_error(r)} | | | {r['peak_rss_mb']:.0f}"
        else:
            cells = (
                f"{r['cpu_seconds_per_iteration']:.3f} | {r['wall_seconds_per_iteration']:.3f} | "
                f"{r['step_peak_extra_mb']:.0f} | {r['peak_rss_mb']:.0f}"
            )
        out.append(f"| {name} | {r['ipc']} | {cells} |")
    return "\n".join(out)


def kip_support() -> str:
    rows = {(r["variant"], r["support"]): r for r in _read("performance_cost.json")["kip_support"]}
    out = [
        "| support | fc: CPU s | fc: step peak (MiB) | conv: CPU s | conv: step peak (MiB) |",
        "|---|---|---|---|---|",
    ]
    for support in sorted({s for _, s in rows}):
        cells = []
        for kernel in ("kip-fc", "kip-conv"):
            r = rows[(kernel, support)]
            if r.get("error"):
                cells.append(f"{_error(r)} | ")
            else:
                cells.append(
                    f"{r['cpu_seconds_per_iteration']:.3f} | {r['step_peak_extra_mb']:.0f}"
                )
        out.append(f"| {support} | " + " | ".join(cells).rstrip() + " |")
    return "\n".join(out)


TABLES = {
    "speed:eval-throughput": eval_throughput,
    "speed:conv-ceiling": conv_ceiling,
    "speed:matching": matching_speed,
    "speed:dm": dm_speed,
    "speed:trajectory-memory": trajectory_memory,
    "speed:performance-cost": performance_cost,
    "speed:kip-support": kip_support,
}
