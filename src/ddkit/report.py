"""One self-contained HTML page per run folder (what was run, the images, the learning curve,
synthetic beside real images, every evaluation found there) or per results file (a suite's
table and its accuracy charts, an audit's metrics, an evaluation report's accuracies); images
embedded, no network access needed."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import warnings
from pathlib import Path
from typing import Any

from ddkit.errors import ConfigError, FileFormatError
from ddkit.io import atomic_write_bytes, read_json, read_regular_file, shown_path
from ddkit.plots import is_number

#: the most a figure or a run file may weigh to be embedded or read (a run's are far smaller)
MAX_FIGURE_BYTES = 32 * 2**20
MAX_JSON_BYTES = 64 * 2**20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_FINAL_EPOCH_NOTE = (
    "<p class=note>Final-epoch test accuracy of fresh networks; nothing chosen on the test "
    "split.</p>"
)

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left}th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee}
.note{color:#666;font-size:.85em}figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
"""


def _img(path: Path, caption: str) -> str:
    """``path`` embedded as a figure: only a regular PNG file (no link, FIFO or device) of at
    most :data:`MAX_FIGURE_BYTES`; anything else is left out with a warning."""
    try:
        raw = read_regular_file(path, max_bytes=MAX_FIGURE_BYTES, magic=PNG_MAGIC)
    except FileFormatError as e:
        warnings.warn(f"{path.name} not embedded: {e}", stacklevel=2)
        return ""
    data = base64.b64encode(raw).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption class=note>{html.escape(caption)}</figcaption></figure>"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _evaluations(folder: Path) -> str:
    """Tables of ``eval.json`` (one report) and ``demo.json`` (``{name: report}``)."""
    parts = []
    for name in ("eval.json", "demo.json"):
        path = folder / name
        if not os.path.lexists(path):
            continue
        try:
            data = read_json(path, max_bytes=MAX_JSON_BYTES)
        except FileFormatError as e:
            warnings.warn(f"{name} not read: {e}", stacklevel=2)
            continue
        reports = {name: data} if _is_eval_report(data) else _labelled_reports(data)
        if not isinstance(reports, dict):
            warnings.warn(f"{name} not read: it is not a JSON object of reports", stacklevel=2)
            continue
        parts.append(_evaluation_tables(reports))
    if not parts:
        return "<p class=note>No evaluation yet: <code>ddkit evaluate RUN</code> writes one.</p>"
    return "".join(parts) + _FINAL_EPOCH_NOTE


def _labelled_reports(data: Any) -> dict[str, Any] | None:
    """``{label: report}`` from a file of labelled evaluations (``demo.json``): a label's value
    is a report, a list of reports (draws: ``label 1``, ``label 2``, ...) or a recorded bench
    row (``{"row": ..., "source": ...}``, shown as a report of its accuracies); other values
    (flags, compute) are no evaluation. ``None`` for a file that is no JSON object."""
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for label, value in data.items():
        if _is_eval_report(value):
            out[label] = value
        elif isinstance(value, list):
            draws = [v for v in value if _is_eval_report(v)]
            for i, report in enumerate(draws):
                out[label if len(draws) == 1 else f"{label} {i + 1}"] = report
        elif isinstance(_object(value).get("row"), dict):
            row = value["row"]
            protocol = {"name": row.get("protocol", "?"), "epochs": row.get("epochs", "?")}
            result = {"model": row.get("model", "?"), "accuracies": row.get("accuracies")}
            out[label] = {"protocol": protocol, "results": [result]}
    return out


def _is_eval_report(data: Any) -> bool:
    """Whether ``data`` is one ``ddkit evaluate`` report (an object with its results)."""
    return isinstance(data, dict) and "results" in data


def _evaluation_tables(reports: dict[str, Any]) -> str:
    """The accuracy table of ``{label: evaluation report}``, and the per-group table of the
    results that carry group accuracy."""
    pairs = [(label, rep, r) for label, rep in reports.items() for r in _results(rep)]
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "set", "model", "protocol", "epochs", "runs", "mean (%)", "each run (%)",
            "stored bytes", "of which labels",
        )
    )  # fmt: skip
    rows = "".join(_eval_row(*pair) for pair in pairs)
    return f"<table><tr>{head}</tr>{rows}</table>{_group_table(pairs)}"


def _results(report: Any) -> list[dict[str, Any]]:
    """The result records of one evaluation report (those that are JSON objects)."""
    results = report.get("results") if isinstance(report, dict) else None
    return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []


def _eval_row(label: str, report: dict[str, Any], result: dict[str, Any]) -> str:
    """One table row: a result's model, protocol and accuracies (numbers only)."""
    p = report.get("protocol") if isinstance(report.get("protocol"), dict) else {}
    accs = result.get("accuracies") if isinstance(result.get("accuracies"), list) else []
    accs = [float(a) for a in accs if isinstance(a, int | float) and not isinstance(a, bool)]
    mean = 100 * sum(accs) / max(len(accs), 1)
    parts = _object(_object(report.get("meta")).get("bytes"))
    stored, labels = parts.get("total"), parts.get("labels")
    cells = (label, result.get("model", "?"), p.get("name", "?"), p.get("epochs", "?"), len(accs),
             f"{mean:.2f}", ", ".join(f"{100 * a:.2f}" for a in accs),
             f"{stored:,}" if is_number(stored) else "",
             f"{labels:,}" if is_number(labels) else "")  # fmt: skip
    return "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in cells) + "</tr>"


def _group_table(pairs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    """Per-group accuracy (``ddkit evaluate --groups`` on a biased dataset) of the results that
    carry it: unbiased, bias-aligned, bias-conflicting and worst-group, mean ± std in %."""
    from ddkit.eval.groups import GROUP_METRICS

    rows = []
    for label, _, result in pairs:
        groups = _object(result.get("groups"))
        if not groups:
            continue
        cells = [label, result.get("model", "?")]
        for metric in GROUP_METRICS:
            summary = _object(groups.get(metric))
            mean, std = summary.get("mean"), summary.get("std")
            shown = is_number(mean) and is_number(std)
            cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}" if shown else "")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    names = [m.replace("_", " ") for m in GROUP_METRICS]
    head = "".join(f"<th>{h}</th>" for h in ("set", "model", *names))
    return (
        f"<h3>Accuracy per group (%)</h3><table><tr>{head}</tr>{''.join(rows)}</table>"
        "<p class=note>Unbiased: the mean over the test split's (class, attribute) groups; "
        "aligned / conflicting: rows whose attribute is / is not their class's majority one in "
        "training; worst group: the lowest group.</p>"
    )


#: how every page ddkit writes begins, up to its title, and what follows the title: the marks
#: by which ``ddkit report --out`` knows a page of its own (:func:`ddkit.io.starts_with`)
PAGE_START = "<!doctype html><html><head><meta charset=utf-8><title>"
PAGE_HEAD = "</title><style>"


def _page(title: str, heading: str, body: str) -> bytes:
    return (
        f"{PAGE_START}{html.escape(title)}{PAGE_HEAD}"
        f"{_STYLE}</style></head><body><h1>{html.escape(heading)}</h1>{body}</body></html>"
    ).encode()


def report_path(run: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Where :func:`write_report` writes ``run``'s page: ``out`` (a file, or a folder to hold
    the page under its default name), else beside the results file (``.html``) or in the run
    folder (``report.html``)."""
    run = Path(run)
    is_results = run.is_file() and run.suffix == ".json"
    return _html_target(out, run.with_suffix(".html") if is_results else run / "report.html")


def _html_target(out: str | os.PathLike | None, default: Path) -> Path:
    """Where a page is written: ``out``, or ``default``; an ``out`` that is an existing folder
    gets ``default``'s file name inside it."""
    if out is None:
        return default
    return Path(out) / default.name if Path(out).is_dir() else Path(out)


def write_suite_report(results: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write an HTML page for a ``ddkit bench`` results file (``out``, default the file with
    ``.html``): the rows as a table beside random real images of the same IPC, accuracy against
    IPC and against stored bytes; returns its path."""
    import tempfile

    from ddkit import plots
    from ddkit.bench.results import check_results_shape

    path = Path(results)
    data = read_json(path, max_bytes=MAX_JSON_BYTES)
    check_results_shape(data, path)
    rows = [r for r in data["rows"] if plots.shown_row(r)]
    if not rows:
        raise ConfigError(f"{str(path)!r} has no finished rows yet")
    suite = str(data.get("suite", path.stem))
    rows.sort(key=lambda r: (r["dataset"], r["ipc"] is None, r["ipc"] or 0,
                             r["method"] != "random", r["method"]))  # fmt: skip
    rand = {(r["dataset"], r["ipc"]): r["mean"] for r in rows if r["method"] == "random"}
    head = ["dataset", "IPC", "method", "iterations", "accuracy (%)", "vs random", "stored bytes"]
    cells = []
    for r in rows:
        base = rand.get((r["dataset"], r["ipc"]))
        gap = "" if base is None or r["method"] == "random" else f"{100 * (r['mean'] - base):+.2f}"
        cells.append([r["dataset"], "all" if r["ipc"] is None else r["ipc"], r["method"], r.get("iterations", ""),
                      f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}", gap,
                      f"{r['storage_bytes']:,}" if r.get("storage_bytes") else ""])  # fmt: skip
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    table += "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in cells
    )
    table += "</table>"
    charts = []
    with tempfile.TemporaryDirectory(prefix="ddkit-report-") as tmp:
        plots.plot_accuracy_vs_ipc(rows, Path(tmp) / "ipc.png")
        charts.append(_img(Path(tmp) / "ipc.png", "test accuracy against images per class"))
        if any(r.get("storage_bytes") for r in rows):
            plots.plot_accuracy_vs_ipc(rows, Path(tmp) / "bytes.png", x="bytes")
            charts.append(_img(Path(tmp) / "bytes.png", "test accuracy against bytes stored"))
    machine = data.get("machine", {})
    body = (
        f"<p class=note>{html.escape(shown_path(path.resolve()))} · {len(rows)} finished rows · "
        f"machine: {html.escape(', '.join(f'{k} {v}' for k, v in machine.items()))}</p>"
        f"<h2>Accuracy</h2>{''.join(charts)}<h2>Rows</h2>{table}"
        "<p class=note>Final-epoch test accuracy of fresh networks, mean ± std over runs; "
        "vs random: points above random real images of the same IPC.</p>"
    )
    target = _html_target(out, path.with_suffix(".html"))
    atomic_write_bytes(target, _page(f"ddkit bench {suite}", f"ddkit bench: suite {suite}", body))
    return target


def _object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (a file of another shape)."""
    return value if isinstance(value, dict) else {}


def _metric_columns(result: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """``(header, metric, index)`` for every mean a set of an audit reports; a list-valued
    metric (one value per attack budget) gets a column per budget."""
    first = next(iter(result["sets"].values()))
    budgets = _object(result.get("budgets")).get("epsilons_255")
    budgets = budgets if isinstance(budgets, list) and all(map(is_number, budgets)) else None
    columns = []
    for metric, value in _object(first.get("mean")).items():
        if isinstance(value, list):
            labels = (
                [f"{e:g}/255" for e in budgets]
                if budgets and len(budgets) == len(value)
                else range(len(value))
            )
            columns += [(f"{metric} {label}", metric, i) for i, label in enumerate(labels)]
        else:
            columns.append((metric, metric, None))
    return columns


def _percent(mean: dict[str, Any], metric: str, index: int | None) -> str:
    """A mean metric (or its ``index``-th value) in %, blank where it is no number."""
    value = mean.get(metric)
    if index is not None:
        value = value[index] if isinstance(value, list) and index < len(value) else None
    return f"{100 * value:.2f}" if is_number(value) else ""


def write_audit_report(results: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write an HTML page for a ``ddkit audit`` results file (``out``, default the file with
    ``.html``): what produced it (seed, runs, protocol, budgets), each audited set's mean
    metrics (fractions shown in %), and the audit's chart when it lies beside the file."""
    path = Path(results)
    data = read_json(path, max_bytes=MAX_JSON_BYTES)
    sets = data.get("sets") if isinstance(data, dict) else None
    if (
        not isinstance(sets, dict)
        or not sets
        or not all(isinstance(v, dict) for v in sets.values())
    ):
        raise FileFormatError(
            f"{str(path)!r} is not a ddkit audit results file (no sets of named objects)"
        )
    columns = _metric_columns(data)
    head = "".join(
        f"<th>{html.escape(h)}</th>" for h in ("set", "images", *(c[0] for c in columns))
    )
    rows = []
    for name, row in sets.items():
        mean = _object(row.get("mean"))
        cells = [name, row.get("num_images", "")] + [_percent(mean, m, i) for _, m, i in columns]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    chart = path.with_suffix(".png")
    record = [(k, data.get(k)) for k in ("audit", "dataset", "seed", "runs", "ddkit_version")]
    record += [("protocol", _object(data.get("protocol")).get("name"))]
    record += sorted((f"budget {k}", v) for k, v in _object(data.get("budgets")).items())
    body = (
        f"<p class=note>{html.escape(shown_path(path.resolve()))}</p>"
        + (_img(chart, f"{data.get('audit')} audit") if os.path.lexists(chart) else "")
        + f"<h2>Sets (mean over networks, %)</h2><table><tr>{head}</tr>{''.join(rows)}</table>"
        + f"<h2>What produced it</h2>{_table(record)}"
    )
    target = _html_target(out, path.with_suffix(".html"))
    title = f"ddkit audit {data.get('audit', '')}"
    atomic_write_bytes(target, _page(title, title, body))
    return target


def write_eval_report(results: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write an HTML page for a ``ddkit evaluate --out FILE`` report (``out``, default the file
    with ``.html``): its accuracy per model, per group where it has them, and its recipe."""
    path = Path(results)
    data = _object(read_json(path, max_bytes=MAX_JSON_BYTES))
    record = sorted((f"protocol {k}", v) for k, v in _object(data.get("protocol")).items())
    record += [("seconds", data.get("seconds")), *sorted(_object(data.get("meta")).items())]
    body = (
        f"<p class=note>{html.escape(shown_path(path.resolve()))}</p>"
        f"<h2>Evaluation</h2>{_evaluation_tables({path.stem: data})}{_FINAL_EPOCH_NOTE}"
        f"<h2>What produced it</h2>{_table(record)}"
    )
    target = _html_target(out, path.with_suffix(".html"))
    title = f"ddkit evaluate: {path.stem}"
    atomic_write_bytes(target, _page(title, title, body))
    return target


def _auto_section(record: Any) -> str:
    """A ``--method auto`` run's decision (:mod:`ddkit.methods.auto.record`): what was compared
    on what, every candidate's row and the choice; nothing for other runs."""
    if not isinstance(record, dict):
        return ""
    from ddkit.methods.auto.record import COLUMNS, heading, row_cells

    rows = [r for r in record.get("candidates", []) if isinstance(r, dict)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row_cells(r)) + "</tr>" for r in rows
    )
    return (
        f"<h2>How the method was chosen</h2><p>{html.escape(heading(record))}</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        f"<p>{html.escape(str(record.get('why', '')))}</p>"
    )


def write_report(run: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``run/report.html`` (or ``out``) for a run folder and return its path. Charts that
    are missing are drawn first (learning curve, synthetic vs real when the data is at hand).
    A ``.json`` results file gets the page of its kind: a ``ddkit bench`` suite's
    (:func:`write_suite_report`), a ``ddkit audit``'s (:func:`write_audit_report`) or a
    ``ddkit evaluate --out`` report's (:func:`write_eval_report`)."""
    from ddkit import plots

    if Path(run).is_file() and Path(run).suffix == ".json":
        data = _object(read_json(Path(run), max_bytes=MAX_JSON_BYTES))
        if "audit" in data:
            return write_audit_report(run, out)
        if "rows" in data:
            return write_suite_report(run, out)
        if _is_eval_report(data):
            return write_eval_report(run, out)
        raise FileFormatError(
            f"{str(run)!r} is no results file ddkit report reads: give a run folder, a ddkit "
            "bench suite's results, a ddkit audit's results or a ddkit evaluate --out report"
        )
    folder = Path(run)
    if not (folder / "config.json").is_file() or not (folder / "synthetic").is_dir():
        raise ConfigError(f"{str(folder)!r} is not a run folder (no config.json / synthetic/)")
    config = read_json(folder / "config.json", max_bytes=MAX_JSON_BYTES)
    if not isinstance(config, dict):
        raise FileFormatError(f"{str(folder / 'config.json')!r} is not a run config (an object)")
    log = folder / "log.jsonl"
    logged = plots.read_log(log) if log.is_file() else []
    if not os.path.lexists(folder / "curve.png") and any(len(row) > 1 for row in logged):
        plots.plot_learning_curve(log, folder / "curve.png")
    title = f"{config.get('method')} on {config.get('dataset')}, IPC {config.get('ipc')}"
    shown = ("dataset", "method", "ipc", "iterations", "seed", "root")
    settings = [(k, config.get(k)) for k in shown]
    options = config.get("method_config")
    options = options if isinstance(options, dict) else {}
    # once, as run: the run's own iterations stand for the method's default budget
    settings += sorted((f"option {k}", v) for k, v in options.items() if k not in shown)
    figures = [
        (name, caption)
        for name, caption in (
            ("grid.png", "synthetic images, one row per class"),
            ("compare.png", "synthetic (left) beside random real images (right)"),
            ("curve.png", "distillation loss per iteration"),
            ("accuracy.png", "test accuracy"),
        )
        if os.path.lexists(folder / name)
    ]
    page = (
        f"{PAGE_START}{html.escape(title)}{PAGE_HEAD}"
        f"{_STYLE}</style></head><body><h1>ddkit run: {html.escape(title)}</h1>"
        f"<p class=note>{html.escape(shown_path(folder.resolve()))} · written "
        f"{_dt.datetime.now().isoformat(timespec='seconds')} · ddkit "
        f"{html.escape(str(config.get('ddkit_version', '?')))}</p>"
        f"<h2>Images</h2>{''.join(_img(folder / n, c) for n, c in figures)}"
        f"<h2>Evaluation</h2>{_evaluations(folder)}"
        f"{_auto_section(config.get('auto'))}"
        f"<h2>Settings</h2>{_table(settings)}"
        "</body></html>"
    )
    path = report_path(folder, out)
    atomic_write_bytes(path, page.encode())
    return path
