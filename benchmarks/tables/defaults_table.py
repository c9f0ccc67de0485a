"""Fast by default (issue 41; docs/benchmarks/speed.md): today's default path against commit
11ad2e8 and exact mode (``bench_defaults.py``'s ``defaults_speed.json``): CPU seconds per unit,
the ratios, the compilation and whole runs; then the validation accuracy of the sets each mode
made; and the CPU goal of issue 74 measured at realistic length (``cpu_goal.json``)."""

from __future__ import annotations

import json
from typing import Any

from _campaigns import RESULTS

#: what each part of the file timed (identical settings in all three versions)
WORK = {
    ("dm", None): "DM step, mnist5k IPC 10 (preset: ConvNet-3 w32, batch_real 256, DSA)",
    ("eval", 10): "evaluation epoch, protocol `dsa` (ConvNet-3 w128), 100 random real images",
    ("eval", 50): "evaluation epoch, protocol `dsa` (ConvNet-3 w128), 500 random real images",
}
SETS = {"random": "random real, IPC 10", "dm": "dm, IPC 10, {iterations} iterations"}


def _defaults() -> dict[str, Any]:
    return json.loads((RESULTS / "defaults_speed.json").read_text())


def speed() -> str:
    out = [
        "| work (identical settings in all three) | 11ad2e8 CPU s | default CPU s | exact CPU s | "
        "default / 11ad2e8 | exact / 11ad2e8 | default's compilation (s) | whole run, default / "
        "11ad2e8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in _defaults()["rows"]:
        v = row["variants"]
        old, new, exact = v["11ad2e8"], v["default"], v["exact"]
        out.append(
            f"| {WORK[(row['part'], row.get('ipc'))]} | {old['cpu_s_per_unit']:.3f} | "
            f"{new['cpu_s_per_unit']:.3f} | {exact['cpu_s_per_unit']:.3f} | "
            f"{new['ratio_to_11ad2e8']:.2f}x | {exact['ratio_to_11ad2e8']:.2f}x | "
            f"{new['warmup_extra_wall_s']:.0f} | {new['whole_run_ratio']:.2f}x |"
        )
    return "\n".join(out)


def _accuracy(r: dict[str, Any]) -> str:
    each = ", ".join(f"{100 * a:.2f}" for a in r["accuracies"])
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} ({each})"


def accuracy() -> str:
    acc = _defaults()["accuracy"]
    out = [
        "| set | default (bf16 + compile) | exact (fp32, eager) | distillation CPU s, "
        "default / exact |",
        "|---|---|---|---|",
    ]
    for name in ("random", "dm"):
        new, exact = acc["default"][name], acc["exact"][name]
        cost = "–" if name == "random" else f"{new['fit_cpu_s']:.0f} / {exact['fit_cpu_s']:.0f}"
        label = SETS[name].format(iterations=acc["dm_iterations"])
        out.append(f"| {label} | {_accuracy(new)} | {_accuracy(exact)} | {cost} |")
    return "\n".join(out)


def _ratio(speedup: float) -> str:
    """A step's CPU time against exact mode's, from a speed-up over it."""
    return f"{1 / speedup:.2f}x"


def families() -> str:
    """Per family: the default (``ddkit.levers``' choice, as text) and the measured ratio of a
    default step's CPU time to exact mode's, with the results file it comes from."""
    rows = {(r["part"], r.get("ipc")): r["variants"] for r in _defaults()["rows"]}
    ev = [rows[("eval", ipc)] for ipc in (10, 50)]
    dm = rows[("dm", None)]
    cpu = [[v[k]["cpu_s_per_unit"] for k in ("default", "exact")] for v in (*ev, dm)]
    idm = [c["variants"]["inplace+bf16+compile"]["speedup_cpu"] for c in _speed_idm()]
    compiled = {c["method"]: c["variants"]["bf16+compile"]["speedup_cpu"]
                for c in _cells("speed_matching_compile.json") if c["model"] == "convnet-w32"}  # fmt: skip
    bf16 = {c["method"]: c["speedup_cpu"] for c in _cells("speed_matching_trajectory.json")
            if c["method"] in ("mtt", "tesla")}  # fmt: skip
    (e10, x10), (e50, x50), (d, x) = cpu
    lo, hi = sorted(_ratio(s) for s in idm)
    body = [
        ("evaluation training (`dc`, `dsa`, `dc_aug`, `fast`)",
         "bf16 + compile (runs of 200+ steps per network)",
         f"{e10 / x10:.2f}x (100 images), {e50 / x50:.2f}x (500 images)",
         f"`defaults_speed.json` ({e10:.3f} / {x10:.3f}, {e50:.3f} / {x50:.3f})"),
        ("distribution matching: dm", "bf16 + compile", f"{d / x:.2f}x",
         f"`defaults_speed.json` ({d:.3f} / {x:.3f})"),
        ("distribution matching: idm, m3d, ncfm, dim", "exact (levers opt-in)",
         f"idm with bf16 + compile: {lo}–{hi}", "`speed.json`"),
        ("gradient matching: dsa", "bf16 + compile",
         f"{_ratio(compiled['dsa'])} (mnist5k IPC 1, w32)", "`speed_matching_compile.json`"),
        ("gradient matching: dc, idc", "exact (levers opt-in)",
         f"dc with bf16 + compile: {_ratio(compiled['dc'])}", "`speed_matching_compile.json`"),
        ("trajectory matching: mtt, tesla, datm, pad", "exact (bf16 opt-in: no gain measured)",
         f"mtt {_ratio(bf16['mtt'])}, tesla {_ratio(bf16['tesla'])} with bf16",
         "`speed_matching_trajectory.json`"),
        ("performance matching, decoupled, generative, coresets", "exact (no levers)", "–", "–"),
    ]  # fmt: skip
    out = ["| family | default | default / exact, measured | source |", "|---|---|---|---|"]
    return "\n".join(out + ["| " + " | ".join(row) + " |" for row in body])


def _speed_idm() -> list[dict[str, Any]]:
    return json.loads((RESULTS / "speed.json").read_text())["idm"]


def _cells(name: str) -> list[dict[str, Any]]:
    return json.loads((RESULTS / name).read_text())["cells"]


def cpu_goal() -> str:
    """The CPU goal of issue 74 at realistic length (``bench_cpu_goal.py``, ``cpu_goal.json``):
    default against 11ad2e8, the per-round ratios, the goal and whole runs."""
    rows = json.loads((RESULTS / "cpu_goal.json").read_text())["rows"]
    work = {
        ("dm", None): "DM step, mnist5k IPC 10",
        ("eval", 10): "evaluation epoch, IPC 10 (100 images)",
        ("eval", 50): "evaluation epoch, IPC 50 (500 images)",
    }
    out = [
        "| work | 11ad2e8 CPU s | default CPU s | default / 11ad2e8 (rounds) | goal | whole run |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        old, new = r["variants"]["11ad2e8"], r["variants"]["default"]
        rounds = ", ".join(f"{x:.2f}" for x in r["ratios"])
        out.append(
            f"| {work[(r['part'], r.get('ipc'))]} | {old['cpu_s_per_unit']:.3f} | "
            f"{new['cpu_s_per_unit']:.3f} | {r['ratio']:.2f}x ({rounds}) | {r['goal']:g}x | "
            f"{new['whole_run_ratio']:.2f}x |"
        )
    return "\n".join(out)


TABLES = {
    "defaults:speed": speed,
    "defaults:accuracy": accuracy,
    "defaults:families": families,
    "cpu-goal": cpu_goal,
}
