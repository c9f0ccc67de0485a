"""`ddkit report`: one self-contained HTML page per run folder."""

from __future__ import annotations

import re

import pytest

from ddkit.cli import main


def test_report_embeds_images_evaluations_and_settings(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet"]
    assert main([*args, "--iterations", "4", "--set", "batch_real=8", "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--protocol", "smoke", "--runs", "2", "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "dm on digits, IPC 1" in page and "smoke" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # grid, learning curve
    assert "http://" not in page and "https://" not in page  # viewable offline
    assert re.search(r"<th>option batch_real</th><td>8</td>", page)
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def _bench_rows() -> dict:
    def row(method, ipc, mean, **extra):
        return {"dataset": "digits", "method": method, "ipc": ipc, "mean": mean, "std": 0.01,
                "iterations": 0, **extra}  # fmt: skip

    return {
        "suite": "quick",
        "machine": {"cores": 2},
        "rows": [
            row("random", 1, 0.7, storage_bytes=2600),
            row("dm", 1, 0.8512, storage_bytes=2600),
            row("random", 10, 0.87, storage_bytes=26000),
            row("dm", 10, 0.9, storage_bytes=26000),
            row("full", None, 0.99),
            {"dataset": "digits", "method": "dc", "ipc": 1, "error": "stopped"},
        ],
    }


def test_report_of_a_bench_results_file(tmp_path, capsys):
    import json

    results = tmp_path / "quick.json"
    results.write_text(json.dumps(_bench_rows()))
    assert main(["report", str(results)]) == 0
    page = (tmp_path / "quick.html").read_text()
    assert "suite quick" in page and "5 finished rows" in page
    assert "85.12 ± 1.00" in page and "+15.12" in page  # dm IPC 1 beside random
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # vs IPC, vs bytes
    results.write_text(json.dumps({"rows": [{"dataset": "digits", "error": "x"}]}))
    assert main(["report", str(results)]) == 2
    assert "no finished rows" in capsys.readouterr().err


def test_a_report_out_that_is_a_folder_gets_the_page_inside(tmp_path, capsys):
    """``--out DIR`` failed with "Is a directory: DIR/.x.tmp" (issue 42's leftovers)."""
    import json

    results, folder = tmp_path / "quick.json", tmp_path / "pages"
    results.write_text(json.dumps(_bench_rows()))
    folder.mkdir()
    assert main(["report", str(results), "--out", str(folder)]) == 0
    assert "suite quick" in (folder / "quick.html").read_text()
    assert main(["report", str(results), "--out", str(folder / "named.html")]) == 0
    assert (folder / "named.html").is_file()


def test_accuracy_chart_names_its_axis(tmp_path, monkeypatch):
    import matplotlib.axes

    from ddkit.plots import plot_accuracy_vs_ipc

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel", lambda ax, text: labels.append(text))
    rows = _bench_rows()["rows"]
    plot_accuracy_vs_ipc(rows, tmp_path / "ipc.png")
    plot_accuracy_vs_ipc(rows, tmp_path / "bytes.png", x="bytes")
    assert labels == ["images per class", "bytes stored"]


def test_an_audit_results_file_gets_its_page(tmp_path):
    from ddkit.cli import main

    out = tmp_path / "audit"
    argv = ["audit", "adversarial", "--dataset", "digits", "--methods", "dm", "--ipc", "2",
            "--iterations", "1", "--protocol", "smoke", "--epsilons", "0,8/255", "--steps", "2",
            "--max-test", "20", "--no-full", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert main(["report", str(out / "adversarial.json")]) == 0
    page = (out / "adversarial.html").read_text()
    assert "dm/ipc2" in page and "pgd 8/255" in page and "data:image/png;base64" in page
    (out / "adversarial.png").unlink()
    (out / "adversarial.png").symlink_to(tmp_path / "elsewhere.png")
    (tmp_path / "elsewhere.png").write_bytes(b"private")
    assert main(["report", str(out / "adversarial.json")]) == 0
    assert "data:image/png;base64" not in (out / "adversarial.html").read_text()


# ------------------------------------------------------------------ only regular files inside
def _bare_run(tmp_path, **config):
    run = tmp_path / "run"
    (run / "synthetic").mkdir(parents=True)
    (run / "config.json").write_text(json_text({"dataset": "digits", "method": "dm", **config}))
    return run


def json_text(obj) -> str:
    import json

    return json.dumps(obj)


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def test_report_embeds_no_link_no_special_no_huge_and_no_non_png_file(tmp_path, capsys):
    import os

    run = _bare_run(tmp_path)
    secret = tmp_path / "private.png"
    secret.write_bytes(PNG + b"my private key")
    (run / "grid.png").symlink_to(secret)  # a run folder received from someone else
    os.mkfifo(run / "compare.png")  # reading it would hang
    with open(run / "curve.png", "wb") as f:  # 4 GiB, sparse: reading it would take the memory
        f.truncate(4 * 2**30)
    (run / "accuracy.png").write_text("<script>not a picture</script>")
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "data:image/png;base64" not in page
    err = capsys.readouterr().err
    for name in ("grid.png", "compare.png", "curve.png", "accuracy.png"):
        assert name in err and "not embedded" in err
    (run / "grid.png").unlink()
    (run / "grid.png").write_bytes(PNG)
    assert main(["report", str(run)]) == 0
    assert page.count("data:image/png") + 1 == (run / "report.html").read_text().count(
        "data:image/png"
    )


def test_report_reads_no_linked_run_file(tmp_path, capsys):
    run = _bare_run(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json_text({"results": [{"model": "SECRET", "accuracies": [0.5]}]}))
    (run / "eval.json").symlink_to(elsewhere)
    assert main(["report", str(run)]) == 0
    assert "SECRET" not in (run / "report.html").read_text()
    assert "eval.json" in capsys.readouterr().err
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(elsewhere)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [("eval.json", []), ("eval.json", {"results": 3}), ("eval.json", {"results": [1, "x"]}),
     ("demo.json", {"a": 1}), ("config.json", []), ("config.json", {"method_config": [1]}),
     ("eval.json", {"results": [{"accuracies": ["x", None]}], "protocol": 4})],
)  # fmt: skip
def test_report_survives_wrong_json_shapes_in_run_files(tmp_path, capsys, name, content):
    run = _bare_run(tmp_path)
    (run / name).write_text(json_text(content))
    code = main(["report", str(run)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1
    if code == 2:
        assert name in err


@pytest.mark.parametrize(
    "lines",
    [["[1, 2]"], ['{"iteration": "x", "loss": 1}'], ['{"iteration": 0, "loss": "high"}'], ["3"],
     ['{"iteration": 0, "loss": 1.5}', '{"iteration": 1, "loss": {"a": 1}}']],
)  # fmt: skip
def test_a_log_of_the_wrong_shape_ends_where_the_records_end(tmp_path, capsys, lines):
    run = _bare_run(tmp_path)
    (run / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    assert main(["report", str(run)]) == 0
    code = main(["plot", "curve", str(run)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1
    assert code == (0 if len(lines) == 2 else 2)


def test_a_run_folder_whose_name_is_not_utf8_loads_evaluates_and_reports(tmp_path, capsys):
    import os

    run = tmp_path / os.fsdecode(b"run-\xff")  # a legal Linux name that ddkit itself writes
    args = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]
    assert main([*args, "--out", str(run)]) == 0
    assert main(["evaluate", str(run), "--protocol", "smoke", "--runs", "1", "--quiet"]) == 0
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "error" not in err, err
    assert "run-" in (run / "report.html").read_text()


@pytest.mark.parametrize(
    "sets",
    [{"a": 3}, {"a": {"mean": 3}}, {"a": {"mean": {"acc": "x", "asr": [None, "y"]}}},
     {"a": {"mean": {"acc": 0.5}}, "b": {"mean": {"acc": [0.1]}, "num_images": {}}}],
)  # fmt: skip
def test_an_audit_results_file_of_the_wrong_shape_gets_a_page_or_one_line(tmp_path, capsys, sets):
    path = tmp_path / "audit.json"
    path.write_text(json_text({"audit": "x", "sets": sets, "budgets": {"epsilons_255": "z"}}))
    code = main(["report", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "unexpected" not in err and len(err.strip().splitlines()) <= 1, err


def test_report_shows_group_accuracy_of_an_evaluation_on_a_biased_dataset(tmp_path):
    """``ddkit evaluate --groups`` writes per-group figures; the run's page shows them (mean ±
    std in %), and a page of an evaluation without groups has no such table."""
    import json

    out = tmp_path / "run"
    args = ["distill", "--dataset", "digits", "--method", "random", "--ipc", "1", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--protocol", "smoke", "--runs", "2", "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    assert "Accuracy per group" not in (out / "report.html").read_text()
    report = json.loads((out / "eval.json").read_text())
    summary = {"accuracies": [0.1, 0.3], "mean": 0.2, "std": 0.1}
    report["results"][0]["groups"] = {
        "unbiased": summary, "aligned": {**summary, "mean": 0.985}, "worst_group": summary,
    }  # fmt: skip
    (out / "eval.json").write_text(json.dumps(report))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Accuracy per group" in page
    assert re.search(r"<td>20\.00 ± 10\.00</td><td>98\.50 ± 10\.00</td><td></td>", page)
    # the same report as an evaluate --out file gets a page of its own
    (tmp_path / "eval-out.json").write_text(json.dumps(report))
    assert main(["report", str(tmp_path / "eval-out.json")]) == 0
    page = (tmp_path / "eval-out.html").read_text()
    assert "Accuracy per group" in page and "smoke" in page and "protocol epochs" in page


def test_report_refuses_a_json_file_of_no_known_kind_in_one_line(tmp_path, capsys):
    (tmp_path / "other.json").write_text('{"something": 1}')
    assert main(["report", str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results file ddkit report reads" in err[0]
    assert "--fresh" not in err[0]


def test_report_shows_the_demos_evaluations_and_each_setting_once(tmp_path):
    """demo.json labels lists of reports (the random draws) and a recorded full-data row; each
    becomes a row of the evaluation table. The run's iterations are shown, not also the method's
    default budget as an option."""
    from ddkit.report import write_report

    run = _bare_run(tmp_path, iterations=20, method_config={"iterations": 1000, "lr_img": 0.1})
    report = {"protocol": {"name": "fast", "epochs": 100},
              "results": [{"model": "convnet", "accuracies": [0.5, 0.7]}]}  # fmt: skip
    full = {"row": {"protocol": "dsa", "epochs": 300, "model": "convnet", "accuracies": [0.99]}}
    demo = {"dsa (distilled)": [report], "random real": [report, report],
            "full train set (recorded)": full, "beats_random_beyond_spreads": True}  # fmt: skip
    (run / "demo.json").write_text(json_text(demo))
    page = write_report(run).read_text()
    for label in ("dsa (distilled)", "random real 1", "random real 2", "full train set (recorded)"):
        assert f"<td>{label}</td>" in page
    assert "<td>60.00</td>" in page and "<td>99.00</td>" in page
    assert "<th>iterations</th><td>20</td>" in page and "option iterations" not in page
    assert "<th>option lr_img</th><td>0.1</td>" in page
