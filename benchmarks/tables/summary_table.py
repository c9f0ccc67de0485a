"""The first page of BENCHMARKS.md, generated from the results files: which method for which
(dataset, IPC), how good, at what cost; then what the speed levers buy.

Every figure is copied from a file in ``benchmarks/results/`` (named above each table); the
published figures are the ones the ``paper`` suite prints (``ddkit.bench.suites``). A method's
family is the package it lives in (``ddkit.methods.<family>``), so a new method joins its
family's column without a change here. Nothing is trained or timed: the script only reads.

Tables ``summary:methods`` and ``summary:speed``; ``python benchmarks/tables/write.py`` writes
them into BENCHMARKS.md, ``python benchmarks/tables/summary_table.py`` prints both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ddkit.bench.cells import ran_on_cpu_only

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUITES = ("standard", "paper")  # the suites whose cells share one recipe per suite
FAMILIES = ("matching", "trajectory", "performance", "decoupled", "generative")
DECOUPLED_FILES = (  # later files replace earlier ones' cells (re-runs), as in BENCHMARKS.md
    "decoupled.json",
    "decoupled_digits_ipc50_dm.json",
    "decoupled_mnist5k.json",
    "decoupled_mnist5k_ipc10_rded.json",
    "decoupled_mnist5k_ipc10_dm.json",
    "decoupled_mnist5k_ipc50.json",
    "decoupled_mnist5k_ipc50_dm.json",
    "decoupled_mnist5k_ipc10_edc_nocrop.json",
)
CODEC_FILES = {
    "digits": ("codecs_digits.json",),
    "mnist5k": (
        "codecs_mnist5k.json",
        "codecs_mnist5k_mtt.json",
        "codecs_mnist5k_ipc10_generative.json",
        "codecs_mnist5k_ipc10_haba.json",
    ),
}


def read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def family_of() -> dict[str, str]:
    """Method name -> family (the ``ddkit.methods`` sub-package that defines it); selectors
    (coresets and random real images) are ``coreset``."""
    from ddkit.methods import METHODS, load_all

    load_all()
    out = {}
    for name in METHODS.names():
        parts = METHODS.get(name).__module__.split(".")
        out[name] = parts[2] if parts[:2] == ["ddkit", "methods"] and len(parts) > 3 else "other"
    return out


def pct(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def secs(s: float) -> str:
    return f"{s:,.0f} s"


# ------------------------------------------------------------------ suites (standard, paper)


def best(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the highest mean at the precision shown (ties are all returned)."""
    if not rows:
        return []
    top = max(round(100 * r["mean"], 2) for r in rows)
    return [r for r in rows if round(100 * r["mean"], 2) == top]


def cell_text(rows: list[dict[str, Any]], published: dict, bold: bool) -> str:
    if not rows:
        return "–"
    acc = pct(rows[0]["mean"], rows[0]["std"])
    names = " = ".join(r["method"] for r in rows)
    budget = "; ".join(
        (f"{r['iterations']} it, " if r["iterations"] else "")
        + secs(r["distill_seconds"])
        + ("" if ran_on_cpu_only(r) else " ‡")
        for r in rows
    )
    paper = [published.get((r["dataset"], r["method"], r["ipc"] or 0)) for r in rows]
    pub = " / ".join(str(p) for p in paper if p is not None)
    method_part = "" if rows[0]["method"] == "random" else names + " "
    return (
        f"{method_part}{'**' + acc + '**' if bold else acc}"
        + (f" [{pub}]" if pub else "")
        + ("" if rows[0]["method"] == "random" else f" ({budget})")
    )


def suite_table(
    suite: str, families: dict[str, str], published: dict, order: tuple[str, ...]
) -> list[str]:
    data = read(f"{suite}.json")
    rows = [r for r in data["rows"] if "error" not in r]
    present = [f for f in FAMILIES if any(families.get(r["method"]) == f for r in rows)]
    has_pub = bool(published)
    head = ["dataset", "IPC", "random real", "best coreset", *present, "full data"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    found = {r["dataset"] for r in rows}
    datasets = [d for d in order if d in found] + sorted(found - set(order))
    for ds in datasets:
        mine = [r for r in rows if r["dataset"] == ds]
        full = next((r for r in mine if r["method"] == "full"), None)
        for ipc in sorted({r["ipc"] for r in mine if r["ipc"]}):
            at = [r for r in mine if r["ipc"] == ipc]
            groups = {
                "random": [r for r in at if r["method"] == "random"],
                "coreset": best(
                    [
                        r
                        for r in at
                        if families.get(r["method"]) == "coreset" and r["method"] != "random"
                    ]
                ),
                **{f: best([r for r in at if families.get(r["method"]) == f]) for f in present},
            }
            top = best([r for g in groups.values() for r in g])
            cells = [
                cell_text(g, published, bold=bool(g) and g[0] in top)
                for g in (groups["random"], groups["coreset"], *(groups[f] for f in present))
            ]
            full_text = "–"
            if full is not None:
                full_text = pct(full["mean"], full["std"] if len(full["accuracies"]) > 1 else None)
                full_text += f" ({full['epochs']} epochs, {len(full['accuracies'])} run"
                full_text += "s)" if len(full["accuracies"]) > 1 else ")"
                pub = published.get((ds, "full", 0))
                full_text += f" [{pub}]" if pub is not None else ""
            lines.append(f"| {ds} | {ipc} | " + " | ".join([*cells, full_text]) + " |")
    missing = {
        f: sorted(
            m for m, fam in families.items() if fam == f and m not in {r["method"] for r in rows}
        )
        for f in FAMILIES
    }
    absent = "; ".join(f"{f}: {', '.join(ms)}" for f, ms in missing.items() if ms)
    pending = [
        f"{ds} IPC {ipc}"
        for ds in datasets
        for ipc in (1, 10, 50)
        if not any(r["dataset"] == ds and r["ipc"] == ipc for r in rows)
    ]
    models = sorted(
        {(r["dataset"], r["model"], r["epochs"]) for r in rows if r["method"] != "full"}
    )
    recipe = ", ".join(f"{ds}: {m}, {e} epochs" for ds, m, e in models)
    m = data.get("machine", {})
    lines[:0] = [
        f"Suite `{suite}` (`benchmarks/results/{suite}.json`): protocol "
        f"`{rows[0]['protocol']}`, {len(rows[0]['accuracies'])} evaluation networks per cell "
        f"({recipe}); final-epoch test accuracy (%), mean ± std"
        + ("; [published figure]" if has_pub else "")
        + "; (distillation iterations, wall-clock seconds of distillation or selection; ‡: "
        "a mean over seeds of which some ran on a lent GPU, so not this machine's time). "
        "Bold: the best set of the row."
        + f" Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch "
        f"{m.get('torch', '?')}.",
        "",
    ]
    lines.append("")
    notes = []
    if pending:
        notes.append("No finished cell yet at " + ", ".join(pending) + ".")
    if absent:
        notes.append("No row in this suite for " + absent + ".")
    lines.append(" ".join(notes) + " Cells not finished yet are listed under the suite's table.")
    return lines


# ------------------------------------------------------------------ decoupled and codecs


def decoupled_table(families: dict[str, str]) -> list[str]:
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    settings: dict[tuple[str, int], dict[str, Any]] = {}
    for name in DECOUPLED_FILES:
        res = read(name)
        for ds, dres in res["datasets"].items():
            for ipc, rows in dres["ipc"].items():
                cells.setdefault((ds, int(ipc)), {}).update(
                    {m: {**r, "file": name} for m, r in rows.items()}
                )
                settings[(ds, int(ipc))] = res["settings"]
    lines = [
        "Soft labels (`benchmarks/results/decoupled*.json`, `benchmarks/campaigns/bench_decoupled.py`): "
        "the best decoupled set under the teacher-KD recipe beside random real images "
        "(seed 0) under the same recipe; the same images under hard labels (`dsa`) show what "
        "the labels carry. 3 networks; epochs per cell as in the study.",
        "",
        "| dataset | IPC | best decoupled, teacher-kd | same images, hard labels | "
        "random real, teacher-kd | random real, hard labels | best hard-label set, teacher-kd |",
        "|---|---|---|---|---|---|---|",
    ]
    for (ds, ipc), rows in sorted(cells.items()):
        dec = {m: r for m, r in rows.items() if families.get(m) == "decoupled"}
        if not dec:
            continue
        top = max(dec, key=lambda m: dec[m]["scores"]["accuracy"]["syn_soft"]["mean"])
        other = {m: r for m, r in rows.items() if m not in dec and m != "random"}
        a = dec[top]["scores"]["accuracy"]
        rnd = rows["random"]["scores"]["accuracy"]
        hard = "–"
        if other:
            h = max(other, key=lambda m: other[m]["scores"]["accuracy"]["syn_soft"]["mean"])
            s = other[h]["scores"]["accuracy"]["syn_soft"]
            hard = f"{h} {pct(s['mean'], s['std'])} ({secs(other[h]['distill_seconds'])})"
        lines.append(
            f"| {ds} | {ipc} | {top} {pct(a['syn_soft']['mean'], a['syn_soft']['std'])} "
            f"({secs(dec[top]['distill_seconds'])}) | "
            f"{pct(a['syn_hard']['mean'], a['syn_hard']['std'])} | "
            f"{pct(rnd['syn_soft']['mean'], rnd['syn_soft']['std'])} | "
            f"{pct(rnd['syn_hard']['mean'], rnd['syn_hard']['std'])} | {hard} |"
        )
    return lines


def codec_table() -> list[str]:
    lines = [
        "What is stored, at equal bytes (`benchmarks/results/codecs_*.json`, "
        "`benchmarks/campaigns/bench_codecs.py`; protocol `fast`, 3 networks): the best set stored "
        "through a codec (`objective, codec`) or as a generator (`dim`), beside the same "
        "objective's plain pixels and random real images of the same bytes.",
        "",
        "| dataset | IPC bytes | best codec or generator | plain pixels, same objective | "
        "random real | file |",
        "|---|---|---|---|---|---|",
    ]
    for ds, names in CODEC_FILES.items():
        rows = [{**r, "file": n} for n in names for r in read(n)["rows"] if "error" not in r]
        for ipc in sorted({r["ipc"] for r in rows}):
            at = [r for r in rows if r["ipc"] == ipc]
            coded = [
                r
                for r in at
                if r["method"] != "random"
                and (r["codec"] not in (None, "pixels") or r["method"] == "dim")
            ]
            if not coded:
                continue
            top = max(coded, key=lambda r: r["mean"])
            label = top["method"] + (f", {top['codec']}" if top["codec"] else "")
            if top.get("samples_per_class"):
                label += f", {top['samples_per_class']} per class drawn"
            plain_obj = "dm" if top["method"] == "dim" else top["method"]
            same_file = [r for r in at if r["file"] == top["file"]]
            plain = next(
                (r for r in same_file + at if r["method"] == plain_obj and r["codec"] == "pixels"),
                None,
            )
            rnd = next(r for r in same_file + at if r["method"] == "random")
            plain_text = (
                "–"
                if plain is None
                else f"{plain_obj} {pct(plain['mean'], plain['std'])} ({plain['storage_bytes']:,} B)"
            )
            lines.append(
                f"| {ds} | {ipc} | {label} {pct(top['mean'], top['std'])} "
                f"({top['storage_bytes']:,} B, {top['images']} images, "
                f"{secs(top['distill_seconds'])}) | {plain_text} | "
                f"{pct(rnd['mean'], rnd['std'])} | `{top['file']}` |"
            )
    return lines


# ------------------------------------------------------------------ speed


def _fastest(variants: dict[str, dict[str, Any]], base: str) -> tuple[str, dict[str, Any]]:
    name = max(
        (v for v in variants if v != base), key=lambda v: variants[v].get("speedup_cpu", 0.0)
    )
    return name, variants[name]


def speed_table() -> list[str]:
    lines = [
        "CPU seconds per step with 1 torch thread, exact mode (fp32, eager) against the "
        "fastest lever set measured (speed-up: median of per-round paired ratios, so it need "
        "not equal the ratio of the two medians shown). The protocols dc, dsa, dc_aug, fast and "
        "the methods dm and dsa use bf16 and compilation by default outside exact mode (issue 41: "
        'section "Fast by default"); elsewhere the levers are opt-in. Models: convnet = '
        "ConvNet-3 width 128, convnet-w32 = width 32, convnet2 = ConvNet-2. Machine: the shared "
        "2-core AMD EPYC (AVX-512), under load from other jobs.",
        "",
        "| workload | model | exact CPU s/step | fastest levers | CPU s/step | speed-up | file |",
        "|---|---|---|---|---|---|---|",
    ]
    speed = read("speed.json")
    for c in speed["eval"]:
        name, v = _fastest(c["variants"], "baseline")
        b = c["variants"]["baseline"]
        lines.append(
            f"| evaluation training, {c['images']} mnist5k images | {c['model']} | "
            f"{b['cpu_s_per_step']:.3f} | {name} | {v['cpu_s_per_step']:.3f} | "
            f"{v['speedup_cpu']:.2f}x | `speed.json` |"
        )
    for part in ("dm", "idm"):
        for c in speed[part]:
            name, v = _fastest(c["variants"], "baseline")
            b = c["variants"]["baseline"]
            lines.append(
                f"| {part} step, mnist5k IPC {c['ipc']}, batch_real {c['batch_real']} | "
                f"{c['model']} | {b['cpu_s_per_step']:.2f} | {name} | "
                f"{v['cpu_s_per_step']:.2f} | {v['speedup_cpu']:.2f}x | `speed.json` |"
            )
    cells: dict[tuple, tuple[str, dict[str, Any]]] = {}
    for name in ("speed_matching_trajectory.json", "speed_matching_compile.json"):
        for c in read(name)["cells"]:  # the later file re-measured its cells with more levers
            cells[(c["method"], c["dataset"], c["ipc"], c["model"])] = (name, c)
    for (method, ds, ipc, model), (name, c) in cells.items():
        v = c["variants"]
        if "speedup_cpu" in v.get("bf16", {}):
            var, best_v = _fastest(v, "fp32")
            speedup = best_v["speedup_cpu"]
        else:  # the first file stored the paired speed-up on the cell (bf16 against fp32)
            var, best_v, speedup = "bf16", v["bf16"], c["speedup_cpu"]
        lines.append(
            f"| {method} step, {ds} IPC {ipc} | {model} | {v['fp32']['cpu_s_per_step']:.3f} | "
            f"{var} | {best_v['cpu_s_per_step']:.3f} | {speedup:.2f}x | `{name}` |"
        )
    return lines


# ------------------------------------------------------------------ output


def methods_block() -> str:
    from ddkit.bench.suites import SUITES as BENCH_SUITES

    families = family_of()
    out: list[str] = []
    for suite in SUITES:
        spec = BENCH_SUITES.get(suite)
        out += suite_table(suite, families, spec.published, spec.datasets)
        out.append("")
    out += decoupled_table(families) + [""] + codec_table()
    return "\n".join(out).strip()


def speed_block() -> str:
    return "\n".join(speed_table())


TABLES = {"summary:methods": methods_block, "summary:speed": speed_block}


def main() -> int:
    print(methods_block() + "\n\n" + speed_block())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
