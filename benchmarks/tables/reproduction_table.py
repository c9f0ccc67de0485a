"""The reproduction table of the `paper` suite (docs/benchmarks/paper.md; issue 40): for every cell with
a published figure, the published accuracy beside ours, the gap, the budget and variant ours ran
with, and what its ± spans (distillation seeds, or random draws, × networks).

Rows come from the `paper` suite's results (``benchmarks/results/paper.json``: the CPU, some
seeds on a lent H100, as each row's devices say), from the
cells run on a lent GPU at the published budget (``benchmarks/results/gpu/``), and from those GPU
sets evaluated here under their paper's own evaluation recipe where it differs from the suite's
(``benchmarks/results/dc_eval_recipe/``: DC evaluated MNIST with its own augmentation;
``frepo_eval_recipe/``: FRePo's evaluation, protocol ``frepo``; ``kip_eval_recipe/``: kip's
sets trained on their learned label vectors, protocol ``mse``). A suite row whose
method options differ from what the suite asks for today is marked *superseded*, with the options
it lacks: its cell predates the published variant and has not been re-run. The last column
gives the method's budget curve on MNIST's validation split where one was measured for the
suite's variant (``benchmarks/studies/dream_curve.py``'s results files: ``split`` "validation"),
the evidence for how much of a gap the budget explains, beside it the probes that change some of
that variant's options on the same split and seed (its other validation files), and for kip the
accuracy of its set under its own kernel on real images its steps had not yet learned from
(``benchmarks/studies/kernel_batch_accuracy.py``), which splits a gap between the set and its
transfer to a network. Nothing is trained or timed here.

Usage: python benchmarks/tables/reproduction_table.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from ddkit.bench.results import MACHINE_KEYS
from ddkit.bench.suites import SUITES, Suite

#: how close to the published figure counts as reproduced (issue 40), in points
WITHIN = 1.5


def _pool(pooled: dict[str, dict[str, Any]], base: dict[str, Any], accuracies: list[float]) -> None:
    """Add one seed's (or draw's) network accuracies to the row of ``base["method"]``."""
    row = pooled.setdefault(base["method"], {**base, "seeds": 0, "accuracies": []})
    row["accuracies"] += accuracies
    row["seeds"] += 1


def _gpu_cells(gpu: Path) -> list[dict[str, Any]]:
    """The GPU cells at the published budget, as rows: accuracies pooled over seeds or draws."""
    paper = gpu / "h200_paper_mnist_ipc1.json"
    if not paper.exists():
        return []
    pooled: dict[str, dict[str, Any]] = {}
    for run in json.loads(paper.read_text())["paper"].values():
        if run.get("accuracies") is None or run["method"] == "random":
            continue
        base = {"method": run["method"], "ipc": run["ipc"], "iterations": run["iterations"],
                "model": run["config"].get("model", "convnet")}  # fmt: skip
        _pool(pooled, base, run["accuracies"])
    extra = gpu / "dc-seed1_eval_cpu.json"  # dc's second GPU set, its networks trained on a CPU
    if extra.exists() and "dc" in pooled:
        _pool(pooled, pooled["dc"], json.loads(extra.read_text())["results"][0]["accuracies"])
    draws = gpu / "h200_before_fixes.json"  # the random draws ran before the placement fixes
    if draws.exists():
        base = {"method": "random", "ipc": 1, "iterations": 0, "model": "convnet"}
        for name, run in json.loads(draws.read_text())["paper"].items():
            if name.startswith("random/") and run.get("accuracies"):
                _pool(pooled, base, run["accuracies"])
    return list(pooled.values())


#: Sets evaluated here under their paper's own evaluation recipe: the folder of reports
#: (``ddkit evaluate --out FOLDER/<method>-seed<s>.json``), where their sets live (a folder of
#: ``<method>-seed<s>/`` sets, or the ``sets.json`` in the folder naming each report's set), where
#: they were made and evaluated, and the variant of the sets
RECIPE_FOLDERS = (
    ("dc_eval_recipe", "gpu/sets", "GPU set, CPU evaluation", "published budget"),  # DC's own
    ("frepo_eval_recipe", None, "CPU", "the suite's set"),  # FRePo's own evaluation
    # kip's IPC-1 sets on their learned label vectors (protocol mse at the suite's 1000 epochs)
    ("kip_eval_recipe", None, "GPU set, CPU evaluation", "the suite's set"),
)


def _recipe_cells(results: Path, folder: str, sets: str | None) -> list[dict[str, Any]]:
    """The sets evaluated under their paper's own recipe in ``results/folder`` (one report per
    set, ``<method>-seed<s>.json``), as rows pooled over the method's seeds or draws; budget,
    IPC and distillation network from each set's provenance."""
    pooled: dict[str, dict[str, Any]] = {}
    manifest = results / folder / "sets.json"
    named = json.loads(manifest.read_text()) if manifest.exists() else {}
    for path in sorted((results / folder).glob("*-seed*.json")):
        report = json.loads(path.read_text())
        kept = (  # a set's own folder, or a run folder holding it under synthetic/
            results.parent.parent / named[path.stem]
            if path.stem in named
            else results / str(sets) / path.stem
        )
        meta = (
            kept / "meta.json"
            if (kept / "meta.json").exists()
            else kept / "synthetic" / "meta.json"
        )
        made = json.loads(meta.read_text())["provenance"]
        protocol = report["protocol"]
        base = {"method": made["method"], "ipc": made["ipc"], "iterations": made["iterations"],
                "model": made.get("config", {}).get("model"),
                "recipe": f"{protocol['name']}, {protocol['epochs']} epochs"}  # fmt: skip
        _pool(pooled, base, report["results"][0]["accuracies"])
    return list(pooled.values())


def _validation_files(results: Path) -> list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]:
    """``dream_curve.py``'s results files measured on MNIST's validation split: (path, settings,
    the rows that carry an ``iteration`` and a ``val_mean``)."""
    found = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("split") != "validation":
            continue
        settings = data.get("settings", {})
        if settings.get("dataset") != "mnist":
            continue
        rows = [r for r in data.get("rows", []) if "iteration" in r and "val_mean" in r]
        found.append((path, settings, rows))
    return found


def _steps(rows: list[dict[str, Any]]) -> str:
    """``"89.29 at 200 → 87.81 at 500"``: validation accuracy at each budget reached."""
    rows = sorted(rows, key=lambda r: r["iteration"])
    # a CPU of another kind evaluates the same set to other accuracies (docs/benchmarks/paper.md, frepo):
    # say where a point was measured on another machine than the file's first
    first = _machine(rows[0]) if rows else None
    return " → ".join(
        f"{100 * r['val_mean']:.2f} at {r['iteration']}"
        + (" (another machine)" if _machine(r) != first else "")
        for r in rows
    )


def _machine(row: dict[str, Any]) -> tuple[str, ...]:
    """What tells the machine of a ``dream_curve.py`` row from another (the results files'
    fields, with the CPU's matrix extensions); all unknown for a row that records none."""
    machine = row.get("machine") or {}
    return tuple(str(machine.get(k)) for k in (*MACHINE_KEYS, "cpu_extensions"))


def _validation_curves(results: Path, suite: Suite) -> dict[tuple[int, str], str]:
    """Budget curves measured on MNIST's validation split (files named
    ``<method>_curve_mnist_ipc<n>.json``) for the variant the suite runs, and beside each the
    probes that change one or more of its options at the same seed and split (any other
    validation file of that method and IPC), as one line per (IPC, method)."""
    curves: dict[tuple[int, str], str] = {}
    curve_rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    files = _validation_files(results)
    for path, settings, rows in files:
        if "_curve_" not in path.name:
            continue
        ipc = settings.get("ipc")
        for method in sorted({r["method"] for r in rows}):
            mine = [r for r in rows if r["method"] == method]
            if not suite.options_for(method, ipc).items() <= mine[0].get("options", {}).items():
                continue  # a curve of another variant than the suite's
            curve_rows[(ipc, method)] = mine
            curves[(ipc, method)] = (
                f"budget (validation): {_steps(mine)} iterations ({settings.get('protocol')}; "
                f"{path.name})"
            )
    for path, settings, rows in files:
        if "_curve_" in path.name:
            continue
        ipc = settings.get("ipc")
        for method in sorted({r["method"] for r in rows}):
            curve = curve_rows.get((ipc, method))
            if not curve:
                continue  # no curve of the suite's variant to set it beside
            base = curve[0].get("options", {})
            mine = [r for r in rows if r["method"] == method]
            changed = {k: v for k, v in mine[0].get("options", {}).items() if base.get(k) != v}
            if changed:
                losses = {r["iteration"]: r.get("segment_loss") for r in curve}
                what = ", ".join(f"{k}={v}" for k, v in changed.items())
                # the same mean loss at each milestone to the last digit: the option never acted
                # and the set is the curve's own (a different accuracy is the evaluation's)
                same = all(
                    r.get("segment_loss") is not None
                    and losses.get(r["iteration"]) == r["segment_loss"]
                    for r in mine
                )
                note = ", the curve's own set: the same mean loss to the last digit" * same
                curves[(ipc, method)] += f"; with {what}: {_steps(mine)} ({path.name}{note})"
    return curves


#: methods whose set's own predictor is the one they distil for, a kernel of the data alone
#: (frepo's is its online networks' features, which change as they train)
KERNEL_PREDICTORS = ("kip", "rfad")


def _own_predictors(results: Path) -> dict[tuple[int, str], str]:
    """The accuracy of a kernel method's set under its own kernel on real training images
    its steps had not learned from yet (``studies/kernel_batch_accuracy.py``'s files,
    ``kernel_batch_accuracy_mnist_ipc<n>.json``), as one line per (IPC, method)."""
    out: dict[tuple[int, str], str] = {}
    for path in sorted(results.glob("kernel_batch_accuracy_mnist_ipc*.json")):
        data = json.loads(path.read_text())
        ipc, last = data["settings"]["ipc"], data["settings"]["last"]
        for r in data["rows"]:
            if r["method"] in KERNEL_PREDICTORS:
                out[(ipc, r["method"])] = (
                    f"own kernel predictor: {100 * r['mean']:.2f} ± {100 * r['std']:.2f} on the "
                    f"fresh real batches of the last {last} steps, {len(r['seeds'])} seeds "
                    f"({path.name})"
                )
    return out


def _variant(suite: Suite, row: dict[str, Any]) -> str:
    """ "the suite's" when the row ran with the options the suite asks for now, else what it
    lacks (a cell that predates the published variant and has not been re-run)."""
    wanted = suite.options_for(row["method"], row["ipc"])
    had = row.get("options", {})
    missing = {k: v for k, v in wanted.items() if had.get(k) != v}
    if not missing:
        return "the suite's"
    return "superseded: ran without " + ", ".join(f"{k}={v}" for k, v in missing.items())


def _budget(row: dict[str, Any]) -> str:
    """Iterations, and the distillation network where the row names one."""
    if row["method"] == "random":
        return f"{row['seeds']} draw{'s' if row['seeds'] > 1 else ''}"
    if not row["iterations"]:
        return "–"
    model = row.get("model")
    width = {"convnet": ", ConvNet-3 width 128", "convnet-w32": ", ConvNet-3 width 32"}
    return f"{row['iterations']} iterations" + width.get(model, f", {model}" if model else "")


def _line(published: float, row: dict[str, Any], where: str, variant: str, curve: str = "–") -> str:
    accs = [100 * a for a in row["accuracies"]]
    mean = statistics.fmean(accs)
    std = statistics.pstdev(accs) if len(accs) > 1 else 0.0
    gap = mean - published
    ok = "yes" if abs(gap) <= WITHIN or gap > 0 else "no"
    seeds = row["seeds"]
    return (
        f"| {row['ipc']} | {row['method']} | {published} | {mean:.2f} ± {std:.2f} | {gap:+.2f} | "
        f"{ok} | {where} | {_budget(row)} | {variant} | {seeds} × {len(accs) // seeds} | {curve} |"
    )


def _suite_row_where(devices: list[str], gpus: list[str]) -> str:
    """Where a suite row computed: the CPU, a GPU (named from the results file's machines), or
    some seeds on each."""
    gpu = "GPU" + (
        f" ({', '.join(g.removeprefix('NVIDIA ').split()[0] for g in gpus)})" if gpus else ""
    )
    return " and ".join(sorted({gpu if d.startswith("cuda") else "CPU" for d in devices}))


def table(results: Path) -> str:
    """The Markdown table: MNIST cells with a published figure, CPU rows then GPU rows."""
    suite = SUITES.get("paper")
    data = json.loads((results / "paper.json").read_text())
    rows = data["rows"]
    gpus = [m["gpu"] for m in data.get("machines", []) if m.get("gpu")]
    lines = [
        "| IPC | method | published | ours | gap (points) | within 1.5 | where | budget | "
        "variant | seeds × nets | measured on held-out images |",
        "|" + "---|" * 11,
    ]
    curves = _validation_curves(results, suite)
    own = _own_predictors(results)
    curves = {
        key: "; ".join(t for t in (curves.get(key), own.get(key)) if t)
        for key in curves.keys() | own.keys()
    }
    keyed = []
    for r in rows:
        published = suite.published.get(("mnist", r["method"], r.get("ipc") or 0))
        if r.get("dataset") != "mnist" or published is None or "error" in r or not r.get("ipc"):
            continue
        seeds = len(r.get("distill_seeds") or [0])
        row = {**r, "seeds": seeds, "model": r.get("options", {}).get("model")}
        where = _suite_row_where(r.get("devices") or ["cpu"], gpus)
        line = _line(
            published, row, where, _variant(suite, r), curves.get((r["ipc"], r["method"]), "–")
        )
        keyed.append((r["ipc"], r["method"], 0, line))
    for g in _gpu_cells(results / "gpu"):
        published = suite.published[("mnist", g["method"], g["ipc"])]
        where = "GPU (H200)"
        keyed.append(
            (
                g["ipc"],
                g["method"],
                1,
                _line(
                    published,
                    g,
                    where,
                    "published budget" if g["method"] != "random" else "draws averaged",
                ),
            )
        )
    for folder, sets, where, made in RECIPE_FOLDERS:
        for g in _recipe_cells(results, folder, sets):
            published = suite.published[("mnist", g["method"], g["ipc"])]
            variant = (f"{made}; " if g["method"] != "random" else "") + g["recipe"]
            curve = curves.get((g["ipc"], g["method"]), "–")
            keyed.append((g["ipc"], g["method"], 2, _line(published, g, where, variant, curve)))
    lines += [line for *_, line in sorted(keyed)]
    return "\n".join(lines)


RESULTS = Path(__file__).resolve().parents[1] / "results"
TABLES = {"reproduction": lambda: table(RESULTS)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    print(table(Path(args.results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
