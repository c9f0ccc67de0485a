"""Run a benchmark suite: distil, evaluate, record accuracy, time and peak memory.

Each (dataset, IPC, method) cell runs in a fresh child process so its peak resident memory is
its own. Results are appended to a JSON file as they finish; re-running skips finished cells.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddkit.bench.suites import SUITES, Suite
from ddkit.errors import ConfigError
from ddkit.io import atomic_write_bytes, atomic_write_json, process_alive, read_json
from ddkit.meter import peak_rss_mb


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "capability": torch.backends.cpu.get_cpu_capability(),  # the vector width torch uses
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_cell(dataset: str, method: str, ipc: int, suite: Suite, seed: int) -> dict[str, Any]:
    """Distil and evaluate one cell (run inside a child process)."""
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.eval import evaluate
    from ddkit.methods import METHODS, create_method, load_all

    load_all()
    splits = load_dataset(dataset)
    base_rss = peak_rss_mb()
    t0 = time.perf_counter()
    options = suite.options.get(method, {})
    runs = suite.runs
    if method == "full":
        syn, iters = SyntheticSet.from_real(splits.train), 0
        epochs = suite.full_epochs(dataset)
        runs = suite.full_data_runs or runs
    else:
        m = create_method(method, dataset=dataset, ipc=ipc, **options)
        iters = suite.budget(method, ipc, m.config.iterations, dataset)
        syn = m.fit(splits.train, ipc, iterations=iters, seed=seed)
        epochs = suite.epochs
        kind = METHODS.get(method).kind
    distill_s = time.perf_counter() - t0
    peak_distill = peak_rss_mb() - base_rss
    model = suite.models.get(dataset)
    report = evaluate(
        syn,
        splits.test,
        suite.protocol,
        runs=runs,
        epochs=epochs,
        seed=seed,
        models=[model] if model else None,
    )
    r = report.results[0]
    return {
        "dataset": dataset,
        "ipc": ipc if method != "full" else None,
        "method": method,
        "kind": "full" if method == "full" else kind,
        "iterations": iters,
        "options": options,
        "num_images": len(syn),
        "storage_bytes": syn.storage_bytes()["total"],
        "protocol": suite.protocol,
        "epochs": report.protocol.epochs,
        "lr": report.lr,
        "model": r.model,
        "accuracies": r.accuracies,
        "seeds": r.seeds,
        "mean": r.mean,
        "std": r.std,
        "distill_seconds": distill_s,
        "eval_seconds": report.seconds,
        "peak_distill_mb": max(peak_distill, 0.0),
        "peak_total_mb": peak_rss_mb(),
        "seed": seed,
    }


def cells(suite: Suite) -> list[tuple[str, str, int]]:
    from ddkit.methods import METHODS, load_all

    load_all()
    methods = list(suite.methods) or METHODS.names()
    out = []
    for ds in suite.datasets:
        if suite.full_data:
            out.append((ds, "full", 0))
        for ipc in suite.ipcs:
            out.extend((ds, m, ipc) for m in methods)
    return out


def _check_only(suite: Suite, only: list[str] | None) -> None:
    """Refuse ``--methods`` names that select nothing (instead of running nothing, exit 0)."""
    known = {m for _, m, _ in cells(suite)} | {"full"}
    unknown = sorted(set(only or ()) - known)
    if unknown:
        raise ConfigError(
            f"suite {suite.name!r} has no method {unknown[0]!r}; valid: {', '.join(sorted(known))}"
        )


Cell = tuple[str, str, int]


@contextmanager
def _results_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s results for a read-modify-write, so that several
    ``ddkit bench`` processes can work through one suite (each on other cells) without one
    overwriting the rows of another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_results(path: Path, suite: Suite) -> dict[str, Any]:
    data = read_json(path) if path.exists() else {"suite": suite.name, "rows": []}
    data.setdefault("running", {})
    return data


def _write_results(path: Path, data: dict[str, Any]) -> None:
    data["machine"] = machine_info()
    atomic_write_json(path, data)


def _cell_key(cell: Cell) -> str:
    ds, method, ipc = cell
    return f"{ds}/{method}/{ipc}"


def _claim(path: Path, suite: Suite, cell: Cell) -> bool:
    """Mark ``cell`` as running in this process unless it has finished or a live process runs
    it (a claim left by a dead process is taken over)."""
    with _results_lock(path):
        data = _read_results(path, suite)
        if cell in {(r["dataset"], r["method"], r["ipc"] or 0) for r in data["rows"]}:
            return False
        owner = data["running"].get(_cell_key(cell))
        if owner is not None and owner != os.getpid() and process_alive(owner):
            return False
        data["running"][_cell_key(cell)] = os.getpid()
        _write_results(path, data)
        return True


def _record(path: Path, suite: Suite, cell: Cell, row: dict[str, Any]) -> None:
    """Append a finished cell's row to the results as they are on disk now, and drop its claim."""
    with _results_lock(path):
        data = _read_results(path, suite)
        data["rows"].append(row)
        data["running"].pop(_cell_key(cell), None)
        _write_results(path, data)


def run_suite(
    suite: str | Suite,
    *,
    results_dir: str | os.PathLike = "benchmarks/results",
    markdown: str | os.PathLike | None = "BENCHMARKS.md",
    seed: int = 0,
    only: list[str] | None = None,
    datasets: list[str] | None = None,
    ipcs: list[int] | None = None,
    fresh: bool = False,
    log=print,
) -> list[dict[str, Any]]:
    """Run ``suite`` (a :class:`Suite` or a registered name); returns all result rows (also
    written to JSON and Markdown). Finished cells in the results file are kept (resume)."""
    suite = suite if isinstance(suite, Suite) else SUITES.get(suite)
    _check_only(suite, only)
    path = Path(results_dir) / f"{suite.name}.json"
    if fresh:
        with _results_lock(path):
            _write_results(path, {"suite": suite.name, "rows": []})
    todo = [
        c
        for c in cells(suite)
        if (not only or c[1] in only)
        and (not datasets or c[0] in datasets)
        and (not ipcs or c[1] == "full" or c[2] in ipcs)
    ]
    ctx = mp.get_context("spawn")
    for ds, method, ipc in todo:
        if not _claim(path, suite, (ds, method, ipc)):
            continue
        log(f"[bench {suite.name}] {ds} ipc={ipc} {method} ...")
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            try:
                row = pool.submit(run_cell, ds, method, ipc, suite, seed).result()
            except Exception as e:  # a failing method is recorded, not hidden
                row = {
                    "dataset": ds,
                    "method": method,
                    "ipc": ipc or None,
                    "error": f"{type(e).__name__}: {e}",
                }
        _record(path, suite, (ds, method, ipc), row)
        if "error" in row:
            log(f"    FAILED: {row['error']}")
        else:
            log(
                f"    {100 * row['mean']:.2f} ± {100 * row['std']:.2f}  distill {row['distill_seconds']:.1f}s "
                f"eval {row['eval_seconds']:.1f}s"
            )
    data = _read_results(path, suite)
    if markdown:
        write_markdown(Path(markdown), suite, data)
    return data["rows"]


def _vs_random(r: dict[str, Any], random_rows: dict[tuple[str, int], dict[str, Any]]) -> str:
    """Points above the random-real row of the same (dataset, IPC); '*' marks a lead larger than
    the two standard deviations combined (the bar the quality criterion sets)."""
    base = random_rows.get((r["dataset"], r.get("ipc") or 0))
    if base is None or r["method"] in ("random", "full") or "error" in base:
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
    if method == "full":
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
    return text


def markdown_table(suite: Suite, data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    models = ", ".join(f"{ds}: {name}" for ds, name in suite.models.items())
    lines = [
        f"Suite `{suite.name}`: protocol `{suite.protocol}`"
        + (f" with {suite.epochs} epochs" if suite.epochs else "")
        + f", {suite.runs} runs per cell, final-epoch test accuracy (%) mean ± std"
        + (f"; evaluation model per dataset: {models} (others: the protocol's)" if models else "")
        + "."
        + _full_epochs_text(suite)
        + " `vs random`: points above random real images of the same IPC; `*` = by more than the"
        " two standard deviations combined.",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}.",
        "",
    ]
    lines[1:1] = _budget_lines(suite)
    published = bool(suite.published)
    lines += [
        "| dataset | IPC | method | iterations | accuracy (%) |"
        + (" published |" if published else "")
        + " vs random | eval model | distill s | eval s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if published else ""),
    ]
    order = {name: i for i, name in enumerate(["full"])}
    rows = sorted(
        data["rows"],
        key=lambda r: (r["dataset"], r.get("ipc") or 0, order.get(r["method"], 1), r["method"]),
    )
    random_rows = {(r["dataset"], r.get("ipc") or 0): r for r in rows if r["method"] == "random"}
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['dataset']} | {r.get('ipc') or 'all'} | {r['method']} | – | error: {r['error'][:60]} "
                "| | | | | |" + (" |" if published else "")
            )
            continue
        paper = suite.published.get((r["dataset"], r["method"], r.get("ipc") or 0))
        lines.append(
            f"| {r['dataset']} | {r['ipc'] or 'all'} | {r['method']} | {r['iterations']} | "
            f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
            + (f"{paper if paper is not None else '–'} | " if published else "")
            + f"{_vs_random(r, random_rows)} | {r.get('model', '?')} | "
            f"{r['distill_seconds']:.1f} | {r['eval_seconds']:.1f} | {r['peak_distill_mb']:.0f} |"
        )
    done = {(r["dataset"], r["method"], r.get("ipc") or 0) for r in data["rows"]}
    finished = [r for r in data["rows"] if "error" not in r]
    pending = []
    for ds, m, ipc in cells(suite):
        if (ds, m, ipc) in done:
            continue
        eta = estimate_seconds(suite, finished, ds, m, ipc)
        pending.append(
            (f"{ds} full data" if m == "full" else f"{ds} IPC {ipc} {m}")
            + (f" (~{_hours(eta)})" if eta is not None else "")
        )
    if pending:
        lines += [
            "",
            f"Not run yet ({len(pending)} cells; `ddkit bench --suite {suite.name}` continues): "
            + ", ".join(pending)
            + ". Times in brackets are rough estimates on this machine from the finished cells "
            "of the same dataset (evaluation: their seconds per network, epoch and image; "
            "distillation: the same method's seconds per iteration at the nearest finished IPC, "
            "scaled by the IPC ratio).",
        ]
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


def estimate_seconds(
    suite: Suite, finished: list[dict[str, Any]], dataset: str, method: str, ipc: int
) -> float | None:
    """A rough CPU-time estimate of an unfinished cell from the finished rows of the same
    dataset (see :func:`markdown_table`); ``None`` when nothing comparable has finished."""
    import statistics

    same_data = [r for r in finished if r["dataset"] == dataset and r.get("accuracies")]
    synthetic = [r for r in same_data if r["method"] != "full" and r.get("ipc")]
    if method == "full" or not synthetic:
        return None
    # seconds per network, epoch and image, from the finished cells of the nearest IPC (a larger
    # set trains in larger batches, which cost less per image)
    nearest = min(abs(r["ipc"] - ipc) for r in synthetic)
    rate = statistics.median(
        r["eval_seconds"] / (r["epochs"] * r["num_images"] * len(r["accuracies"]))
        for r in synthetic
        if abs(r["ipc"] - ipc) == nearest
    )
    classes = synthetic[0]["num_images"] // synthetic[0]["ipc"]
    epochs = next((r["epochs"] for r in synthetic), 0)
    seconds = rate * epochs * ipc * classes * suite.runs
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
    return seconds + statistics.median(selectors)


def write_markdown(path: Path, suite: Suite, data: dict[str, Any]) -> None:
    """Replace the suite's section of ``path`` (between marker comments) with a fresh table."""
    start, end = f"<!-- bench:{suite.name}:start -->", f"<!-- bench:{suite.name}:end -->"
    block = f"{start}\n{markdown_table(suite, data)}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        post = rest.split(end, 1)[1]
        text = pre + block + post
    else:
        text = text.rstrip() + f"\n\n## Suite `{suite.name}`\n\n{block}\n"
    atomic_write_bytes(path, text.encode())
