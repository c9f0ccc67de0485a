"""Benchmark harness: per-IPC budgets, filters, resumable results, the Markdown table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddkit.bench import SUITES, CellSelection, Suite, run_suite
from ddkit.bench.cells import Cell
from ddkit.bench.runner import markdown_table
from ddkit.cli import main


def test_budget_per_method_and_ipc():
    s = Suite(
        name="b",
        datasets=("digits",),
        ipcs=(1, 10),
        protocol="smoke",
        iterations={"dc": {1: 7, 10: 3}, "dm": 11},
        default_iterations=5,
    )
    assert s.budget("dc", 1, 1000) == 7
    assert s.budget("dc", 10, 1000) == 3
    assert s.budget("dc", 50, 1000) == 5  # unlisted IPC: like an unlisted method
    assert s.budget("dm", 50, 1000) == 11
    assert s.budget("idm", 1, 2) == 2  # a method's own default when below default_iterations


def test_suite_options_are_the_options_a_suites_cell_uses(tiny_suite):
    from ddkit.bench.suites import suite_options
    from ddkit.errors import UnknownNameError

    suite = SUITES.get(tiny_suite)
    assert suite_options(None, "dm", 1) == {}
    assert suite_options(tiny_suite, "dm", 1) == suite.options_for("dm", 1)
    # the paper suite's kip: learned labels everywhere, KIP's ConvNet kernel only at IPC 1
    assert suite_options("paper", "kip", 1)["architecture"] == "convnet"
    assert "architecture" not in suite_options("paper", "kip", 10)
    assert suite_options("paper", "kip", 10)["learn_labels"] is True
    with pytest.raises(UnknownNameError, match="unknown suite"):
        suite_options("no-such-suite", "dm", 1)


def test_budget_overrides_per_dataset():
    s = Suite(
        name="b",
        datasets=("digits", "mnist5k"),
        ipcs=(1, 10),
        protocol="smoke",
        iterations={"dm": {1: 20, 10: 10}},
        dataset_iterations={"mnist5k": {"dm": {1: 4}}},
    )
    assert s.budget("dm", 1, 1000, "mnist5k") == 4
    assert s.budget("dm", 10, 1000, "mnist5k") == 10  # IPC not overridden: the suite-wide budget
    assert s.budget("dm", 1, 1000, "digits") == 20
    assert s.budget("dm", 1, 1000) == 20


@pytest.fixture
def tiny_suite():
    name = "pytest-tiny"
    suite = Suite(
        name=name,
        datasets=("digits",),
        ipcs=(1, 2),
        protocol="smoke",
        runs=2,
        methods=("random", "herding"),
        full_data=False,
        models={"digits": "convnet2-w8"},
    )
    if name not in SUITES.names():
        SUITES.add(name, suite, help="test suite")
    return name


def test_run_suite_filters_resumes_and_writes_the_table(tmp_path, tiny_suite):
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nkept text\n")
    logs: list[str] = []
    rows = run_suite(
        tiny_suite,
        results_dir=tmp_path,
        markdown=md,
        select=CellSelection(["random"], ipcs=[1]),
        log=logs.append,
    )
    assert [(r["method"], r["ipc"]) for r in rows] == [("random", 1)]
    row = rows[0]
    assert (
        row["model"] == "convnet2-w8" and len(row["accuracies"]) == 2 and 0.0 <= row["mean"] <= 1.0
    )
    saved = json.loads((tmp_path / f"{tiny_suite}.json").read_text())
    assert saved["rows"][0]["accuracies"] == row["accuracies"]
    text = md.read_text()
    assert "kept text" in text and "| digits | 1 | random | 0 |" in text
    assert "Not run yet (3 cells" in text and "digits IPC 2 herding" in text

    logs.clear()
    rows = run_suite(tiny_suite, results_dir=tmp_path, markdown=md, select=CellSelection(ipcs=[1]),
                     log=logs.append)  # fmt: skip
    assert [r["method"] for r in rows] == ["random", "herding"]  # random was not run again
    assert sum("random" in line for line in logs if line.startswith("[bench")) == 0


def test_two_processes_share_one_results_file(tmp_path, tiny_suite):
    """A second `ddkit bench` on the same suite skips the cell a live process claimed, takes over
    a dead process's claim, and keeps the rows another process wrote while it ran."""
    import subprocess

    from ddkit.bench.results import _boot_id, read_results, results_lock, write_results

    suite = SUITES.get(tiny_suite)
    path = tmp_path / f"{tiny_suite}.json"
    other = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    running = {
        "digits/random/1": other.pid,  # a whole cell, claimed by a live process
        "digits/herding/1/distill": {"pid": dead.pid, "boot": _boot_id()},
        "digits/herding/1/eval0": {"pid": other.pid, "boot": "another machine"},
    }
    try:
        path.write_text(json.dumps({"suite": tiny_suite, "rows": [], "running": running}))
        foreign = {"dataset": "digits", "method": "herding", "ipc": 2, "error": "stand-in row"}

        def log(line: str) -> None:  # another process finishes a cell while this one runs
            if line.startswith("[bench") and "IPC 1 herding: distill" in line:
                with results_lock(path):
                    data = read_results(path, suite)
                    data["rows"].append(foreign)
                    write_results(path, data)

        rows = run_suite(tiny_suite, results_dir=tmp_path, markdown=None, log=log)
    finally:
        other.kill()
        other.wait()
    cells = {(r["method"], r["ipc"]) for r in rows}
    # random 1 is left to its live owner; herding 2 came from the other process
    assert cells == {("herding", 1), ("random", 2), ("herding", 2)}
    assert next(r for r in rows if r["ipc"] == 2 and r["method"] == "herding") == foreign
    saved = json.loads(path.read_text())
    assert saved["running"] == {"digits/random/1": other.pid}  # the live claim stays, not run


def test_an_interrupted_cell_resumes_its_unfinished_units(tmp_path):
    """A cell is distil + one unit per evaluation network: a distillation killed after a
    checkpoint continues from it, finished networks are not trained again, and the row is the
    one an uninterrupted run writes."""
    from ddkit.bench.cells import cell_folder
    from ddkit.methods import Callback
    from ddkit.runs import DistillRequest, StepSeconds, distill_run

    suite = Suite(
        name="pytest-units",
        datasets=("digits",),
        ipcs=(1,),
        protocol="smoke",
        runs=2,
        methods=("dm",),
        iterations={"dm": 6},
        options={"dm": {"model": "convnet2-w8"}},
        full_data=False,
        models={"digits": "convnet2-w8"},
    )
    straight = run_suite(suite, results_dir=tmp_path / "a", markdown=None, log=lambda _: None)

    cell = Cell("digits", "dm", 1)
    folder = cell_folder(tmp_path / "b", suite, cell)

    class Killed(Callback):  # the unit dies in its 5th iteration, after the checkpoint at 3
        def on_step_end(self, method, iteration, metrics):
            if iteration == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill_run(
            DistillRequest("digits", "dm", 1, iterations=6, options=suite.options["dm"]),
            folder / "distill",
            checkpoint_every=3,
            callbacks=[StepSeconds(folder / "step_seconds.jsonl"), Killed()],
        )
    pending = markdown_table(suite, {"rows": []}, tmp_path / "b")
    assert "digits IPC 1 dm (3 of 6 iterations, 0 of 2 networks" in pending
    logs: list[str] = []
    resumed = run_suite(suite, results_dir=tmp_path / "b", markdown=None, log=logs.append)
    units = [line.rsplit(": ", 1)[1] for line in logs if line.startswith("[bench")]
    assert units == ["distill ...", "eval0 ...", "eval1 ..."]
    assert json.loads((folder / "distill.json").read_text())["resumed"] is True
    assert not (folder / "distill" / "checkpoint").exists()  # removed once the set is saved
    assert resumed[0]["accuracies"] == straight[0]["accuracies"]
    assert resumed[0]["iterations"] == 6

    (folder / "eval1.json").unlink()  # as if killed while training the second network
    data = json.loads((tmp_path / "b" / "pytest-units.json").read_text())
    data["rows"] = []
    (tmp_path / "b" / "pytest-units.json").write_text(json.dumps(data))
    assert "digits IPC 1 dm (1 of 2 networks; ~" in markdown_table(suite, data, tmp_path / "b")
    logs.clear()
    again = run_suite(suite, results_dir=tmp_path / "b", markdown=None, log=logs.append)
    assert [line for line in logs if line.startswith("[bench")] == [
        "[bench pytest-units] digits IPC 1 dm: eval1 ..."
    ]
    assert again[0]["accuracies"] == straight[0]["accuracies"]


def test_split_evaluation_gives_each_network_its_whole_run_accuracy():
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.errors import ConfigError
    from ddkit.eval import RunPlan, evaluate

    splits = load_dataset("digits")
    syn = SyntheticSet.from_real(splits.train, torch.arange(20))
    recipe = {"runs": 3, "epochs": 30, "seed": 5, "models": ["convnet2-w8"]}
    whole = evaluate(syn, splits.test, "smoke", **recipe)
    parts = [
        evaluate(syn, splits.test, "smoke", **recipe, plan=RunPlan(run_indices=[k]))
        for k in (2, 0, 1)
    ]
    by_run = {p.results[0].seeds[0]: p.results[0].accuracies[0] for p in parts}
    assert [by_run[s] for s in whole.results[0].seeds] == whole.results[0].accuracies
    with pytest.raises(ConfigError, match="run_indices"):
        evaluate(syn, splits.test, "smoke", runs=3, models=["convnet2-w8"],
                 plan=RunPlan(run_indices=[3]))  # fmt: skip


def test_vs_random_column_marks_clear_leads():
    suite = Suite(
        name="t",
        datasets=("d",),
        ipcs=(1,),
        protocol="smoke",
        methods=("random", "a", "b"),
        full_data=False,
    )
    base = {
        "dataset": "d",
        "ipc": 1,
        "iterations": 0,
        "distill_seconds": 0.0,
        "eval_seconds": 0.0,
        "peak_distill_mb": 0.0,
        "model": "m",
    }
    data = {
        "rows": [
            {**base, "method": "random", "mean": 0.50, "std": 0.01, "accuracies": [0.5]},
            {**base, "method": "a", "mean": 0.60, "std": 0.02, "accuracies": [0.6]},
            {**base, "method": "b", "mean": 0.52, "std": 0.02, "accuracies": [0.52]},
        ]
    }
    table = markdown_table(suite, data)
    assert "| a | 0 | 60.00 ± 2.00 | +10.00 * |" in table
    assert "| b | 0 | 52.00 ± 2.00 | +2.00 |" in table


def test_full_data_epochs_per_dataset():
    s = Suite(
        name="f",
        datasets=("a", "b"),
        ipcs=(1,),
        protocol="smoke",
        epochs=7,
        full_data_epochs={"a": 300},
    )
    assert s.full_epochs("a") == 300 and s.full_epochs("b") == 7
    assert (
        Suite(
            name="g", datasets=("a",), ipcs=(1,), protocol="smoke", full_data_epochs=5
        ).full_epochs("a")
        == 5
    )


def _random_digits_suite(name: str, runs: int) -> Suite:
    """An unregistered suite of one cell: random real images of digits at IPC 1."""
    return Suite(
        name=name,
        datasets=("digits",),
        ipcs=(1,),
        protocol="smoke",
        runs=runs,
        methods=("random",),
        full_data=False,
        models={"digits": "convnet2-w8"},
    )


def test_run_suite_takes_an_unregistered_suite_object(tmp_path):
    suite = _random_digits_suite("pytest-object", runs=1)
    rows = run_suite(suite, results_dir=tmp_path, markdown=None, log=lambda _: None)
    assert [(r["method"], r["ipc"]) for r in rows] == [("random", 1)]
    assert (tmp_path / "pytest-object.json").exists()


def test_run_suite_refuses_a_method_it_does_not_have(tmp_path, tiny_suite):
    from ddkit.errors import ConfigError

    with pytest.raises(ConfigError, match="has no method 'nosuch'"):
        run_suite(tiny_suite, results_dir=tmp_path, markdown=None, select=CellSelection(["nosuch"]))
    assert not (tmp_path / f"{tiny_suite}.json").exists()


@pytest.mark.parametrize(
    "selection, message",
    [
        ({"datasets": ["digts"]}, "has no dataset 'digts'; valid: digits"),
        ({"ipcs": [7]}, "has no IPC 7; valid: 1, 2"),
    ],
)
def test_run_suite_refuses_a_dataset_or_ipc_it_does_not_have_before_wiping(
    tmp_path, tiny_suite, selection, message
):
    """A typo in --datasets ran nothing and exited 0 (with --fresh after wiping the results);
    an IPC outside the suite still ran the full-data cells (issue 42)."""
    from ddkit.errors import ConfigError

    results, kept = tmp_path / f"{tiny_suite}.json", json.dumps({"suite": tiny_suite, "rows": []})
    results.write_text(kept)
    (tmp_path / f"{tiny_suite}-cells").mkdir()
    with pytest.raises(ConfigError, match=message):
        run_suite(tiny_suite, results_dir=tmp_path, markdown=None, fresh=True,
                  select=CellSelection(**selection))  # fmt: skip
    assert results.read_text() == kept
    assert (tmp_path / f"{tiny_suite}-cells").is_dir()


def test_run_suite_refuses_a_results_folder_that_is_a_file(tmp_path, tiny_suite):
    """``--results FILE`` failed with "File exists: FILE" (issue 42's leftovers)."""
    from ddkit.errors import ConfigError

    file = tmp_path / "results.json"
    file.write_text("{}")
    with pytest.raises(ConfigError, match="results folder .* is a file; give a folder"):
        run_suite(tiny_suite, results_dir=file, markdown=None)
    assert file.read_text() == "{}"


def test_options_full_data_runs_and_published_figures(tmp_path):
    suite = Suite(
        name="pytest-paper",
        datasets=("digits",),
        ipcs=(1,),
        protocol="smoke",
        runs=2,
        methods=("dm",),
        iterations={"dm": 2},
        options={"dm": {"model": "convnet2-w8", "batch_real": 8}},
        full_data_epochs=1,
        full_data_runs=1,
        models={"digits": "convnet2-w8"},
        published={("digits", "dm", 1): 12.5},
        published_budgets={"dm": "a million iterations", "full": "forever"},
    )
    rows = run_suite(suite, results_dir=tmp_path, markdown=None, log=lambda _: None)
    by_method = {r["method"]: r for r in rows}
    assert by_method["dm"]["options"] == {"model": "convnet2-w8", "batch_real": 8}
    assert len(by_method["dm"]["accuracies"]) == 2 and len(by_method["full"]["accuracies"]) == 1
    table = markdown_table(suite, {"rows": rows})
    assert "| digits | 1 | dm | 2 | " in table and " | 12.5 | " in table
    assert "- dm: here 2 iterations, model=convnet2-w8, batch_real=8; published: a million" in table
    assert "- full: here digits 1 epochs, 1 run; published: forever." in table


def test_pending_cells_get_rough_time_estimates():
    from ddkit.bench.runner import estimate_seconds

    suite = Suite(name="e", datasets=("d",), ipcs=(1, 10), protocol="smoke", runs=2,
                  iterations={"dm": 100})  # fmt: skip
    row = {"dataset": "d", "accuracies": [0.5, 0.5], "epochs": 10}
    finished = [
        {**row, "method": "random", "ipc": 1, "num_images": 10, "iterations": 0,
         "eval_seconds": 20.0, "distill_seconds": 0.0},
        {**row, "method": "herding", "ipc": 1, "num_images": 10, "iterations": 0,
         "eval_seconds": 20.0, "distill_seconds": 30.0},
        {**row, "method": "dm", "ipc": 1, "num_images": 10, "iterations": 100,
         "eval_seconds": 20.0, "distill_seconds": 50.0},
    ]  # fmt: skip
    # evaluation: 20 s / (10 epochs x 10 images x 2 networks) = 0.1 s per network-epoch-image
    assert estimate_seconds(suite, finished, "d", "random", 10) == pytest.approx(200.0)
    assert estimate_seconds(suite, finished, "d", "kcenter", 10) == pytest.approx(200.0 + 15.0)
    assert estimate_seconds(suite, finished, "d", "dm", 10) == pytest.approx(200.0 + 500.0)
    assert estimate_seconds(suite, finished, "d", "dc", 10) is None  # never run here
    assert estimate_seconds(suite, finished, "other", "random", 1) is None
    # once an IPC-10 cell has finished, IPC-10 evaluation is estimated from it alone
    finished.append({**row, "method": "random", "ipc": 10, "num_images": 100, "iterations": 0,
                     "eval_seconds": 50.0, "distill_seconds": 0.0})  # fmt: skip
    assert estimate_seconds(suite, finished, "d", "herding", 10) == pytest.approx(50.0 + 30.0)
    assert estimate_seconds(suite, finished, "d", "herding", 1) == pytest.approx(20.0 + 30.0)


def test_rows_computed_on_a_gpu_do_not_estimate_cpu_time():
    from ddkit.bench.runner import estimate_seconds

    suite = Suite(name="e", datasets=("d",), ipcs=(1,), protocol="smoke", runs=2)
    row = {"dataset": "d", "accuracies": [0.5, 0.5], "epochs": 10, "ipc": 1, "num_images": 10,
           "iterations": 0, "distill_seconds": 0.0}  # fmt: skip
    gpu = {**row, "method": "random", "eval_seconds": 2.0, "devices": ["cpu", "cuda"]}
    assert estimate_seconds(suite, [gpu], "d", "herding", 1) is None
    cpu = {**row, "method": "herding", "eval_seconds": 20.0, "devices": ["cpu"]}
    assert estimate_seconds(suite, [gpu, cpu], "d", "kcenter", 1) == pytest.approx(20.0)


def test_a_results_file_names_every_machine_that_wrote_it(tmp_path, monkeypatch):
    from ddkit.bench import results

    cpu = {"cpu": "A", "cores": 2, "torch": "2.13", "gpu": None, "torch_threads": 1}
    gpu = {"cpu": "B", "cores": 16, "torch": "2.11", "gpu": "H100", "torch_threads": 16}
    data = {"rows": []}
    for here in (cpu, gpu, {**cpu, "torch_threads": 2}):  # threads do not make another machine
        monkeypatch.setattr(results, "machine_info", lambda here=here: dict(here))
        results.write_results(tmp_path / "r.json", data)
    written = json.loads((tmp_path / "r.json").read_text())
    assert [m["cpu"] for m in written["machines"]] == ["A", "B"]
    assert written["machine"]["torch_threads"] == 2
    table = markdown_table(Suite(name="e", datasets=("d",), ipcs=(1,), protocol="smoke"), written)
    assert (
        "Machines: A, 2 cores, torch 2.13; B, 16 cores, torch 2.11, H100 (the rows marked" in table
    )
    # a file written before the list existed keeps its last writer among the machines
    old = {"rows": [], "machine": dict(cpu)}
    results.write_results(tmp_path / "old.json", old)  # written here on the last machine above
    assert [m["cpu"] for m in json.loads((tmp_path / "old.json").read_text())["machines"]] == ["A"]
    monkeypatch.setattr(results, "machine_info", lambda: dict(gpu))
    results.write_results(tmp_path / "old.json", {"rows": [], "machine": dict(cpu)})
    assert [m["cpu"] for m in json.loads((tmp_path / "old.json").read_text())["machines"]] == [
        "A",
        "B",
    ]


def test_evaluation_estimates_count_the_images_a_set_trains_on():
    """A set that emits more than ``ipc`` images per class (IDM's multi-formation) trains on all
    of them: a started cell's networks are estimated from its own image count, and such a
    finished row does not inflate the others' (ipc per class is the fewest per IPC)."""
    from ddkit.bench.markdown import _evaluation_estimate

    suite = Suite(name="e", datasets=("d",), ipcs=(1, 10), protocol="smoke", runs=2)
    row = {"dataset": "d", "accuracies": [0.5, 0.5], "epochs": 10, "ipc": 1, "iterations": 0}
    finished = [
        {**row, "method": "idm", "num_images": 40, "eval_seconds": 80.0},
        {**row, "method": "random", "num_images": 10, "eval_seconds": 20.0},
    ]  # 0.1 s per network-epoch-image in both
    assert _evaluation_estimate(suite, finished, "d", "dm", 10) == pytest.approx(200.0)
    assert _evaluation_estimate(suite, finished, "d", "idm", 10, images=400) == pytest.approx(800.0)


def test_a_side_run_into_another_results_folder_leaves_the_published_table_alone():
    from ddkit.cli import bench_markdown

    assert bench_markdown("benchmarks/results", None) == "BENCHMARKS.md"
    assert bench_markdown("benchmarks/results/", None) == "BENCHMARKS.md"
    assert bench_markdown("/tmp/side-run", None) is None
    assert bench_markdown("/tmp/side-run", "side.md") == "side.md"


def test_a_suite_table_is_written_on_the_topic_page_that_holds_its_markers(tmp_path):
    from ddkit.bench.runner import TOPIC_PAGES, write_markdown

    suite = Suite(name="e", datasets=("d",), ipcs=(1,), protocol="smoke")
    front, pages = tmp_path / "BENCHMARKS.md", tmp_path / TOPIC_PAGES
    pages.mkdir(parents=True)
    front.write_text("# Benchmarks\n\nthe summary\n")
    other = pages / "a.md"
    other.write_text("# A\n\nno table here\n")
    topic = pages / "suites.md"
    topic.write_text("# Suites\n\n<!-- bench:e:start -->\nold\n<!-- bench:e:end -->\n\nnotes\n")
    write_markdown(front, suite, {"rows": []}, tmp_path)
    assert front.read_text() == "# Benchmarks\n\nthe summary\n"
    assert other.read_text() == "# A\n\nno table here\n"
    text = topic.read_text()
    assert "old" not in text and text.endswith("<!-- bench:e:end -->\n\nnotes\n")
    assert text.count("<!-- bench:e:start -->") == 1
    # markers in the page itself win; no page holding them: the table is appended to the page
    front.write_text("<!-- bench:e:start -->\nmine\n<!-- bench:e:end -->\n")
    write_markdown(front, suite, {"rows": []}, tmp_path)
    assert "mine" not in front.read_text() and "mine" not in topic.read_text()
    lone = tmp_path / "lone" / "B.md"
    lone.parent.mkdir()
    write_markdown(lone, suite, {"rows": []}, tmp_path)
    assert "## Suite `e`" in lone.read_text()


def test_the_published_suite_tables_have_their_pages():
    from ddkit.bench.runner import suite_page

    root = Path(__file__).resolve().parents[1]
    published = [
        n for n in SUITES.names() if (root / "benchmarks" / "results" / f"{n}.json").exists()
    ]
    assert {"quick", "standard", "paper", "pruning"} <= set(published)
    for name in published:
        start = f"<!-- bench:{name}:start -->"
        page = suite_page(root / "BENCHMARKS.md", start)
        text = page.read_text()
        assert start in text and f"<!-- bench:{name}:end -->" in text, name
        assert page.parent.name == "benchmarks", f"suite {name}'s table is in {page}"


def _child_peak() -> float:
    from ddkit.bench.cells import own_peak_mb

    return own_peak_mb()


def test_a_spawned_unit_measures_its_own_peak_not_its_parents():
    """``ru_maxrss`` of a spawned child starts at the parent's peak; units measure ``VmHWM``,
    which is their own; peaks recorded the old way are shown as not measured."""
    import multiprocessing as mp
    import resource

    from ddkit.bench.cells import PEAK_MEASURE, _measured_peak

    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM needs Linux's /proc")
    ballast = bytearray(300 * 2**20)
    ballast[:: 2**12] = b"\x01" * len(ballast[:: 2**12])  # touch every page
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with mp.get_context("spawn").Pool(1) as pool:
        child = pool.apply(_child_peak)
    del ballast
    assert child < parent - 200
    assert _measured_peak({"peak_mb": 5.0}) is None
    assert _measured_peak({"peak_mb": 5.0, "peak_measure": PEAK_MEASURE}) == 5.0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_killed_runner_takes_its_unit_process_with_it(tmp_path):
    """The runner's unit child (spawned, as in ``_run_claimed``) ends when the runner is killed,
    instead of running on and writing into the cell folder."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "runner.py"
    script.write_text(
        "import concurrent.futures as cf, multiprocessing as mp, os, time\n"
        "from ddkit.bench.runner import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as pool:\n"
        "        f = pool.submit(exit_with_parent, os.getpid(), time.sleep, 120)\n"
        "        while not mp.active_children():\n"
        "            time.sleep(0.05)\n"
        "        print(mp.active_children()[0].pid, flush=True)\n"
        "        f.result()\n"
    )
    runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(runner.stdout.readline())
    time.sleep(1.0)  # the child is up and idle in its unit
    assert _alive(child)
    runner.send_signal(signal.SIGTERM)
    runner.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_rerun_replaces_a_finished_cell_only_when_its_new_run_finishes(tmp_path, tiny_suite):
    from ddkit.bench.cells import cell_folder
    from ddkit.bench.results import (
        claim_unit,
        finish_unit,
        mark_rerun,
        read_results,
        results_lock,
        write_results,
    )

    suite = SUITES.get(tiny_suite)
    path = tmp_path / f"{tiny_suite}.json"
    cell = Cell("digits", "random", 1)
    folder = cell_folder(tmp_path, suite, cell)
    first = run_suite(
        tiny_suite,
        results_dir=tmp_path,
        markdown=None,
        select=CellSelection(["random"], ipcs=[1]),
        seed=0,
    )
    other = {"dataset": "digits", "method": "herding", "ipc": 1, "error": "stand-in row"}
    with results_lock(path):
        data = read_results(path, suite)
        data["rows"].append(other)
        write_results(path, data)

    # a re-run that fails keeps the old row and folder, and drops its own work
    assert mark_rerun(path, suite, [cell, Cell("digits", "random", 2)]) == [cell]  # 2 never ran
    unit, work = claim_unit(path, suite, cell)
    assert work == folder.with_name(folder.name + ".rerun") and unit == "distill"
    work.mkdir(parents=True)
    finish_unit(path, suite, cell, unit, seed=1, error="RuntimeError: boom")
    data = read_results(path, suite)
    assert data["rows"] == [first[0], other] and not data["rerun"]
    assert not work.exists() and (folder / "eval0.json").exists()

    # an interrupted re-run: the old row stands until a later run finishes the marked cell
    mark_rerun(path, suite, [cell])
    assert read_results(path, suite)["rows"] == [first[0], other]
    rows = run_suite(
        tiny_suite, results_dir=tmp_path, markdown=None, select=CellSelection(["random"], ipcs=[1]),
        seed=1, rerun=True,
    )  # fmt: skip
    new = [r for r in rows if r["method"] == "random"]
    assert len(new) == 1 and new[0]["seeds"] != first[0]["seeds"]
    assert new[0]["cell_folder"] == folder.as_posix() and folder.exists() and not work.exists()
    assert other in rows  # a cell not re-run is untouched
    assert read_results(path, suite)["replaced"] == first  # the old row kept for the record


# ------------------------------------------------------------------ stopping and damaged rows
_SLOW_RUNNER = """
import os, signal, sys, time
import ddkit.bench.runner as runner
from ddkit.bench import Suite

# as started from a terminal: a shell's background job (make test under `cmd &`, CI) inherits
# SIGINT ignored, and Python then leaves Ctrl-C ignored
signal.signal(signal.SIGINT, signal.default_int_handler)

def slow_unit(*args):
    print(os.getpid(), flush=True)
    time.sleep(120)

if __name__ == "__main__":
    runner.run_unit = slow_unit
    suite = Suite(name="pytest-slow", datasets=("digits",), ipcs=(1,), protocol="smoke", runs=1,
                  methods=("random",), full_data=False)
    runner.run_suite(suite, results_dir=sys.argv[1], markdown=None, log=lambda line: None)
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signalled_runner_stops_its_unit_within_seconds(tmp_path, signal_name):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "runner.py"
    script.write_text(_SLOW_RUNNER)
    runner = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    child = int(runner.stdout.readline())  # the unit runs (and would for two minutes)
    t0 = time.monotonic()
    runner.send_signal(getattr(signal, signal_name))  # to the runner alone, not its group
    try:
        runner.wait(timeout=10)
    finally:
        runner.kill()
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    saved = json.loads((tmp_path / "pytest-slow.json").read_text())
    assert saved["rows"] == []  # an interrupted unit is no failed cell: it runs next time


def test_a_row_that_lost_its_accuracy_is_not_finished_and_runs_again(tmp_path, tiny_suite):
    from ddkit.bench.results import finished_cells

    path = tmp_path / f"{tiny_suite}.json"
    lost = {"dataset": "digits", "method": "random", "ipc": 1, "iterations": 0}
    junk = [3, {"method": "random"}, {"dataset": "digits", "method": "random", "ipc": "x"}]
    path.write_text(json.dumps({"suite": tiny_suite, "rows": [lost, *junk]}))
    assert finished_cells(json.loads(path.read_text())) == set()
    rows = run_suite(tiny_suite, results_dir=tmp_path, markdown=tmp_path / "B.md",
                     select=CellSelection(["random"], ipcs=[1]), log=lambda line: None)  # fmt: skip
    (row,) = [r for r in rows if isinstance(r, dict) and r.get("accuracies")]
    assert len(row["accuracies"]) == 2 and "mean" in row
    assert lost not in json.loads(path.read_text())["rows"]


# ------------------------------------------------------------------ distillation seeds


def _seeded_suite(**kw) -> Suite:
    base = {"ipcs": (1, 10), "runs": 3, "methods": ("random", "dm")}
    return Suite(
        name="pytest-seeds",
        datasets=("digits",),
        protocol="smoke",
        full_data=False,
        models={"digits": "convnet2-w8"},
        **{**base, **kw},
    )


def test_seeds_per_ipc_and_random_draws():
    suite = _seeded_suite(distill_seeds={1: 2, 10: 3}, random_draws={1: 5})
    assert [suite.seeds("dm", ipc) for ipc in (1, 10, 50)] == [2, 3, 1]
    assert [suite.seeds("random", ipc) for ipc in (1, 10, 50)] == [5, 3, 1]
    assert suite.seeds("full", 0) == 1  # the full-data row and pruning cells: one
    assert _seeded_suite().seeds("dm", 1) == 1


def _fake_units(folder: Path, seed: int, accuracies: list[float]) -> None:
    """The files a finished distillation seed leaves: distill.json and one eval<k>.json per
    network (in ``folder``, which is ``seed<s>/`` for seeds after the first)."""
    folder.mkdir(parents=True, exist_ok=True)
    common = {"peak_mb": 1.0, "peak_measure": "VmHWM", "num_images": 10, "storage_bytes": 640}
    distill = {"iterations": 5, "options": {}, "seconds": 2.0 + seed, "resumed": False}
    (folder / "distill.json").write_text(json.dumps({**distill, **common}))
    for k, acc in enumerate(accuracies):
        net = {"model": "convnet2-w8", "accuracy": acc, "train_accuracy": 1.0, "seed": 10 * k,
               "seconds": 1.0, "epochs": 3, "lr": 0.01, "protocol": "smoke"}  # fmt: skip
        (folder / f"eval{k}.json").write_text(json.dumps({**net, **common}))


def test_the_spread_of_two_seeds_is_the_std_over_all_six_accuracies(tmp_path):
    import gzip
    import statistics

    from ddkit.bench.cells import cell_folder, cell_progress, cell_row, finished_units, units

    suite, cell = _seeded_suite(distill_seeds={1: 2}), Cell("digits", "dm", 1)
    folder = cell_folder(tmp_path, suite, cell)
    first, second = [0.80, 0.82, 0.81], [0.70, 0.71, 0.72]
    _fake_units(folder, 0, first)
    assert finished_units(folder, suite, cell) == {"distill", "eval0", "eval1", "eval2"}
    lines = "".join(json.dumps({"seconds": 0.5}) + "\n" for _ in range(4))
    (folder / "step_seconds.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (folder / "distill").mkdir()
    (folder / "distill" / "config.json").write_text(json.dumps({"iterations": 5}))
    progress = cell_progress(folder, suite, cell)  # the second seed's steps timed as the first's
    assert progress["distillations_left"] == 1 and progress["step_seconds"] == 0.5
    assert (progress["networks_done"], progress["networks"]) == (3, 6)
    _fake_units(folder / "seed1", 1, second)
    assert finished_units(folder, suite, cell) == set(units(suite, cell))
    row = cell_row(folder, suite, cell, seed=0)
    assert row["accuracies"] == first + second and row["distill_seeds"] == [0, 1]
    assert row["mean"] == pytest.approx(statistics.fmean(first + second))
    assert row["std"] == pytest.approx(statistics.pstdev(first + second))
    # far above the spread between the networks of one set: the seeds differ by 10 points
    assert row["std"] > 5 * max(statistics.pstdev(first), statistics.pstdev(second))
    assert row["distill_seconds"] == pytest.approx(2.5)  # one set's, the mean over seeds
    table = markdown_table(suite, {"rows": [row]})
    assert "| digits | 1 | dm | 5 | 76.00 ± 5.07 |" in table and "| 2 × 3 |" in table
    assert "IPC 1: 2 seeds (2 random draws), IPC 10: 1 seeds" in table


def test_networks_trained_on_a_gpu_count_as_done_but_do_not_set_the_cpu_pace(tmp_path):
    from ddkit.bench.cells import cell_folder, cell_progress

    suite, cell = _seeded_suite(distill_seeds={1: 2}), Cell("digits", "dm", 1)
    folder = cell_folder(tmp_path, suite, cell)
    _fake_units(folder, 0, [0.8, 0.8, 0.8])
    for k in range(3):
        path = folder / f"eval{k}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "device": "cuda"}))
    progress = cell_progress(folder, suite, cell)
    assert progress["networks_done"] == 3 and progress["network_seconds"] is None
    path = folder / "eval2.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "device": "cpu", "seconds": 7.0}))
    assert cell_progress(folder, suite, cell)["network_seconds"] == 7.0


def test_a_set_distilled_on_a_gpu_gives_no_pace_for_the_next_seed_on_the_cpu(tmp_path):
    """The second seed's distillation is CPU time still to come: a first seed a GPU distilled
    sets no pace for it, and the cell then shows no time left rather than too little."""
    import gzip

    from ddkit.bench.cells import cell_folder, cell_progress
    from ddkit.bench.markdown import _pending_text

    suite, cell = _seeded_suite(distill_seeds={1: 2}), Cell("digits", "dm", 1)
    folder = cell_folder(tmp_path, suite, cell)
    _fake_units(folder, 0, [0.8, 0.8, 0.8])
    lines = "".join(json.dumps({"seconds": 0.01}) + "\n" for _ in range(5))
    (folder / "step_seconds.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (folder / "seed1" / "distill").mkdir(parents=True)
    (folder / "seed1" / "distill" / "config.json").write_text(json.dumps({"iterations": 5}))
    assert cell_progress(folder, suite, cell)["step_seconds"] == 0.01  # a CPU set: its pace
    summary = folder / "distill.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "device": "cuda"}))
    assert cell_progress(folder, suite, cell)["step_seconds"] is None
    text = _pending_text(suite, [], cell, tmp_path)
    assert "1 of 2 sets, 0 of 5 iterations, 3 of 6 networks" in text and "left" not in text


@pytest.mark.parametrize("folder_kept", [True, False])
def test_a_row_of_one_seed_still_reads_and_only_the_missing_seed_runs(tmp_path, folder_kept):
    """A cell finished with one seed, its folder kept or gone (its networks then come back from
    the row), runs only its second seed; the row of both replaces the old one."""
    import shutil

    from ddkit.bench.cells import cell_folder, cell_row, run_unit
    from ddkit.bench.results import claim_unit, finish_unit, finished_cells, read_results

    one = _seeded_suite(runs=1, ipcs=(1,), methods=("random",))
    two = _seeded_suite(runs=1, ipcs=(1,), methods=("random",), distill_seeds=2)
    cell = Cell("digits", "random", 1)
    path = tmp_path / "pytest-seeds.json"
    _fake_units(cell_folder(tmp_path, one, cell), 0, [0.42])  # a cell finished with one seed
    row = cell_row(cell_folder(tmp_path, one, cell), one, cell, seed=0)
    old = {k: v for k, v in row.items() if k not in ("distill_seeds", "runs")}
    path.write_text(json.dumps({"suite": one.name, "rows": [old]}))  # as written before seeds
    data = read_results(path, two)
    assert finished_cells(data) == {cell} and finished_cells(data, two) == set()
    table = markdown_table(two, data, tmp_path)
    assert f"| {100 * old['mean']:.2f} ± 0.00 |" in table and "| 1 × 1 |" in table
    assert "digits IPC 1 random (1 of 2 sets" in table  # pending: its second seed
    folder = cell_folder(tmp_path, two, cell)
    if not folder_kept:
        shutil.rmtree(folder)
    kept = None
    for expected in ("seed1/distill", "seed1/eval0"):
        unit, where = claim_unit(path, two, cell)
        assert unit == expected and where == folder
        kept = kept or (folder / "eval0.json").read_text()  # the first seed's network
        run_unit(cell, unit, two, 0, where)  # in this process: the seed's own folder
        row = finish_unit(path, two, cell, unit, 0)
    assert (folder / "eval0.json").read_text() == kept  # it stays
    assert row["distill_seeds"] == [0, 1] and row["accuracies"][0] == old["accuracies"][0]
    second = json.loads((folder / "seed1" / "eval0.json").read_text())
    assert row["accuracies"][1] == second["accuracy"]
    saved = read_results(path, two)["rows"]
    assert [r["distill_seeds"] for r in saved] == [[0, 1]]  # the one-seed row was replaced
    assert claim_unit(path, two, cell) is None


def test_a_rerun_runs_every_seed_of_a_cell_finished_with_fewer(tmp_path):
    from ddkit.bench.cells import cell_folder, cell_row
    from ddkit.bench.results import claim_unit, mark_rerun

    one = _seeded_suite(runs=1, ipcs=(1,), methods=("random",))
    two = _seeded_suite(runs=1, ipcs=(1,), methods=("random",), distill_seeds=2)
    cell, path = Cell("digits", "random", 1), tmp_path / "pytest-seeds.json"
    _fake_units(cell_folder(tmp_path, one, cell), 0, [0.42])
    row = cell_row(cell_folder(tmp_path, one, cell), one, cell, seed=0)
    path.write_text(json.dumps({"suite": one.name, "rows": [row]}))
    assert mark_rerun(path, two, [cell]) == [cell]  # the variant changed: both seeds again
    unit, where = claim_unit(path, two, cell)
    assert unit == "distill" and where.name.endswith(".rerun")


@pytest.mark.parametrize("folder_kept", [True, False])
def test_a_row_run_with_other_options_runs_every_seed_again_never_mixing_variants(
    tmp_path, folder_kept
):
    """A suite whose options for a method changed after a cell ran (a published variant
    selected, say) must not top up the old row with seeds of the new variant: the row is marked
    superseded, and the cell runs every seed again in its re-run folder."""
    import shutil

    from ddkit.bench.cells import cell_folder, cell_row
    from ddkit.bench.results import (
        claim_unit,
        finished_cells,
        mark_rerun,
        read_results,
        stale_cells,
        stale_row,
    )

    old = _seeded_suite(runs=1, ipcs=(1,), methods=("dm",))
    new = _seeded_suite(
        runs=1, ipcs=(1,), methods=("dm",), distill_seeds=2, options={"dm": {"lr_img": 10.0}}
    )
    same = _seeded_suite(runs=1, ipcs=(1,), methods=("dm",), distill_seeds=2)
    cell, path = Cell("digits", "dm", 1), tmp_path / "pytest-seeds.json"
    folder = cell_folder(tmp_path, old, cell)
    _fake_units(folder, 0, [0.42])  # ran with options {}
    row = cell_row(folder, old, cell, seed=0)
    path.write_text(json.dumps({"suite": old.name, "rows": [row]}))
    assert stale_row(row, new) and not stale_row(row, old) and not stale_row(row, same)
    data = read_results(path, new)
    assert finished_cells(data, new) == set() and stale_cells(data, new, [cell]) == [cell]
    assert stale_cells(read_results(path, same), same, [cell]) == []
    table = markdown_table(new, data, tmp_path)
    assert "| dm (superseded) |" in table and "`(superseded)`:" in table
    assert "digits IPC 1 dm (superseded row: every seed again)" in table
    assert "(superseded)" not in markdown_table(same, read_results(path, same), tmp_path)
    if not folder_kept:  # nor is the old row's seed restored as the new cell's first seed
        shutil.rmtree(folder)
        unit, where = claim_unit(path, new, cell)
        assert (unit, where) == ("distill", folder) and not (folder / "distill.json").exists()
        return
    assert mark_rerun(path, same, [cell], stale_only=True) == []  # its row is current there
    assert mark_rerun(path, new, [cell], stale_only=True) == [cell]  # as run_suite does
    unit, where = claim_unit(path, new, cell)
    assert unit == "distill" and where.name.endswith(".rerun")  # seed 0 again, apart


def test_a_cell_whose_units_finished_but_whose_row_was_lost_gets_its_row(tmp_path):
    """The process that finished a cell's last unit died before it wrote the row (a crash
    between the unit file and the results file): the next run records the row from the unit
    files instead of skipping the cell forever, and drops the dead process's claim."""
    from ddkit.bench.results import _boot_id, claim_unit, read_results, write_results

    suite = _random_digits_suite("pytest-lost-row", runs=2)
    rows = run_suite(suite, results_dir=tmp_path, markdown=None, log=lambda _: None)
    path = tmp_path / f"{suite.name}.json"
    cell = Cell("digits", "random", 1)
    data = read_results(path, suite)
    data["rows"] = []  # lost, with a claim of a process that no longer lives
    data["running"]["digits/random/1/eval1"] = {"pid": 2**22 + 12345, "boot": _boot_id()}
    write_results(path, data)

    assert claim_unit(path, suite, cell) is None
    again = read_results(path, suite)
    assert again["rows"] == rows and again["running"] == {}


def test_a_cell_computed_on_another_device_says_so_in_its_row_and_the_table(tmp_path):
    """Units record their device; a row whose units did not all run on the CPU lists the
    devices, and the table names them beside the method (earlier units recorded none: CPU)."""
    from ddkit.bench.cells import cell_folder, cell_row

    suite, cell = _seeded_suite(runs=1, ipcs=(1,)), Cell("digits", "dm", 1)
    folder = cell_folder(tmp_path, suite, cell)
    _fake_units(folder, 0, [0.5])
    assert "devices" not in cell_row(folder, suite, cell, seed=0)
    unit = json.loads((folder / "eval0.json").read_text())
    (folder / "eval0.json").write_text(json.dumps({**unit, "device": "cuda:0"}))
    row = cell_row(folder, suite, cell, seed=0)
    assert row["devices"] == ["cpu", "cuda:0"]
    table = markdown_table(suite, {"suite": suite.name, "rows": [row]}, tmp_path)
    assert "| digits | 1 | dm (cpu, cuda:0) | 5 |" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_bench_refuses_a_device_this_machine_lacks_before_any_work(tmp_path, capsys):
    rc = main(["bench", "--suite", "quick", "--results", str(tmp_path / "r"), "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "device 'cuda' is not available" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def _leaders_table():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "tables" / "leaders_table.py"
    spec = importlib.util.spec_from_file_location("leaders_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_leaders_table_pools_a_second_seed_and_refuses_a_mixed_recipe():
    lt = _leaders_table()
    row = {"options": {}, "iterations": 10, "epochs": 5, "protocol": "dsa", "model": "m"}
    old_row = {k: v for k, v in row.items() if k != "options"}  # written before options were
    first = {("m3d", 10): {**old_row, "accuracies": [0.9, 0.92], "mean": 0.91}}
    second = {("m3d", 10): {**row, "accuracies": [0.94, 0.96], "distill_seeds": [1]}}
    got = lt.pooled(first, second)[("m3d", 10)]
    assert got["distill_seeds"] == [0, 1] and got["accuracies"] == [0.9, 0.92, 0.94, 0.96]
    assert got["mean"] == pytest.approx(0.93) and got["std"] == pytest.approx(0.02236, abs=1e-4)
    assert lt.spread_cell(got) == "2 × 2, cpu"
    with pytest.raises(SystemExit, match="given twice"):
        lt.pooled(first, first)
    with pytest.raises(SystemExit, match="iterations differs"):
        lt.pooled(first, {("m3d", 10): {**second[("m3d", 10)], "iterations": 20}})


def test_a_distillation_resumed_on_another_device_records_both(tmp_path):
    """A checkpoint carried from a GPU machine and resumed here: the unit's distill.json and the
    cell's row name both devices (not just the one that finished); a fresh start forgets an
    earlier attempt's devices."""
    from ddkit.bench.cells import SEGMENT_DEVICES, _distill, cell_folder, cell_row
    from ddkit.runs import DistillRequest, distill_run

    suite = _seeded_suite(runs=1, ipcs=(1,), methods=("dm",), iterations={"dm": 2})
    cell = Cell("digits", "dm", 1)
    folder = cell_folder(tmp_path, suite, cell)
    options = suite.options_for("dm", 1)
    request = DistillRequest("digits", "dm", 1, iterations=1, options=options)
    distill_run(request, folder / "distill", checkpoint_every=1)
    assert (folder / "distill" / "checkpoint" / "state.json").exists()
    (folder / SEGMENT_DEVICES).write_text(json.dumps({"devices": ["cuda"]}))  # its first segment
    _distill(cell, suite, 0, folder, "cpu")
    summary = json.loads((folder / "distill.json").read_text())
    assert summary["resumed"] and summary["device"] == "cpu"
    assert summary["devices"] == ["cpu", "cuda"] and not (folder / SEGMENT_DEVICES).exists()
    _fake_units(tmp_path / "nets", 0, [0.5])
    (folder / "eval0.json").write_bytes((tmp_path / "nets" / "eval0.json").read_bytes())
    assert cell_row(folder, suite, cell, seed=0)["devices"] == ["cpu", "cuda"]

    (folder / "distill.json").unlink()  # a fresh start (no checkpoint) beside a stale record
    (folder / SEGMENT_DEVICES).write_text(json.dumps({"devices": ["cuda"]}))
    _distill(cell, suite, 0, folder, "cpu")
    assert json.loads((folder / "distill.json").read_text())["devices"] == ["cpu"]
