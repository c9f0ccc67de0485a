"""A benchmark suite's Markdown table (:func:`markdown_table`): its heading (protocol, budgets
here beside the published ones, machines), one row per finished cell, the cells not run yet
with how far each has come and a rough estimate of the time left (:func:`estimate_seconds`),
written between the suite's marker comments on its page (:func:`write_markdown`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ddkit.bench.cells import (
    FULL,
    Cell,
    cell_folder,
    cell_progress,
    is_full_row,
    ran_on_cpu_only,
)
from ddkit.bench.results import (
    finished_cells,
    finished_row,
    rerun_folder,
    row_seeds,
    stale_row,
)
from ddkit.bench.selection import cells
from ddkit.bench.suites import Suite
from ddkit.io import atomic_write_bytes


def _size(r: dict[str, Any]) -> tuple[str, int, int]:
    """(dataset, IPC, kept percentage) of a row, 0 for what it lacks."""
    return r["dataset"], r.get("ipc") or 0, r.get("keep") or 0


def _vs_random(r: dict[str, Any], random_rows: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    """Points above the random-real row of the same (dataset, IPC or kept percentage); '*' marks
    a lead larger than the two standard deviations combined (the bar the quality criterion
    sets)."""
    base = random_rows.get(_size(r))
    if base is None or r["method"] == "random" or is_full_row(r) or "error" in base:
        return ""
    diff = 100 * (r["mean"] - base["mean"])
    clear = diff > 100 * (r["std"] + base["std"])
    return f"{diff:+.2f}{' *' if clear else ''}"


def _full_epochs_text(suite: Suite) -> str:
    e = suite.full_data_epochs
    if not e:
        return ""
    if isinstance(e, dict):
        return " Full-data rows: " + ", ".join(f"{ds} {n} epochs" for ds, n in e.items()) + "."
    return f" Full-data row: {e} epochs."


def _budget_lines(suite: Suite) -> list[str]:
    """Heading lines for a suite with published figures: what each method ran with here beside
    what the published figure was run with."""
    if not suite.published_budgets:
        return []
    lines = ["", "Budgets here vs published (every reduction is listed):"]
    for method, theirs in suite.published_budgets.items():
        ours = _our_budget(suite, method)
        lines.append(f"- {method}: here {ours}; published: {theirs}.")
    return lines


def _our_budget(suite: Suite, method: str) -> str:
    if method == "evaluation":
        return f"{suite.runs} networks per cell, protocol `{suite.protocol}`" + (
            f" ({suite.epochs} epochs)" if suite.epochs else ""
        )
    if method == "random":
        draws = ", ".join(f"IPC {ipc}: {suite.seeds(method, ipc)}" for ipc in suite.ipcs)
        return f"draws of random real images per cell ({draws})"
    if method == FULL:
        runs = suite.full_data_runs or suite.runs
        epochs = {ds: suite.full_epochs(ds) or "the protocol's" for ds in suite.datasets}
        text = ", ".join(f"{ds} {e} epochs" for ds, e in epochs.items())
        return f"{text}, {runs} run{'s' if runs > 1 else ''}"
    spec = suite.iterations.get(method)
    if isinstance(spec, dict):
        spec = ", ".join(f"IPC {ipc}: {n}" for ipc, n in spec.items())
    text = f"{spec if spec is not None else suite.default_iterations} iterations"
    options = suite.options.get(method)
    if options:
        text += ", " + ", ".join(f"{k}={v}" for k, v in options.items())
    for ipc, extra in suite.ipc_options.get(method, {}).items():
        text += f"; at IPC {ipc}: " + ", ".join(f"{k}={v}" for k, v in extra.items())
    return text


def markdown_table(
    suite: Suite, data: dict[str, Any], results_dir: str | os.PathLike | None = None
) -> str:
    """The suite's table, its budgets heading and the list of unfinished cells (with how far
    each has come, from its folder under ``results_dir``, and a rough time estimate)."""
    machines = data.get("machines") or [data.get("machine", {})]
    models = ", ".join(f"{ds}: {name}" for ds, name in suite.models.items())
    lines = [
        f"Suite `{suite.name}`: protocol `{suite.protocol}`"
        + (f" with {suite.epochs} epochs" if suite.epochs else "")
        + f", {suite.runs} runs per cell, final-epoch test accuracy (%) mean ± std"
        + (f"; evaluation model per dataset: {models} (others: the protocol's)" if models else "")
        + "."
        + _full_epochs_text(suite)
        + " `vs random`: points above random real images of the same IPC; `*` = by more than the"
        " two standard deviations combined. `peak MB`: the distillation's own peak resident memory"
        " above its start (`–`: not measured; earlier cells read the inherited `ru_maxrss`)."
        + _seeds_heading(suite),
        ("Machines: " if len(machines) > 1 else "Machine: ")
        + "; ".join(_machine_text(m) for m in machines)
        + ".",
        "",
    ]
    lines[1:1] = _budget_lines(suite)
    published = bool(suite.published)
    lines += [
        f"| dataset | {'IPC / kept' if suite.keeps else 'IPC'} | method | iterations | accuracy (%) |"
        + (" published |" if published else "")
        + " vs random | eval model | distill s | eval s | peak MB | seeds × nets |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if published else ""),
    ]
    order = {FULL: 0}  # the full-data row first, then the methods by name
    rows = [r for r in data["rows"] if finished_row(r)]  # a damaged row's cell is pending
    rows.sort(key=lambda r: (*_size(r), order.get(r["method"], 1), r["method"]))
    random_rows = {_size(r): r for r in rows if r["method"] == "random"}
    stale = {Cell.of_row(r) for r in rows if stale_row(r, suite)}  # each cell has one row
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['dataset']} | {_size_text(r)} | {r['method']} | – | error: {r['error'][:60]} "
                "| | | | | | |" + (" |" if published else "")
            )
            continue
        paper = suite.published.get((r["dataset"], r["method"], r.get("ipc") or 0))
        where = f" ({', '.join(r['devices'])})" if r.get("devices") else ""
        where += " (superseded)" if Cell.of_row(r) in stale else ""
        lines.append(
            f"| {r['dataset']} | {_size_text(r)} | {r['method']}{where} | {r['iterations']} | "
            f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
            + (f"{paper if paper is not None else '–'} | " if published else "")
            + f"{_vs_random(r, random_rows)} | {r.get('model', '?')} | "
            f"{r['distill_seconds']:.1f} | {r['eval_seconds']:.1f} | {_mb(r['peak_distill_mb'])} | "
            f"{_spread_text(r)} |"
        )
    if suite.keeps:
        lines += ["", *_kept_table(suite, rows)]
    done = finished_cells(data, suite)
    # estimates read the rows of the suite's current variants only
    finished = [r for r in rows if "error" not in r and Cell.of_row(r) not in stale]
    if stale:
        lines[0] += (
            " `(superseded)`: the row ran with method options the suite no longer sets; `ddkit "
            "bench` runs its cell again, every seed, and the row stays until the new one lands."
        )
    pending = [
        _pending_text(suite, finished, cell, results_dir, superseded=cell in stale)
        for cell in cells(suite)
        if cell not in done
    ]
    if pending:
        lines += [
            "",
            f"Not run yet ({len(pending)} cells; `ddkit bench --suite {suite.name}` continues): "
            + ", ".join(pending)
            + ". Times in brackets are rough estimates on this machine from the finished cells "
            "of the same dataset (evaluation: their seconds per network, epoch and image; "
            "distillation: the same method's seconds per iteration at the nearest finished IPC, "
            "scaled by the IPC ratio); a started cell's remaining time comes from its own "
            "iterations and networks.",
        ]
    return "\n".join(lines)


def _spread_text(r: dict[str, Any]) -> str:
    """What a row's ± spans: ``"2 × 3"`` (distillation seeds, or random draws, × networks each)."""
    seeds = len(row_seeds(r))
    return f"{seeds} × {len(r['accuracies']) // seeds}"


def _seeds_heading(suite: Suite) -> str:
    """The heading's sentence on what each ± spans."""
    text = (
        " `seeds × nets`: the distillation seeds (random rows: draws of real images), each set "
        "trained by that many networks; mean ± std over all of them."
    )
    asked = {ipc: suite.seeds("dm", ipc) for ipc in suite.ipcs}
    draws = {ipc: suite.seeds("random", ipc) for ipc in suite.ipcs}
    if any(n > 1 for n in (*asked.values(), *draws.values())):
        text += (
            " This suite asks for "
            + ", ".join(
                f"IPC {ipc}: {asked[ipc]} seeds ({draws[ipc]} random draws)" for ipc in suite.ipcs
            )
            + "; a row of fewer is kept until its cell's other seeds finish."
        )
    return text


def _size_text(r: dict[str, Any]) -> str:
    """The IPC column of a row: its IPC, ``30 %`` for a pruning row, ``all`` for full data."""
    if r.get("keep"):
        return f"{r['keep']} %"
    return str(r.get("ipc") or "all")


def _kept_table(suite: Suite, rows: list[dict[str, Any]]) -> list[str]:
    """A pruning sweep's accuracies (%) as one line per (dataset, method), one column per kept
    percentage, the full-data accuracy in the last column."""
    head = " | ".join(f"{k} %" for k in suite.keeps)
    lines = [
        "Accuracy (%) by the percentage of the training split kept (mean ± std; "
        f"`ddkit plot bench --suite {suite.name} --x keep` draws it):",
        "",
        f"| dataset | method | {head} | full data |",
        "|---|---|" + "---|" * (len(suite.keeps) + 1),
    ]
    done = {(*_size(r), r["method"]): r for r in rows if "error" not in r}
    for ds in suite.datasets:
        full = done.get((ds, 0, 0, FULL))
        full_text = f"{100 * full['mean']:.2f} ± {100 * full['std']:.2f}" if full else "–"
        for method in suite.methods:
            accs = [done.get((ds, 0, k, method)) for k in suite.keeps]
            cells = " | ".join(
                f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}" if r else "–" for r in accs
            )
            lines.append(f"| {ds} | {method} | {cells} | {full_text} |")
    return lines


def _pending_text(
    suite: Suite,
    finished: list[dict[str, Any]],
    cell: Cell,
    results_dir: str | os.PathLike | None,
    *,
    superseded: bool = False,
) -> str:
    """One unfinished cell, how far it has come and a rough time left; a ``superseded`` cell
    (its row ran with other options) runs every seed again, in its re-run folder."""
    ds, method, ipc = cell.dataset, cell.method, cell.ipc
    name = cell.label + (" (superseded row: every seed again)" if superseded else "")
    progress = None
    if results_dir is not None:
        folder = cell_folder(Path(results_dir), suite, cell)
        progress = cell_progress(rerun_folder(folder) if superseded else folder, suite, cell)
    if progress is None:
        if cell.keep:
            eta = _full_network_seconds(finished, ds, suite.runs)
        else:
            eta = estimate_seconds(suite, finished, ds, method, ipc)
            seeds = suite.seeds(method, ipc)  # a row of fewer seeds: only the others run
            done = max((len(row_seeds(r)) for r in finished if Cell.of_row(r) == cell), default=0)
            eta = eta * (seeds - min(done, seeds)) / seeds if eta is not None else None
        return name + (f" (~{_hours(eta)})" if eta is not None else "")
    parts = []
    if not progress["distilled"]:
        sets = progress["seeds"]
        if sets > 1:
            parts.append(f"{sets - progress['distillations_left']} of {sets} sets")
        parts.append(f"{progress['iterations_done']} of {progress['iterations']} iterations")
    parts.append(f"{progress['networks_done']} of {progress['networks']} networks")
    if cell.keep:
        evaluation = _full_network_seconds(finished, ds, suite.runs)
    else:
        evaluation = _evaluation_estimate(suite, finished, ds, method, ipc, progress["images"])
    left = _seconds_left(progress, evaluation / suite.runs if evaluation else None)
    return f"{name} ({', '.join(parts)}" + (f"; ~{_hours(left)} left)" if left else ")")


def _full_network_seconds(finished: list[dict[str, Any]], dataset: str, runs: int) -> float | None:
    """Seconds of ``runs`` networks trained as long as the full-data row's (a pruning cell's
    networks take about as many steps), from that row; ``None`` before it has finished."""
    full = [r for r in finished if r["dataset"] == dataset and is_full_row(r)]
    if not full:
        return None
    return full[0]["eval_seconds"] / len(full[0]["accuracies"]) * runs


def _seconds_left(progress: dict[str, Any], network_estimate: float | None) -> float | None:
    """Remaining seconds of a started cell: its own median iteration time for the iterations
    left, its own mean network time (else ``network_estimate``) for the networks left; ``None``
    when iterations are left and no CPU pace for them is known (only a GPU's, or none yet)."""
    per_net = progress["network_seconds"] or network_estimate
    left = (progress["networks"] - progress["networks_done"]) * (per_net or 0.0)
    if not progress["distilled"] and progress["iterations"]:
        sets = progress.get("distillations_left", 1)
        todo = sets * progress["iterations"] - progress["iterations_done"]
        if todo > 0 and not progress["step_seconds"]:
            return None
        left += todo * (progress["step_seconds"] or 0.0)
    return left or None


def _mb(value: float | None) -> str:
    """A peak-memory cell of the table: ``–`` where it was not measured."""
    return "–" if value is None else f"{value:.0f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


def estimate_seconds(
    suite: Suite, finished: list[dict[str, Any]], dataset: str, method: str, ipc: int
) -> float | None:
    """A rough CPU-time estimate of an unfinished cell from the finished rows of the same
    dataset (see :func:`markdown_table`), for all its distillation seeds; ``None`` when nothing
    comparable has finished."""
    one = _one_set_seconds(suite, finished, dataset, method, ipc)
    return None if one is None else one * suite.seeds(method, ipc)


def _one_set_seconds(
    suite: Suite, finished: list[dict[str, Any]], dataset: str, method: str, ipc: int
) -> float | None:
    """:func:`estimate_seconds` for one distillation seed: distil one set, train its networks."""
    import statistics

    seconds = _evaluation_estimate(suite, finished, dataset, method, ipc)
    if seconds is None:
        return None
    synthetic = _synthetic_rows(finished, dataset)
    mine = [r for r in synthetic if r["method"] == method]
    if mine:
        near = min(mine, key=lambda r: abs(r["ipc"] - ipc))
        if near["iterations"]:
            per_iteration = near["distill_seconds"] / near["iterations"] * ipc / near["ipc"]
            return seconds + per_iteration * suite.budget(method, ipc, near["iterations"], dataset)
        return seconds + near["distill_seconds"]
    from ddkit.methods import METHODS, load_all

    load_all()
    if suite.budget(method, ipc, METHODS.get(method).Config().iterations, dataset) > 0:
        return None  # an iterative method not run on this dataset yet
    selectors = [r["distill_seconds"] for r in synthetic if r["iterations"] == 0]
    return seconds + statistics.median(selectors) if selectors else None


def _machine_text(m: dict[str, Any]) -> str:
    """One machine of the table's heading: CPU, cores, torch and its GPU, if one computed."""
    text = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}"
    return text + (f", {m['gpu']} (the rows marked cuda)" if m.get("gpu") else "")


def _synthetic_rows(finished: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    """The finished distilled or selected rows of ``dataset`` computed on the CPU alone (the
    estimates are of CPU time; a row with a seed from a GPU is left out)."""
    return [
        r
        for r in finished
        if r["dataset"] == dataset
        and r.get("accuracies")
        and not is_full_row(r)
        and r.get("ipc")
        and ran_on_cpu_only(r)
    ]


def _evaluation_estimate(
    suite: Suite,
    finished: list[dict[str, Any]],
    dataset: str,
    method: str,
    ipc: int,
    images: int | None = None,
) -> float | None:
    """Seconds of a cell's evaluation (all its networks), from the finished cells of the nearest
    IPC on the same dataset: their seconds per network, epoch and image (a larger set trains in
    larger batches, which cost less per image). ``images``: how many the set trains on, when
    known (a set may emit more than ``ipc`` per class); else ``ipc`` per class."""
    import statistics

    synthetic = _synthetic_rows(finished, dataset)
    if method == FULL or not synthetic:
        return None
    nearest = min(abs(r["ipc"] - ipc) for r in synthetic)
    rate = statistics.median(
        r["eval_seconds"] / (r["epochs"] * r["num_images"] * len(r["accuracies"]))
        for r in synthetic
        if abs(r["ipc"] - ipc) == nearest
    )
    if images is None:  # ipc per class (the fewest images per IPC any finished set holds)
        images = ipc * min(r["num_images"] // r["ipc"] for r in synthetic)
    epochs = next((r["epochs"] for r in synthetic), 0)
    return rate * epochs * images * suite.runs


#: Where the topic pages of a benchmarks page live, relative to it (docs/benchmarks/ beside
#: BENCHMARKS.md): a suite whose markers are not in the page itself has its table there.
TOPIC_PAGES = "docs/benchmarks"


def suite_page(path: Path, start: str) -> Path:
    """The page whose suite table begins with the marker ``start``: ``path`` when it holds the
    marker or no topic page does, else the first topic page (by name) that holds it."""
    if path.exists() and start in path.read_text():
        return path
    pages = sorted((path.parent / TOPIC_PAGES).glob("*.md"))
    return next((page for page in pages if start in page.read_text()), path)


def write_markdown(
    path: Path,
    suite: Suite,
    data: dict[str, Any],
    results_dir: str | os.PathLike | None = None,
) -> None:
    """Replace the suite's section (between marker comments) with a fresh table: in ``path``, or
    in the page of :data:`TOPIC_PAGES` beside it that holds the suite's markers (BENCHMARKS.md
    keeps the summary; each suite's table lives on its topic's page); appended to ``path`` when
    no page holds them."""
    start, end = f"<!-- bench:{suite.name}:start -->", f"<!-- bench:{suite.name}:end -->"
    path = suite_page(path, start)
    block = f"{start}\n{markdown_table(suite, data, results_dir)}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        post = rest.split(end, 1)[1]
        text = pre + block + post
    else:
        text = text.rstrip() + f"\n\n## Suite `{suite.name}`\n\n{block}\n"
    atomic_write_bytes(path, text.encode())
